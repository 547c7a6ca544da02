"""Where each analytics request goes: one module per endpoint group under `analytics/api/`."""

from django.urls import path

from .api.apps import AppsView
from .api.query import QueryView
from .api.stream import StreamView

app_name = "analytics"

urlpatterns = [
    path("apps/", AppsView.as_view(), name="apps"),
    # Per application: apps/<uuid:app_uuid>/...
    # Issue 11: Event stream and Event explorer.
    path("apps/<uuid:app_uuid>/stream", StreamView.as_view(), name="stream"),
    path("apps/<uuid:app_uuid>/query", QueryView.as_view(), name="query"),
]
