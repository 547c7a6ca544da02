"""Writes about webhooks: endpoints and their secrets, fan-out from the outbox, delivery, recovery.

Delivery is at-least-once: every message owed is a row; tasks are only wake-ups. A delivery
leases its message (`locked_until`) so two workers never send it at once, and the sweeper
re-enqueues what is due but not leased, whatever happened to the broker message.

The lease is short (LEASE_SECONDS) and renewed while the HTTP requests run, so a live worker keeps
its messages however slow the endpoint, and a dead worker's messages are free again within
seconds: the sweeper redelivers them within LEASE_SECONDS + its period (issue 9: under 30 s).
Only a message whose request was in flight at the crash can be sent twice.
"""

import email.utils
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps_registry.models import Application, Company
from apps_registry.webhook_events import EVENT_TRIGGERS, WebhookEventType
from ingest.models import Event, IdentifyLink, SdkEvent
from saastracker.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY

from . import schemas, signing, transport
from .models import WebhookAttempt, WebhookEndpoint, WebhookMessage

logger = logging.getLogger(__name__)

DELIVER_TASK = "webhooks.deliver_message"
DELIVER_BATCH_TASK = "webhooks.deliver_messages"
DELIVER_BATCH_SIZE = 100
DELIVER_BATCH_BUDGET_SECONDS = 10.0
DELIVER_CHUNK = 16  # messages claimed, sent concurrently and recorded together
SECRET_OVERLAP = timedelta(hours=24)
FANOUT_BATCH = 500
# A message due for longer than this and not leased has lost its broker message: re-enqueue it.
# Shorter would duplicate tasks for messages merely waiting in a busy queue (never a second
# delivery, the lease prevents that, but wasted work). With the sweep every 5 s, a message whose
# broker message died with a worker is re-enqueued within 20 s.
SWEEP_GRACE = timedelta(seconds=15)
# A delivery holds its messages this long, renewed every LEASE_RENEW_SECONDS while it runs.
LEASE_SECONDS = 10.0
LEASE_RENEW_SECONDS = 3.0
SWEEP_LIMIT = 2000
# Retries due within this many seconds ride a Celery countdown; later ones are left to the sweeper
# (an ETA held by a Redis-broker worker for hours is redelivered after the visibility timeout).
COUNTDOWN_MAX_SECONDS = 600
JITTER = 0.2
RETRY_AFTER_MAX_SECONDS = 24 * 3600


def _relaxed_durability() -> None:
    """Inside a transaction: commit without waiting for the WAL flush.

    Safe for delivery bookkeeping only: a commit lost in a database crash means a lease that never
    was or an attempt sent again, and delivery is at-least-once anyway. Saves an fsync per write.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def lease_seconds() -> float:
    """Short, because it is renewed while the delivery runs: it only expires when its worker is gone."""
    return LEASE_SECONDS


def message_id_new() -> str:
    """`msg_` + hex milliseconds + randomness: unique, and sorts by creation time."""
    return f"msg_{int(time.time() * 1000):011x}{secrets.token_hex(10)}"


# --- Endpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _event_types_clean(event_types: list[str]) -> list[str]:
    valid = set(WebhookEventType.values)
    unknown = [t for t in event_types if t not in valid]
    if unknown or not event_types:
        raise ValidationError(f"event types must be among {', '.join(sorted(valid))}; got {event_types!r}")
    return list(dict.fromkeys(event_types))


def endpoint_create(
    *,
    company: Company,
    url: str,
    event_types: list[str],
    application: Application | None = None,
    description: str = "",
) -> NewEndpoint:
    if application is not None and application.company_id != company.pk:
        raise ValidationError("The application belongs to another company.")
    endpoint = WebhookEndpoint(
        company=company,
        application=application,
        url=url,
        event_types=_event_types_clean(event_types),
        description=description,
    )
    secret = endpoint_secret_set(endpoint=endpoint)
    endpoint.full_clean(exclude=["secret", "secret_hint"])
    endpoint.save()
    return NewEndpoint(endpoint, secret)


def endpoint_secret_set(*, endpoint: WebhookEndpoint) -> str:
    """Give a new (unsaved) endpoint its secret; returns the raw value, to be shown once."""
    secret = signing.secret_new()
    endpoint.secret = secret
    endpoint.secret_hint = signing.secret_hint(secret)
    return secret


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint, overlap: timedelta = SECRET_OVERLAP) -> str:
    """A new secret now; messages are signed with both old and new for `overlap`."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = timezone.now() + overlap
        secret = endpoint_secret_set(endpoint=endpoint)
        endpoint.save(update_fields=["secret", "secret_hint", "previous_secret", "previous_secret_expires_at"])
    return secret


