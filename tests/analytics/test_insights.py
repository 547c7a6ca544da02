"""Saved insights: `GET/POST .../insights`, `PATCH/DELETE .../insights/{id}`, their pages and the overview's pins."""

import pytest
from django.test import Client

from analytics.models import Insight
from apps_registry.models import Membership
from tests.factories import ApplicationFactory, CompanyFactory, MembershipFactory, PersonalApiKeyFactory

from .sequence_data import funnel_events, funnel_query, retention_query

pytestmark = pytest.mark.django_db

EXPLORER = {"source": "events", "measure": "users", "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z"}


def client_of(application, role):
    user = MembershipFactory(company=application.company, role=role).user
    client = Client(HTTP_AUTHORIZATION=f"Bearer {PersonalApiKeyFactory(user=user).raw_key}")
    return client, user


def url(app, suffix=""):
    return f"/api/v1/analytics/apps/{app.uuid}/insights{suffix}"


def save(client, app, **body):
    body = {"name": "Paywall", "kind": "funnel", "query": funnel_query(), **body}
    return client.post(url(app), body, content_type="application/json")


def test_a_member_saves_and_lists_each_kind(application):
    member, user = client_of(application, Membership.Role.MEMBER)

    for kind, query in (("query", EXPLORER), ("funnel", funnel_query()), ("retention", retention_query())):
        response = save(member, application, name=f"My {kind}", kind=kind, query=query)
        assert response.status_code == 201, response.json()
    listed = member.get(url(application)).json()["insights"]

    assert [i["name"] for i in listed] == ["My retention", "My funnel", "My query"]
    assert listed[1]["author"] == user.username
    assert listed[1]["url"] == f"/app/{application.uuid}/insights/{listed[1]['id']}/"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"name": ""}, "name"),
        ({"kind": "chart"}, "kind"),
        ({"query": {**funnel_query(), "steps": [{"event": "A"}]}}, "query.steps"),
        ({"kind": "retention", "query": {**retention_query(), "periods": 99}}, "query.periods"),
        ({"kind": "query", "query": {**EXPLORER, "measure": "x"}}, "query.measure"),
        ({"pinned": "yes"}, "pinned"),
        ({"colour": 1}, "colour"),
    ],
)
def test_a_bad_insight_is_a_400_naming_the_member(application, body, where):
    member, _ = client_of(application, Membership.Role.MEMBER)

    response = save(member, application, **body)

    assert response.status_code == 400
    assert where in [d["field"] for d in response.json()["details"]]


def test_at_most_six_are_pinned(application):
    member, _ = client_of(application, Membership.Role.MEMBER)
    for i in range(6):
        assert save(member, application, name=f"p{i}", pinned=True).status_code == 201

    seventh = save(member, application, name="p6", pinned=True)
    unpinned = save(member, application, name="later").json()
    pin = member.patch(url(application, f"/{unpinned['id']}"), {"pinned": True}, content_type="application/json")

    assert seventh.status_code == 409
    assert pin.status_code == 409
    assert Insight.objects.filter(application=application, pinned=True).count() == 6


def test_the_author_or_an_admin_deletes_not_another_member(application):
    author, _ = client_of(application, Membership.Role.MEMBER)
    other, _ = client_of(application, Membership.Role.MEMBER)
    admin, _ = client_of(application, Membership.Role.ADMIN)
    first = save(author, application).json()["id"]
    second = save(author, application, name="second").json()["id"]

    assert other.delete(url(application, f"/{first}")).status_code == 403
    assert author.delete(url(application, f"/{first}")).status_code == 204
    assert admin.delete(url(application, f"/{second}")).status_code == 204
    assert not Insight.objects.filter(application=application).exists()


def test_another_companys_insights_are_404(application):
    member, _ = client_of(application, Membership.Role.MEMBER)
    saved = save(member, application).json()
    other = CompanyFactory()
    ApplicationFactory(company=other)
    outsider = Client(HTTP_AUTHORIZATION="Bearer " + PersonalApiKeyFactory(
        user=MembershipFactory(company=other, role=Membership.Role.OWNER).user).raw_key)  # fmt: skip

    assert outsider.get(url(application)).status_code == 404
    assert save(outsider, application).status_code == 404
    assert outsider.delete(url(application, f"/{saved['id']}")).status_code == 404
    page = Client()
    page.force_login(MembershipFactory(company=other, role=Membership.Role.OWNER).user)
    assert page.get(saved["url"]).status_code == 404


def test_saved_from_the_page_opened_at_its_url_and_pinned_on_the_overview(application):
    funnel_events(application)
    user = MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user
    page = Client()
    page.force_login(user)
    import json

    response = page.post(
        f"/app/{application.uuid}/insights/save/",
        {"name": "A to C", "kind": "funnel", "query": json.dumps(funnel_query()), "pinned": "1"},
    )
    insight = Insight.objects.get(application=application)

    assert response.status_code == 302
    assert response["Location"] == f"/app/{application.uuid}/insights/{insight.pk}/"
    html = page.get(response["Location"]).content.decode()
    assert 'id="insight-table"' in html
    assert '<td>3. C</td><td class="num">3</td>' in html  # the saved range's figures, as the API answers
    overview = page.get(f"/app/{application.uuid}/").content.decode()
    assert 'id="pinned-insights"' in overview
    assert "A to C" in overview


def test_the_funnel_page_offers_to_save_its_query(application):
    user = MembershipFactory(company=application.company, role=Membership.Role.MEMBER).user
    page = Client()
    page.force_login(user)
    funnel_events(application)

    html = page.get(f"/app/{application.uuid}/funnels/?from=2026-11-02&to=2026-11-02&s1=A&s2=B&run=1").content.decode()

    assert 'id="save-insight"' in html
    assert 'name="kind" value="funnel"' in html
