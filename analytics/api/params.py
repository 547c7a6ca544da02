"""Query parameters shared by the metric endpoints: the window (`from`, `to` or `range`), `environment`, paging."""

from datetime import date, timedelta

from rest_framework import serializers
from rest_framework.request import Request

from ..selectors import default_window, invalid_parameter

MAX_WINDOW_DAYS = 366
RANGE_PRESETS = [7, 30, 90]

# `from` is a Python keyword, hence the functional form.
WindowSerializer = type(
    "WindowSerializer",
    (serializers.Serializer,),
    {
        "from": serializers.DateField(
            required=False,
            help_text=f"First UTC day (YYYY-MM-DD), default 29 days before `to`. Not after `to`, and the window "
            f"is at most {MAX_WINDOW_DAYS} days (else a 400).",
        ),
        "to": serializers.DateField(required=False, help_text="Last UTC day, inclusive (YYYY-MM-DD), default today."),
        "range": serializers.ChoiceField(
            choices=RANGE_PRESETS,
            required=False,
            allow_blank=True,
            help_text="A preset instead of `from`: the last 7, 30 or 90 UTC days ending on `to` (default today). "
            "Any other value is a 400 (never a silent default); not together with `from`.",
            error_messages={"invalid_choice": "Must be one of 7, 30 or 90 (days); `{input}` is not."},
        ),
        "environment": serializers.CharField(
            required=False, allow_blank=True, max_length=32, help_text="Only this environment; all when absent."
        ),
    },
)


def parse(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """Validated query parameters, or a 400 in the project's error shape naming each bad parameter."""
    serializer = serializer_class(data=request.query_params)
    if not serializer.is_valid():
        field, messages = next(iter(serializer.errors.items()))
        raise invalid_parameter(field, str(messages[0]))
    return dict(serializer.validated_data)


def window(params: dict) -> tuple[date, date, str | None]:
    """(from, to, environment) with the defaults; at most MAX_WINDOW_DAYS days, from ≤ to."""
    default_from, default_to = default_window()
    date_to = params.get("to") or default_to
    preset = params.get("range")
    if preset not in (None, ""):
        if params.get("from"):
            raise invalid_parameter("range", "Give `range` or `from`, not both.")
        default_from, default_to = default_to - timedelta(days=int(preset) - 1), default_to
    try:
        date_from = params.get("from") or (date_to - (default_to - default_from))
    except OverflowError:  # `to` in the first days of year 1: the window starts on the first day there is
        date_from = date.min
    if date_from > date_to:
        raise invalid_parameter("from", "Must not be after `to`.")
    if date_to - date_from >= timedelta(days=MAX_WINDOW_DAYS):
        raise invalid_parameter("from", f"The window is at most {MAX_WINDOW_DAYS} days.")
    return date_from, date_to, params.get("environment") or None
