"""The revenue pages as the server answers them: states, roles, the upload → preview → confirm flow."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from revenue.models import CustomerOrg, Import, Note, Subscription, Tag
from tests.factories import OrganizationFactory

from .conftest import import_orgs, import_subs

pytestmark = pytest.mark.django_db
PAGES = ["revenue/", "revenue-health/", "signals/", "settings/organization-data/"]


def page(app, name: str) -> str:
    return f"/app/{app.uuid}/{name}"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def paying(application):
    start = (timezone.now() - timedelta(days=60)).date().isoformat()
    import_subs(
        application,
        "external_org_id,product_code,mrr,currency,start_at\n"
        f"acme,pro,1234.50,EUR,{start}\nglobex,team,99,EUR,{start}\n",
    )
    import_orgs(application, "external_org_id,display_name\nacme,Acme Inc\n")
    OrganizationFactory(application=application, customer_org_id="acme", health_score=85, health_bucket="healthy")
    return application


@pytest.mark.parametrize("name", PAGES)
def test_pages_without_revenue_say_how_to_import(application, member, name):
    body = client_for(member).get(page(application, name)).content.decode()
    if name != "signals/":
        assert "No revenue data yet" in body
        assert "import_subscriptions" in body


@pytest.mark.parametrize("name", PAGES)
def test_another_company_gets_404_and_anonymous_the_login(application, outsider, client, name):
    assert client_for(outsider).get(page(application, name)).status_code == 404
    assert client.get(page(application, name)).status_code == 302


def test_revenue_page_figures_and_csp(paying, member):
    response = client_for(member).get(page(paying, "revenue/?months=24"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "1,333.50" in body  # MRR, with thousands separators
    assert "Acme Inc" in body
    assert body.count("<tr><td>20") >= 24  # the 24-month table beside the chart
    assert "Content-Security-Policy" in response.headers


def test_matrix_cells_open_the_filtered_organizations_list(paying, member):
    client = client_for(member)
    body = client.get(page(paying, "revenue-health/")).content.decode()
    assert 'data-segment="champions"' in body
    listing = client.get(page(paying, "organizations/?segment=champions&sort=-mrr")).content.decode()
    assert "Acme Inc" in listing
    assert "globex" not in listing  # never seen: low health, so not a champion
    at_risk = client.get(page(paying, "organizations/?segment=low_value")).content.decode()
    assert "globex" in at_risk


def test_upload_preview_then_confirm(application, admin_user):
    client = client_for(admin_user)
    csv_file = SimpleUploadedFile(
        "subs.csv", b"external_org_id,product_code,mrr,currency,start_at\nacme,pro,10,EUR,2025-01-01\n"
    )
    preview = client.post(page(application, "settings/organization-data/"), {"kind": "subscriptions", "file": csv_file})
    body = preview.content.decode()
    assert preview.status_code == 200
    assert 'id="preview-counts"' in body
    assert not Subscription.objects.exists()  # a preview changes nothing
    token = body.split('name="token" value="')[1].split('"')[0]
    done = client.post(
        page(application, "settings/organization-data/"), {"kind": "subscriptions", "token": token, "confirm": "1"}
    )
    assert done.status_code == 302
    assert Subscription.objects.get().external_org_id == "acme"
    assert list(Import.objects.values_list("status", "via")) == [("applied", "page"), ("dry_run", "page")]


def test_upload_with_errors_lists_them_and_offers_no_import(application, admin_user):
    client = client_for(admin_user)
    csv_file = SimpleUploadedFile("orgs.csv", b"external_org_id,display_name\n,Nameless\n")
    body = client.post(page(application, "settings/organization-data/"), {"kind": "organizations", "file": csv_file})
    text = body.content.decode()
    assert "Required, but empty." in text
    assert 'name="confirm"' not in text
    assert not CustomerOrg.objects.exists()


def test_members_see_the_imports_but_cannot_upload(application, member):
    client = client_for(member)
    assert 'id="upload-form"' not in client.get(page(application, "settings/organization-data/")).content.decode()
    csv_file = SimpleUploadedFile("orgs.csv", b"external_org_id,display_name\na,A\n")
    response = client.post(
        page(application, "settings/organization-data/"), {"kind": "organizations", "file": csv_file}
    )
    assert response.status_code == 403


def test_organization_page_notes_and_tags(paying, member, admin_user):
    client = client_for(member)
    client.post(page(paying, "organization-notes/"), {"org": "acme", "text": "Renewal call booked"})
    client.post(page(paying, "organization-tags/"), {"org": "acme", "label": "renewal-q3"})
    body = client.get(page(paying, "organizations/acme/")).content.decode()
    assert "Renewal call booked" in body
    assert "renewal-q3" in body
    assert 'id="org-subscriptions"' in body
    note = Note.objects.get()
    other = client_for(admin_user)
    assert other.post(page(paying, "organization-notes/"), {"org": "acme", "delete": note.pk}).status_code == 302
    assert not Note.objects.exists()
    client.post(page(paying, "organization-tags/"), {"org": "acme", "remove": "renewal-q3"})
    assert not Tag.objects.exists()


def test_a_member_cannot_delete_anothers_note(paying, member, admin_user):
    client_for(admin_user).post(page(paying, "organization-notes/"), {"org": "acme", "text": "mine"})
    note = Note.objects.get()
    assert (
        client_for(member).post(page(paying, "organization-notes/"), {"org": "acme", "delete": note.pk}).status_code
        == 403
    )
    assert Note.objects.exists()


def test_signals_page_lists_by_priority(paying, member):
    from analytics.signals import revenue_signals_scan

    revenue_signals_scan(app=paying)  # globex is paying and never seen: inactive_paying
    body = client_for(member).get(page(paying, "signals/")).content.decode()
    assert "Inactive paying" in body
    assert 'id="signals-table"' in body
