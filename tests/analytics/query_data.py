"""The explorer's test data set and its query shapes with the answers worked out by hand.

Times sit on bucket edges: a Saturday, a Sunday's last second and a Monday's first (weeks start
Monday), the last microsecond of October and the first of November (months), and an event at
the exclusive end of the range (`to`). The same rows go to PostgreSQL and, through the real
exporter, to the BigQuery emulator; every shape must give the same answer on both.
"""

import datetime as dt
import uuid

from ingest.models import Event, SdkEvent
from tests.factories import ApplicationFactory, EventFactory, SdkEventFactory


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


FROM = "2026-10-26T00:00:00Z"  # a Monday
TO = "2026-12-01T00:00:00Z"
UA, UB, UC, UD = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
S1, S2, S3, S4, S5 = (uuid.UUID(int=i) for i in range(1, 6))
A1, A2, A9 = (uuid.UUID(int=100 + i) for i in (1, 2, 9))
Q1, Q2, Q3 = (uuid.UUID(int=200 + i) for i in (1, 2, 3))


def dataset_create(app) -> None:
    """Seven events (six in range), five SDK events (one without consent), noise in another app."""
    rows = [
        ("signup", "org_a", UA, "/settings/billing", "production", "pro", S1, "2026-10-31T23:59:59.999999Z",
         {"plan_tier": "gold", "n": 3}),
        ("signup", "org_b", UB, "/settings", "staging", None, S2, "2026-11-01T00:00:00Z", {"n": 3}),
        ("page_view", "org_a", UA, "/home", "production", "pro", S1, "2026-11-01T23:59:59Z", None),
        ("page_view", "org_a", UB, None, None, "free", S3, "2026-11-02T00:00:00Z",
         {"plan_tier": "silver", "flag": True}),
        ("page_view", "org_b", UC, "/settings/profile", "production", "pro", S4, "2026-11-02T13:30:00Z",
         {"plan_tier": "gold", "nested": {"a": 1}}),
        ("feature_used", "org_c", UC, "/reports", "production", "pro", S4, "2026-11-30T23:30:00Z",
         {"plan_tier": "gold"}),
        ("feature_used", "org_c", UD, "/reports/x", "production", "enterprise", S5, "2026-12-01T00:00:00Z", {}),
    ]  # fmt: skip
    for event, org, user, path, env, plan, session, when, props in rows:
        EventFactory(
            application=app,
            event=event,
            customer_org_id=org,
            user_hash=user,
            path=path,
            environment=env,
            plan=plan,
            session_id=session,
            occurred_at=at(when),
            properties=props,
        )
    sdk = [
        ("app_open", "u1", A1, "ios", "17.0", "US", 1.0, Q1, "2026-11-01T10:00:00Z", {"screen": "home"}, True),
        ("app_open", None, A2, "android", "14", "DE", 2.5, Q2, "2026-11-02T00:00:00Z", None, True),
        ("purchase", "u1", A1, "ios", "17.0", "US", 2.5, Q1, "2026-11-02T05:00:00Z",
         {"price": 9, "screen": "paywall"}, True),
        ("purchase", None, A2, "android", "14", "DE", 1.0, Q3, "2026-11-09T00:00:00Z", None, True),
        # No analytics consent: kept for audit, never queried.
        ("purchase", "u9", A9, "web", "1", "FR", 2.5, Q3, "2026-11-02T05:00:00Z", {"screen": "paywall"}, False),
    ]  # fmt: skip
    for name, user_id, anon, platform, os_, country, bundle, session, when, props, consent in sdk:
        SdkEventFactory(
            application=app,
            event_name=name,
            user_id=user_id,
            anon_id=anon,
            platform=platform,
            os=os_,
            country=country,
            bundle_version=bundle,
            session_id=session,
            occurred_at=at(when),
            properties=props,
            consent_analytics=consent,
        )
    other = ApplicationFactory(company=app.company)
    EventFactory(application=other, occurred_at=at("2026-11-02T00:00:00Z"))
    SdkEventFactory(application=other, occurred_at=at("2026-11-02T00:00:00Z"))
    assert Event.objects.count() == 8
    assert SdkEvent.objects.count() == 6


