"""The per-snapshot cache of revenue figures (revenue/snapshots.py): fast, and never stale.

Every answer here is read twice or more, so the second read comes from the cache: a new import must
change it at once, and a subscription starting or ending after the cached instant must change it from
that instant on (explicit instants, no sleeping).
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from analytics.revenue_health import revenue_get, revenue_health_get
from revenue import selectors

from .conftest import import_subs

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)  # y starts here
LATEST = NOW + timedelta(hours=2)  # z ends here
HEADER = "external_org_id,product_code,mrr,currency,start_at,end_at\n"
SUBS = (
    HEADER + "x,pro,100,EUR,2026-01-01,\n"
    f"y,pro,40,EUR,{LATER.isoformat()},\n"
    f"z,team,25,EUR,2026-02-01,{LATEST.isoformat()}\n"
)


def api(app, endpoint: str) -> str:
    return f"/api/v1/analytics/apps/{app.uuid}/{endpoint}"


def test_a_new_import_changes_every_answer_at_once(api_client, application, admin_user):
    api_client.force_login(admin_user)
    import_subs(application, HEADER + "x,pro,100,EUR,2026-01-01,\n")
    for _ in range(2):  # the second read is served from the cache
        assert api_client.get(api(application, "revenue")).json()["mrr"] == "100.00"
        assert api_client.get(api(application, "revenue/mrr?months=12")).json()["months"][-1]["mrr"] == "100.00"
        assert api_client.get(api(application, "revenue-health")).json()["paying_orgs"] == 1

    import_subs(application, HEADER + "x,pro,100,EUR,2026-01-01,\nw,pro,60,EUR,2025-01-01,\n")

    body = api_client.get(api(application, "revenue")).json()
    assert (body["mrr"], body["paying_orgs"]) == ("160.00", 2)
    assert [o["customer_org_id"] for o in body["top_orgs"]] == ["x", "w"]
    assert body["by_product"] == [{"product_code": "pro", "mrr": "160.00", "subscriptions": 2, "orgs": 2}]
    assert body["nrr"] == 100.0  # w paid 12 months ago and still does
    assert api_client.get(api(application, "revenue/mrr?months=12")).json()["months"][-1]["mrr"] == "160.00"
    assert api_client.get(api(application, "revenue-health")).json()["paying_orgs"] == 2


def test_a_subscription_starting_after_the_cached_now_counts_from_that_instant(application):
    import_subs(application, SUBS)
    assert selectors.mrr_by_org_at(app=application, at=NOW) == {"x": Decimal(100), "z": Decimal(25)}
    just_before = LATER - timedelta(microseconds=1)
    assert revenue_get(app=application, now=just_before)["mrr"] == "125.00"

    assert revenue_get(app=application, now=LATER)["mrr"] == "165.00"
    assert selectors.products_by_org_at(app=application, at=LATER) == {"x": ["pro"], "y": ["pro"], "z": ["team"]}
    assert revenue_health_get(app=application, now=LATER)["paying_orgs"] == 3
    assert selectors.mrr_by_org_at(app=application, at=NOW)["z"] == Decimal(25)  # the earlier span still holds


def test_a_subscription_ending_after_the_cached_now_stops_counting_at_that_instant(application):
    import_subs(application, SUBS)
    assert revenue_get(app=application, now=LATER)["mrr"] == "165.00"
    assert revenue_get(app=application, now=LATEST - timedelta(microseconds=1))["mrr"] == "165.00"

    at_end = revenue_get(app=application, now=LATEST)
    assert (at_end["mrr"], at_end["paying_orgs"]) == ("140.00", 2)
    assert at_end["by_product"] == [{"product_code": "pro", "mrr": "140.00", "subscriptions": 2, "orgs": 2}]
    assert at_end["movements"]["churned"] == {"mrr": "25.00", "orgs": 1}
    assert selectors.mrr_trend(app=application, months=12, now=LATEST)[-1]["mrr"] == "140.00"


def scans(read) -> int:  # type: ignore[no-untyped-def]
    """How many statements of `read()` read the subscriptions table."""
    with CaptureQueriesContext(connection) as queries:
        read()
    return sum("revenue_subscription" in q["sql"] for q in queries.captured_queries)


def test_a_read_inside_the_span_of_a_cached_instant_does_not_scan_the_subscriptions(application):
    import_subs(application, SUBS)
    assert scans(lambda: selectors.mrr_by_org_at(app=application, at=NOW)) == 1
    assert scans(lambda: selectors.mrr_total_at(app=application, at=NOW + timedelta(minutes=30))) == 0
    assert scans(lambda: selectors.by_product(app=application, at=NOW - timedelta(days=30))) == 0
    assert scans(lambda: selectors.mrr_by_org_at(app=application, at=LATER)) == 1  # a new span: y has started
    assert scans(lambda: selectors.mrr_by_org_at(app=application, at=LATER + timedelta(minutes=1))) == 0
    # The month's start is in NOW's span; a year ago, the flows and the first paid starts: the import's parts.
    assert scans(lambda: revenue_get(app=application, now=LATER)) == 0
    assert scans(lambda: revenue_get(app=application, now=LATER + timedelta(minutes=1))) == 0
    assert scans(lambda: selectors.mrr_trend(app=application, months=36, now=LATER)) == 0  # flows: a part
    assert scans(lambda: selectors.mrr_trend(app=application, months=12, now=LATER)) == 0


def test_a_rolled_back_import_leaves_the_old_answer(application):
    import_subs(application, SUBS)
    assert selectors.mrr_total_at(app=application, at=NOW) == Decimal(125)
    savepoint = transaction.savepoint()
    import_subs(application, HEADER + "q,pro,999,EUR,2026-01-01,\n")
    assert selectors.mrr_total_at(app=application, at=NOW) == Decimal(999)  # cached under its import
    transaction.savepoint_rollback(savepoint)

    assert selectors.mrr_total_at(app=application, at=NOW) == Decimal(125)
    assert selectors.movements(app=application, month=date(2026, 6, 1), now=NOW)["net_new"] == "0.00"
