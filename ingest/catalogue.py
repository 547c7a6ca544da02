"""The events the AppDNA SDKs track on their own, by name.

The service knows this catalogue so the API docs can list it and downstream code can tell an
auto-tracked event from a custom one; ingest accepts every other name just the same (a custom
event). Nothing is stored about the distinction: it is a pure function of the name.
"""

SESSION_EVENTS = ("session_start", "session_end", "app_open", "app_close")
PUSH_EVENTS = (
    "push_token_registered",
    "push_permission_granted",
    "push_permission_denied",
    "push_delivered",
    "push_tapped",
)
PURCHASE_EVENTS = (
    "purchase_started",
    "purchase_completed",
    "purchase_failed",
    "purchase_canceled",
    "purchase_pending",
    "restore_started",
    "restore_completed",
)
ONBOARDING_EVENTS = (
    "onboarding_flow_started",
    "onboarding_step_viewed",
    "onboarding_step_completed",
    "onboarding_flow_completed",
    "onboarding_flow_dismissed",
)
PAYWALL_AND_EXPERIMENT_EVENTS = ("paywall_view", "paywall_close", "experiment_exposure")
OTHER_EVENTS = (
    "survey_shown",
    "survey_completed",
    "survey_dismissed",
    "web_entitlement_activated",
    "web_entitlement_expired",
    "deferred_deep_link_resolved",
)

AUTO_TRACKED_EVENTS: frozenset[str] = frozenset(
    SESSION_EVENTS + PUSH_EVENTS + PURCHASE_EVENTS + ONBOARDING_EVENTS + PAYWALL_AND_EXPERIMENT_EVENTS + OTHER_EVENTS
)


def event_is_auto_tracked(*, event_name: str) -> bool:
    """True for a catalogue name; any other name is a custom event (accepted all the same)."""
    return event_name in AUTO_TRACKED_EVENTS