def endpoint_signing_secrets(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> list[str]:
    now = now or timezone.now()
    live = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires and expires > now:
        live.append(endpoint.previous_secret)
    return live


def endpoint_disable(*, endpoint_id: int, reason: str) -> None:
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True).update(
        is_active=False, disabled_reason=f"{reason} (disabled {now:%Y-%m-%d %H:%M} UTC)", disabled_at=now
    )
    logger.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)


def endpoint_reenable(*, endpoint: WebhookEndpoint) -> int:
    """Turn the endpoint back on and resume its paused messages now; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            is_active=True, disabled_reason="", disabled_at=None, failing_since=None
        )
        pending = WebhookMessage.objects.filter(endpoint_id=endpoint.pk, state=WebhookMessage.State.PENDING)
        ids = list(pending.values_list("id", flat=True)[:SWEEP_LIMIT])
        count = pending.update(next_attempt_at=now, locked_until=None)
        transaction.on_commit(partial(_enqueue_batches, ids))
    return count


def endpoint_send_test(*, endpoint: WebhookEndpoint, event_type: str | None = None) -> WebhookMessage:
    """An example message of one of the endpoint's types, marked `"test": true`, delivered as usual."""
    event_type = event_type or (endpoint.event_types[0] if endpoint.event_types else WebhookEventType.USER_IDENTIFIED)
    now = timezone.now()
    data = {"test": True, "app_uuid": str(endpoint.application.uuid) if endpoint.application is not None else None}
    with transaction.atomic():
        message = WebhookMessage.objects.create(
            id=message_id_new(),
            endpoint=endpoint,
            event_type=event_type,
            payload=schemas.envelope(event_type=event_type, at=now, data=data),
            source=f"test:{uuid.uuid4()}",
            next_attempt_at=now,
        )
        transaction.on_commit(partial(_enqueue, [message.id]))
    return message


# --- Messages: resend and recover ------------------------------------------------------------


def message_resend(*, message: WebhookMessage) -> None:
    """Send again, same webhook-id, with a fresh retry schedule (the attempt log is kept)."""
    with transaction.atomic():
        WebhookMessage.objects.filter(pk=message.pk).update(
            state=WebhookMessage.State.PENDING, attempt_count=0, next_attempt_at=timezone.now(), locked_until=None
        )
        transaction.on_commit(partial(_enqueue, [message.pk]))


def messages_recover_since(*, endpoint: WebhookEndpoint, since: datetime) -> int:
    """Resend every failed message of the endpoint created at or after `since`."""
    with transaction.atomic():
        failed = WebhookMessage.objects.filter(
            endpoint_id=endpoint.pk, state=WebhookMessage.State.FAILED, created_at__gte=since
        )
        ids = list(failed.values_list("id", flat=True))
        WebhookMessage.objects.filter(pk__in=ids).update(
            state=WebhookMessage.State.PENDING, attempt_count=0, next_attempt_at=timezone.now(), locked_until=None
        )
        transaction.on_commit(partial(_enqueue_batches, ids[:SWEEP_LIMIT]))
    return len(ids)


def _enqueue(message_ids: list[str], countdown: float | None = None) -> None:
    """Publish delivery wake-ups. A broker failure is only logged: the sweeper will find the rows."""
    if not message_ids:
        return
    from saastracker.celery import app

    try:
        for message_id in message_ids:
            app.send_task(DELIVER_TASK, args=[message_id], countdown=countdown, retry=False)
    except Exception:  # any broker failure: the rows are the truth, the sweeper re-enqueues
        logger.warning("could not publish %d webhook deliveries; the sweeper will retry", len(message_ids))


