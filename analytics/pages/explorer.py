"""The explorer form: URL parameters <-> the query language's JSON, and a chart of the answer.

The URL holds the whole query (`?source=&measure=&interval=&g1=&g2=&f1_field=&f1_op=&f1_value=...`),
so a result can be bookmarked and shared; the page's range and environment filter apply (SDK events
have no environment). The form does no validation of its own beyond shaping the
JSON: the query language (`analytics.query`) validates it and names the offending member.
"""

from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

from .filters import PageFilters

FIELDS = {
    "events": ["event", "customer_org_id", "user_hash", "path", "environment", "plan", "session_id"],
    "sdk_events": [
        "event_name",
        "user_id",
        "anon_id",
        "platform",
        "os",
        "app_version",
        "sdk_version",
        "locale",
        "country",
        "bundle_version",
        "session_id",
    ],
}
CHOICES = {
    "sources": ["events", "sdk_events"],
    "measures": ["events", "users", "orgs", "sessions"],
    "intervals": ["", "hour", "day", "week", "month"],
    "ops": ["eq", "neq", "in", "not_in", "prefix", "contains", "is_set", "is_not_set"],
    "fields": FIELDS,
    "all_fields": sorted({f for names in FIELDS.values() for f in names}),
}
FILTER_ROWS = 3
LIST_OPS = {"in", "not_in"}
VALUELESS_OPS = {"is_set", "is_not_set"}
DEFAULT_LIMIT = 1000
CHART_SERIES = 8  # lines on a chart: the largest by total; the page says how many were left off
CHART_BARS = 50  # bars on a chart without buckets: the first rows of the answer


@dataclass
class ExplorerForm:
    filters: PageFilters
    source: str = "events"
    measure: str = "events"
    interval: str = "day"
    group_by: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    submitted: bool = False

    def query(self) -> dict[str, Any]:
        """The query language's JSON for this form (the page's range as half-open UTC timestamps)."""
        conditions = []
        for row in self.rows:
            if not row["field"]:
                continue
            condition: dict[str, Any] = {"field": row["field"], "op": row["op"]}
            if row["op"] in LIST_OPS:
                condition["value"] = [v.strip() for v in row["value"].split(",") if v.strip()]
            elif row["op"] not in VALUELESS_OPS:
                condition["value"] = row["value"]
            conditions.append(condition)
        if self.filters.environment and self.source == "events":
            conditions.append({"field": "environment", "op": "eq", "value": self.filters.environment})
        return {
            "source": self.source,
            "measure": self.measure,
            "from": self.filters.start.isoformat().replace("+00:00", "Z"),
            "to": self.filters.end.isoformat().replace("+00:00", "Z"),
            "interval": self.interval or None,
            "group_by": self.group_by,
            "filters": conditions,
            "limit": self.limit,
        }


def form_from_query(query: QueryDict, filters: PageFilters) -> ExplorerForm:
    """Read the form from the URL; `measure` present means the user ran it (a bare URL shows the form)."""
    form = ExplorerForm(filters=filters, submitted="measure" in query)
    form.source = query.get("source") or "events"
    form.measure = query.get("measure") or "events"
    form.interval = query.get("interval", "day")
    form.group_by = [g for g in (query.get("g1", "").strip(), query.get("g2", "").strip()) if g]
    for i in range(1, FILTER_ROWS + 1):
        form.rows.append(
            {
                "n": str(i),
                "field": query.get(f"f{i}_field", "").strip(),
                "op": query.get(f"f{i}_op", "eq"),
                "value": query.get(f"f{i}_value", ""),
            }
        )
    try:
        form.limit = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        form.limit = DEFAULT_LIMIT
    return form


def chart_of(result: dict[str, Any]) -> dict[str, Any]:
    """Chart.js data for an explorer answer: a line per group over buckets, or bars per group."""
    columns: list[str] = result["columns"]
    rows: list[list[Any]] = result["rows"]
    has_bucket = bool(columns) and columns[0] == "bucket"
    group_columns = columns[1 if has_bucket else 0 : -1]

    def group_label(row: list[Any]) -> str:
        values = row[1 if has_bucket else 0 : -1]
        return " · ".join("∅" if v is None else str(v) for v in values) or "value"

    if not has_bucket:
        top = rows[:CHART_BARS]
        return {
            "kind": "bar",
            "labels": [group_label(r) for r in top],
            "datasets": [{"label": result.get("measure", "value"), "data": [r[-1] for r in top]}],
            "shown": len(top),
            "total": len(rows),
            "unit": "bars",
        }
    buckets = sorted({r[0] for r in rows})
    totals: dict[str, int] = {}
    for r in rows:
        totals[group_label(r)] = totals.get(group_label(r), 0) + r[-1]
    groups = sorted(totals, key=lambda g: -totals[g])[:CHART_SERIES]
    values: dict[tuple[str, str], int] = {(r[0], group_label(r)): r[-1] for r in rows}
    return {
        "kind": "line",
        "labels": [b[:16].replace("T", " ") for b in buckets],
        "datasets": [{"label": g, "data": [values.get((b, g), 0) for b in buckets]} for g in groups],
        "grouped": bool(group_columns),
        # The page says when series were left off the chart (the table and the CSV hold them all).
        "shown": len(groups),
        "total": len(totals),
        "unit": "series",
    }
