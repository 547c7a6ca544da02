"""The health API: reasons, history, signals' magnitude and tone, dismissals with a reason, the model
(members read, owners/admins change it, a change is logged and rescored), the preview, the backtest,
tenant isolation."""

from datetime import timedelta

import pytest

from analytics.fold import fold_drain
from analytics.health import organizations_scan
from analytics.health_backtest import health_backtest
from analytics.models import HealthModelChange, Organization
from apps_registry.models import Membership
from ingest.models import Event
from saastracker.celery import app as celery_app
from tests.analytics import health_scenario as sc
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db
MINUS = "\u2212"  # reasons print a real minus sign


@pytest.fixture
def scanned(application):
    sc.build(application)
    organizations_scan(app=application, now=sc.NOW)
    return application


@pytest.fixture
def admin(application):
    return MembershipFactory(company=application.company, role=Membership.Role.ADMIN).user


def base(app) -> str:
    return f"/api/v1/analytics/apps/{app.uuid}"


def test_the_organization_answer_has_reasons_history_and_signal_magnitudes(scanned, api_client, member):
    api_client.force_login(member)

    body = api_client.get(f"{base(scanned)}/organizations/drop75-0").json()

    assert body["health"]["bucket"] == "at_risk"
    assert body["health"]["reasons"][0] == {
        "code": "usage_drop",
        "text": f"events {MINUS}75 % vs the previous 30 days (150 vs 600)",
    }
    assert body["health"]["history"] == [{"date": sc.TODAY.isoformat(), "score": 39, "bucket": "at_risk"}]
    assert body["signals"] == [
        {
            "signal": "usage_drop",
            "active_since": body["signals"][0]["active_since"],
            "tone": "bad",
            "detail": {"before": 600, "after": 150, "change": -0.75},
        }
    ]
    grown = api_client.get(f"{base(scanned)}/organizations/growing-0").json()
    assert grown["signals"][0]["tone"] == "good"


def test_the_list_carries_the_reasons_and_filters_the_new_bucket(scanned, api_client, member):
    api_client.force_login(member)

    listed = api_client.get(f"{base(scanned)}/organizations", {"bucket": "new"}).json()["organizations"]

    assert sorted(o["customer_org_id"] for o in listed) == ["new-0", "new-1", "new-2"]
    assert all(o["health"]["score"] is None and o["health"]["reasons"][0]["code"] == "new" for o in listed)


def test_a_dismissal_keeps_who_when_and_why(scanned, api_client, member):
    api_client.force_login(member)
    url = f"{base(scanned)}/organizations/silent-0/signals/inactive/dismiss"

    response = api_client.post(url, {"reason": "On holiday, back in May"}, format="json")

    assert response.status_code == 200
    body = api_client.get(f"{base(scanned)}/organizations/silent-0").json()
    assert [s["signal"] for s in body["signals"]] == ["usage_drop"]
    (dismissal,) = body["dismissals"]
    assert dismissal["signal"] == "inactive"
    assert dismissal["dismissed_by"] == member.username
    assert dismissal["reason"] == "On holiday, back in May"
    assert dismissal["detail"] == {"days": 19}
    # the reason is optional; a non-string is a 400 naming it
    assert api_client.post(f"{base(scanned)}/organizations/silent-0/signals/usage_drop/dismiss").status_code == 200
    bad = api_client.post(
        f"{base(scanned)}/organizations/silent-1/signals/inactive/dismiss", {"reason": "x" * 501}, format="json"
    )
    assert bad.status_code == 400
    assert "reason" in str(bad.json())