def _enqueue_batches(message_ids: list[str]) -> None:
    from saastracker.celery import app

    try:
        for i in range(0, len(message_ids), DELIVER_BATCH_SIZE):
            app.send_task(DELIVER_BATCH_TASK, args=[message_ids[i : i + DELIVER_BATCH_SIZE]], retry=False)
    except Exception:  # any broker failure: the sweeper re-enqueues
        logger.warning("could not publish %d webhook deliveries; the sweeper will retry", len(message_ids))


# --- Fan-out from the ingest outbox ----------------------------------------------------------

_SOURCES = (
    ("event", Event, lambda row: EVENT_TRIGGERS.get(row.event), schemas.event_data, "occurred_at"),
    ("sdk_event", SdkEvent, lambda row: row.consent_analytics and EVENT_TRIGGERS.get(row.event_name),
     schemas.sdk_event_data, "occurred_at"),
    ("identify", IdentifyLink, lambda row: WebhookEventType.USER_IDENTIFIED, schemas.identify_data, "received_at"),
)  # fmt: skip


def messages_fanout(*, batch_size: int = FANOUT_BATCH, deliver_inline_max: int = 0) -> int:
    """Turn every stored row still flagged `webhook_pending` into messages; returns how many.

    Rows are claimed FOR UPDATE SKIP LOCKED, so concurrent runs split the work; the flag is
    cleared in the same transaction that creates the messages, and (endpoint, source) is unique,
    so a crash anywhere means a repeat, never a loss or a duplicate.

    After commit, up to `deliver_inline_max` new messages are attempted right here (one task
    instead of two per event, which is what keeps latency low under load); more are enqueued.
    """
    total = 0
    for prefix, model, trigger, data, at_field in _SOURCES:
        while True:
            with transaction.atomic():
                rows = list(
                    model.objects.filter(webhook_pending=True)
                    .select_related("application")
                    .select_for_update(skip_locked=True, of=("self",))
                    .order_by("id")[:batch_size]
                )
                if not rows:
                    break
                messages = _messages_for_rows(rows, prefix=prefix, trigger=trigger, data=data, at_field=at_field)
                WebhookMessage.objects.bulk_create(messages, ignore_conflicts=True)
                model.objects.filter(pk__in=[row.pk for row in rows]).update(webhook_pending=False)
                transaction.on_commit(partial(_deliver_or_enqueue, messages, deliver_inline_max))
            total += len(messages)
            if len(rows) < batch_size:
                break
    return total


def messages_emit(
    *, application: Application, event_type: str, items: list[tuple[str, datetime, dict[str, Any]]]
) -> int:
    """Messages for a producer other than the ingest outbox (e.g. analytics' `signal.raised`).

    `items` are (source, when, data); `source` names the occurrence (unique per endpoint, so a rerun
    makes no second message). Call it inside the producer's transaction: the messages commit with
    what raised them, and delivery is enqueued after commit (the sweeper catches a lost kick).
    """
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(company_id=application.company_id, is_active=True).only(
            "id", "application_id", "event_types"
        )
        if e.application_id in (None, application.pk) and event_type in e.event_types
    ]
    if not endpoints or not items:
        return 0
    now = timezone.now()
    messages = [
        WebhookMessage(
            id=message_id_new(),
            endpoint_id=endpoint.pk,
            event_type=event_type,
            payload=schemas.envelope(event_type=event_type, at=at, data=data),
            source=source,
            next_attempt_at=now,
        )
        for source, at, data in items
        for endpoint in endpoints
    ]
    created = WebhookMessage.objects.bulk_create(messages, ignore_conflicts=True)
    ids = [m.id for m in created]
    # A message made by an earlier run is skipped by the conflict; its unsaved id finds no row at delivery.
    transaction.on_commit(partial(_enqueue_batches, ids))
    return len(ids)


def _deliver_or_enqueue(messages: list[WebhookMessage], inline_max: int) -> None:
    """Attempt a few new messages right here, else one batch task per endpoint."""
    ids = [m.id for m in messages]
    if len(messages) > inline_max:
        by_endpoint: dict[int, list[str]] = {}
        for message in messages:
            by_endpoint.setdefault(message.endpoint_id, []).append(message.id)
        for endpoint_ids in by_endpoint.values():
            _enqueue_batches(endpoint_ids)
        return
    try:
        messages_deliver(message_ids=ids)
    except Exception:  # a database hiccup: hand them to the broker (delivery is idempotent)
        logger.exception("inline webhook delivery failed; enqueueing")
        _enqueue_batches(ids)


