"""The filters every page shares, read from and written back to the URL so any view can be bookmarked.

`range` is a preset of 7, 30 or 90 days ending today (UTC, both ends inclusive, as in the read API);
`env` an environment or nothing for all of them.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django.http import QueryDict
from django.utils import timezone

RANGE_PRESETS = (7, 30, 90)
DEFAULT_RANGE = 30
ENVIRONMENT_MAX_LENGTH = 32


@dataclass(frozen=True)
class PageFilters:
    days: int
    environment: str | None
    date_to: date

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
        values.update(overrides)
        values = {k: v for k, v in values.items() if v not in ("", None)}
        if values.get("range") == DEFAULT_RANGE:
            del values["range"]
        return {k: str(v) for k, v in values.items()}

    def querystring(self, **overrides: object) -> str:
        encoded = urlencode(self.params(**overrides))
        return f"?{encoded}" if encoded else ""


def filters_from_query(query: QueryDict) -> PageFilters:
    """Unknown or malformed values fall back to the defaults rather than failing the page."""
    try:
        days = int(query.get("range", DEFAULT_RANGE))
    except ValueError:
        days = DEFAULT_RANGE
    if days not in RANGE_PRESETS:
        days = DEFAULT_RANGE
    environment = (query.get("env") or "").strip()[:ENVIRONMENT_MAX_LENGTH] or None
    return PageFilters(days=days, environment=environment, date_to=timezone.now().date())
