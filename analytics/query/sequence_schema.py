"""Funnel and retention request bodies as OpenAPI 3.0 (JSON Schema), from the same tables and caps
as their validation (`funnel`, `retention`, `sequences`), one branch per source."""

from __future__ import annotations

from typing import Any

from .fields import SOURCES, Source
from .funnel import MAX_GROUPS, MAX_STEPS, MAX_WINDOW, MIN_STEPS, MIN_WINDOW
from .retention import MAX_PERIODS, PERIODS
from .schema import _field_names, _filters

_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 128}


def _step(src: Source, *, allow_any: bool) -> dict[str, Any]:
    name = dict(_NAME) if allow_any else {**_NAME, "not": {"enum": ["*"]}}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["event"],
        "properties": {"event": name, "filters": _filters(src)},
    }


def _common(src: Source) -> dict[str, Any]:
    return {
        "source": {"type": "string", "enum": [src.name]},
        "count_by": {
            "type": "string",
            "nullable": True,
            "enum": [*(m for m in ("users", "orgs") if m in src.measures), None],
            "default": "users",
        },
        "from": {**_TIME, "description": "Inclusive; years 1971 to 9998."},
        "to": {**_TIME, "description": "Exclusive; later than `from`, at most 400 days after it."},
        **(
            {"environment": {"type": "string", "maxLength": 32, "nullable": True}}
            if "environment" in src.fields
            else {}
        ),
    }


def funnel_request_schema() -> dict[str, Any]:
    """The body of `POST .../funnel` (and, as JSON text, the `query` of `GET .../funnel/dropoff`)."""
    branches = []
    for src in SOURCES.values():
        branches.append({
            "type": "object",
            "title": f"Funnel on {src.name}",
            "additionalProperties": False,
            "required": ["source", "steps", "from", "to"],
            "properties": {
                **_common(src),
                "steps": {
                    "type": "array",
                    "minItems": MIN_STEPS,
                    "maxItems": MAX_STEPS,
                    "items": _step(src, allow_any=False),
                },
                "window_seconds": {
                    "type": "integer", "nullable": True, "minimum": MIN_WINDOW, "maximum": MAX_WINDOW, "default": 86400
                },
                "breakdown": {
                    **_field_names(list(src.fields.values()), with_properties=True),
                    "nullable": True,
                    "description": f"At most {MAX_GROUPS} groups (by first-step count) plus `other`.",
                },
            },
        })  # fmt: skip
    return {"anyOf": branches}


def retention_request_schema() -> dict[str, Any]:
    """The body of `POST .../retention`."""
    branches = []
    for src in SOURCES.values():
        event = {
            "anyOf": [_NAME, _step(src, allow_any=True)],
            "description": "An event name, `*`, or {event, filters}.",
        }
        branches.append({
            "type": "object",
            "title": f"Retention on {src.name}",
            "additionalProperties": False,
            "required": ["source", "start_event", "return_event", "from", "to"],
            "properties": {
                **_common(src),
                "start_event": event,
                "return_event": event,
                "period": {"type": "string", "enum": list(PERIODS), "default": "week"},
                "periods": {"type": "integer", "minimum": 1, "maximum": MAX_PERIODS, "default": 8},
            },
        })  # fmt: skip
    return {"anyOf": branches}
