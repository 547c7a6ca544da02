"""Root URLs: ingest, the analytics API and pages, the OpenAPI document, the admin and the metrics."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from saastracker.metrics import metrics_view

urlpatterns = [
    path("", include("ingest.urls")),
    path("api/v1/analytics/", include("analytics.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("app/", include("analytics.pages.urls")),
    path("", RedirectView.as_view(pattern_name="pages:home", permanent=False), name="root"),
]
