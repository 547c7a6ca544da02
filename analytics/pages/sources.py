"""Where the pages get their figures: the analytics selectors, the stream and the explorer.

The pages never compute a metric themselves. Each function here is looked up by its contracted
name when it is called, so a page whose selector is not installed answers with its error state
("not available") instead of the whole app failing to import.
"""

import importlib
from collections.abc import Callable
from typing import Any

SOURCES: dict[str, str] = {
    "activity_get": "analytics.selectors",
    "active_users_get": "analytics.selectors",
    "pages_list": "analytics.selectors",
    "page_trend_get": "analytics.selectors",
    "features_list": "analytics.selectors",
    "organizations_list": "analytics.selectors",
    "organizations_with_revenue": "analytics.revenue_orgs",  # issue 20
    "organization_with_revenue": "analytics.revenue_orgs",
    "is_company_admin": "revenue.services",
    "organization_get": "analytics.selectors",
    "signal_dismiss": "analytics.services",
    "stream_page_get": "analytics.stream",
    "query_run": "analytics.query",
    "funnel_run": "analytics.query.funnel",
    "funnel_dropoff": "analytics.query.funnel",
    "retention_run": "analytics.query.retention",
    "insight_run": "analytics.insights",
    "feature_adoption_get": "analytics.adoption",
}


class SourceMissing(LookupError):
    """The selector a page needs is not part of this build."""


def source(name: str) -> Callable[..., Any]:
    module_name = SOURCES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise SourceMissing(name) from exc
        raise
    func = getattr(module, name, None)
    if func is None:
        raise SourceMissing(name)
    return func