def _messages_for_rows(
    rows: list[Any],  # Event, SdkEvent or IdentifyLink rows, one model per call (see _SOURCES)
    *,
    prefix: str,
    trigger: Callable[[Any], str | None],
    data: Callable[[Any], dict[str, Any]],
    at_field: str,
) -> list[WebhookMessage]:
    endpoints = list(
        WebhookEndpoint.objects.filter(company_id__in={row.company_id for row in rows}, is_active=True).only(
            "id", "company_id", "application_id", "event_types"
        )
    )
    now = timezone.now()
    messages = []
    for row in rows:
        event_type = trigger(row)
        if not event_type:
            continue
        payload = None
        for endpoint in endpoints:
            if (
                endpoint.company_id != row.company_id
                or endpoint.application_id not in (None, row.application_id)
                or event_type not in endpoint.event_types
            ):
                continue
            payload = payload or schemas.envelope(event_type=event_type, at=getattr(row, at_field), data=data(row))
            messages.append(
                WebhookMessage(
                    id=message_id_new(),
                    endpoint_id=endpoint.pk,
                    event_type=event_type,
                    payload=payload,
                    source=f"{prefix}:{row.pk}",
                    next_attempt_at=now,
                )
            )
    return messages


# --- Delivery --------------------------------------------------------------------------------


def retry_delay(*, attempt_count: int, status: int | None, retry_after: str | None) -> float | None:
    """Seconds until the next attempt after `attempt_count` attempts, or None when the schedule is spent."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempt_count > len(schedule):
        return None
    if status in (429, 503) and retry_after:
        honoured = _retry_after_seconds(retry_after)
        if honoured is not None:
            return honoured
    return schedule[attempt_count - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - jitter, not crypto


def _retry_after_seconds(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - timezone.now()).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_SECONDS)


def message_deliver(*, message_id: str) -> str:
    """One attempt of one message if it is due and nobody else holds it; returns what happened.

    Safe to call any number of times for the same id: a delivered, failed, leased or not-yet-due
    message is left alone.
    """
    outcomes = _chunk_deliver([message_id])
    return next(iter(outcomes), "skipped")


def messages_deliver(*, message_ids: list[str], budget_seconds: float = DELIVER_BATCH_BUDGET_SECONDS) -> dict:
    """Attempt several messages (one task instead of one per message); returns outcome counts.

    Chunks are claimed with one query, sent concurrently and recorded with a few queries, which is
    what keeps up with a steady stream on a small machine. What is left when `budget_seconds` is
    spent goes back to the broker, so a slow endpoint holds a worker for at most the budget plus
    one timeout.
    """
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    for position in range(0, len(message_ids), DELIVER_CHUNK):
        if position and time.monotonic() - started > budget_seconds:
            _enqueue_batches(message_ids[position:])
            outcomes["handed-back"] = len(message_ids) - position
            break
        for outcome in _chunk_deliver(message_ids[position : position + DELIVER_CHUNK]):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def _chunk_deliver(message_ids: list[str]) -> list[str]:
    now = timezone.now()
    lease_until = now + timedelta(seconds=lease_seconds())
    with transaction.atomic():
        messages = list(
            WebhookMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(
                pk__in=message_ids,
                state=WebhookMessage.State.PENDING,
                next_attempt_at__lte=now,
                endpoint__is_active=True,
            )
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        )
        if not messages:
            return []
        WebhookMessage.objects.filter(pk__in=[m.pk for m in messages]).update(locked_until=lease_until)
    results, lease_until = _send_all(messages, lease_until=lease_until)
    return _record(list(zip(messages, results, strict=True)), lease_until=lease_until)


def _send_all(messages: list[WebhookMessage], *, lease_until: datetime) -> tuple[list[transport.HttpResult], datetime]:
    """Send concurrently on the HTTP threads; meanwhile this thread renews the lease.

    Returns the results and the lease as it stands at the end (what `_record` must find).
    """
    futures = [_http_pool().submit(_send, message) for message in messages]
    while True:
        _, running = futures_wait(futures, timeout=LEASE_RENEW_SECONDS, return_when=FIRST_EXCEPTION)
        if not running:
            break
        lease_until = _lease_renew([m.pk for m in messages], lease_until=lease_until)
    return [f.result() for f in futures], lease_until


def _lease_renew(message_ids: list[str], *, lease_until: datetime) -> datetime:
    """Push the lease of our messages forward; a message whose lease we lost stays lost."""
    renewed = timezone.now() + timedelta(seconds=lease_seconds())
    try:
        with transaction.atomic():
            _relaxed_durability()
            WebhookMessage.objects.filter(pk__in=message_ids, locked_until=lease_until).update(locked_until=renewed)
    except DatabaseError:  # keep sending; if the lease runs out meanwhile, only a repeat can follow
        logger.warning("could not renew the lease of %d webhook messages", len(message_ids))
        return lease_until
    return renewed


_pool: ThreadPoolExecutor | None = None


def _http_pool() -> ThreadPoolExecutor:
    """Threads for the HTTP calls only (never the database); created in the worker process itself."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=DELIVER_CHUNK, thread_name_prefix="webhook-http")
    return _pool


