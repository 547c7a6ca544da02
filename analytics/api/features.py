"""`apps/{app_uuid}/features`: adoption per feature (GET), define one (POST); `features/{name}` (DELETE).

Features can be kept as code by programs: POST creates, DELETE removes; both need an owner or admin
of the app's company (or a superuser), by session or personal API key. Members only read.
"""

import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from ingest.errors import ApiError

from ..models import (
    FEATURE_EVENTS_MAX,
    FEATURE_PREFIX_MAX_LENGTH,
    FEATURE_PREFIXES_MAX,
    FEATURES_PER_APP_MAX,
    Feature,
    Source,
)
from ..selectors import application_active_check, application_writable, features_list
from ..services import feature_create, feature_delete
from .base import AnalyticsView
from .openapi import NOT_BLANK
from .params import WindowSerializer, parse, window
from .parsers import JsonBodyParser


class FeaturesParams(WindowSerializer):
    source = serializers.ChoiceField(choices=Source.values, default=Source.EVENTS)


class _Text(serializers.CharField):
    """A JSON string only: DRF's CharField takes `0` or `true` as "0" or "True", which the document refuses."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class _Pattern(serializers.RegexField):
    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class FeatureInput(serializers.Serializer):
    name = _Pattern(r"^[^/]+$", max_length=100, help_text="Unique per app; no `/`.")
    events = serializers.ListField(
        child=_Text(max_length=255), required=False, default=list, max_length=FEATURE_EVENTS_MAX
    )
    path_prefixes = serializers.ListField(
        child=_Text(max_length=FEATURE_PREFIX_MAX_LENGTH),
        required=False,
        default=list,
        max_length=FEATURE_PREFIXES_MAX,
    )


# The request body as the view accepts it. Beyond what FeatureInput's fields say: `events` or
# `path_prefixes` must hold at least one value (`anyOf`), and every string must hold more than
# whitespace (DRF trims it, then refuses a blank).
_FEATURE_INPUT_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "maxLength": 100,
            "pattern": rf"^[^/]*{NOT_BLANK[:-1]}/][^/]*$",
            "description": "Unique per app; no `/`; not blank.",
        },
        "events": {
            "type": "array",
            "maxItems": FEATURE_EVENTS_MAX,
            "items": {"type": "string", "maxLength": 255, "pattern": NOT_BLANK},
        },
        "path_prefixes": {
            "type": "array",
            "maxItems": FEATURE_PREFIXES_MAX,
            "items": {"type": "string", "maxLength": FEATURE_PREFIX_MAX_LENGTH, "pattern": NOT_BLANK},
            "description": f"Path prefixes of at most {FEATURE_PREFIX_MAX_LENGTH} characters (the rollups keep "
            "that much of a path).",
        },
    },
    "anyOf": [
        {"required": ["events"], "properties": {"events": {"minItems": 1}}},
        {"required": ["path_prefixes"], "properties": {"path_prefixes": {"minItems": 1}}},
    ],
    "description": (
        f"At least one event name or path prefix; at most {FEATURE_EVENTS_MAX} event names and "
        f"{FEATURE_PREFIXES_MAX} path prefixes, and at most {FEATURES_PER_APP_MAX} features per application "
        "(a 400 naming `name` past it)."
    ),
}

_FEATURE: dict[str, serializers.Field] = {
    "name": serializers.CharField(),
    "events": serializers.ListField(child=serializers.CharField()),
    "path_prefixes": serializers.ListField(child=serializers.CharField()),
}


def _feature_json(feature: Feature) -> dict:
    return {"name": feature.name, "events": list(feature.events), "path_prefixes": list(feature.path_prefixes)}


class FeaturesView(AnalyticsView):
    parser_classes = [JsonBodyParser]

    @extend_schema(
        tags=["analytics"],
        summary="Feature adoption",
        description=(
            "Per feature (any of its event names, or any path starting with one of its prefixes): orgs that used it "
            "at least once in the window / orgs active in the window, and the distinct users who used it. A feature "
            "defined today applies to every day the rollups hold."
        ),
        parameters=[FeaturesParams],
        responses={
            200: inline_serializer(
                "Features",
                {
                    "features": inline_serializer(
                        "FeatureAdoption",
                        {
                            **_FEATURE,
                            "orgs_adopted": serializers.IntegerField(),
                            "orgs_active": serializers.IntegerField(),
                            "adoption": serializers.FloatField(),
                            "users": serializers.IntegerField(),
                        },
                        many=True,
                    )
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(FeaturesParams, request)
        date_from, date_to, environment = window(params)
        return Response(
            features_list(
                app=app, date_from=date_from, date_to=date_to, environment=environment, source=params["source"]
            )
        )

    @extend_schema(
        tags=["analytics"],
        summary="Define a feature (owners, admins, superusers)",
        request={"application/json": _FEATURE_INPUT_SCHEMA},
        responses={
            201: inline_serializer("Feature", _FEATURE),
            400: OpenApiResponse(
                description=(
                    "Invalid definition, or past a cap: `details[0].field` names the member "
                    f"(`events`, `path_prefixes`, or `name` when the app already defines {FEATURES_PER_APP_MAX})."
                )
            ),
            403: OpenApiResponse(
                description="Members may only read; `application_inactive`: the application is deactivated"
            ),
            409: OpenApiResponse(description="A feature of that name exists"),
        },
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        if not application_writable(user=request.user, app=app):
            raise PermissionDenied("Only owners and admins of the company may define features.")
        application_active_check(app=app)
        serializer = FeatureInput(data=request.data)
        if not serializer.is_valid():
            field, messages = next(iter(serializer.errors.items()))
            raise ApiError(
                status_code=400,
                code="validation_failed",
                message="Invalid feature.",
                details=[{"field": field, "message": str(messages[0] if isinstance(messages, list) else messages)}],
            )
        try:
            with transaction.atomic():
                feature = feature_create(app=app, **serializer.validated_data)
        except DjangoValidationError as exc:
            if Feature.objects.filter(application=app, name=serializer.validated_data["name"]).exists():
                raise ApiError(status_code=409, code="conflict", message="A feature of that name exists.") from exc
            details = [
                {"field": field, "message": " ".join(messages)}
                for field, messages in getattr(exc, "message_dict", {}).items()
                if field != "__all__"
            ]
            raise ApiError(
                status_code=400,
                code="validation_failed",
                message="; ".join(exc.messages) or "Invalid feature.",
                details=details or None,
            ) from exc
        except IntegrityError as exc:
            raise ApiError(status_code=409, code="conflict", message="A feature of that name exists.") from exc
        return Response(_feature_json(feature), status=201)


class FeatureView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Remove a feature (owners, admins, superusers)",
        responses={
            204: None,
            403: OpenApiResponse(
                description="Members may only read; `application_inactive`: the application is deactivated"
            ),
            404: None,
        },
    )
    def delete(self, request: Request, app_uuid: uuid.UUID, name: str) -> Response:
        app = self.application(request, app_uuid)
        if not application_writable(user=request.user, app=app):
            raise PermissionDenied("Only owners and admins of the company may remove features.")
        application_active_check(app=app)
        if not feature_delete(app=app, name=name):
            raise NotFound("Unknown feature.")
        return Response(status=204)
