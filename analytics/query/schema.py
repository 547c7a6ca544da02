"""The query language as an OpenAPI 3.0 (JSON Schema) document, built from the whitelist in `fields`.

Built from the same tables `validation` checks against, so the document cannot drift from what the
server accepts: a body valid here is a query `query_parse` accepts, except for what JSON Schema
cannot say (`to` later than `from`, the 400-day span, years 1971 to 9998), which the description
states in words. One branch per source (`anyOf`): a source's measures and fields differ.
"""

from __future__ import annotations

from typing import Any

from .fields import INTERVALS, OPS, PROPERTY_KEY, PROPERTY_PREFIX, SOURCES, Field, Source
from .validation import MAX_FILTERS, MAX_GROUPS, MAX_LIMIT, MAX_LIST_VALUES, MAX_STRING

# A property is any `properties.<key>`; its values read as text.
PROPERTY_PATTERN = "^" + PROPERTY_PREFIX.replace(".", r"\.") + PROPERTY_KEY.pattern + "$"
_TEXT_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_STRING},
        # Integers and booleans compare as their JSON text (`1`, `true`), as a property's value reads.
        {"type": "integer", "minimum": -(10**18) + 1, "maximum": 10**18 - 1},
        {"type": "boolean"},
    ]
}
_NUMBER_VALUE: dict[str, Any] = {"type": "number", "minimum": -1e300, "maximum": 1e300}


def _field_names(fields: list[Field], *, with_properties: bool) -> dict[str, Any]:
    names: dict[str, Any] = {"type": "string", "enum": [f.name for f in fields]}
    if not with_properties:
        return names
    return {"type": "string", "anyOf": [names, {"pattern": PROPERTY_PATTERN}]}


def _filter(field: dict[str, Any], ops: tuple[str, ...], value: dict[str, Any] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"field": field, "op": {"type": "string", "enum": list(ops)}}
    required = ["field", "op"]
    if value is None:
        properties["value"] = {"type": "string", "nullable": True, "enum": [None], "description": "Absent or null."}
    else:
        properties["value"] = value
        required.append("value")
    return {"type": "object", "additionalProperties": False, "required": required, "properties": properties}


def _filters(src: Source) -> dict[str, Any]:
    text = [f for f in src.fields.values() if f.kind == "string"]
    numbers = [f for f in src.fields.values() if f.kind == "number"]
    text_field = _field_names(text, with_properties=True)
    shapes = [
        _filter(text_field, ("eq", "neq"), _TEXT_VALUE),
        _filter(
            text_field,
            ("in", "not_in"),
            {"type": "array", "minItems": 1, "maxItems": MAX_LIST_VALUES, "items": _TEXT_VALUE},
        ),
        _filter(text_field, ("prefix", "contains"), {"type": "string", "maxLength": MAX_STRING}),
    ]
    if numbers:
        number_field = _field_names(numbers, with_properties=False)
        shapes += [
            _filter(number_field, ("eq", "neq"), _NUMBER_VALUE),
            _filter(
                number_field,
                ("in", "not_in"),
                {"type": "array", "minItems": 1, "maxItems": MAX_LIST_VALUES, "items": _NUMBER_VALUE},
            ),
        ]
    every_field = _field_names(list(src.fields.values()), with_properties=True)
    shapes.append(_filter(every_field, ("is_set", "is_not_set"), None))
    assert {op for shape in shapes for op in shape["properties"]["op"]["enum"]} == set(OPS)  # noqa: S101 (import-time invariant)
    return {"type": "array", "maxItems": MAX_FILTERS, "nullable": True, "items": {"anyOf": shapes}}


def _source_query(src: Source) -> dict[str, Any]:
    time: dict[str, Any] = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "title": f"Query on {src.name}",
        "additionalProperties": False,
        "required": ["source", "measure", "from", "to"],
        "properties": {
            "source": {"type": "string", "enum": [src.name]},
            "measure": {"type": "string", "enum": list(src.measures)},
            "from": {**time, "description": "Inclusive; years 1971 to 9998."},
            "to": {**time, "description": "Exclusive; later than `from`, at most 400 days after it."},
            "interval": {"type": "string", "nullable": True, "enum": [*INTERVALS, None]},
            "group_by": {
                "type": "array",
                "nullable": True,
                "maxItems": MAX_GROUPS,
                "uniqueItems": True,
                "items": _field_names(list(src.fields.values()), with_properties=True),
            },
            "filters": _filters(src),
            "limit": {"type": "integer", "nullable": True, "minimum": 1, "maximum": MAX_LIMIT, "default": 1000},
        },
    }


def query_request_schema() -> dict[str, Any]:
    """The request body of `POST .../query`: one branch per source."""
    return {"anyOf": [_source_query(src) for src in SOURCES.values()]}
