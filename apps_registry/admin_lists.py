"""Admin change lists that stay fast over tens of millions of rows (events, SDK events, identify
links, webhook messages).

What makes a list page slow at that size, and what replaces it here:
- the exact `COUNT(*)` behind the paginator: `EstimatedCountPaginator` counts exactly only up to
  a threshold (a `COUNT` over a `LIMIT`, so it reads at most that many index entries) and past it
  shows PostgreSQL's own estimate for the query (what `EXPLAIN` says), as large Django sites do;
- free-text `icontains` searches: `LargeListMixin.search_lookups` maps a term to exact lookups on
  indexed columns by its shape (a UUID, a message id, anything else), or to a prefix (a b-tree
  range, see `prefix_lookups`) when it ends with `*`; never a scan;
- sorting by any column: lists sort only by their default, index-backed order (`sortable_by = ()`);
  an account admin's list (one company's rows) may use another index-backed order
  (`scoped_ordering`, e.g. the `(company, received_at)` index) instead of walking every company's
  rows along the primary key;
- date hierarchies (a `SELECT DISTINCT date_trunc(...)` over the whole table): replaced by
  "received within" filters, backed by a BRIN index on the time column: a window full of recent
  rows is read from the end of the primary key, a window with few or none from the BRIN ranges;
- filters on rare values (dead letters, rows without consent, a rare webhook type): a partial or
  `(value, id)` index each, so a page never walks the primary key looking for them; values a
  table can never hold are not offered and answer an empty page without a query.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

EXACT_COUNT_UP_TO = 10_000


class EstimatedCountPaginator(Paginator):
    """Exact count up to EXACT_COUNT_UP_TO rows; beyond, the planner's estimate for the same query."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        # Along the first key of the list's own (index-backed) order, selecting only that column: a
        # filter on recent rows stops after the bound, not after a scan, an account admin's count
        # reads the same index as their page, and with nothing else selected it can be an
        # index-only scan (no heap page per counted row).
        order_by = queryset.query.order_by
        first = order_by[0] if order_by and isinstance(order_by[0], str) else "-pk"
        bounded = queryset.order_by(first).values(first.lstrip("-"))[: EXACT_COUNT_UP_TO + 1]
        exact = bounded.count()
        if exact <= EXACT_COUNT_UP_TO:
            self.object_list = _sorted_not_walked(queryset)
            return exact
        return max(exact, _planner_estimate(queryset))


def _sorted_not_walked(queryset: QuerySet) -> QuerySet:
    """The same order, as a sort of the (at most EXACT_COUNT_UP_TO) matching rows.

    For a page of 50 rows PostgreSQL may walk the primary key newest first and filter, betting that
    matches are dense; when its estimate is off (a time window past the last ANALYZE that holds no
    rows, a rare unindexed value) that walk reads the whole table. Once the bounded count has shown
    that few rows match, ordering by an expression no index provides (COALESCE(x, x): same values,
    same order) leaves only plans that fetch the matches through the filter's own index (BRIN for
    time windows, partial indexes for rare states) and sort them, a few milliseconds at most.
    """
    keys: list[Any] = []
    for key in queryset.query.order_by:
        if not isinstance(key, str):
            return queryset
        name = key.lstrip("-")
        expression = Coalesce(name, name)
        keys.append(expression.desc() if key.startswith("-") else expression.asc())
    return queryset.order_by(*keys) if keys else queryset


def _planner_estimate(queryset: QuerySet) -> int:
    """The row estimate of EXPLAIN for the query (no row is read); the table's own for no filter."""
    with connections[queryset.db].cursor() as cursor:
        if not queryset.query.where:  # a partitioned table's rows are its partitions' (ingest/partitions.py)
            cursor.execute(
                "SELECT coalesce(sum(greatest(reltuples, 0)), 0)::bigint FROM pg_class"
                " WHERE oid IN (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf)",
                [queryset.model._meta.db_table],
            )
            return int(cursor.fetchone()[0])
        # The list's own rows, without the joins of its select_related (one row each, so the same
        # estimate): planned per partition of a partitioned table, they made the EXPLAIN cost 5-6 ms
        # over seven partitions instead of under 1.
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def time_window_filter(
    field: str, *, title: str, parameter: str, narrow: Callable[[QuerySet, datetime], QuerySet] | None = None
) -> type[admin.SimpleListFilter]:
    """A "<title> within" filter (last hour, 24 h, 7 days, 30 days) on `field`.

    `narrow(queryset, since)` may add what the table knows of where such rows lie (the raw tables:
    an id bound that skips the weekly partitions closed before `since`, see ingest/partitions.py).
    """
    windows = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
    labels = {"1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days"}

    class TimeWindowFilter(admin.SimpleListFilter):
        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return list(labels.items())

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            window = windows.get(self.value() or "")
            if window is None:
                return queryset
            since = timezone.now() - window
            queryset = queryset.filter(**{f"{field}__gte": since})
            return narrow(queryset, since) if narrow else queryset

    TimeWindowFilter.title = title
    TimeWindowFilter.parameter_name = parameter
    return TimeWindowFilter


