"""The parts a subscriptions import writes for its snapshot (revenue/snapshots.py): a process's first
read of a new snapshot decodes them instead of scanning the subscriptions, and they give exactly the
figures a scan of the table gives.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.revenue_health import mrr_trend_get, revenue_get, revenue_health_get
from revenue import selectors, snapshots
from revenue.models import FxRate, Import, SnapshotPart

from . import scenario
from .conftest import import_subs

pytestmark = pytest.mark.django_db
NOW = scenario.NOW
# The scenario, plus: a free subscription, a timestamp with an offset, one starting after now, two
# products of equal totals (ties ordered by code), a subscription ending exactly at the month's start.
EXTRA = """g,free,0,EUR,2026-01-01,,g1
h,zeta,25.50,EUR,2026-03-01T18:30:00+02:00,,h1
h,alpha,25.50,EUR,2026-05-31T22:00:00-02:00,,h2
i,pro,15,EUR,2026-07-01,,i1
j,pro,33.33,USD,2025-11-30,2026-06-01T00:00:00Z,j1
"""


def scans(read) -> int:  # type: ignore[no-untyped-def]
    """How many statements of `read()` read the subscriptions table."""
    with CaptureQueriesContext(connection) as queries:
        read()
    return sum("revenue_subscription" in q["sql"] for q in queries.captured_queries)


def answers(app) -> dict:  # type: ignore[no-untyped-def]
    """Every figure a snapshot's first reads give at NOW (and an hour later: the same span)."""
    return {
        "revenue": revenue_get(app=app, now=NOW),
        "revenue_later": revenue_get(app=app, now=NOW + timedelta(hours=1)),
        "trend": mrr_trend_get(app=app, months=36, now=NOW),
        "matrix": revenue_health_get(app=app, now=NOW),
        "mrr_by_org": selectors.mrr_by_org_at(app=app, at=NOW),
        "products": selectors.products_by_org_at(app=app, at=NOW),
        "by_product": selectors.by_product(app=app, at=NOW),
        "a_year_ago": selectors.mrr_by_org_at(app=app, at=NOW.replace(year=2025)),
    }


@pytest.fixture
def app(application):
    FxRate.objects.create(company=application.company, currency="USD", rate=Decimal("0.9"))
    report = import_subs(application, scenario.SUBSCRIPTIONS + EXTRA, now=NOW)
    assert report["status"] == "applied", report["errors"]
    scenario.health(application)
    return application


def test_a_new_process_reads_a_new_snapshot_without_scanning_the_subscriptions(app):
    snapshots.cache_clear()  # another process: nothing of this snapshot in its memory

    assert scans(lambda: answers(app)) == 0


def test_the_parts_give_the_figures_a_scan_of_the_table_gives(app):
    snapshots.cache_clear()
    from_parts = answers(app)
    SnapshotPart.objects.all().delete()  # as for an instant no part covers: the reader scans
    snapshots.cache_clear()

    with CaptureQueriesContext(connection) as queries:
        from_scan = answers(app)

    assert sum("revenue_subscription" in q["sql"] for q in queries.captured_queries) >= 4
    assert from_parts == from_scan
    assert from_parts["by_product"][:3] == [
        {"product_code": "pro", "mrr": "340.00", "subscriptions": 4, "orgs": 4},
        {"product_code": "team", "mrr": "40.00", "subscriptions": 1, "orgs": 1},
        {"product_code": "alpha", "mrr": "25.50", "subscriptions": 1, "orgs": 1},  # ties by code
    ]
    assert from_parts["products"]["h"] == ["alpha", "zeta"]
    assert from_parts["mrr_by_org"]["g"] == Decimal(0)
    assert "i" not in from_parts["mrr_by_org"]  # starts after now
    assert from_parts["trend"]["months"][-2] == {
        "month": "2026-05",
        "mrr": "382.50",  # the scenario's 327 + h/zeta 25.50 + j 30.00 (ends 06-01 00:00: still in May)
        "change": "-23.00",  # April: 350 + the same 55.50
        "change_pct": -5.67,
    }


def test_a_read_outside_every_part_scans_and_is_right(app):
    snapshots.cache_clear()

    assert scans(lambda: selectors.mrr_by_org_at(app=app, at=datetime(2026, 3, 20, tzinfo=UTC))) == 1
    assert revenue_get(app=app, now=NOW, month=date(2026, 3, 1))["movements"]["new"] == {"mrr": "25.50", "orgs": 1}


def test_only_the_latest_applied_snapshot_keeps_parts(app):
    first = Import.objects.get(kind="subscriptions", status="applied")
    assert set(SnapshotPart.objects.values_list("snapshot_id", flat=True)) == {first.pk}

    assert import_subs(app, "external_org_id,product_code,mrr,currency,start_at\nz,pro,-1,EUR,2026-01-01\n")[
        "status"
    ] == ("failed")
    assert import_subs(
        app, "external_org_id,product_code,mrr,currency,start_at\nz,pro,9,EUR,2026-01-01\n", dry_run=True
    )["status"] == ("dry_run")
    assert set(SnapshotPart.objects.values_list("snapshot_id", flat=True)) == {first.pk}

    second = import_subs(app, "external_org_id,product_code,mrr,currency,start_at\nz,pro,9,EUR,2026-01-01\n", now=NOW)
    snapshots.cache_clear()

    assert set(SnapshotPart.objects.values_list("snapshot_id", flat=True)) == {second["import_id"]}
    assert scans(lambda: revenue_get(app=app, now=NOW)["mrr"]) == 0
    assert revenue_get(app=app, now=NOW)["mrr"] == "9.00"