def _send(message: WebhookMessage) -> transport.HttpResult:
    """Sign and POST; no database access, so it can run on any thread."""
    endpoint = message.endpoint
    body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "SaaSTracker-Webhooks/1.0",
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            secrets_=endpoint_signing_secrets(endpoint=endpoint), msg_id=message.id, timestamp=timestamp, body=body
        ),
    }
    try:
        return transport.post(
            url=endpoint.url,
            body=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS,
        )
    except transport.TargetRefusedError as exc:
        return transport.HttpResult(status=None, duration_ms=0, error=str(exc), refused=True)
    except Exception as exc:  # a bug in one send must not lose the others' results
        logger.exception("webhook send failed unexpectedly")
        return transport.HttpResult(status=None, duration_ms=0, error=f"internal error: {type(exc).__name__}")


def _record(results: list[tuple[WebhookMessage, transport.HttpResult]], *, lease_until: datetime) -> list[str]:
    """Log every attempt and decide each message: delivered, retry at a time, failed, or endpoint disabled.

    Every write is conditional on this run's lease, so a worker that overran its lease only adds
    its attempts to the log.
    """
    now = timezone.now()
    outcomes: list[str] = []
    retries: list[tuple[str, float]] = []
    with transaction.atomic():
        _relaxed_durability()
        WebhookAttempt.objects.bulk_create(
            [
                WebhookAttempt(
                    message_id=message.pk,
                    attempted_at=now - timedelta(milliseconds=result.duration_ms),
                    status_code=result.status,
                    duration_ms=result.duration_ms,
                    response_body=result.body[: transport.RESPONSE_BODY_LIMIT],
                    error=result.error,
                )
                for message, result in results
            ]
        )
        delivered = [m for m, r in results if r.status is not None and 200 <= r.status < 300]
        if delivered:
            WebhookMessage.objects.filter(pk__in=[m.pk for m in delivered], locked_until=lease_until).update(
                state=WebhookMessage.State.DELIVERED,
                attempt_count=F("attempt_count") + 1,
                locked_until=None,
                delivered_at=now,
                next_attempt_at=None,
            )
            recovered = {m.endpoint_id for m in delivered if m.endpoint.failing_since is not None}
            if recovered:
                WebhookEndpoint.objects.filter(pk__in=recovered).update(failing_since=None)
            outcomes += [WebhookMessage.State.DELIVERED] * len(delivered)
        for message, result in results:
            if result.status is not None and 200 <= result.status < 300:
                continue
            outcome, countdown = _record_failure(message, result, lease_until=lease_until, now=now)
            outcomes.append(outcome)
            if countdown is not None:
                retries.append((message.pk, countdown))
        for message_id, countdown in retries:
            transaction.on_commit(partial(_enqueue, [message_id], countdown=countdown))
    for outcome in outcomes:
        WEBHOOK_ATTEMPTS.labels(str(outcome)).inc()
    for message in delivered:
        WEBHOOK_LATENCY.labels("first" if message.attempt_count == 0 else "retry").observe(
            max(0.0, (now - _ingested_at(message)).total_seconds())
        )
    return outcomes


