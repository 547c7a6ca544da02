"""Where each ingest request goes: one module per protocol under `ingest/api/`."""

from django.urls import path

from .api.health import HealthView, livez, readyz
from .api.sdk import SdkEventsView, SdkIdentifyView
from .api.v1_events import V1EventsView

urlpatterns = [
    path("v1/events", V1EventsView.as_view(), name="v1-events"),
    path("api/v1/ingest/events", SdkEventsView.as_view(), name="sdk-events"),
    path("api/v1/ingest/identify", SdkIdentifyView.as_view(), name="sdk-identify"),
    path("api/v1/ingest/health", HealthView.as_view(), name="sdk-health"),
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
]
