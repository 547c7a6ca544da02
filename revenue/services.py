"""Writes of the revenue app: the two imports (validated whole, then applied atomically), notes, tags.

A subscriptions import is a snapshot: in one transaction it deletes the app's rows and COPYs the
file's in, so a reader (whose statement, or REPEATABLE READ transaction, sees one snapshot) sees the
old set or the new one, never half. Imports of one app are serialised by an advisory lock.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from functools import partial

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection, transaction
from django.utils import timezone

from apps_registry.models import Application, Membership
from ingest.errors import ApiError

from . import imports, snapshots
from .models import DEFAULT_REPORTING_CURRENCY, FxRate, Import, Note, RevenueSettings, Tag
from .selectors import money, mrr_total_at, snapshot_parts
from .signals import import_applied

_LOCK_NAMESPACE = 0x5245_56  # "REV": pg_advisory_xact_lock(namespace, app id)
MAX_NOTE_CHARS = 10_000
MAX_TAG_CHARS = 64
MAX_TAGS_PER_ORG = 50
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_ .:/+-]*$"
_TAG = re.compile(TAG_PATTERN)


def reporting_currency(*, app: Application) -> str:
    row = RevenueSettings.objects.filter(application=app).values_list("reporting_currency", flat=True).first()
    return row or DEFAULT_REPORTING_CURRENCY


def _fx_rates(app: Application) -> dict[str, Decimal]:
    return dict(FxRate.objects.filter(company_id=app.company_id).values_list("currency", "rate"))


def _lock(app: Application) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, app.id])


def import_run(
    *,
    app: Application,
    kind: str,
    data: bytes,
    file_name: str = "",
    user: User | AnonymousUser | None = None,
    via: str = "api",
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict:
    """Validate the whole file; unless it has errors or this is a dry run, apply it. Always recorded."""
    now = now or timezone.now()
    currency = reporting_currency(app=app)
    if kind == Import.Kind.ORGANIZATIONS:
        report = imports.organizations_validate(data)
    elif kind == Import.Kind.SUBSCRIPTIONS:
        report = imports.subscriptions_validate(data, reporting_currency=currency, rates=_fx_rates(app))
    else:  # pragma: no cover - callers pass one of the two kinds
        raise ValueError(kind)
    with transaction.atomic():
        _lock(app)
        if kind == Import.Kind.ORGANIZATIONS:
            counts = _org_counts(app, report.rows)
        else:
            counts = _subscription_counts(app, report.rows, now, currency)
        if report.error_count:
            status = Import.Status.FAILED
        elif dry_run:
            status = Import.Status.DRY_RUN
        else:
            status = Import.Status.APPLIED
            if kind == Import.Kind.ORGANIZATIONS:
                _orgs_upsert(app, report.rows, now)
            else:
                _subscriptions_replace(app, report.rows, now)
            transaction.on_commit(partial(import_applied.send, sender=Import, application=app, kind=kind))
        record = Import.objects.create(
            application=app,
            kind=kind,
            status=status,
            user=user if user is not None and user.is_authenticated else None,
            via=via,
            file_name=file_name[:255],
            created_at=now,
            counts=counts,
            errors=report.errors,
            error_count=report.error_count,
        )
        if status == Import.Status.APPLIED and kind == Import.Kind.SUBSCRIPTIONS:
            # What the new snapshot's first reads need, committed with it: no process scans for it.
            parts = snapshot_parts(rows=report.rows, now=now)
            snapshots.parts_replace(app_id=app.id, import_id=record.pk, parts=parts)
    return import_report(record)


def import_report(record: Import) -> dict:
    """The answer of an import (API, page, command): the same shape everywhere."""
    return {
        "import_id": record.pk,
        "via": record.via,
        "kind": record.kind,
        "status": record.status,
        "dry_run": record.status == Import.Status.DRY_RUN,
        "file_name": record.file_name,
        "created_at": record.created_at,
        "counts": record.counts,
        "error_count": record.error_count,
        "errors": record.errors,
    }


def _existing_orgs(app: Application, ids: set[str]) -> set[str]:
    """One array parameter: the ORM's IN list costs more to build than the query to run at 10,000 ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT external_org_id FROM revenue_customerorg WHERE application_id = %s AND external_org_id = ANY(%s)",
            [app.id, list(ids)],
        )
        return {org for (org,) in cursor.fetchall()}


def _org_counts(app: Application, rows: list[dict]) -> dict:
    ids = {r["external_org_id"] for r in rows}
    existing = _existing_orgs(app, ids)
    return {"rows": len(rows), "orgs_created": len(ids - existing), "orgs_updated": len(ids & existing)}


def _subscription_counts(app: Application, rows: list[dict], now: datetime, currency: str) -> dict:
    ids = {r["external_org_id"] for r in rows}
    existing = _existing_orgs(app, ids)
    active = [r for r in rows if r["start_at"] <= now and (r["end_at"] is None or now < r["end_at"])]
    return {
        "rows": len(rows),
        "orgs_created": len(ids - existing),
        "orgs_updated": len(ids & existing),
        "subscriptions_active_now": len(active),
        "currency": currency,
        "mrr_before": money(mrr_total_at(app=app, at=now)),
        "mrr_after": money(sum((r["mrr"] for r in active), Decimal(0))),
    }