def _ingested_at(message: WebhookMessage) -> datetime:
    """When the triggering row was received (its payload says; identify: `timestamp`), else when made."""
    data = message.payload.get("data") if isinstance(message.payload, dict) else None
    stamp = data.get("received_at") if isinstance(data, dict) else None
    if stamp is None and message.event_type == WebhookEventType.USER_IDENTIFIED:
        stamp = message.payload.get("timestamp")
    try:
        return datetime.fromisoformat(stamp) if isinstance(stamp, str) else message.created_at
    except ValueError:
        return message.created_at


def _record_failure(
    message: WebhookMessage, result: transport.HttpResult, *, lease_until: datetime, now: datetime
) -> tuple[str, float | None]:
    endpoint = message.endpoint
    if result.refused:
        return _record_refused(message, result, lease_until=lease_until, now=now)
    attempt_count = message.attempt_count + 1
    delay = retry_delay(
        attempt_count=attempt_count, status=result.status, retry_after=result.headers.get("retry-after")
    )
    countdown = None
    outcome: str
    if delay is None:
        outcome, state, next_attempt_at = WebhookMessage.State.FAILED, WebhookMessage.State.FAILED, None
    else:
        outcome, state, next_attempt_at = "retry", WebhookMessage.State.PENDING, now + timedelta(seconds=delay)
        countdown = delay if delay <= COUNTDOWN_MAX_SECONDS else None
    if not WebhookMessage.objects.filter(pk=message.pk, locked_until=lease_until).update(
        state=state, attempt_count=attempt_count, locked_until=None, next_attempt_at=next_attempt_at
    ):
        return "lease-lost", None  # someone else took over after our lease ran out; they decide
    failing_since = endpoint.failing_since
    if failing_since is None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
        endpoint.failing_since = failing_since = now  # later messages of this chunk share the object
    if result.status == 410:
        endpoint_disable(endpoint_id=endpoint.pk, reason="The endpoint answered 410 Gone")
        return "disabled", None
    if (now - failing_since).total_seconds() >= settings.WEBHOOK_DISABLE_AFTER_SECONDS:
        days = settings.WEBHOOK_DISABLE_AFTER_SECONDS / 86400
        endpoint_disable(
            endpoint_id=endpoint.pk,
            reason=f"Every delivery failed for {days:g} day(s) since {failing_since:%Y-%m-%d %H:%M} UTC",
        )
        return "disabled", None
    return outcome, countdown


def _record_refused(
    message: WebhookMessage, result: transport.HttpResult, *, lease_until: datetime, now: datetime
) -> tuple[str, float | None]:
    """The URL itself was refused (an internal address): no retry can help, so none is spent.

    The endpoint is disabled with the reason, and the message waits, due and with its attempt
    count unchanged, until someone fixes the URL and re-enables the endpoint.
    """
    if not WebhookMessage.objects.filter(pk=message.pk, locked_until=lease_until).update(
        locked_until=None, next_attempt_at=now
    ):
        return "lease-lost", None
    endpoint_disable(endpoint_id=message.endpoint_id, reason=f"Delivery refused: {result.error}")
    return "refused", None


def messages_sweep(*, now: datetime | None = None, grace: timedelta = SWEEP_GRACE) -> int:
    """Re-enqueue messages due (for longer than `grace`) but not leased; returns how many.

    A lease that ran out means its worker died mid-delivery (a live one renews it): such a message
    is re-enqueued at once, without the grace.
    """
    now = now or timezone.now()
    ids = list(
        WebhookMessage.objects.filter(state=WebhookMessage.State.PENDING, endpoint__is_active=True)
        .filter(
            Q(locked_until__isnull=True, next_attempt_at__lte=now - grace)
            | Q(locked_until__lte=now, next_attempt_at__lte=now)
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:SWEEP_LIMIT]
    )
    _enqueue_batches(ids)
    return len(ids)