def test_members_read_the_model_and_only_owners_and_admins_change_it(scanned, api_client, member, admin):
    api_client.force_login(member)
    assert api_client.get(f"{base(scanned)}/health/model").json()["model"]["drop_at_risk_pct"] == 70
    assert api_client.put(f"{base(scanned)}/health/model", {"new_days": 7}, format="json").status_code == 403
    assert api_client.post(f"{base(scanned)}/health/model/preview", {}, format="json").status_code == 403

    api_client.force_login(admin)
    response = api_client.put(f"{base(scanned)}/health/model", {"drop_at_risk_pct": 55}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["model"]["drop_at_risk_pct"] == 55
    (change,) = body["changes"]
    assert change["changed_by"] == admin.username
    assert change["changes"] == {"drop_at_risk_pct": {"before": 70, "after": 55}}
    assert HealthModelChange.objects.filter(application=scanned).count() == 1


def test_saving_rescores_the_apps_orgs(scanned, api_client, admin, monkeypatch, django_capture_on_commit_callbacks):
    # The scan task runs in-process here (eager) instead of on the `scans` worker.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    api_client.force_login(admin)

    with django_capture_on_commit_callbacks(execute=True):
        api_client.put(f"{base(scanned)}/health/model", {"drop_at_risk_pct": 55}, format="json")

    assert Organization.objects.get(application=scanned, customer_org_id="drop60-0").health_bucket == "at_risk"


@pytest.mark.parametrize(
    ("body", "member"),
    [
        ({"weights": {"recency": 2}}, "weights.recency"),
        ({"weights": {"loyalty": 0.5}}, "weights.loyalty"),
        ({"watch_min": 80}, "watch_min"),
        ({"drop_watch_pct": 90}, "drop_watch_pct"),
        ({"features": ["nope"]}, "features.0"),
        ({"colour": "red"}, "colour"),
        ({"new_days": "soon"}, "new_days"),
        ([1, 2], "body"),
    ],
)
def test_a_bad_model_is_a_400_naming_the_member(scanned, api_client, admin, body, member):
    api_client.force_login(admin)

    response = api_client.put(f"{base(scanned)}/health/model", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == member


@pytest.mark.parametrize(("method", "path"), [("put", "health/model"), ("post", "health/model/preview")])
def test_a_model_request_without_a_body_is_a_400(scanned, api_client, admin, method, path):
    api_client.force_login(admin)

    response = getattr(api_client, method)(f"{base(scanned)}/{path}")

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "body"


def test_the_preview_counts_the_orgs_that_would_change_bucket(scanned, api_client, admin):
    api_client.force_login(admin)

    preview = api_client.post(f"{base(scanned)}/health/model/preview", {"drop_at_risk_pct": 55}, format="json").json()

    assert preview["changed"] == 3
    assert preview["moves"] == {"watch→at_risk": 3}
    assert sorted(c["customer_org_id"] for c in preview["changes"]) == ["drop60-0", "drop60-1", "drop60-2"]
    assert set(preview["backtest"]) == {"current", "proposed"}
    # nothing was saved
    assert Organization.objects.get(application=scanned, customer_org_id="drop60-0").health_bucket == "watch"


def test_another_companys_app_is_a_404(scanned, api_client, outsider):
    api_client.force_login(outsider)
    for url in ("health/model", "health/backtest", "organizations/drop75-0"):
        assert api_client.get(f"{base(scanned)}/{url}").status_code == 404
    assert api_client.put(f"{base(scanned)}/health/model", {"new_days": 1}, format="json").status_code == 404


def _daily(app, org: str, first: int, last: int, n) -> list[Event]:
    """Events of `org` on each day from `first` to `last` days ago; n(offset) a day."""
    rows = []
    for offset in range(last, first - 1, -1):
        rows += sc.events_on(app, org, sc.day(offset), n(offset) if callable(n) else n)
    return rows


def test_the_backtest_on_a_hand_built_set_has_the_known_auc(application, api_client, member):
    # Given three orgs that churned 39 days ago (last event 40 days ago) and three retained, steady ones.
    # 30 days before churn (69 days ago): A had dropped 79 % (at_risk), B 59 % (watch), C was steady (100):
    # A and B score below each retained org (100), C ties them: AUC = (3 + 3 + 1.5) / 9 = 0.8333.
    rows = _daily(application, "A", 40, 130, lambda o: 20 if o >= 100 else 4)
    rows += _daily(application, "B", 40, 130, lambda o: 20 if o >= 100 else 8)
    rows += _daily(application, "C", 40, 130, 12)
    for org in ("D", "E", "F"):
        rows += _daily(application, org, 0, 130, 12)
    Event.objects.bulk_create(rows, batch_size=5000)
    fold_drain()

    result = health_backtest(app=application)

    assert result["churn_definition"] == "silence"
    assert (result["churned"], result["retained"]) == (3, 3)
    assert result["auc"] == 0.8333
    assert result["churned_flagged_share"] == round(2 / 3, 4)
    by_org = {r["customer_org_id"]: r for r in result["orgs"]}
    assert by_org["A"]["bucket"] == "at_risk"
    assert by_org["B"]["bucket"] == "watch"
    assert by_org["A"]["date"] == sc.day(69)
    assert by_org["A"]["from"] == "recomputed"
    assert result["summary"].startswith("AUC 0.83 (good)")
    # the API answers the same to a member
    api_client.force_login(member)
    assert api_client.get(f"/api/v1/analytics/apps/{application.uuid}/health/backtest").json()["auc"] == 0.8333


def test_the_backtest_reads_the_history_where_it_reaches(application):
    from analytics.models import OrgHealthDay

    rows = _daily(application, "A", 40, 130, 12) + _daily(application, "D", 0, 130, 12)
    Event.objects.bulk_create(rows)
    fold_drain()
    OrgHealthDay.objects.create(
        application=application, customer_org_id="A", day=sc.day(69), score=20, bucket="at_risk"
    )

    result = health_backtest(app=application)

    by_org = {r["customer_org_id"]: r for r in result["orgs"]}
    assert (by_org["A"]["score"], by_org["A"]["from"]) == (20, "history")
    assert by_org["D"]["from"] == "recomputed"
    assert result["auc"] == 1.0
    assert sc.TODAY - timedelta(days=69) == by_org["A"]["date"]


def test_the_backtest_takes_churn_from_revenue_when_the_app_has_it(application):
    # Given the silent orgs A, B and C of the hand-built set, of which only A stopped paying (39 days
    # ago, its last subscription ended); B and C still pay; D, E and F are active and pay.
    from tests.revenue.conftest import import_subs

    rows = _daily(application, "A", 40, 130, lambda o: 20 if o >= 100 else 4)
    for org in ("B", "C"):
        rows += _daily(application, org, 40, 130, 12)
    for org in ("D", "E", "F"):
        rows += _daily(application, org, 0, 130, 12)
    Event.objects.bulk_create(rows, batch_size=5000)
    fold_drain()
    subs = "external_org_id,product_code,mrr,currency,start_at,end_at\n"
    subs += f"A,pro,50,EUR,{sc.day(300)},{sc.day(100)}\nA,team,80,EUR,{sc.day(100)},{sc.day(39)}\n"
    subs += "".join(f"{org},pro,50,EUR,{sc.day(300)},\n" for org in "BCDEF")
    import_subs(application, subs)

    result = health_backtest(app=application)

    assert result["churn_definition"] == "revenue"
    assert (result["churned"], result["retained"]) == (1, 1)  # one retained org matched per churned one
    by_org = {r["customer_org_id"]: r for r in result["orgs"]}
    assert set(by_org) - {"A"} <= {"D", "E", "F"}  # silent but paying, B and C did not churn
    assert by_org["A"]["date"] == sc.day(69)  # scored 30 days before its MRR went to 0
