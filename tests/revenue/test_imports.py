"""The two CSV imports: every bad-input case with line, column and reason; snapshots; dry runs."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from revenue.models import CustomerOrg, Import, Subscription

from .conftest import import_orgs, import_subs

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
HEADER = "external_org_id,product_code,mrr,currency,start_at,end_at,subscription_id\n"


def errors(report) -> list[tuple]:
    return [(e["line"], e["column"]) for e in report["errors"]]


def test_orgs_import_upserts_by_external_id(application):
    import_orgs(application, "external_org_id,display_name\nacme,Acme\nglobex,Globex\n")
    report = import_orgs(application, "external_org_id,display_name\nacme,Acme Corp\ninitech,Initech\n")
    assert report["status"] == "applied"
    assert report["counts"] == {"rows": 2, "orgs_created": 1, "orgs_updated": 1}
    assert dict(CustomerOrg.objects.values_list("external_org_id", "display_name")) == {
        "acme": "Acme Corp",
        "globex": "Globex",
        "initech": "Initech",
    }


def test_bom_crlf_and_quoted_fields_with_commas_and_newlines(application):
    text = '\ufeffexternal_org_id,display_name\r\nacme,"Acme, Inc."\r\nglobex,"Globex\r\nCorporation"\r\nbad,\r\n'
    report = import_orgs(application, text)
    # The record starting on line 3 spans two lines: the next record starts on line 5.
    assert report["errors"] == [{"line": 5, "column": "display_name", "reason": "Required, but empty."}]
    text = '\ufeffexternal_org_id,display_name\r\nacme,"Acme, Inc."\r\nglobex,"Globex\r\nCorporation"\r\n'
    assert import_orgs(application, text)["status"] == "applied"
    names = dict(CustomerOrg.objects.values_list("external_org_id", "display_name"))
    assert names == {"acme": "Acme, Inc.", "globex": "Globex\r\nCorporation"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", [(None, None, "The file is empty.")]),
        (b"  \n\n", [(None, None, "The file is empty.")]),
        (
            b"external_org_id,display_name\nacme,Caf\xe9\n",
            [(2, None, "The file is not UTF-8 (byte 38 is not valid UTF-8).")],
        ),
        (b"display_name\nAcme\n", [(1, "external_org_id", None)]),
        (b"external_org_id,name\nacme,Acme\n", [(1, "name", None), (1, "display_name", None)]),
        (b"external_org_id,display_name\nacme\n", [(2, None, "1 fields where the header has 2.")]),
        (b"external_org_id,display_name\n,Acme\n", [(2, "external_org_id", "Required, but empty.")]),
        (
            b"external_org_id,display_name\n" + b"x" * 256 + b",Acme\n",
            [(2, "external_org_id", "At most 255 characters (got 256).")],
        ),
        (
            b"external_org_id,display_name\nacme,A\nacme,B\n",
            [(3, "external_org_id", "'acme' already appears on line 2.")],
        ),
    ],
)
def test_orgs_bad_input_is_refused_whole_with_line_column_reason(application, data, expected):
    from revenue.services import import_run

    CustomerOrg.objects.create(application=application, external_org_id="keep", display_name="Kept")
    report = import_run(app=application, kind="organizations", data=data)
    assert report["status"] == "failed"
    got = [(e["line"], e["column"], e["reason"]) for e in report["errors"]]
    assert [(line, col) for line, col, _ in got] == [(line, col) for line, col, _ in expected]
    for (_, _, reason), (_, _, want) in zip(got, expected, strict=True):
        assert want is None or reason == want
    assert list(CustomerOrg.objects.values_list("external_org_id", flat=True)) == ["keep"]
    assert Import.objects.get().status == "failed"


def test_formula_cells_are_stored_as_text(application):
    import_orgs(application, "external_org_id,display_name\n=1+2,@SUM(A1)\n")
    assert CustomerOrg.objects.get().display_name == "@SUM(A1)"
    assert CustomerOrg.objects.get().external_org_id == "=1+2"


def test_subscriptions_import_converts_currencies_at_the_import_rate(application, usd_rate):
    report = import_subs(
        application,
        HEADER + "acme,pro,100.00,EUR,2026-01-01,,s1\nglobex,pro,33.33,USD,2026-01-01T10:00:00Z,,s2\n",
        now=NOW,
    )
    assert report["status"] == "applied", report["errors"]
    # 33.33 USD × 0.9 = 29.997 → 30.00 EUR (half up, to the cent)
    assert report["counts"] == {
        "rows": 2,
        "orgs_created": 2,
        "orgs_updated": 0,
        "subscriptions_active_now": 2,
        "currency": "EUR",
        "mrr_before": "0.00",
        "mrr_after": "130.00",
    }
    globex = Subscription.objects.get(external_org_id="globex")
    assert (globex.mrr, globex.original_mrr, globex.original_currency) == (Decimal("30.00"), Decimal("33.33"), "USD")
    assert globex.start_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    # A rate changed later does not change what was imported.
    usd_rate.rate = Decimal("2")
    usd_rate.save()
    assert Subscription.objects.get(external_org_id="globex").mrr == Decimal("30.00")
    # Orgs created by a subscriptions import are paying and never seen; their name comes later.
    assert CustomerOrg.objects.get(external_org_id="globex").display_name == ""


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("acme,pro,abc,EUR,2026-01-01,,", "mrr", "'abc' is not a decimal number"),
        ("acme,pro,1 000,EUR,2026-01-01,,", "mrr", "'1 000' is not a decimal number"),
        ("acme,pro,-5,EUR,2026-01-01,,", "mrr", "-5 is negative"),
        ("acme,pro,NaN,EUR,2026-01-01,,", "mrr", "'NaN' is not an amount"),
        ("acme,pro,Infinity,EUR,2026-01-01,,", "mrr", "'Infinity' is not an amount"),
        ("acme,pro,-inf,EUR,2026-01-01,,", "mrr", "'-inf' is not an amount"),
        ("acme,pro,1e3,EUR,2026-01-01,,", "mrr", "'1e3' is not a decimal number"),
        ("acme,pro,1000000000000.00,EUR,2026-01-01,,", "mrr", "is too large"),
        ("acme,pro,9.999,EUR,2026-01-01,,", "mrr", "more than 2 decimal places"),
        ("acme,pro,,EUR,2026-01-01,,", "mrr", "Required, but empty."),
        ("acme,pro,10,XYZ,2026-01-01,,", "currency", "'XYZ' is not an ISO 4217 currency code"),
        ("acme,pro,10,eur,2026-01-01,,", "currency", "'eur' is not an ISO 4217 currency code"),
        ("acme,pro,10,GBP,2026-01-01,,", "currency", "No FX rate for GBP into EUR"),
        ("acme,pro,10,EUR,2026-13-01,,", "start_at", "'2026-13-01' is not an ISO date"),
        ("acme,pro,10,EUR,yesterday,,", "start_at", "'yesterday' is not an ISO date"),
        ("acme,pro,10,EUR,2026-01-01,2026-02-30,", "end_at", "'2026-02-30' is not an ISO date"),
        ("acme,pro,10,EUR,2026-01-01,2026-01-01,", "end_at", "Must be after start_at."),
        ("acme,pro,10,EUR,2026-02-01,2026-01-01,", "end_at", "Must be after start_at."),
        ("acme," + "p" * 256 + ",10,EUR,2026-01-01,,", "product_code", "At most 255 characters"),
        ("acme,pro,10,EUR,2026-01-01,," + "s" * 256, "subscription_id", "At most 255 characters"),
        (",pro,10,EUR,2026-01-01,,", "external_org_id", "Required, but empty."),
    ],
)
def test_subscription_bad_cells(application, row, column, reason):
    import_subs(application, HEADER + "old,pro,5,EUR,2026-01-01,,\n", now=NOW)
    report = import_subs(application, HEADER + "fine,pro,1,EUR,2026-01-01,,\n" + row + "\n", now=NOW)
    assert report["status"] == "failed"
    assert [(e["line"], e["column"]) for e in report["errors"]] == [(3, column)]
    assert reason in report["errors"][0]["reason"]
    # Nothing changed: the old snapshot, no new org.
    assert list(Subscription.objects.values_list("external_org_id", flat=True)) == ["old"]
    assert not CustomerOrg.objects.filter(external_org_id="fine").exists()


def test_duplicate_subscription_id_and_many_errors_all_reported(application):
    rows = "".join(f"o{i},pro,-1,EUR,2026-01-01,,s{i}\n" for i in range(1200))
    report = import_subs(application, HEADER + "a,pro,1,EUR,2026-01-01,,dup\nb,pro,1,EUR,2026-01-01,,dup\n" + rows)
    assert report["errors"][0] == {"line": 3, "column": "subscription_id", "reason": "'dup' already appears on line 2."}
    assert report["error_count"] == 1201
    assert len(report["errors"]) == 1000


def test_unknown_and_missing_headers(application):
    report = import_subs(application, "external_org_id,product,mrr,currency\nacme,pro,1,EUR\n")
    assert errors(report) == [(1, "product"), (1, "product_code"), (1, "start_at")]


def test_timestamps_with_offsets_are_utc_and_naive_ones_are_taken_as_utc(application):
    import_subs(
        application,
        HEADER + "a,pro,1,EUR,2026-01-01T02:00:00+02:00,,\nb,pro,1,EUR,2026-01-01 05:00:00,2026-02-01T00:00:00Z,\n",
    )
    starts = dict(Subscription.objects.values_list("external_org_id", "start_at"))
    assert starts == {"a": datetime(2026, 1, 1, tzinfo=UTC), "b": datetime(2026, 1, 1, 5, tzinfo=UTC)}


def test_a_snapshot_replaces_the_whole_set_and_a_dry_run_changes_nothing(application):
    import_subs(application, HEADER + "a,pro,10,EUR,2026-01-01,,\nb,pro,20,EUR,2026-01-01,,\n", now=NOW)
    report = import_subs(application, HEADER + "c,team,7.5,EUR,2026-01-01,,\n", now=NOW, dry_run=True)
    assert report["status"] == "dry_run"
    assert report["counts"]["mrr_before"] == "30.00"
    assert report["counts"]["mrr_after"] == "7.50"
    assert report["counts"]["orgs_created"] == 1
    assert Subscription.objects.count() == 2
    assert not CustomerOrg.objects.filter(external_org_id="c").exists()

    import_subs(application, HEADER + "c,team,7.5,EUR,2026-01-01,,\n", now=NOW)
    assert list(Subscription.objects.values_list("external_org_id", "mrr")) == [("c", Decimal("7.50"))]
    # Ended subscriptions are part of the snapshot (history) but not active now.
    report = import_subs(application, HEADER + "c,team,7.5,EUR,2025-01-01,2026-03-01,\n", now=NOW)
    assert report["counts"]["subscriptions_active_now"] == 0
    assert report["counts"]["mrr_after"] == "0.00"


def test_imports_are_recorded(application, admin_user):
    import_orgs(application, "external_org_id,display_name\na,A\n", user=admin_user, file_name="orgs.csv")
    record = Import.objects.get()
    assert (record.kind, record.status, record.user, record.file_name, record.via) == (
        "organizations",
        "applied",
        admin_user,
        "orgs.csv",
        "api",
    )