def choice_filter(
    field: str, choices: list[tuple[Any, str]], *, title: str, parameter: str | None = None
) -> type[admin.SimpleListFilter]:
    """A filter offering only the values this table can hold; any other value is an empty page.

    A plain field filter offers every choice of the field, and a value no row holds would make
    PostgreSQL walk the whole primary key to fill a newest-first page.
    """
    allowed = {str(value): value for value, _ in choices}

    class ChoiceFilter(admin.SimpleListFilter):
        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(str(value), label) for value, label in choices]

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            value = self.value()
            if value is None:
                return queryset
            if value not in allowed:
                return queryset.none()
            return queryset.filter(**{field: allowed[value]})

    ChoiceFilter.title = title
    ChoiceFilter.parameter_name = parameter or f"{field}__exact"
    return ChoiceFilter


PREFIX_MIN_CHARS = 3


def as_prefix(term: str) -> str | None:
    """`abc*` means "starts with abc" (at least PREFIX_MIN_CHARS characters); None: not a prefix search."""
    term = term.strip()
    if not term.endswith("*"):
        return None
    prefix = term.rstrip("*")
    return prefix if len(prefix) >= PREFIX_MIN_CHARS and "*" not in prefix else None


def prefix_lookups(field: str, prefix: str) -> dict[str, str]:
    """`field` starts with `prefix`, as a range the field's b-tree index can read.

    PostgreSQL turns `LIKE 'x%'` into an index range only under the "C" collation (or with a
    pattern_ops index); under C.UTF-8 or a language collation it scans the whole index. Under a
    code-point collation such as C.UTF-8 every string starting with `prefix` lies in
    [prefix, prefix + U+10FFFF); the LIKE keeps the answer exact whatever the collation.
    """
    return {f"{field}__gte": prefix, f"{field}__lt": prefix + "\U0010ffff", f"{field}__startswith": prefix}


def as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


class IndexOrderedChangeList(ChangeList):
    """Ignores `?o=`: the list keeps its model admin's (index-backed) ordering whatever is asked."""

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list[Any]:
        return list(self.model_admin.get_ordering(request) or ["-pk"])  # every list here orders by its key

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # A single page (Django lists it without the paginator's slice): sorted too when few match.
        results = self.result_list
        if self.result_count <= EXACT_COUNT_UP_TO and isinstance(results, QuerySet) and not results.query.is_sliced:
            self.result_list = _sorted_not_walked(results)


class LargeListMixin:
    """Estimated counts, no column sorting, no full count, no search of unindexed text."""

    paginator: ClassVar[type] = EstimatedCountPaginator
    # Rendering a row costs ~1-2 ms of Python (each cell formatted, a datetime localised); the
    # database side of a page is a few ms. 50 rows keep a page well under 300 ms on a busy machine;
    # these lists are for finding rows (search, filters), not for reading through.
    list_per_page = 50
    show_full_result_count = False
    sortable_by: ClassVar[list[str] | tuple[str, ...] | None] = ()
    # The order of a list narrowed to one company (account admins), when an index serves it better
    # than the primary key: None keeps `ordering`.
    scoped_ordering: ClassVar[tuple[str, ...] | None] = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return IndexOrderedChangeList

    def action_checkbox(self, obj: Any) -> SafeString:
        """Django's row checkbox, same HTML, without rendering a form-widget template per row (a
        fifth of a 50-row page's time)."""
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            label,
        )

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        read_scope = getattr(self, "read_scope", None)
        if self.scoped_ordering and read_scope is not None and read_scope(request) is not None:
            return self.scoped_ordering
        return tuple(getattr(self, "ordering", None) or ("-pk",))

    def search_lookups(self, term: str) -> dict[str, Any] | None:
        """The exact, index-backed lookups for a search term; None: no match possible."""
        raise NotImplementedError

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        lookups = self.search_lookups(term)
        if lookups is None:
            return queryset.none(), False
        return queryset.filter(**lookups), False


def model_ids(model: type[Model]) -> list[int]:
    """All primary keys of a small table (applications): lets a search use an (application, x) index."""
    return list(model._default_manager.values_list("pk", flat=True))
