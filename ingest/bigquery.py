"""BigQuery, the analytics backend: the client from settings and the three tables as code.

Tables (dataset `BIGQUERY_DATASET`), one per kind of stored row, each with every stored field plus
`company_id`, `app_uuid`, the event time and the receive time:

- `events`: `/v1/events` events. Partitioned by day of `occurred_at`, clustered by
  `app_uuid, customer_org_id, user_hash`.
- `sdk_events`: SDK events (consented ones only). Partitioned by day of `occurred_at`, clustered by
  `app_uuid, user_id, anon_id`.
- `identify_links`: anonymous device -> known user. Partitioned by day of `received_at` (a link has
  no client time), clustered by `app_uuid, user_id`.

Each table also has `export_batch`, the id of the claim that sent the row: recovery asks BigQuery
which rows of a batch landed after a worker died mid-call (see ingest/services/export.py). The
insert id of a row is its `insert_key` (the event id; app-qualified for SDK events, whose ids are
unique per application only), which also lets real BigQuery drop a retried duplicate.

Every column is described by the PostgreSQL expression that produces its wire value, so the claim
query hands rows over ready to send: timestamps as RFC 3339 text (formatted by PostgreSQL, so even a
value out of BigQuery's range reaches BigQuery and is dead-lettered there instead of crashing the
exporter), UUIDs as text, JSON as a JSON *string* (the insertAll API wants JSON columns as strings).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from django.conf import settings
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import bigquery

from .models import Event, IdentifyLink, SdkEvent

# Alias `t` is the outbox table, `a` the application (joined in the claim query).
_TS = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


@dataclass(frozen=True)
class Column:
    """One BigQuery column and the PostgreSQL expression (over `t` and `a`) that fills it."""

    name: str
    type: str
    sql: str
    mode: str = "NULLABLE"
    description: str = ""

    def schema_field(self) -> bigquery.SchemaField:
        return bigquery.SchemaField(self.name, self.type, mode=self.mode, description=self.description)


def _required(name: str, type_: str, sql: str | None = None, description: str = "") -> Column:
    return Column(name, type_, sql or f"t.{name}", "REQUIRED", description)


def _nullable(name: str, type_: str, sql: str | None = None, description: str = "") -> Column:
    return Column(name, type_, sql or f"t.{name}", "NULLABLE", description)


def _ts(name: str, description: str, required: bool = True) -> Column:
    make = _required if required else _nullable
    return make(name, "TIMESTAMP", _TS.format(f"t.{name}"), description)


_COMMON_HEAD = [
    _required("company_id", "INT64", description="SaaSTracker company (tenant) id."),
    _required("app_uuid", "STRING", "a.uuid::text", "Application that sent the row."),
]
_COMMON_TAIL = [
    _ts("received_at", "When SaaSTracker accepted the row (server clock)."),
    # The claim's id, a parameter of the claim query: rows do not store it (see ingest/services/export.py).
    _required("export_batch", "STRING", "%s", "Export claim that sent the row (for recovery)."),
]


@dataclass(frozen=True)
class TableSpec:
    """A BigQuery table fed by one outbox model."""

    name: str
    db_table: str
    description: str
    columns: list[Column]
    partition_field: str
    clustering: list[str]
    insert_key_sql: str  # PostgreSQL expression: the insert id, unique per table
    insert_key_bq: str  # the same value computed from BigQuery columns (recovery query)
    claim_filter: str = ""  # extra SQL condition a row must meet to be claimed
    float_columns: tuple[str, ...] = field(default=())

    def schema(self) -> list[bigquery.SchemaField]:
        return [c.schema_field() for c in self.columns]


EVENTS = TableSpec(
    name="events",
    db_table=Event._meta.db_table,
    description="/v1/events events, one row per accepted event.",
    columns=[
        _required("event_id", "STRING", "t.event_id::text", "Event id (UUID) assigned at ingest."),
        *_COMMON_HEAD,
        _required("event", "STRING", description="Event name."),
        _required("user_hash", "STRING", description="Hashed end-user id sent by the customer."),
        _required("customer_org_id", "STRING", description="The customer's organization id."),
        _nullable("path", "STRING", description="Page or route."),
        _required("session_id", "STRING", "t.session_id::text", "Session (UUID), sent or inferred."),
        _required("session_inferred", "BOOL", description="True when SaaSTracker inferred the session."),
        _nullable("plan", "STRING", description="The end customer's plan."),
        _nullable("environment", "STRING", description="Environment (production, staging...)."),
        _ts("occurred_at", "Event time (client clock)."),
        _nullable("properties", "JSON", "t.properties::text", "Free-form event properties."),
        *_COMMON_TAIL,
    ],
    partition_field="occurred_at",
    clustering=["app_uuid", "customer_org_id", "user_hash"],
    insert_key_sql="t.event_id::text",
    insert_key_bq="event_id",
)

SDK_EVENTS = TableSpec(
    name="sdk_events",
    db_table=SdkEvent._meta.db_table,
    description="SDK events with analytics consent, one row per accepted event.",
    columns=[
        _required("event_id", "STRING", "t.event_id::text", "Event id (UUID) from the SDK; unique per app."),
        *_COMMON_HEAD,
        _required("schema_version", "INT64", description="Envelope version."),
        _required("event_name", "STRING", description="Event name."),
        _required("ts_ms", "INT64", description="Event time as sent, in Unix milliseconds."),
        _ts("occurred_at", "Event time (device clock), from ts_ms."),
        _required("anon_id", "STRING", "t.anon_id::text", "Anonymous device id."),
        _nullable("user_id", "STRING", description="Known user id, once identified."),
        _required("platform", "STRING", description="ios, android, web..."),
        _required("os", "STRING", description="OS version."),
        _required("app_version", "STRING", description="App version."),
        _required("sdk_version", "STRING", description="SDK version."),
        _required("locale", "STRING", description="Device locale."),
        _required("bundle_version", "FLOAT64", description="Config bundle version."),
        _required("country", "STRING", description="ISO 3166-1 alpha-2 country."),
        _required("session_id", "STRING", "t.session_id::text", "Session (UUID)."),
        _nullable("properties", "JSON", "t.properties::text", "Free-form event properties."),
        _required("consent_analytics", "BOOL", description="Analytics consent (always true here)."),
        *_COMMON_TAIL,
    ],
    partition_field="occurred_at",
    clustering=["app_uuid", "user_id", "anon_id"],
    insert_key_sql="a.uuid::text || ':' || t.event_id::text",
    insert_key_bq="CONCAT(app_uuid, ':', event_id)",
    claim_filter="t.consent_analytics",
    float_columns=("bundle_version",),
)

IDENTIFY_LINKS = TableSpec(
    name="identify_links",
    db_table=IdentifyLink._meta.db_table,
    description="Anonymous device -> known user links, one row per new link.",
    columns=[
        _required("link_id", "STRING", "t.link_id::text", "Link id (UUID)."),
        *_COMMON_HEAD,
        _required("anon_id", "STRING", "t.anon_id::text", "Anonymous device id."),
        _required("user_id", "STRING", description="Known user id."),
        _ts("last_seen_at", "Last time the link was seen when exported."),
        *_COMMON_TAIL,
    ],
    partition_field="received_at",
    clustering=["app_uuid", "user_id"],
    insert_key_sql="t.link_id::text",
    insert_key_bq="link_id",
)

TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (EVENTS, SDK_EVENTS, IDENTIFY_LINKS)}

# Short and explicit: the client's defaults retry for up to 10 minutes, far beyond a task's time
# limit. Only a failure to connect is retried here (nothing was sent, so a resend cannot
# duplicate); everything else goes back to the exporter, which knows how to settle it.
INSERT_RETRY = Retry(predicate=lambda exc: is_connect_failure(exc), initial=0.1, maximum=0.5, multiplier=2, timeout=1.5)
# Queries and DDL are idempotent reads/creates: retry the usual transient errors, briefly.
QUERY_RETRY = Retry(
    predicate=lambda exc: (
        is_connect_failure(exc)
        or isinstance(exc, gexc.ServiceUnavailable | gexc.TooManyRequests | gexc.InternalServerError)
    ),
    initial=0.2,
    maximum=1.0,
    multiplier=2,
    timeout=5.0,
)


def timeout_seconds() -> float:
    return float(getattr(settings, "BIGQUERY_TIMEOUT_SECONDS", 10.0))


def is_enabled() -> bool:
    """Export is off when no project is configured (the embedded default): rows stay pending."""
    return bool(settings.BIGQUERY_PROJECT)


def is_connect_failure(exc: BaseException) -> bool:
    """True when the request never reached BigQuery (refused, DNS, connect timeout)."""
    import requests
    from urllib3.exceptions import NewConnectionError

    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError | NewConnectionError | requests.exceptions.ConnectTimeout):
            return True
        stack.extend([cur.__cause__, cur.__context__, getattr(cur, "reason", None)])
        stack.extend(arg for arg in getattr(cur, "args", ()) if isinstance(arg, BaseException))
    return False


_client_lock = threading.Lock()
_clients: dict[tuple, bigquery.Client] = {}


def client_get() -> bigquery.Client:
    """A client for the configured project, one per process and configuration.

    With `BIGQUERY_API_ENDPOINT` set (the emulator), anonymous credentials; otherwise application
    default credentials, as in production.
    """
    key = (settings.BIGQUERY_PROJECT, settings.BIGQUERY_API_ENDPOINT, settings.BIGQUERY_LOCATION)
    client = _clients.get(key)
    if client is None:
        with _client_lock:
            client = _clients.get(key)
            if client is None:
                client = _client_build(*key)
                _clients[key] = client
    return client


def _client_build(project: str, endpoint: str, location: str) -> bigquery.Client:
    if endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return bigquery.Client(project=project, location=location)


def table_id(spec: TableSpec) -> str:
    return f"{settings.BIGQUERY_PROJECT}.{settings.BIGQUERY_DATASET}.{spec.name}"


def dataset_and_tables_ensure(*, client: bigquery.Client | None = None) -> list[str]:
    """Create the dataset and the three tables if missing (idempotent). Returns what was created."""
    client = client or client_get()
    created: list[str] = []
    dataset_ref = f"{settings.BIGQUERY_PROJECT}.{settings.BIGQUERY_DATASET}"
    try:
        client.get_dataset(dataset_ref, retry=QUERY_RETRY, timeout=timeout_seconds())
    except gexc.NotFound:
        dataset = bigquery.Dataset(dataset_ref)
        dataset.location = settings.BIGQUERY_LOCATION
        dataset.description = "SaaSTracker events, exported from the ingest outbox."
        client.create_dataset(dataset, exists_ok=True, retry=QUERY_RETRY, timeout=timeout_seconds())
        created.append(dataset_ref)
    for spec in TABLES.values():
        ref = table_id(spec)
        try:
            client.get_table(ref, retry=QUERY_RETRY, timeout=timeout_seconds())
            continue
        except gexc.NotFound:
            pass
        table = bigquery.Table(ref, schema=spec.schema())
        table.description = spec.description
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=spec.partition_field
        )
        table.clustering_fields = spec.clustering
        client.create_table(table, exists_ok=True, retry=QUERY_RETRY, timeout=timeout_seconds())
        created.append(ref)
    return created
