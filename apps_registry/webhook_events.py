"""The webhook event types a company's endpoints subscribe to, and what raises each: one home for both producers.

`ingest` (an ingested event by name, `EVENT_TRIGGERS`; identify calls) and `analytics` (a raised
signal) both produce webhooks; `webhooks` delivers them. All three read this table, which lives in
the layer they all build on, so that `ingest` does not import `webhooks` and `webhooks` imports
neither `analytics` nor `revenue`.
"""

from django.db import models


class WebhookEventType(models.TextChoices):
    ONBOARDING_STARTED = "onboarding.started"
    ONBOARDING_COMPLETED = "onboarding.completed"
    EXPERIMENT_EXPOSURE = "experiment.exposure"
    USER_IDENTIFIED = "user.identified"
    SIGNAL_RAISED = "signal.raised"  # analytics: an organization signal's new activation (issue 20)


# Ingested event name -> webhook event type (v1 events, and SDK events with analytics consent).
EVENT_TRIGGERS = {
    "onboarding_flow_started": WebhookEventType.ONBOARDING_STARTED,
    "onboarding_flow_completed": WebhookEventType.ONBOARDING_COMPLETED,
    "experiment_exposure": WebhookEventType.EXPERIMENT_EXPOSURE,
}