def q(**overrides) -> dict:
    return {"source": "events", "measure": "events", "from": FROM, "to": TO, **overrides}


def f(field: str, op: str, value=None) -> dict:
    flt = {"field": field, "op": op}
    if value is not None:
        flt["value"] = value
    return flt


def sdk(**overrides) -> dict:
    return q(source="sdk_events", **overrides)


D = "T00:00:00Z"
# name -> (query, expected rows)
SHAPES: dict[str, tuple[dict, list[list]]] = {
    "count": (q(), [[6]]),
    "users": (q(measure="users"), [[3]]),
    "orgs": (q(measure="orgs"), [[3]]),
    "sessions": (q(measure="sessions"), [[4]]),
    "range is half-open": (q(to="2026-12-01T00:00:00.000001Z"), [[7]]),
    "hour": (
        q(interval="hour"),
        [
            ["2026-10-31T23:00:00Z", 1],
            ["2026-11-01T00:00:00Z", 1],
            ["2026-11-01T23:00:00Z", 1],
            ["2026-11-02T00:00:00Z", 1],
            ["2026-11-02T13:00:00Z", 1],
            ["2026-11-30T23:00:00Z", 1],
        ],
    ),
    "day": (
        q(interval="day"),
        [["2026-10-31" + D, 1], ["2026-11-01" + D, 2], ["2026-11-02" + D, 2], ["2026-11-30" + D, 1]],
    ),
    "week starts Monday": (
        q(interval="week"),
        [["2026-10-26" + D, 3], ["2026-11-02" + D, 2], ["2026-11-30" + D, 1]],
    ),
    "month": (q(interval="month"), [["2026-10-01" + D, 1], ["2026-11-01" + D, 5]]),
    "week users": (
        q(interval="week", measure="users"),
        [["2026-10-26" + D, 2], ["2026-11-02" + D, 2], ["2026-11-30" + D, 1]],
    ),
    "group event": (q(group_by=["event"]), [["page_view", 3], ["signup", 2], ["feature_used", 1]]),
    "group event, org": (
        q(group_by=["event", "customer_org_id"]),
        [
            ["page_view", "org_a", 2],
            ["feature_used", "org_c", 1],
            ["page_view", "org_b", 1],
            ["signup", "org_a", 1],
            ["signup", "org_b", 1],
        ],
    ),
    "group environment, nulls first": (
        q(group_by=["environment"]),
        [["production", 4], [None, 1], ["staging", 1]],
    ),
    "group user_hash": (q(group_by=["user_hash"], measure="sessions"), [[UB, 2], [UA, 1], [UC, 1]]),
    "group plan, path": (
        q(group_by=["plan", "path"], filters=[f("event", "eq", "page_view")]),
        [["free", None, 1], ["pro", "/home", 1], ["pro", "/settings/profile", 1]],
    ),
    "group session_id": (
        q(group_by=["session_id"], measure="users"),
        [[str(S1), 1], [str(S2), 1], [str(S3), 1], [str(S4), 1]],
    ),
    "group property": (
        q(group_by=["properties.plan_tier"], measure="users"),
        [[None, 2], ["gold", 2], ["silver", 1]],
    ),
    "day by event": (
        q(interval="day", group_by=["event"], filters=[f("environment", "eq", "production")]),
        [
            ["2026-10-31" + D, "signup", 1],
            ["2026-11-01" + D, "page_view", 1],
            ["2026-11-02" + D, "page_view", 1],
            ["2026-11-30" + D, "feature_used", 1],
        ],
    ),
    "eq": (q(filters=[f("event", "eq", "signup")]), [[2]]),
    "neq": (q(filters=[f("event", "neq", "signup")]), [[4]]),
    "neq matches unset": (q(filters=[f("plan", "neq", "pro")]), [[2]]),
    "in": (q(filters=[f("event", "in", ["signup", "feature_used"])]), [[3]]),
    "not_in": (q(filters=[f("customer_org_id", "not_in", ["org_a"])]), [[3]]),
    "not_in matches unset": (q(filters=[f("environment", "not_in", ["production"])]), [[2]]),
    "prefix": (q(filters=[f("path", "prefix", "/settings")]), [[3]]),
    "prefix is not a pattern": (q(filters=[f("path", "prefix", "/%")]), [[0]]),
    "contains": (q(filters=[f("path", "contains", "report")]), [[1]]),
    "contains is case-sensitive": (q(filters=[f("path", "contains", "REPORT")]), [[0]]),
    "is_set": (q(filters=[f("path", "is_set")]), [[5]]),
    "is_not_set": (q(filters=[f("path", "is_not_set")]), [[1]]),
    "property eq integer": (q(filters=[f("properties.n", "eq", 3)]), [[2]]),
    "property eq boolean": (q(filters=[f("properties.flag", "eq", True)]), [[1]]),
    "property in": (q(filters=[f("properties.plan_tier", "in", ["gold", "silver"])]), [[4]]),
    "property is_not_set": (q(filters=[f("properties.plan_tier", "is_not_set")]), [[2]]),
    "property neq": (q(filters=[f("properties.plan_tier", "neq", "gold")]), [[3]]),
    "property not_in": (q(filters=[f("properties.plan_tier", "not_in", ["silver"])]), [[5]]),
    "session eq": (q(filters=[f("session_id", "eq", str(S1))]), [[2]]),
    "user eq": (q(filters=[f("user_hash", "eq", UA)]), [[2]]),
    "two filters": (q(filters=[f("event", "eq", "page_view"), f("customer_org_id", "eq", "org_a")]), [[2]]),
    "nothing matches": (q(filters=[f("event", "eq", "nope")]), [[0]]),
    "sdk count (no unconsented)": (sdk(), [[4]]),
    "sdk users: user_id else anon_id": (sdk(measure="users"), [[2]]),
    "sdk sessions": (sdk(measure="sessions"), [[3]]),
    "sdk week": (sdk(interval="week"), [["2026-10-26" + D, 1], ["2026-11-02" + D, 2], ["2026-11-09" + D, 1]]),
    "sdk group platform": (sdk(group_by=["platform"]), [["android", 2], ["ios", 2]]),
    "sdk group bundle_version": (sdk(group_by=["bundle_version"]), [[1.0, 2], [2.5, 2]]),
    "sdk group event_name, country": (
        sdk(group_by=["event_name", "country"], measure="users"),
        [["app_open", "DE", 1], ["app_open", "US", 1], ["purchase", "DE", 1], ["purchase", "US", 1]],
    ),
    "sdk bundle_version eq": (sdk(filters=[f("bundle_version", "eq", 2.5)]), [[2]]),
    "sdk bundle_version in": (sdk(filters=[f("bundle_version", "in", [1, 7])]), [[2]]),
    "sdk anon_id eq": (sdk(filters=[f("anon_id", "eq", str(A2))]), [[2]]),
    "sdk user_id is_not_set": (sdk(filters=[f("user_id", "is_not_set")]), [[2]]),
    "sdk property eq": (sdk(filters=[f("properties.screen", "eq", "paywall")]), [[1]]),
    "sdk os prefix, group country": (
        sdk(filters=[f("os", "prefix", "1")], group_by=["country"]),
        [["DE", 2], ["US", 2]],
    ),
    "sdk locale, sdk_version, app_version": (
        sdk(filters=[f("locale", "eq", "en_US"), f("sdk_version", "neq", "9"), f("app_version", "contains", ".")]),
        [[4]],
    ),
}
