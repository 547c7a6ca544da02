"""Numbers and times for people: thousands separators, percentages, relative times, labels."""

import json
from datetime import UTC, date, datetime
from typing import Any

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma, naturaltime
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()
NO_VALUE = "\u2013"  # an en dash: a figure that does not exist is not a zero

LABELS = {
    "healthy": "Healthy",
    "watch": "Watch",
    "at_risk": "At risk",
    "inactive": "Inactive",
    "new": "New",
    "usage_drop": "Usage drop",
    "expansion_candidate": "Expansion candidate",
}


@register.filter
def num(value: Any) -> str:
    """12345 -> "12,345"; None -> an en dash."""
    if value is None or value == "":
        return NO_VALUE
    if isinstance(value, float) and not value.is_integer():
        return intcomma(round(value, 1))
    return intcomma(int(value))


@register.filter
def pct(value: float | None) -> str:
    """0.4231 -> "42.3 %"."""
    if value is None:
        return NO_VALUE
    return f"{value * 100:.1f} %"


@register.filter
def ago(value: datetime | date | str | None) -> SafeString | str:
    """A relative time ("3 minutes ago") with the exact UTC time as its tooltip."""
    if value is None or value == "":
        return "never"
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            return value
        value = parsed
    if isinstance(value, datetime):
        exact = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), exact, naturaltime(value))
    today = timezone.now().date()
    days = (today - value).days
    text = "today" if days == 0 else "yesterday" if days == 1 else f"{days} days ago"
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), value.isoformat(), text)


@register.filter
def label(value: str | None) -> str:
    if not value:
        return NO_VALUE
    return LABELS.get(value, value.replace("_", " ").capitalize())


@register.filter
def signal_name(signal: dict | str) -> str:
    """A signal as the API returns it (`{"signal": ..., "active_since": ...}`) or a bare name."""
    if isinstance(signal, dict):
        return str(signal.get("signal") or signal.get("kind") or "")
    return str(signal)


@register.filter
def short(value: Any, length: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= length else text[:length] + "…"


@register.filter
def jsonish(value: Any) -> str:
    """A field of an expanded stream row: objects as indented JSON, the rest as text."""
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    return "null" if value is None else str(value)


@register.filter
def duration(seconds: float | None) -> str:
    """90 -> "1 min 30 s"; 5400 -> "1 h 30 min"; None -> an en dash (a funnel's first step)."""
    if seconds is None or seconds == "":
        return NO_VALUE
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:g} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