def _orgs_upsert(app: Application, rows: list[dict], now: datetime) -> None:
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO revenue_customerorg (application_id, external_org_id, display_name, created_at, updated_at)
            SELECT %s, ext, name, %s, %s FROM unnest(%s::text[], %s::text[]) AS t(ext, name)
            ON CONFLICT (application_id, external_org_id) DO UPDATE
                SET display_name = EXCLUDED.display_name, updated_at = EXCLUDED.updated_at
            """,
            [app.id, now, now, [r["external_org_id"] for r in rows], [r["display_name"] for r in rows]],
        )


def _subscriptions_replace(app: Application, rows: list[dict], now: datetime) -> None:
    """Orgs not seen before are created (no display name yet); then the snapshot replaces the old one."""
    with connection.cursor() as cursor:
        ids = sorted({r["external_org_id"] for r in rows})
        cursor.execute(
            """
            INSERT INTO revenue_customerorg (application_id, external_org_id, display_name, created_at, updated_at)
            SELECT %s, ext, '', %s, %s FROM unnest(%s::text[]) AS t(ext)
            ON CONFLICT (application_id, external_org_id) DO NOTHING
            """,
            [app.id, now, now, ids],
        )
        cursor.execute("DELETE FROM revenue_subscription WHERE application_id = %s", [app.id])
        columns = (
            "application_id, external_org_id, product_code, subscription_id, mrr, original_mrr, "
            "original_currency, fx_rate, start_at, end_at"
        )
        with cursor.cursor.copy(f"COPY revenue_subscription ({columns}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(
                    (
                        app.id,
                        r["external_org_id"],
                        r["product_code"],
                        r["subscription_id"],
                        r["mrr"],
                        r["original_mrr"],
                        r["original_currency"],
                        r["fx_rate"],
                        r["start_at"],
                        r["end_at"],
                    )
                )

        # The snapshot replaced every row of the app: fresh statistics, or the planner keeps the old
        # estimate (a handful of rows) and picks a bitmap scan over the dead tuples for the next reads.
        cursor.execute("ANALYZE revenue_subscription")


# --- Who may import, notes, tags -----------------------------------------------------------------


def is_company_admin(*, user: User | AnonymousUser | None, app: Application) -> bool:
    """Owners and admins of the app's company (and superusers) may import and delete others' notes."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if getattr(user, "is_superuser", False):
        return True
    return Membership.objects.filter(
        user=user, company_id=app.company_id, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]
    ).exists()


def _invalid(name: str, message: str) -> ApiError:
    return ApiError(
        status_code=400,
        code="validation_failed",
        message="Invalid request body.",
        details=[{"field": name, "message": message}],
    )


def note_create(*, app: Application, customer_org_id: str, author: User, text: str) -> Note:
    text = (text or "").strip()
    if not text:
        raise _invalid("text", "Required, but empty.")
    if len(text) > MAX_NOTE_CHARS:
        raise _invalid("text", f"At most {MAX_NOTE_CHARS} characters.")
    if len(customer_org_id) > imports.MAX_ID_LENGTH:
        raise _invalid("customer_org_id", f"At most {imports.MAX_ID_LENGTH} characters.")
    return Note.objects.create(application=app, customer_org_id=customer_org_id, author=author, text=text)


def note_delete(*, app: Application, note_id: int, user: User) -> None:
    """The author, or an owner/admin of the company, may delete a note; anyone else gets a 403."""
    note = Note.objects.filter(application=app, pk=note_id).first()
    if note is None:
        raise ApiError(status_code=404, code="not_found", message="Unknown note.")
    if note.author_id != user.pk and not is_company_admin(user=user, app=app):
        raise ApiError(
            status_code=403, code="forbidden", message="Only the note's author or an owner/admin may delete it."
        )
    note.delete()


def tag_add(*, app: Application, customer_org_id: str, label: str) -> Tag:
    if not label:
        raise _invalid("label", "Required, but empty.")
    label = label.lower() if _TAG.fullmatch(label) else label
    if len(label) > MAX_TAG_CHARS or not _TAG.fullmatch(label):
        raise _invalid(
            "label", f"At most {MAX_TAG_CHARS} characters: letters, digits, and . : / + - _ or spaces inside."
        )
    if len(customer_org_id) > imports.MAX_ID_LENGTH:
        raise _invalid("customer_org_id", f"At most {imports.MAX_ID_LENGTH} characters.")
    existing = Tag.objects.filter(application=app, customer_org_id=customer_org_id)
    if existing.count() >= MAX_TAGS_PER_ORG and not existing.filter(label=label).exists():
        raise _invalid("label", f"An organization has at most {MAX_TAGS_PER_ORG} tags.")
    tag, _ = Tag.objects.get_or_create(application=app, customer_org_id=customer_org_id, label=label)
    return tag


def tag_remove(*, app: Application, customer_org_id: str, label: str) -> None:
    deleted, _ = Tag.objects.filter(application=app, customer_org_id=customer_org_id, label=label.lower()).delete()
    if not deleted:
        raise ApiError(status_code=404, code="not_found", message="Unknown tag.")
