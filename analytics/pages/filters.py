"""The filters every page shares, read from and written back to the URL so any view can be bookmarked.

`range` is a preset of 7, 30 or 90 days ending today (UTC, both ends inclusive, as in the read API);
`from`/`to` (YYYY-MM-DD, inclusive UTC days, at most 366 days) a custom range instead of a preset;
`env` an environment or nothing for all of them. A `range` that is no preset, or dates that do not
parse, are a visible error on the page (`PageFilters.error`), never a silent fall-back.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django.http import QueryDict
from django.utils import timezone

RANGE_PRESETS = (7, 30, 90)
DEFAULT_RANGE = 30
ENVIRONMENT_MAX_LENGTH = 32
MAX_CUSTOM_DAYS = 366


@dataclass(frozen=True)
class PageFilters:
    days: int
    environment: str | None
    date_to: date
    custom: bool = False  # `from`/`to` rather than a preset
    error: str | None = None  # what was wrong with the URL's range (the page says so)

    @property
    def date_from(self) -> date:
        return self.date_to - timedelta(days=self.days - 1)

    @property
    def interval(self) -> str:
        """Days for a month or less; weeks beyond, so a 90-day chart stays readable."""
        return "day" if self.days <= 31 else "week"

    @property
    def start(self) -> datetime:
        """The range as half-open timestamps (the explorer's query language)."""
        return datetime.combine(self.date_from, datetime.min.time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.date_to + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    def params(self, **overrides: object) -> dict[str, str]:
        """The URL parameters of these filters (defaults left out), with `overrides` applied."""
        values: dict[str, object] = {"range": self.days, "env": self.environment or ""}
        if self.custom:
            values = {"from": self.date_from.isoformat(), "to": self.date_to.isoformat(), "env": values["env"]}
        values.update(overrides)
        values = {k: v for k, v in values.items() if v not in ("", None)}
        if values.get("range") == DEFAULT_RANGE:
            del values["range"]
        return {k: str(v) for k, v in values.items()}

    @property
    def encoded(self) -> str:
        """The filters' URL parameters without a leading `?` (empty for the defaults)."""
        return urlencode(self.params())

    def querystring(self, **overrides: object) -> str:
        encoded = urlencode(self.params(**overrides))
        return f"?{encoded}" if encoded else ""


def filters_from_query(query: QueryDict) -> PageFilters:
    """The URL's range and environment; a bad range is kept as `error` (shown) with the default range."""
    environment = (query.get("env") or "").strip()[:ENVIRONMENT_MAX_LENGTH] or None
    today = timezone.now().date()
    default = PageFilters(days=DEFAULT_RANGE, environment=environment, date_to=today)
    if query.get("from") or query.get("to"):
        return _custom(query, default)
    raw = query.get("range")
    if raw is None or raw == "":
        return default
    presets = ", ".join(str(p) for p in RANGE_PRESETS)
    if not raw.isdigit() or int(raw) not in RANGE_PRESETS:
        error = (
            f"Unknown range `{raw[:20]}`: choose {presets} days, or a from/to date. "
            f"Showing the last {DEFAULT_RANGE} days."
        )
        return PageFilters(days=DEFAULT_RANGE, environment=environment, date_to=today, error=error)
    return PageFilters(days=int(raw), environment=environment, date_to=today)


def _custom(query: QueryDict, default: PageFilters) -> PageFilters:
    def bad(message: str) -> PageFilters:
        return PageFilters(
            days=default.days,
            environment=default.environment,
            date_to=default.date_to,
            error=f"{message} Showing the last {DEFAULT_RANGE} days.",
        )

    try:
        date_to = date.fromisoformat(query.get("to") or default.date_to.isoformat())
    except ValueError:
        return bad("`to` must be a date (YYYY-MM-DD).")
    try:
        date_from = date.fromisoformat(query.get("from") or (date_to - timedelta(days=DEFAULT_RANGE - 1)).isoformat())
    except (ValueError, OverflowError):
        return bad("`from` must be a date (YYYY-MM-DD).")
    if date_from > date_to:
        return bad("`from` must not be after `to`.")
    days = (date_to - date_from).days + 1
    if days > MAX_CUSTOM_DAYS:
        return bad(f"A range is at most {MAX_CUSTOM_DAYS} days.")
    if date_to.year > 9998 or date_from.year < 1971:
        return bad("Dates run from 1971 to 9998.")
    return PageFilters(days=days, environment=default.environment, date_to=date_to, custom=True)
