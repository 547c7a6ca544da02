"""Feature definitions: their caps (a 400 naming the member), and matching that does not grow with
the number of features or rules (each definition is resolved against the app's path dictionary once)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.fold import fold_drain
from analytics.models import (
    FEATURE_EVENTS_MAX,
    FEATURE_PREFIX_MAX_LENGTH,
    FEATURE_PREFIXES_MAX,
    FEATURES_PER_APP_MAX,
    Feature,
)
from analytics.selectors import features_list
from apps_registry.models import Membership
from tests.factories import EventFactory, MembershipFactory, PersonalApiKeyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_key(application) -> str:
    admin = MembershipFactory(company=application.company, role=Membership.Role.ADMIN).user
    return PersonalApiKeyFactory(user=admin).raw_key


def define(api_client, application, key, body):
    return api_client.post(
        f"/api/v1/analytics/apps/{application.uuid}/features", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def adoption(api_client, application, key) -> dict[str, tuple[int, int]]:
    response = api_client.get(f"/api/v1/analytics/apps/{application.uuid}/features", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    return {f["name"]: (f["orgs_adopted"], f["users"]) for f in response.json()["features"]}


@pytest.mark.parametrize(
    ("body", "member"),
    [
        ({"name": "f", "path_prefixes": ["/p"] * (FEATURE_PREFIXES_MAX + 1)}, "path_prefixes"),
        ({"name": "f", "events": ["e"] * (FEATURE_EVENTS_MAX + 1)}, "events"),
        ({"name": "f", "path_prefixes": ["/" + "a" * FEATURE_PREFIX_MAX_LENGTH]}, "path_prefixes"),
    ],
    ids=["prefixes", "events", "prefix length"],
)
def test_a_definition_past_a_cap_is_a_400_naming_the_member(api_client, application, admin_key, body, member):
    response = define(api_client, application, admin_key, body)

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == member
    assert not Feature.objects.filter(application=application).exists()


def test_a_definition_at_the_caps_is_accepted(api_client, application, admin_key):
    body = {
        "name": "f",
        "events": [f"e{i}" for i in range(FEATURE_EVENTS_MAX)],
        "path_prefixes": [f"/{i}".ljust(FEATURE_PREFIX_MAX_LENGTH, "x") for i in range(FEATURE_PREFIXES_MAX)],
    }
    assert define(api_client, application, admin_key, body).status_code == 201


def test_an_app_defines_at_most_the_cap_of_features(api_client, application, admin_key):
    Feature.objects.bulk_create(
        Feature(application=application, name=f"f{i}", events=["e"]) for i in range(FEATURES_PER_APP_MAX - 1)
    )
    assert define(api_client, application, admin_key, {"name": "last", "events": ["e"]}).status_code == 201

    response = define(api_client, application, admin_key, {"name": "one too many", "events": ["e"]})

    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "name"
    assert str(FEATURES_PER_APP_MAX) in response.json()["details"][0]["message"]
    assert Feature.objects.filter(application=application).count() == FEATURES_PER_APP_MAX


def test_the_openapi_document_states_the_caps(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    body = schema["paths"]["/api/v1/analytics/apps/{app_uuid}/features"]["post"]["requestBody"]
    definition = body["content"]["application/json"]["schema"]
    assert definition["properties"]["path_prefixes"]["maxItems"] == FEATURE_PREFIXES_MAX
    assert definition["properties"]["path_prefixes"]["items"]["maxLength"] == FEATURE_PREFIX_MAX_LENGTH
    assert definition["properties"]["events"]["maxItems"] == FEATURE_EVENTS_MAX
    assert str(FEATURES_PER_APP_MAX) in definition["description"]


def _event(application, org: str, path: str, event: str = "page_view") -> None:
    EventFactory(application=application, customer_org_id=org, path=path, event=event, occurred_at=timezone.now())


def test_the_read_costs_the_same_statements_for_one_feature_or_many(application):
    # Given folded page views and one feature of many prefixes, read once (its definition resolved)
    for i in range(5):
        _event(application, f"org{i}", f"/area{i}/page")
    fold_drain()
    Feature.objects.create(
        application=application, name="f00", path_prefixes=[f"/area0/{j}" for j in range(300)] + ["/area0/p"]
    )
    today = timezone.now().date()
    window = {"app": application, "date_from": today, "date_to": today, "environment": None}
    features_list(**window)
    with CaptureQueriesContext(connection) as one:
        features_list(**window)

    # When the app defines 20 such features (and event names)
    for i in range(1, 20):
        prefixes = [f"/area{i % 5}/{j}" for j in range(300)] + [f"/area{i % 5}/"]
        Feature.objects.create(application=application, name=f"f{i:02}", path_prefixes=prefixes, events=["x"])
    features_list(**window)
    with CaptureQueriesContext(connection) as many:
        listed = features_list(**window)

    # Then the read issues the same statements as with one (plus the NameDay read of the event names),
    # none of which matches a prefix in SQL
    assert len(many.captured_queries) <= len(one.captured_queries) + 1
    assert all("LIKE" not in q["sql"] for q in many.captured_queries)
    assert {f["name"]: f["orgs_adopted"] for f in listed["features"]}["f05"] == 1
    assert {f["name"]: f["orgs_adopted"] for f in listed["features"]}["f00"] == 1


def test_matching_follows_new_paths_and_changed_definitions(api_client, application, admin_key):
    # Given a feature read once (its prefixes resolved against the paths known then)
    _event(application, "acme", "/reports/a")
    _event(application, "beta", "/home")
    fold_drain()
    feature = Feature.objects.create(application=application, name="reports", path_prefixes=["/reports"])
    Feature.objects.create(application=application, name="long", path_prefixes=["/" + "z" * 511])
    assert adoption(api_client, application, admin_key)["reports"] == (1, 1)

    # When a new matching path is folded, and a path longer than the rollups keep
    _event(application, "gamma", "/reports/b/c")
    _event(application, "delta", "/" + "z" * 2000)
    fold_drain()

    # Then it counts, and a prefix of 512 characters matches the long path
    assert adoption(api_client, application, admin_key)["reports"] == (2, 2)
    assert adoption(api_client, application, admin_key)["long"] == (1, 1)

    # And when the definition changes, the next read follows it
    feature.path_prefixes = ["/home", "/nowhere"]
    feature.save()
    assert adoption(api_client, application, admin_key)["reports"] == (1, 1)
    feature.path_prefixes = ["/reports/b"]
    feature.save()
    assert adoption(api_client, application, admin_key)["reports"] == (1, 1)


def test_the_organization_page_lists_features_from_the_same_matching(api_client, application, admin_key):
    _event(application, "acme", "/reports/a")
    _event(application, "acme", "/home", event="export_csv")
    fold_drain()
    Feature.objects.create(application=application, name="reports", path_prefixes=["/x", "/reports/"])
    Feature.objects.create(application=application, name="export", events=["export_csv"])
    Feature.objects.create(application=application, name="other", path_prefixes=["/other"])

    response = api_client.get(
        f"/api/v1/analytics/apps/{application.uuid}/organizations/acme", HTTP_AUTHORIZATION=f"Bearer {admin_key}"
    )

    assert response.status_code == 200
    assert response.json()["features_used"] == ["export", "reports"]


def test_the_admin_form_refuses_what_the_api_refuses(application):
    # The admin's form runs the model's clean(): the same caps, each on its field
    from django.core.exceptions import ValidationError

    Feature.objects.bulk_create(
        Feature(application=application, name=f"f{i}", events=["e"]) for i in range(FEATURES_PER_APP_MAX)
    )
    feature = Feature(application=application, name="more", path_prefixes=["/" + "a" * FEATURE_PREFIX_MAX_LENGTH])

    with pytest.raises(ValidationError) as caught:
        feature.full_clean()

    assert set(caught.value.message_dict) == {"name", "path_prefixes"}
