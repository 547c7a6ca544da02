"""The pages as a server answers them: who may open what, redirects, headers, CSRF, static assets."""

import re
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils.html import escape

from analytics.fold import fold_drain
from analytics.pages.explorer import form_from_query
from analytics.pages.filters import filters_from_query
from apps_registry.models import Membership
from tests.factories import ApplicationFactory, EventFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client(application) -> Client:
    client = Client()
    client.force_login(MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user)
    return client


def test_root_redirects_to_the_app(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/app/"


def test_pages_need_a_login(client, application):
    for url in ("/app/", f"/app/{application.uuid}/", f"/app/{application.uuid}/stream/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/app/login/?next=")


def test_login_page_logs_in_with_the_django_user(client, application):
    user = MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user

    page = client.get("/app/login/")
    response = client.post("/app/login/", {"username": user.username, "password": "pw-for-tests"})

    assert page.status_code == 200
    assert response.status_code == 302
    # One application: straight to its overview
    assert client.get(response["Location"])["Location"] == f"/app/{application.uuid}/"


def test_logout_is_a_post_and_ends_the_session(member_client):
    response = member_client.post("/app/logout/")
    assert response.status_code == 302
    assert member_client.get("/app/")["Location"].startswith("/app/login/")


def test_password_change_page_is_served(member_client):
    assert member_client.get("/app/password/").status_code == 200


def test_another_companys_application_is_404(application, outsider_client):
    for suffix in ("", "pages/", "features/", "organizations/", "organizations/org_1/", "stream/", "explorer/"):
        assert outsider_client.get(f"/app/{application.uuid}/{suffix}").status_code == 404


def test_unknown_application_is_404(member_client):
    assert member_client.get("/app/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_home_lists_the_users_applications_only(application, outsider_client):
    ApplicationFactory(company=application.company, name="Second app")
    user = MembershipFactory(company=application.company, role=Membership.Role.OWNER).user
    client = Client()
    client.force_login(user)

    body = client.get("/app/").content.decode()

    assert application.name in body
    assert "Second app" in body
    assert str(application.uuid) in body


def test_user_without_company_sees_how_to_get_access():
    client = Client()
    client.force_login(UserFactory())
    body = client.get("/app/").content.decode()
    assert "not a member of any company" in body


def test_pages_send_security_headers(member_client, application):
    response = member_client.get(f"/app/{application.uuid}/stream/")

    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]


def test_pages_have_no_inline_script_or_style(member_client, application):
    body = member_client.get(f"/app/{application.uuid}/explorer/").content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", body)
    assert " style=" not in body


def test_dismissing_a_signal_needs_the_csrf_token(application):
    client = Client(enforce_csrf_checks=True)
    client.force_login(MembershipFactory(company=application.company).user)

    response = client.post(f"/app/{application.uuid}/organizations/org_1/", {"signal": "usage_drop"})

    assert response.status_code == 403


def test_filters_are_kept_in_the_navigation_links(member_client, application):
    body = member_client.get(f"/app/{application.uuid}/stream/?range=7&env=staging").content.decode()
    assert f'href="/app/{application.uuid}/pages/?range=7&amp;env=staging"' in body
    assert 'aria-current="true">7 days' in body
    assert '<option value="staging" selected>' in body


def test_admin_application_page_links_to_its_analytics(application):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    body = client.get(f"/admin/apps_registry/application/{application.pk}/change/").content.decode()
    assert f'href="/app/{application.uuid}/"' in body


def test_vendored_chart_and_htmx_are_served_by_the_project():
    for name in ("analytics/vendor/chart-4.6.1.umd.min.js", "analytics/vendor/htmx-2.0.11.min.js"):
        found = finders.find(name)
        assert found is not None
        assert Path(found).stat().st_size > 10_000


@pytest.mark.parametrize(
    ("raw", "days", "environment"),
    [("", 30, None), ("range=7&env=prod", 7, "prod"), ("range=12", 30, None), ("range=x&env=", 30, None)],
)
def test_filters_from_the_url(rf, raw, days, environment):
    filters = filters_from_query(rf.get(f"/?{raw}").GET)
    assert (filters.days, filters.environment) == (days, environment)
    assert (filters.date_to - filters.date_from).days == days - 1


def test_explorer_form_becomes_the_query_language(rf):
    request = rf.get(
        "/?range=7&source=events&measure=users&interval=day&g1=event&g2=&"
        "f1_field=path&f1_op=prefix&f1_value=/settings&f2_field=plan&f2_op=in&f2_value=pro,%20team&"
        "f3_field=environment&f3_op=is_set&f3_value=ignored&limit=50"
    )
    filters = filters_from_query(request.GET)

    query = form_from_query(request.GET, filters).query()

    assert query["measure"] == "users"
    assert query["group_by"] == ["event"]
    assert query["filters"] == [
        {"field": "path", "op": "prefix", "value": "/settings"},
        {"field": "plan", "op": "in", "value": ["pro", "team"]},
        {"field": "environment", "op": "is_set"},
    ]
    assert query["from"] == f"{filters.date_from.isoformat()}T00:00:00Z"
    assert query["limit"] == 50


def test_a_refused_request_shows_the_error_state_not_a_crash(member_client, application):
    from analytics import selectors

    if not hasattr(selectors, "organizations_list"):
        pytest.skip("the organizations selector (issue 10) is not installed")

    response = member_client.get(f"/app/{application.uuid}/organizations/?cursor=not-a-cursor")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'class="panel error-state"' in body
    assert "cursor" in body
    # The rest of the page still works: navigation and filters are there
    assert f'href="/app/{application.uuid}/stream/"' in body


@pytest.mark.parametrize("org_id", ["../../../admin/", "a/b", "..", ".", "q?x=1#frag", "50%/year", "é ü"])
def test_an_org_link_stays_one_path_segment_and_opens_its_org(member_client, application, org_id):
    # Given an org id chosen by whoever holds an SDK key
    EventFactory(application=application, customer_org_id=org_id)
    fold_drain()
    base = f"/app/{application.uuid}/organizations/"

    # When the organizations table links to it
    page = member_client.get(base).content.decode()
    links = [unescape(h) for h in re.findall(r'<tr data-org="[^"]*">\s*<td><a href="([^"]+)"', page)]

    # Then the link, resolved as a browser resolves it, stays under this app's organizations
    assert len(links) == 1
    resolved = urljoin(f"http://testserver{base}", links[0]).removeprefix("http://testserver")
    assert resolved.startswith((base, f"/app/{application.uuid}/organization/?id="))
    # and opens that org's page
    response = member_client.get(resolved)
    assert response.status_code == 200
    assert f"<h1>{escape(org_id)} " in response.content.decode()
