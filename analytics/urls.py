"""Where each analytics request goes: one module per endpoint group under `analytics/api/`."""

from django.urls import path, re_path

from .api.activity import ActiveUsersView, ActivityView
from .api.adoption import FeatureAdoptionView
from .api.apps import AppsView
from .api.base import not_found
from .api.features import FeaturesView, FeatureView
from .api.funnel import FunnelDropoffView, FunnelView, RetentionView
from .api.health import HealthBacktestView, HealthModelPreviewView, HealthModelView
from .api.insights import InsightsView, InsightView
from .api.organizations import OrganizationsView, OrganizationView, SignalDismissView
from .api.pages import PagesView, PageTrendView
from .api.query import QueryView
from .api.revenue import (
    ImportsView,
    MrrTrendView,
    NotesView,
    NoteView,
    OrganizationsImportView,
    RevenueHealthView,
    RevenueView,
    SignalsView,
    SubscriptionsImportView,
    TagsView,
    TagView,
)
from .api.stream import StreamView

app_name = "analytics"

urlpatterns = [
    path("apps/", AppsView.as_view(), name="apps"),
    # Per application: apps/<uuid:app_uuid>/...
    # issue 10: rollup metrics, features, organizations
    path("apps/<uuid:app_uuid>/activity", ActivityView.as_view(), name="activity"),
    path("apps/<uuid:app_uuid>/active-users", ActiveUsersView.as_view(), name="active-users"),
    path("apps/<uuid:app_uuid>/pages", PagesView.as_view(), name="pages"),
    path("apps/<uuid:app_uuid>/pages/trend", PageTrendView.as_view(), name="page-trend"),
    path("apps/<uuid:app_uuid>/features", FeaturesView.as_view(), name="features"),
    path("apps/<uuid:app_uuid>/features/<str:name>/adoption", FeatureAdoptionView.as_view(), name="feature-adoption"),
    path("apps/<uuid:app_uuid>/features/<str:name>", FeatureView.as_view(), name="feature"),
    path("apps/<uuid:app_uuid>/organizations", OrganizationsView.as_view(), name="organizations"),
    path("apps/<uuid:app_uuid>/organizations/<str:customer_org_id>", OrganizationView.as_view(), name="organization"),
    path(
        "apps/<uuid:app_uuid>/organizations/<str:customer_org_id>/signals/<str:signal>/dismiss",
        SignalDismissView.as_view(),
        name="signal-dismiss",
    ),
    # issue 19: the health model (tuning, preview, change log) and its backtest
    path("apps/<uuid:app_uuid>/health/model", HealthModelView.as_view(), name="health-model"),
    path("apps/<uuid:app_uuid>/health/model/preview", HealthModelPreviewView.as_view(), name="health-preview"),
    path("apps/<uuid:app_uuid>/health/backtest", HealthBacktestView.as_view(), name="health-backtest"),
    # Issue 11: Event stream and Event explorer.
    path("apps/<uuid:app_uuid>/stream", StreamView.as_view(), name="stream"),
    path("apps/<uuid:app_uuid>/query", QueryView.as_view(), name="query"),
    # Issue 21: funnels and retention.
    path("apps/<uuid:app_uuid>/funnel", FunnelView.as_view(), name="funnel"),
    path("apps/<uuid:app_uuid>/funnel/dropoff", FunnelDropoffView.as_view(), name="funnel-dropoff"),
    path("apps/<uuid:app_uuid>/retention", RetentionView.as_view(), name="retention"),
    path("apps/<uuid:app_uuid>/insights", InsightsView.as_view(), name="insights"),
    path("apps/<uuid:app_uuid>/insights/<int:insight_id>", InsightView.as_view(), name="insight"),
    # Issue 20: revenue (imports, figures, Revenue × Health), notes and tags.
    path("apps/<uuid:app_uuid>/imports", ImportsView.as_view(), name="imports"),
    path("apps/<uuid:app_uuid>/imports/organizations", OrganizationsImportView.as_view(), name="import-orgs"),
    path("apps/<uuid:app_uuid>/imports/subscriptions", SubscriptionsImportView.as_view(), name="import-subs"),
    path("apps/<uuid:app_uuid>/revenue", RevenueView.as_view(), name="revenue"),
    path("apps/<uuid:app_uuid>/revenue/mrr", MrrTrendView.as_view(), name="revenue-mrr"),
    path("apps/<uuid:app_uuid>/revenue-health", RevenueHealthView.as_view(), name="revenue-health"),
    path("apps/<uuid:app_uuid>/signals", SignalsView.as_view(), name="signals"),
    path("apps/<uuid:app_uuid>/organizations/<str:customer_org_id>/notes", NotesView.as_view(), name="notes"),
    path(
        "apps/<uuid:app_uuid>/organizations/<str:customer_org_id>/notes/<int:note_id>",
        NoteView.as_view(),
        name="note",
    ),
    path("apps/<uuid:app_uuid>/organizations/<str:customer_org_id>/tags", TagsView.as_view(), name="tags"),
    path("apps/<uuid:app_uuid>/organizations/<str:customer_org_id>/tags/<str:label>", TagView.as_view(), name="tag"),
    # Last: anything else (an app_uuid that is no uuid, a name with a `/`) is a 404 in the error shape.
    re_path(r"", not_found, name="not-found"),
]
