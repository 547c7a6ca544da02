"""`revenue`, `revenue/mrr`, `revenue-health`: answers, parameters, scoping; an import racing reads."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps_registry.models import Membership
from tests.factories import MembershipFactory, PersonalApiKeyFactory

from .conftest import import_subs

ENDPOINTS = ["revenue", "revenue/mrr", "revenue/mrr?months=36", "revenue-health", "imports"]


def url(app, endpoint: str) -> str:
    return f"/api/v1/analytics/apps/{app.uuid}/{endpoint}"


def _subs(app, *rows: tuple[str, str]) -> None:
    start = (timezone.now() - timedelta(days=400)).date().isoformat()
    text = "external_org_id,product_code,mrr,currency,start_at\n" + "".join(
        f"{org},pro,{mrr},EUR,{start}\n" for org, mrr in rows
    )
    assert import_subs(app, text)["status"] == "applied"


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_role_reads_and_others_do_not(api_client, application, outsider, endpoint):
    for role in Membership.Role.values:
        api_client.force_login(MembershipFactory(company=application.company, role=role).user)
        assert api_client.get(url(application, endpoint)).status_code == 200, role
    api_client.force_login(outsider)
    assert api_client.get(url(application, endpoint)).status_code == 404
    api_client.logout()
    assert api_client.get(url(application, endpoint)).status_code == 401


@pytest.mark.django_db
def test_revenue_answer_shape(api_client, application, member):
    _subs(application, ("a", "100.5"), ("b", "20"))
    key = PersonalApiKeyFactory(user=member)
    body = api_client.get(url(application, "revenue"), HTTP_AUTHORIZATION=f"Bearer {key.raw_key}").json()
    assert (body["mrr"], body["arr"], body["paying_orgs"], body["arpa"]) == ("120.50", "1446.00", 2, "60.25")
    assert set(body) >= {
        "currency",
        "revenue_at_risk",
        "by_health",
        "by_product",
        "concentration",
        "movements",
        "nrr",
        "grr",
        "top_orgs",
    }
    assert body["nrr"] == 100.0
    assert body["grr"] == 100.0
    trend = api_client.get(url(application, "revenue/mrr?months=24"), HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    months = trend.json()["months"]
    assert len(months) == 24
    assert months[-1]["month"] == f"{timezone.now():%Y-%m}"
    assert months[-1]["mrr"] == "120.50"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "member"),
    [
        ("revenue/mrr?months=13", "months"),
        ("revenue/mrr?months=x", "months"),
        ("revenue?month=2026-13", "month"),
        ("revenue?month=26-01", "month"),
        ("revenue?month=0999-01", "month"),
    ],
)
def test_bad_parameters_are_400_naming_the_member(api_client, application, admin_user, query, member):
    api_client.force_login(admin_user)
    response = api_client.get(url(application, query))
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == member


@pytest.mark.django_db(transaction=True)
def test_an_import_racing_reads_shows_the_old_or_the_new_set(api_client, application, admin_user):
    """Two snapshots of 2,000 rows (MRR 2000.00 and 4000.00) replace each other while the API reads."""
    start = (timezone.now() - timedelta(days=40)).date().isoformat()
    header = "external_org_id,product_code,mrr,currency,start_at\n"
    one = header + "".join(f"o{i},pro,1,EUR,{start}\n" for i in range(2000))
    two = header + "".join(f"o{i},pro,2,EUR,{start}\n" for i in range(2000))
    assert import_subs(application, one)["status"] == "applied"
    done = threading.Event()
    failures: list[BaseException] = []

    def importer() -> None:
        try:
            for i in range(6):
                import_subs(application, two if i % 2 == 0 else one)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=importer)
    api_client.force_login(admin_user)
    seen = set()
    thread.start()
    while not done.is_set():
        body = api_client.get(url(application, "revenue")).json()
        seen.add((body["mrr"], body["paying_orgs"], body["by_product"][0]["mrr"]))
        health = api_client.get(url(application, "revenue-health")).json()
        seen.add((health["paying_orgs"],))
    thread.join()
    assert not failures
    assert seen <= {("2000.00", 2000, "2000.00"), ("4000.00", 2000, "4000.00"), (2000,)}
