"""Revenue figures against the hand-computed scenario (tests/revenue/scenario.py)."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from analytics.revenue_health import revenue_get, revenue_health_get
from revenue import selectors

from . import scenario
from .conftest import import_subs

pytestmark = pytest.mark.django_db
NOW = scenario.NOW


@pytest.fixture
def app(application):
    scenario.load(application)
    scenario.health(application)
    return application


def test_mrr_at_month_ends_with_mid_month_starts_and_ends(app):
    months = selectors.mrr_trend(app=app, months=12, now=NOW)
    assert [m["month"] for m in months] == [f"2025-{m:02d}" for m in range(7, 13)] + [
        f"2026-{m:02d}" for m in range(1, 7)
    ]
    assert [m["mrr"] for m in months] == ["60.00"] * 5 + [
        "260.00",
        "360.00",
        "420.00",
        "470.00",
        "350.00",
        "327.00",
        "380.00",
    ]
    assert [m["change"] for m in months] == ["0.00"] * 5 + [
        "200.00",
        "100.00",
        "60.00",
        "50.00",
        "-120.00",
        "-23.00",
        "53.00",
    ]
    assert [m["change_pct"] for m in months] == [0.0] * 5 + [333.33, 38.46, 16.67, 11.9, -25.53, -6.57, 16.21]


def test_trend_of_36_months_starts_at_zero_with_no_percentage(app):
    months = selectors.mrr_trend(app=app, months=36, now=NOW)
    assert len(months) == 36
    assert months[0] == {"month": "2023-07", "mrr": "0.00", "change": "0.00", "change_pct": None}
    assert months[23]["month"] == "2025-06"
    assert months[23]["mrr"] == "60.00"
    assert months[23]["change_pct"] is None  # from 0


def test_one_orgs_trend(app):
    months = selectors.mrr_trend(app=app, months=12, now=NOW, org_id="a")
    assert [m["mrr"] for m in months[-6:]] == ["100.00", "100.00", "150.00", "150.00", "100.00", "100.00"]


def test_revenue_now_composition_and_health(app):
    body = revenue_get(app=app, now=NOW)
    assert (body["currency"], body["mrr"], body["arr"], body["paying_orgs"], body["arpa"]) == (
        "EUR",
        "380.00",
        "4560.00",
        4,
        "95.00",
    )
    assert body["revenue_at_risk"] == "120.00"  # c, at_risk
    assert body["by_health"] == [
        {"bucket": "healthy", "mrr": "170.00", "orgs": 2, "share": 44.74},
        {"bucket": "watch", "mrr": "0.00", "orgs": 0, "share": 0.0},
        {"bucket": "at_risk", "mrr": "120.00", "orgs": 1, "share": 31.58},
        {"bucket": "no_recent_activity", "mrr": "90.00", "orgs": 1, "share": 23.68},
    ]
    assert body["by_product"] == [
        {"product_code": "pro", "mrr": "340.00", "subscriptions": 4, "orgs": 4},
        {"product_code": "team", "mrr": "40.00", "subscriptions": 1, "orgs": 1},
    ]
    assert body["concentration"] == {"top1": 31.58, "top5": 100.0, "top10": 100.0}
    top = body["top_orgs"]
    assert [(o["customer_org_id"], o["display_name"], o["mrr"], o["products"]) for o in top] == [
        ("c", "Contoso", "120.00", ["pro", "team"]),
        ("a", "Acme", "100.00", ["pro"]),
        ("f", None, "90.00", ["pro"]),
        ("d", "Dunder", "70.00", ["pro"]),
    ]
    assert top[0]["health"] == {"score": 30, "bucket": "at_risk"}
    assert top[2]["health"] == {"score": None, "bucket": None}
    assert top[2]["last_seen"] is None


def test_movements_of_the_current_month(app):
    assert revenue_get(app=app, now=NOW)["movements"] == {
        "month": "2026-06",
        "new": {"mrr": "0.00", "orgs": 0},
        "reactivation": {"mrr": "70.00", "orgs": 1},  # d paid until 2026-02-01
        "expansion": {"mrr": "40.00", "orgs": 1},  # c 80 → 120
        "contraction": {"mrr": "30.00", "orgs": 1},  # f 120 → 90
        "churned": {"mrr": "27.00", "orgs": 1},  # e 27 → 0
        "net_new": "53.00",  # = June's MRR change
    }


def test_movements_of_past_months(app):
    april = selectors.movements(app=app, month=date(2026, 4, 1), now=NOW)
    assert april["new"] == {"mrr": "80.00", "orgs": 1}  # c
    assert april["churned"] == {"mrr": "200.00", "orgs": 1}  # b, ended on 04-01 00:00
    assert april["net_new"] == "-120.00"
    feb = selectors.movements(app=app, month=date(2026, 2, 1), now=NOW)
    assert (feb["new"], feb["churned"], feb["net_new"]) == (
        {"mrr": "120.00", "orgs": 1},
        {"mrr": "60.00", "orgs": 1},
        "60.00",
    )
    march = selectors.movements(app=app, month=date(2026, 3, 1), now=NOW)
    assert march["expansion"] == {"mrr": "50.00", "orgs": 1}  # a's add-on
    may = selectors.movements(app=app, month=date(2026, 5, 1), now=NOW)
    assert (may["contraction"], may["new"]) == ({"mrr": "50.00", "orgs": 1}, {"mrr": "27.00", "orgs": 1})


def test_nrr_and_grr(application):
    """Paying on 2025-06-15: x 100, y 100, z 50 (base 250). Now x 150, y 0, z 40.
    NRR = (150 + 0 + 40) / 250 = 76 %; GRR = (100 + 0 + 40) / 250 = 56 %. w started later: not in it."""
    import_subs(
        application,
        "external_org_id,product_code,mrr,currency,start_at,end_at\n"
        "x,pro,100,EUR,2025-01-01,2026-01-01\nx,pro,150,EUR,2026-01-01,\n"
        "y,pro,100,EUR,2025-01-01,2026-03-01\n"
        "z,pro,50,EUR,2025-05-01,2026-02-01\nz,pro,40,EUR,2026-02-01,\n"
        "w,pro,500,EUR,2025-07-01,\n",
        now=NOW,
    )
    assert selectors.retention(app=application, now=NOW) == {"nrr": 76.0, "grr": 56.0}


def test_no_data_gives_zeros_and_nulls(application):
    body = revenue_get(app=application, now=NOW)
    assert (body["mrr"], body["paying_orgs"], body["arpa"], body["nrr"], body["grr"]) == ("0.00", 0, None, None, None)
    assert body["concentration"] == {"top1": None, "top5": None, "top10": None}


def test_revenue_health_cells(app):
    """Paying now: c 120, a 100, f 90, d 70: median (100 + 90) / 2 = 95; healthy = score ≥ 70."""
    body = revenue_health_get(app=app, now=NOW)
    assert (body["health_threshold"], body["mrr_threshold"], body["paying_orgs"]) == (70, "95.00", 4)
    assert body["cells"] == {
        "champions": {"orgs": 1, "mrr": "100.00", "share": 26.32, "avg_health": 80.0, "avg_mrr": "100.00"},
        "expansion": {"orgs": 1, "mrr": "70.00", "share": 18.42, "avg_health": 75.0, "avg_mrr": "70.00"},
        "revenue_at_risk": {"orgs": 1, "mrr": "120.00", "share": 31.58, "avg_health": 30.0, "avg_mrr": "120.00"},
        # f was never seen: low health, no score to average
        "low_value": {"orgs": 1, "mrr": "90.00", "share": 23.68, "avg_health": None, "avg_mrr": "90.00"},
    }


def test_median_with_an_odd_count_and_ties_on_the_threshold(application):
    """MRR 10, 20, 20: median 20, so both 20s are high MRR."""
    import_subs(
        application,
        "external_org_id,product_code,mrr,currency,start_at\np,x,10,EUR,2026-01-01\nq,x,20,EUR,2026-01-01\n"
        "r,x,20,EUR,2026-01-01\n",
        now=NOW,
    )
    body = revenue_health_get(app=application, now=NOW)
    assert body["mrr_threshold"] == "20.00"
    assert body["cells"]["revenue_at_risk"]["orgs"] == 2
    assert body["cells"]["low_value"]["orgs"] == 1


def test_amounts_are_decimal_end_to_end(app):
    assert selectors.mrr_total_at(app=app, at=NOW) == Decimal("380.00")
    assert isinstance(selectors.mrr_by_org_at(app=app, at=NOW)["c"], Decimal)


def test_an_instant_exactly_at_end_at_is_not_active(app):
    assert "b" not in selectors.mrr_by_org_at(app=app, at=datetime(2026, 4, 1, tzinfo=UTC))
    assert selectors.mrr_by_org_at(app=app, at=datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC))["b"] == Decimal(200)


def test_a_month_not_begun_has_no_movements(app):
    future = selectors.movements(app=app, month=date(2026, 9, 1), now=NOW)
    assert future["net_new"] == "0.00"
    assert future["new"] == {"mrr": "0.00", "orgs": 0}


def test_churn_dates_are_the_day_the_mrr_went_to_zero_for_good(app):
    # b's only subscription ended on 04-01 and e's on 06-10; d and f stopped one and pay another,
    # a's add-on ended but its plan runs: none of them churned.
    assert selectors.churn_dates(app=app, now=NOW) == {"b": date(2026, 4, 1), "e": date(2026, 6, 10)}
    assert selectors.churn_dates(app=app, now=datetime(2026, 6, 9, tzinfo=UTC)) == {"b": date(2026, 4, 1)}
