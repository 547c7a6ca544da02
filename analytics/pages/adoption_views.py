"""A feature's adoption over time (linked from the Features page): weekly orgs and users, and the
organizations that adopted it and the active ones that did not, each linking to its page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps_registry.models import Application

from .filters import PageFilters
from .views import _read, _render, app_page


@require_GET
@app_page
def feature_adoption(request: HttpRequest, app: Application, filters: PageFilters, name: str) -> HttpResponse:
    def load() -> dict:
        adoption = _read(
            "feature_adoption_get",
            app=app,
            feature_name=name,
            date_from=filters.date_from,
            date_to=filters.date_to,
            environment=filters.environment,
        )
        chart = {
            "kind": "line",
            "labels": [w["week"] for w in adoption["weeks"]],
            "datasets": [
                {"label": "Orgs that week", "data": [w["orgs"] for w in adoption["weeks"]]},
                {"label": "Users that week", "data": [w["users"] for w in adoption["weeks"]]},
                {"label": "Orgs adopted to date", "data": [w["orgs_adopted_to_date"] for w in adoption["weeks"]]},
            ],
        }
        return {"adoption": adoption, "chart": chart}

    return _render(request, "analytics/pages/feature_adoption.html", app, filters, "features", load)
