"""create_personal_key, add_member and analytics_rebuild, as an operator runs them."""

import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from analytics.fold import fold_drain
from analytics.models import DailyTotal, NameDay, OrgDay, PathDay
from apps_registry.models import Membership, Usage
from ingest.models import Event
from tests.factories import ApplicationFactory, EventFactory, UserFactory

pytestmark = pytest.mark.django_db


def run(*args, stdin: str = "") -> str:
    out = io.StringIO()
    extra = {"stdin": io.StringIO(stdin)} if stdin else {}
    call_command(*args, stdout=out, **extra)
    return out.getvalue()


def test_create_personal_key_prints_a_key_that_reads_the_api(api_client, application, member):
    body = json.loads(run("create_personal_key", "--user", member.username, "--json"))

    assert body["key"].startswith("stp_")
    response = api_client.get("/api/v1/analytics/apps/", HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    assert response.status_code == 200


def test_create_personal_key_for_an_unknown_user_fails():
    with pytest.raises(CommandError):
        run("create_personal_key", "--user", "nobody", "--json")


def test_add_member_creates_the_user_with_a_generated_password_printed_once(application):
    body = json.loads(
        run("add_member", "--company", application.company.name, "--username", "ann", "--role", "admin", "--staff",
            "--json")
    )  # fmt: skip

    user = get_user_model().objects.get(username="ann")
    assert body["created"] is True
    assert user.check_password(body["password"])
    assert user.is_staff
    assert Membership.objects.get(user=user).role == "admin"


def test_add_member_reads_the_password_from_stdin_and_never_echoes_it(application):
    out = run(
        "add_member", "--company", application.company.name, "--username", "bob", "--role", "member",
        "--password-stdin", "--json", stdin="s3cret-Pass\n",
    )  # fmt: skip

    assert "s3cret" not in out
    assert get_user_model().objects.get(username="bob").check_password("s3cret-Pass")


def test_add_member_changes_the_role_of_an_existing_member(application):
    user = UserFactory(username="cy")
    Membership.objects.create(user=user, company=application.company, role="member")

    body = json.loads(run("add_member", "--company", application.company.name, "--username", "cy", "--role", "owner",
                          "--json"))  # fmt: skip

    assert (body["created"], body["role"]) == (False, "owner")
    assert "password" not in body


def test_add_member_refuses_a_member_of_another_company(application, outsider):
    with pytest.raises(CommandError):
        run("add_member", "--company", application.company.name, "--username", outsider.username, "--role", "member")


def _snapshot(app) -> list:
    return [
        sorted((*row[:7], *(bytes(b) for b in row[7:])) for row in DailyTotal.objects.filter(application=app)
               .values_list("environment", "source", "day", "events", "users", "orgs", "sessions", "users_bm",
                            "orgs_bm", "sessions_bm", "org_users_bm", "org_sessions_bm")),
        sorted((*row[:5], bytes(row[5]), bytes(row[6])) for row in NameDay.objects.filter(application=app)
               .values_list("source", "event", "environment", "day", "events", "users_bm", "orgs_bm")),
        sorted((*row[:4], bytes(row[4])) for row in PathDay.objects.filter(application=app)
               .values_list("environment", "day", "path", "views", "users_bm")),
        sorted(OrgDay.objects.filter(application=app).values_list("environment", "day", "customer_org_id", "events",
                                                                  "path_views")),
    ]  # fmt: skip


def test_rebuild_recomputes_the_same_rollups_idempotently_and_keeps_usage():
    app = ApplicationFactory()
    other = ApplicationFactory()
    day0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    for i in range(40):
        EventFactory(application=app, customer_org_id=f"o{i % 3}", user_hash=f"u{i % 7}".ljust(64, "x"),
                     occurred_at=day0 + timedelta(days=i % 4), environment="prod" if i % 2 else None)  # fmt: skip
    EventFactory.create_batch(5, application=other)
    fold_drain()
    before, usage_before = _snapshot(app), Usage.objects.get(company=app.company).event_count
    DailyTotal.objects.filter(application=app).update(events=0, users=999)  # damaged rollups

    out = run("analytics_rebuild", "--app", str(app.uuid))
    run("analytics_rebuild", "--app", str(app.uuid))

    assert "40 rows" in out
    assert _snapshot(app) == before
    assert Usage.objects.get(company=app.company).event_count == usage_before == 40
    assert DailyTotal.objects.filter(application=other, environment="*").get().events == 5


def test_rebuild_since_a_day_keeps_older_rollups_whose_raw_rows_are_gone():
    app = ApplicationFactory()
    EventFactory(application=app, occurred_at=datetime(2026, 10, 1, 9, tzinfo=UTC))
    EventFactory(application=app, occurred_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    fold_drain()
    Event.objects.filter(occurred_at__lt=datetime(2026, 10, 2, tzinfo=UTC)).delete()  # as retention would

    run("analytics_rebuild", "--app", str(app.uuid), "--since", "2026-10-15")

    days = dict(DailyTotal.objects.filter(application=app, environment="*").values_list("day", "events"))
    assert days == {date(2026, 10, 1): 1, date(2026, 11, 1): 1}


def test_rebuild_leaves_rows_still_pending_to_the_fold():
    app = ApplicationFactory()
    EventFactory(application=app, occurred_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    fold_drain()
    EventFactory(application=app, occurred_at=datetime(2026, 11, 1, 10, tzinfo=UTC))  # not yet folded

    run("analytics_rebuild", "--app", str(app.uuid))
    fold_drain()

    assert DailyTotal.objects.get(application=app, environment="*").events == 2


def test_rebuild_shows_a_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    app = ApplicationFactory()
    EventFactory.create_batch(3, application=app)
    fold_drain()
    out = Terminal()

    call_command("analytics_rebuild", "--app", str(app.uuid), stdout=out)

    assert "100.0% 3/3 rows" in out.getvalue()
