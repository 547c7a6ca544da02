"""Where each analytics request goes: one module per endpoint group under `analytics/api/`."""

from django.urls import path

from .api.apps import AppsView

app_name = "analytics"

urlpatterns = [
    path("apps/", AppsView.as_view(), name="apps"),
    # Per application: apps/<uuid:app_uuid>/...
]
