"""The wire format of a webhook: `{"type", "timestamp", "data"}`, one builder per trigger.

`timestamp` is when the thing happened (the event's occurred_at; for identify, when it was
received), in ISO 8601 UTC. `data` always carries `app_uuid` and the triggering row's id.
"""

from datetime import UTC, datetime

from ingest.models import Event, IdentifyLink, SdkEvent


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def envelope(*, event_type: str, at: datetime, data: dict) -> dict:
    return {"type": str(event_type), "timestamp": iso(at), "data": data}


def event_data(row: Event) -> dict:
    """A `/v1/events` event (customer backend, organization-scoped)."""
    return {
        "app_uuid": str(row.application.uuid),
        "event_id": str(row.event_id),
        "event": row.event,
        "user_hash": row.user_hash,
        "customer_org_id": row.customer_org_id,
        "path": row.path,
        "session_id": str(row.session_id),
        "plan": row.plan,
        "environment": row.environment,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
        "properties": row.properties,
    }


def sdk_event_data(row: SdkEvent) -> dict:
    """An SDK envelope, flattened the way it is stored."""
    return {
        "app_uuid": str(row.application.uuid),
        "event_id": str(row.event_id),
        "event_name": row.event_name,
        "ts_ms": row.ts_ms,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
        "user": {"anon_id": str(row.anon_id), "user_id": row.user_id},
        "device": {
            "platform": row.platform,
            "os": row.os,
            "app_version": row.app_version,
            "sdk_version": row.sdk_version,
            "bundle_version": row.bundle_version,
            "locale": row.locale,
            "country": row.country,
        },
        "context": {"session_id": str(row.session_id)},
        "properties": row.properties,
    }


def identify_data(row: IdentifyLink) -> dict:
    return {
        "app_uuid": str(row.application.uuid),
        "link_id": str(row.link_id),
        "anon_id": str(row.anon_id),
        "user_id": row.user_id,
        "identified_at": iso(row.received_at),
    }
