"""Organizations list and page with money: names, MRR, products, segments (= the matrix), tags, notes."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics.models import OrgSignal
from analytics.revenue_health import revenue_health_get
from apps_registry.models import Membership
from revenue.models import Note
from tests.factories import MembershipFactory, OrganizationFactory

from .conftest import import_orgs, import_subs

pytestmark = pytest.mark.django_db


def url(app, endpoint: str) -> str:
    return f"/api/v1/analytics/apps/{app.uuid}/{endpoint}"


@pytest.fixture
def app(application):
    """Paying: a 100 (healthy 80), b 300 (at risk 20), c 50 (never seen), d 10 (healthy 90);
    e seen, not paying; f only imported by name. Median of 10, 50, 100, 300 = 75."""
    start = (timezone.now() - timedelta(days=100)).date().isoformat()
    text = "external_org_id,product_code,mrr,currency,start_at\n" + "".join(
        f"{o},{p},{m},EUR,{start}\n"
        for o, p, m in [("a", "pro", 60), ("a", "seats", 40), ("b", "pro", 300), ("c", "pro", 50), ("d", "pro", 10)]
    )
    assert import_subs(application, text)["status"] == "applied"
    import_orgs(application, "external_org_id,display_name\na,Acme\nb,Bluth\nf,Fabrikam\n")
    for org, score, bucket in (("a", 80, "healthy"), ("b", 20, "at_risk"), ("d", 90, "healthy"), ("e", 50, "watch")):
        OrganizationFactory(application=application, customer_org_id=org, health_score=score, health_bucket=bucket)
    return application


def test_items_gain_display_name_mrr_products(api_client, app, admin_user):
    api_client.force_login(admin_user)
    body = api_client.get(url(app, "organizations?sort=-mrr")).json()
    rows = [(o["customer_org_id"], o["display_name"], o["mrr"], o["products"]) for o in body["organizations"]]
    assert rows == [
        ("b", "Bluth", "300.00", ["pro"]),
        ("a", "Acme", "100.00", ["pro", "seats"]),
        ("c", None, "50.00", ["pro"]),
        ("d", None, "10.00", ["pro"]),
        ("e", None, "0.00", []),
        ("f", "Fabrikam", "0.00", []),
    ]
    never = {o["customer_org_id"]: o for o in body["organizations"]}
    assert never["c"]["seen_in_events"] is False
    assert never["c"]["health"] == {"score": None, "bucket": None}
    assert never["a"]["health"]["score"] == 80


def test_default_sort_lists_imported_only_orgs_after_the_seen_ones(api_client, app, admin_user):
    api_client.force_login(admin_user)
    first = api_client.get(url(app, "organizations?limit=3")).json()
    second = api_client.get(url(app, f"organizations?limit=3&cursor={first['next_cursor']}")).json()
    ids = [o["customer_org_id"] for o in first["organizations"] + second["organizations"]]
    assert sorted(ids[:4]) == ["a", "b", "d", "e"]
    assert ids[4:] == ["c", "f"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("segment", ["champions", "expansion", "revenue_at_risk", "low_value"])
def test_a_segment_lists_exactly_the_cell(api_client, app, admin_user, segment):
    api_client.force_login(admin_user)
    cell = revenue_health_get(app=app)["cells"][segment]
    body = api_client.get(url(app, f"organizations?segment={segment}&limit=500")).json()
    orgs = body["organizations"]
    assert len(orgs) == cell["orgs"]
    assert str(sum((Decimal(o["mrr"]) for o in orgs), Decimal("0.00"))) == cell["mrr"]
    expected = {"champions": {"a"}, "expansion": {"d"}, "revenue_at_risk": {"b"}, "low_value": {"c"}}
    assert {o["customer_org_id"] for o in orgs} == expected[segment]


def test_tags_add_filter_and_remove(api_client, app, member):
    api_client.force_login(member)
    assert api_client.post(url(app, "organizations/a/tags"), {"label": "Renewal-Q3"}, format="json").json() == {
        "tags": ["renewal-q3"]
    }
    api_client.post(url(app, "organizations/c/tags"), {"label": "renewal-q3"}, format="json")
    api_client.post(url(app, "organizations/c/tags"), {"label": "onboarding"}, format="json")
    body = api_client.get(url(app, "organizations?tag=renewal-q3&sort=-mrr")).json()
    assert [(o["customer_org_id"], o["tags"]) for o in body["organizations"]] == [
        ("a", ["renewal-q3"]),
        ("c", ["onboarding", "renewal-q3"]),
    ]
    assert api_client.delete(url(app, "organizations/a/tags/renewal-q3")).status_code == 204
    assert api_client.delete(url(app, "organizations/a/tags/renewal-q3")).status_code == 404
    body = api_client.get(url(app, "organizations?tag=renewal-q3")).json()
    assert [o["customer_org_id"] for o in body["organizations"]] == ["c"]
    bad = api_client.post(url(app, "organizations/a/tags"), {"label": "<script>"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["details"][0]["field"] == "label"


def test_notes_by_members_deleted_by_author_or_admin(api_client, app, member, admin_user):
    api_client.force_login(member)
    created = api_client.post(url(app, "organizations/b/notes"), {"text": "Called about renewal"}, format="json")
    assert created.status_code == 201
    note_id = created.json()["id"]
    other = MembershipFactory(company=app.company, role=Membership.Role.MEMBER).user
    api_client.force_login(other)
    assert api_client.delete(url(app, f"organizations/b/notes/{note_id}")).status_code == 403
    notes = api_client.get(url(app, "organizations/b/notes")).json()["notes"]
    assert [(n["author"], n["text"]) for n in notes] == [(member.username, "Called about renewal")]
    api_client.force_login(admin_user)
    assert api_client.delete(url(app, f"organizations/b/notes/{note_id}")).status_code == 204
    assert not Note.objects.exists()
    api_client.force_login(member)
    mine = api_client.post(url(app, "organizations/b/notes"), {"text": "again"}, format="json").json()["id"]
    assert api_client.delete(url(app, f"organizations/b/notes/{mine}")).status_code == 204
    empty = api_client.post(url(app, "organizations/b/notes"), {"text": "  "}, format="json")
    assert empty.status_code == 400
    assert empty.json()["details"][0]["field"] == "text"


def test_another_company_cannot_touch_notes_or_tags(api_client, app, member, outsider):
    api_client.force_login(member)
    note_id = api_client.post(url(app, "organizations/b/notes"), {"text": "x"}, format="json").json()["id"]
    api_client.force_login(outsider)
    assert api_client.get(url(app, "organizations/b/notes")).status_code == 404
    assert api_client.post(url(app, "organizations/b/notes"), {"text": "y"}, format="json").status_code == 404
    assert api_client.delete(url(app, f"organizations/b/notes/{note_id}")).status_code == 404
    assert api_client.post(url(app, "organizations/b/tags"), {"label": "x"}, format="json").status_code == 404
    assert api_client.get(url(app, "organizations?segment=champions")).status_code == 404
    assert Note.objects.count() == 1


def test_an_organization_page_has_subscriptions_trend_notes(api_client, app, member):
    api_client.force_login(member)
    api_client.post(url(app, "organizations/a/notes"), {"text": "Kick-off"}, format="json")
    body = api_client.get(url(app, "organizations/a")).json()
    assert body["display_name"] == "Acme"
    assert body["mrr"] == "100.00"
    assert sorted(s["product_code"] for s in body["subscriptions"]) == ["pro", "seats"]
    assert all(s["active"] for s in body["subscriptions"])
    assert len(body["mrr_trend"]) == 12
    assert body["mrr_trend"][-1]["mrr"] == "100.00"
    assert [n["text"] for n in body["notes"]] == ["Kick-off"]
    # An org only imported has a page too (no events, no health), an unknown one is 404.
    only = api_client.get(url(app, "organizations/c")).json()
    assert (only["seen_in_events"], only["mrr"], only["health"]["score"]) == (False, "50.00", None)
    assert api_client.get(url(app, "organizations/nobody")).status_code == 404


def test_signal_and_search_narrow_seen_and_imported_only_orgs_alike(api_client, app, admin_user):
    now = timezone.now()
    OrgSignal.objects.create(application=app, customer_org_id="c", kind="inactive_paying", active_since=now)
    OrgSignal.objects.create(application=app, customer_org_id="b", kind="inactive_paying", active_since=now)
    OrgSignal.objects.create(  # dismissed: not listed under its signal
        application=app, customer_org_id="a", kind="inactive_paying", active_since=now, dismissed_at=now
    )
    api_client.force_login(admin_user)

    def ids(query: str) -> list[str]:
        return [
            o["customer_org_id"] for o in api_client.get(url(app, f"organizations?{query}")).json()["organizations"]
        ]

    assert ids("sort=-mrr&signal=inactive_paying") == ["b", "c"]
    assert ids("signal=inactive_paying") == ["b", "c"]  # the seen org, then the imported-only one
    assert ids("sort=-mrr&search=BLU") == ["b"]  # by display name
    assert ids("sort=-mrr&search=fab") == ["f"]
    assert ids("search=fab") == ["f"]
    assert ids("sort=-mrr&signal=inactive_paying&search=c") == ["c"]
