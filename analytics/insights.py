"""Saved insights: an explorer, funnel or retention query kept under a name, per app.

Any member may save (and pin) one; the author or an owner/admin of the company may delete it or
change its pin. A query is validated by its own parser when it is saved (so a saved insight always
ran once) and runs through the same entry point as the API when it is opened. At most
INSIGHT_PINS_MAX insights of an app are pinned to its overview; at most INSIGHTS_MAX are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from apps_registry.models import Application
from ingest.errors import ApiError

from .models import Insight
from .selectors import application_writable

INSIGHT_PINS_MAX = 6
INSIGHTS_MAX = 500
NAME_MAX = 100
KEYS = {"name", "kind", "query", "pinned"}


def _invalid(details: list[dict[str, str]]) -> ApiError:
    return ApiError(status_code=400, code="validation_failed", message="Invalid insight.", details=details)


def _parse(kind: str, query: object) -> None:
    """Raise the kind's own 400, with each member prefixed `query.`."""
    from .query import query_parse
    from .query.funnel import funnel_parse
    from .query.retention import retention_parse

    parsers: dict[str, Callable[[object], object]] = {
        "query": query_parse,
        "funnel": funnel_parse,
        "retention": retention_parse,
    }
    parser = parsers[kind]
    try:
        parser(query)
    except ApiError as exc:
        details = [{**d, "field": f"query.{d['field']}" if d.get("field") else "query"} for d in exc.details or []]
        raise _invalid(details) from exc


def insight_json(insight: Insight) -> dict[str, Any]:
    return {
        "id": insight.pk,
        "name": insight.name,
        "kind": insight.kind,
        "query": insight.query,
        "pinned": insight.pinned,
        "author": insight.author.get_username() if insight.author else None,
        "created_at": insight.created_at.isoformat().replace("+00:00", "Z"),
        "url": f"/app/{insight.application.uuid}/insights/{insight.pk}/",
    }


def insights_list(*, app: Application, pinned: bool | None = None) -> list[Insight]:
    found = Insight.objects.filter(application=app).select_related("author", "application")
    if pinned is not None:
        found = found.filter(pinned=pinned)
    return list(found[:INSIGHTS_MAX])


def insight_get(*, app: Application, insight_id: int) -> Insight | None:
    return Insight.objects.filter(application=app, pk=insight_id).select_related("author", "application").first()


def insight_create(*, app: Application, user: AbstractBaseUser | AnonymousUser, data: object) -> Insight:
    """Validate and save; 400 naming the member (`name`, `kind`, `query.steps[0].event`, `pinned`...)."""
    if not isinstance(data, dict):
        raise _invalid([{"field": "", "message": 'Must be a JSON object {"name", "kind", "query", "pinned"}.'}])
    details = [{"field": str(k), "message": "Unknown member."} for k in sorted(set(data) - KEYS, key=str)]
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX or "\x00" in name:
        details.append({"field": "name", "message": f"Required: 1 to {NAME_MAX} characters."})
    kind = data.get("kind")
    if kind not in Insight.Kind.values:
        details.append({"field": "kind", "message": "Must be one of: " + ", ".join(Insight.Kind.values) + "."})
    pinned = data.get("pinned", False)
    if not isinstance(pinned, bool):
        details.append({"field": "pinned", "message": "Must be true or false."})
    if "query" not in data:
        details.append({"field": "query", "message": "Required."})
    if details:
        raise _invalid(details)
    _parse(kind, data["query"])  # type: ignore[arg-type]
    with transaction.atomic():
        # One writer at a time per app: the caps below are checked and kept under the app's row lock.
        Application.objects.select_for_update().filter(pk=app.pk).first()
        if Insight.objects.filter(application=app).count() >= INSIGHTS_MAX:
            raise ApiError(status_code=409, code="conflict", message=f"An app keeps at most {INSIGHTS_MAX} insights.")
        if pinned:
            _check_pins(app)
        return Insight.objects.create(
            application=app,
            author=user if getattr(user, "is_authenticated", False) else None,  # type: ignore[misc]
            name=name.strip(),  # type: ignore[union-attr]
            kind=str(kind),
            query=data["query"],
            pinned=pinned,
        )


def _check_pins(app: Application) -> None:
    if Insight.objects.filter(application=app, pinned=True).count() >= INSIGHT_PINS_MAX:
        raise ApiError(
            status_code=409,
            code="conflict",
            message=f"At most {INSIGHT_PINS_MAX} insights are pinned to the overview; unpin one first.",
            details=[{"field": "pinned", "message": f"At most {INSIGHT_PINS_MAX} pinned."}],
        )


def may_change(*, user: AbstractBaseUser | AnonymousUser, insight: Insight) -> bool:
    """The author, or an owner/admin of the company (or a superuser)."""
    if getattr(user, "is_authenticated", False) and insight.author_id == user.pk:
        return True
    return application_writable(user=user, app=insight.application)  # type: ignore[arg-type]


def insight_delete(*, user: AbstractBaseUser | AnonymousUser, insight: Insight) -> None:
    if not may_change(user=user, insight=insight):
        raise ApiError(status_code=403, code="forbidden", message="Only its author or an owner or admin may delete it.")
    insight.delete()


def insight_pin(*, user: AbstractBaseUser | AnonymousUser, insight: Insight, pinned: object) -> Insight:
    if not isinstance(pinned, bool):
        raise _invalid([{"field": "pinned", "message": "Must be true or false."}])
    if not may_change(user=user, insight=insight):
        raise ApiError(status_code=403, code="forbidden", message="Only its author or an owner or admin may pin it.")
    with transaction.atomic():
        Application.objects.select_for_update().filter(pk=insight.application_id).first()
        if pinned and not insight.pinned:
            _check_pins(insight.application)
        insight.pinned = pinned
        insight.save(update_fields=["pinned"])
    return insight


def insight_run(*, insight: Insight) -> dict[str, Any]:
    """The saved query's answer now, through the API's own entry point (same timeout and errors)."""
    from .query import query_run
    from .query.funnel import funnel_run
    from .query.retention import retention_run

    run = {"query": query_run, "funnel": funnel_run, "retention": retention_run}[insight.kind]
    return run(app=insight.application, query=insight.query)
