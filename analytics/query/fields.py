"""The explorer's whitelist: which sources and fields a query may name, and what each is in each engine.

A field name from the client is only ever a key into these tables; the SQL text comes from here.
`properties.<key>` is the one open-ended field: its key must match `PROPERTY_KEY` (letters, digits,
underscore), is bound as a parameter on PostgreSQL and written into the JSONPath literal on BigQuery
(where a path must be a literal), which the pattern keeps safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["string", "number"]
PROPERTY_PREFIX = "properties."
PROPERTY_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")


@dataclass(frozen=True)
class Field:
    """One queryable column: its SQL on PostgreSQL (over the event table) and on BigQuery."""

    name: str
    pg: str
    bq: str
    kind: Kind = "string"


def _plain(*names: str) -> dict[str, Field]:
    return {name: Field(name, name, name) for name in names}


def _uuid(name: str) -> dict[str, Field]:
    # Stored as uuid in PostgreSQL, as STRING (lowercase text) in BigQuery: compare and group as text.
    return {name: Field(name, f"{name}::text", name)}


@dataclass(frozen=True)
class Source:
    """A queryable table: its fields, measures and the SQL that counts users."""

    name: str
    pg_table: str
    bq_table: str
    fields: dict[str, Field]
    measures: dict[str, Field | None]  # None: COUNT(*)
    pg_only_consented: bool = False


def _sources() -> dict[str, Source]:
    from ingest.models import Event, SdkEvent

    events_fields = {
        **_plain("event", "customer_org_id", "user_hash", "path", "environment", "plan"),
        **_uuid("session_id"),
    }
    sdk_fields = {
        **_plain("event_name", "user_id", "platform", "os", "app_version", "sdk_version", "locale", "country"),
        **_uuid("anon_id"),
        "bundle_version": Field("bundle_version", "bundle_version", "bundle_version", "number"),
        **_uuid("session_id"),
    }
    return {
        "events": Source(
            name="events",
            pg_table=Event._meta.db_table,
            bq_table="events",
            fields=events_fields,
            measures={
                "events": None,
                "users": events_fields["user_hash"],
                "orgs": events_fields["customer_org_id"],
                "sessions": events_fields["session_id"],
            },
        ),
        "sdk_events": Source(
            name="sdk_events",
            pg_table=SdkEvent._meta.db_table,
            bq_table="sdk_events",
            fields=sdk_fields,
            measures={
                "events": None,
                # A user is the known user id, else the device's anonymous id.
                "users": Field("users", "COALESCE(user_id, anon_id::text)", "COALESCE(user_id, anon_id)"),
                "sessions": sdk_fields["session_id"],
            },
            pg_only_consented=True,
        ),
    }


SOURCES: dict[str, Source] = _sources()
MEASURES = ("events", "users", "orgs", "sessions")
INTERVALS = ("hour", "day", "week", "month")
OPS = ("eq", "neq", "in", "not_in", "prefix", "contains", "is_set", "is_not_set")
