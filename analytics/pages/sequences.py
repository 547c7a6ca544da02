"""The Funnels and Retention forms: URL parameters <-> the funnel and retention JSON, charts, templates.

The URL holds the whole query, so a result can be bookmarked, shared and saved:
- funnel: `?source=&s1=&s1_field=&s1_op=&s1_value=&s2=...&window=&count_by=&breakdown=&run=1`
  (one optional filter per step on the page; the API takes up to 20);
- retention: `?source=&start=&return=&period=&periods=&count_by=&run=1`.
`add` asks for one more (empty) step and `remove=k` drops step k, without JavaScript. Like the
explorer's form, these do no validation of their own beyond shaping the JSON: the query language
validates it and names the offending member, which the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.http import QueryDict

from ..query.funnel import MAX_STEPS, MIN_STEPS
from .explorer import FIELDS
from .filters import PageFilters

WINDOWS = [(300, "5 minutes"), (3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"), (30 * 86400, "30 days")]
DEFAULT_WINDOW = 86400
OPS = ["eq", "neq", "in", "not_in", "prefix", "contains", "is_set", "is_not_set"]
PERIODS = ["day", "week", "month"]

# One click on the page: the SDK's auto-tracked sequences (README "SDK events").
TEMPLATES = {
    "onboarding": (
        "Onboarding",
        ["onboarding_flow_started", "onboarding_step_viewed", "onboarding_step_completed", "onboarding_flow_completed"],
    ),
    "paywall": ("Paywall to purchase", ["paywall_view", "purchase_started", "purchase_completed"]),
    "push": ("Push", ["push_delivered", "push_tapped"]),
}


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass
class FunnelForm:
    filters: PageFilters
    source: str = "events"
    steps: list[dict[str, str]] = field(default_factory=list)
    window: str = str(DEFAULT_WINDOW)
    count_by: str = "users"
    breakdown: str = ""
    submitted: bool = False

    def query(self) -> dict[str, Any]:
        steps = []
        for step in self.steps:
            item: dict[str, Any] = {"event": step["event"]}
            if step["field"]:
                condition: dict[str, Any] = {"field": step["field"], "op": step["op"]}
                if step["op"] in ("in", "not_in"):
                    condition["value"] = [v.strip() for v in step["value"].split(",") if v.strip()]
                elif step["op"] not in ("is_set", "is_not_set"):
                    condition["value"] = step["value"]
                item["filters"] = [condition]
            steps.append(item)
        try:
            window: object = int(self.window)
        except ValueError:
            window = self.window  # refused by validation, naming `window_seconds`
        query: dict[str, Any] = {
            "source": self.source,
            "steps": steps,
            "window_seconds": window,
            "count_by": self.count_by,
            "from": _iso(self.filters.start),
            "to": _iso(self.filters.end),
        }
        if self.breakdown:
            query["breakdown"] = self.breakdown
        if self.filters.environment and self.source == "events":
            query["environment"] = self.filters.environment
        return query

    def params(self, **extra: str) -> dict[str, str]:
        """This form's URL parameters (with the page's range and environment)."""
        values = {"source": self.source, "window": self.window, "count_by": self.count_by}
        if self.breakdown:
            values["breakdown"] = self.breakdown
        for i, step in enumerate(self.steps, start=1):
            values[f"s{i}"] = step["event"]
            if step["field"]:
                values.update({f"s{i}_field": step["field"], f"s{i}_op": step["op"], f"s{i}_value": step["value"]})
        return {**self.filters.params(), **values, **extra}

    def querystring(self, **extra: str) -> str:
        return urlencode(self.params(**extra))


def funnel_form(query: QueryDict, filters: PageFilters) -> FunnelForm:
    template = TEMPLATES.get(query.get("template", ""))
    form = FunnelForm(filters=filters, submitted="run" in query or template is not None)
    form.source = "sdk_events" if template else (query.get("source") or "events")
    form.window = query.get("window") or str(DEFAULT_WINDOW)
    form.count_by = query.get("count_by") or "users"
    form.breakdown = (query.get("breakdown") or "").strip()
    if template:
        form.steps = [{"event": name, "field": "", "op": "eq", "value": ""} for name in template[1]]
        return form
    for i in range(1, MAX_STEPS + 1):
        if f"s{i}" not in query:
            continue
        form.steps.append({
            "event": query.get(f"s{i}", "").strip(),
            "field": query.get(f"s{i}_field", "").strip(),
            "op": query.get(f"s{i}_op", "eq"),
            "value": query.get(f"s{i}_value", ""),
        })  # fmt: skip
    remove = query.get("remove", "")
    if remove.isdigit() and 1 <= int(remove) <= len(form.steps) and len(form.steps) > MIN_STEPS:
        del form.steps[int(remove) - 1]
        form.submitted = False
    if "add" in query and len(form.steps) < MAX_STEPS:
        form.steps.append({"event": "", "field": "", "op": "eq", "value": ""})
        form.submitted = False
    while len(form.steps) < MIN_STEPS:
        form.steps.append({"event": "", "field": "", "op": "eq", "value": ""})
    return form


def funnel_chart(result: dict[str, Any]) -> dict[str, Any]:
    """Bars per step; each label carries the conversion from the previous step."""
    labels = []
    for i, step in enumerate(result["steps"]):
        suffix = "" if i == 0 else f" ({round(step['conversion_from_previous'] * 100)} % of previous)"
        labels.append(f"{i + 1}. {step['event']}{suffix}")
    return {
        "kind": "bar",
        "labels": labels,
        "datasets": [{"label": "Reached", "data": [s["count"] for s in result["steps"]]}],
    }


@dataclass
class RetentionForm:
    filters: PageFilters
    source: str = "events"
    start: str = ""
    ret: str = "*"
    period: str = "week"
    periods: str = "8"
    count_by: str = "users"
    submitted: bool = False

    def query(self) -> dict[str, Any]:
        try:
            periods: object = int(self.periods)
        except ValueError:
            periods = self.periods
        query: dict[str, Any] = {
            "source": self.source,
            "start_event": self.start,
            "return_event": self.ret,
            "period": self.period,
            "periods": periods,
            "count_by": self.count_by,
            "from": _iso(self.filters.start),
            "to": _iso(self.filters.end),
        }
        if self.filters.environment and self.source == "events":
            query["environment"] = self.filters.environment
        return query

    def params(self, **extra: str) -> dict[str, str]:
        values = {
            "source": self.source,
            "start": self.start,
            "return": self.ret,
            "period": self.period,
            "periods": self.periods,
            "count_by": self.count_by,
        }
        return {**self.filters.params(), **values, **extra}

    def querystring(self, **extra: str) -> str:
        return urlencode(self.params(**extra))


def retention_form(query: QueryDict, filters: PageFilters) -> RetentionForm:
    form = RetentionForm(filters=filters, submitted="run" in query)
    form.source = query.get("source") or "events"
    form.start = (query.get("start") or "").strip()
    form.ret = (query.get("return") or "*").strip()
    form.period = query.get("period") or "week"
    form.periods = query.get("periods") or "8"
    form.count_by = query.get("count_by") or "users"
    return form


def shade(fraction: float) -> int:
    """A cohort cell's shade class, 0 to 10 (the pages' CSP forbids inline styles)."""
    return max(0, min(10, round(fraction * 10)))


def retention_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for cohort in result["cohorts"]:
        cells = []
        for n, count in enumerate(cohort["retained"]):
            fraction = cohort["fractions"][n]
            done = cohort["complete"][n]
            cells.append({"count": count, "fraction": fraction, "shade": shade(fraction), "complete": done})
        rows.append({"start": cohort["start"], "size": cohort["size"], "cells": cells})
    return rows


def retention_chart(result: dict[str, Any]) -> dict[str, Any]:
    """The weighted average curve (complete periods only; an incomplete one is left as a gap)."""
    return {
        "kind": "line",
        "format": "percent",
        "labels": [f"{result['period'].capitalize()} {n}" for n in range(1, len(result["average"]) + 1)],
        "datasets": [{"label": "Retained (average)", "data": result["average"]}],
    }


CHOICES = {
    "sources": ["events", "sdk_events"],
    "count_by": ["users", "orgs"],
    "windows": WINDOWS,
    "ops": OPS,
    "periods": PERIODS,
    "fields": FIELDS,
    "templates": [(key, label) for key, (label, _steps) in TEMPLATES.items()],
}
