"""Revenue endpoints: the two CSV imports, `revenue`, `revenue/mrr`, `revenue-health`, notes and tags.

The work is in `revenue/` (imports, MRR arithmetic) and `analytics/revenue_health.py` (money with
health); these views authenticate, parse and answer.
"""

from __future__ import annotations

import re
import uuid
from datetime import date

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from ingest.errors import ApiError, error_body
from revenue import imports
from revenue import selectors as revenue
from revenue.models import Import
from revenue.services import (
    TAG_PATTERN,
    import_report,
    import_run,
    is_company_admin,
    note_create,
    note_delete,
    tag_add,
    tag_remove,
)

from ..revenue_health import REVENUE_HEALTH_DOC, mrr_trend_get, revenue_get, revenue_health_get
from ..selectors import invalid_parameter
from ..signals import SIGNALS_DOC, signals_list
from .base import AnalyticsView
from .openapi import NOT_BLANK
from .params import parse

_MONEY = serializers.CharField(help_text='A decimal string with 2 places, e.g. "1234.50".')
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class _CsvParser(BaseParser):
    """Declares `text/csv` (for the schema and content negotiation); the view reads the raw body itself."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        return None


def _csv_body(request: Request) -> bytes:
    """The raw body, at most MAX_FILE_BYTES (413 past it), read without Django's in-memory cap."""
    media_type = (request.META.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    if media_type != "text/csv":
        raise ApiError(
            status_code=415,
            code="unsupported_media_type",
            message="Send the file as the body with Content-Type: text/csv.",
        )
    limit = imports.MAX_FILE_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    too_large = ApiError(
        status_code=413, code="payload_too_large", message=f"The file is larger than {limit // (1024 * 1024)} MB."
    )
    if length > limit:
        raise too_large
    data = request._request.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


class ImportParams(serializers.Serializer):
    dry_run = serializers.BooleanField(default=False, help_text="Validate and count; change nothing.")
    file_name = serializers.CharField(required=False, default="", allow_blank=True, max_length=255)


_REPORT = inline_serializer(
    "ImportReport",
    {
        "import_id": serializers.IntegerField(),
        "via": serializers.CharField(help_text="api, page or command"),
        "kind": serializers.ChoiceField(choices=Import.Kind.values),
        "status": serializers.ChoiceField(choices=Import.Status.values),
        "dry_run": serializers.BooleanField(),
        "file_name": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
        "counts": serializers.DictField(),
        "error_count": serializers.IntegerField(),
        "errors": inline_serializer(
            "ImportError",
            {
                "line": serializers.IntegerField(allow_null=True),
                "column": serializers.CharField(allow_null=True),
                "reason": serializers.CharField(),
            },
            many=True,
        ),
    },
)

_IMPORT_DOC = """Body: the CSV file (`Content-Type: text/csv`, at most 20 MB, else 413; UTF-8, a BOM and CRLF
accepted). The whole file is validated first: with any error nothing changes and the answer is a 400
whose `report.errors` lists up to 1,000 errors (line, column, reason). `?dry_run=true` answers the same
report and counts without changing anything. Owners and admins of the company only (403 otherwise).
"""


class _ImportView(AnalyticsView):
    kind: str = ""
    parser_classes = [_CsvParser]

    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        if not is_company_admin(user=request.user, app=app):
            raise PermissionDenied("Only owners and admins of the company may import.")
        params = parse(ImportParams, request)
        data = _csv_body(request)
        report = import_run(
            app=app,
            kind=self.kind,
            data=data,
            file_name=params["file_name"],
            user=request.user,
            via="api",
            dry_run=params["dry_run"],
        )
        if report["error_count"]:
            body = error_body(
                "invalid_file",
                f"{report['error_count']} error(s) in the file; nothing was changed.",
                details=[{"line": e["line"], "field": e["column"], "message": e["reason"]} for e in report["errors"]],
            )
            body["report"] = report
            return Response(body, status=400)
        return Response(report)


_IMPORT_RESPONSES = {
    200: _REPORT,
    400: OpenApiResponse(description="Errors in the file (nothing changed) or a bad parameter"),
    403: OpenApiResponse(description="Not an owner or admin of the company"),
    413: OpenApiResponse(description="Larger than 20 MB"),
    415: OpenApiResponse(description="Not text/csv"),
}


class OrganizationsImportView(_ImportView):
    kind = Import.Kind.ORGANIZATIONS

    @extend_schema(
        tags=["analytics"],
        summary="Import customer organizations (CSV `external_org_id,display_name`), upserted by id",
        description=_IMPORT_DOC,
        parameters=[ImportParams],
        request={"text/csv": {"type": "string"}},
        responses=_IMPORT_RESPONSES,
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        return super().post(request, app_uuid)


class SubscriptionsImportView(_ImportView):
    kind = Import.Kind.SUBSCRIPTIONS

    @extend_schema(
        tags=["analytics"],
        summary="Import the subscriptions snapshot (CSV), replacing the app's subscriptions atomically",
        description="Header `external_org_id,product_code,mrr,currency,start_at[,end_at][,subscription_id]`.\n\n"
        + _IMPORT_DOC,
        parameters=[ImportParams],
        request={"text/csv": {"type": "string"}},
        responses=_IMPORT_RESPONSES,
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        return super().post(request, app_uuid)


class ImportsView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="The latest 20 imports of the app (any member)",
        responses={200: inline_serializer("Imports", {"imports": serializers.ListField(child=_REPORT)})},
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        return Response({"imports": [import_report(i) for i in revenue.imports_list(app=app)]})


# --- Figures ----------------------------------------------------------------------------------------


class RevenueParams(serializers.Serializer):
    month = serializers.RegexField(
        r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$",
        required=False,
        help_text="YYYY-MM: the movements' month (default the current; a month not begun has none).",
    )


def _month(value: str | None) -> date | None:
    if not value:
        return None
    match = _MONTH.match(value)
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1000:
        raise invalid_parameter("month", "A month as YYYY-MM.")
    return date(int(match.group(1)), int(match.group(2)), 1)


_AMOUNT_ORGS = inline_serializer("MrrOrgs", {"mrr": _MONEY, "orgs": serializers.IntegerField()})


class RevenueView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Revenue now, by health, by product, concentration, movements, NRR/GRR, top organizations",
        description=revenue.__doc__ + "\n\n" + REVENUE_HEALTH_DOC,
        parameters=[RevenueParams],
        responses={
            200: inline_serializer(
                "Revenue",
                {
                    "currency": serializers.CharField(),
                    "as_of": serializers.DateTimeField(),
                    "mrr": _MONEY,
                    "arr": _MONEY,
                    "paying_orgs": serializers.IntegerField(),
                    "arpa": serializers.CharField(allow_null=True),
                    "revenue_at_risk": _MONEY,
                    "by_health": inline_serializer(
                        "RevenueByHealth",
                        {
                            "bucket": serializers.CharField(),
                            "mrr": _MONEY,
                            "orgs": serializers.IntegerField(),
                            "share": serializers.FloatField(),
                        },
                        many=True,
                    ),
                    "by_product": inline_serializer(
                        "RevenueByProduct",
                        {
                            "product_code": serializers.CharField(),
                            "mrr": _MONEY,
                            "subscriptions": serializers.IntegerField(),
                            "orgs": serializers.IntegerField(),
                        },
                        many=True,
                    ),
                    "concentration": serializers.DictField(child=serializers.FloatField(allow_null=True)),
                    "movements": inline_serializer(
                        "Movements",
                        {
                            "month": serializers.CharField(),
                            "new": _AMOUNT_ORGS,
                            "reactivation": _AMOUNT_ORGS,
                            "expansion": _AMOUNT_ORGS,
                            "contraction": _AMOUNT_ORGS,
                            "churned": _AMOUNT_ORGS,
                            "net_new": _MONEY,
                        },
                    ),
                    "nrr": serializers.FloatField(allow_null=True),
                    "grr": serializers.FloatField(allow_null=True),
                    "top_orgs": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(RevenueParams, request)
        return Response(revenue_get(app=app, month=_month(params.get("month"))))


class MrrParams(serializers.Serializer):
    months = serializers.ChoiceField(choices=[12, 24, 36], default=12)


class MrrTrendView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="MRR at the end of each of the last 12, 24 or 36 months, oldest first (this month: now)",
        description=revenue.__doc__,
        parameters=[MrrParams],
        responses={
            200: inline_serializer(
                "MrrTrend",
                {
                    "currency": serializers.CharField(),
                    "months": inline_serializer(
                        "MrrMonth",
                        {
                            "month": serializers.CharField(),
                            "mrr": _MONEY,
                            "change": _MONEY,
                            "change_pct": serializers.FloatField(allow_null=True),
                        },
                        many=True,
                    ),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(MrrParams, request)
        return Response(mrr_trend_get(app=app, months=int(params["months"])))


_CELL = inline_serializer(
    "RevenueHealthCell",
    {
        "orgs": serializers.IntegerField(),
        "mrr": _MONEY,
        "share": serializers.FloatField(),
        "avg_health": serializers.FloatField(allow_null=True),
        "avg_mrr": serializers.CharField(allow_null=True),
    },
)


class RevenueHealthView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Revenue × Health: the 2×2 of paying organizations",
        description=REVENUE_HEALTH_DOC,
        responses={
            200: inline_serializer(
                "RevenueHealth",
                {
                    "currency": serializers.CharField(),
                    "health_threshold": serializers.IntegerField(),
                    "mrr_threshold": _MONEY,
                    "paying_orgs": serializers.IntegerField(),
                    "cells": inline_serializer(
                        "RevenueHealthCells",
                        {"champions": _CELL, "expansion": _CELL, "revenue_at_risk": _CELL, "low_value": _CELL},
                    ),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        return Response(revenue_health_get(app=app))


# --- Notes and tags ---------------------------------------------------------------------------------


class _Text(serializers.CharField):
    """A JSON string only: DRF's CharField takes `0` or `true` as "0" or "True", which the document refuses."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


_NOTE_INPUT_SCHEMA = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string", "maxLength": 10_000, "pattern": NOT_BLANK, "description": "Not blank."}},
}
_TAG_INPUT_SCHEMA = {
    "type": "object",
    "required": ["label"],
    "properties": {
        "label": {
            "type": "string",
            "maxLength": 64,
            "pattern": TAG_PATTERN,
            "description": "Letters, digits, `_`, then also spaces and `. : / + -`; stored lower-cased.",
        }
    },
}


class NoteInput(serializers.Serializer):
    text = _Text(max_length=10_000, help_text="Up to 10,000 characters.")


_NOTE = inline_serializer(
    "Note",
    {
        "id": serializers.IntegerField(),
        "author": serializers.CharField(allow_null=True),
        "author_id": serializers.IntegerField(allow_null=True),
        "created_at": serializers.DateTimeField(),
        "text": serializers.CharField(),
    },
)


def _body(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    serializer = serializer_class(data=request.data if isinstance(request.data, dict) else {})
    if not serializer.is_valid():
        field, messages = next(iter(serializer.errors.items()))
        raise invalid_parameter(field, str(messages[0]))
    return dict(serializer.validated_data)


class NotesView(AnalyticsView):
    parser_classes = [JSONParser]

    @extend_schema(
        tags=["analytics"],
        summary="An organization's notes, newest first (any member)",
        responses={200: inline_serializer("Notes", {"notes": serializers.ListField(child=_NOTE)})},
    )
    def get(self, request: Request, app_uuid: uuid.UUID, customer_org_id: str) -> Response:
        app = self.application(request, app_uuid)
        return Response({"notes": revenue.notes_list(app=app, customer_org_id=customer_org_id)})

    @extend_schema(
        tags=["analytics"],
        summary="Add a note (any member of the company)",
        request={"application/json": _NOTE_INPUT_SCHEMA},
        responses={201: _NOTE, 400: OpenApiResponse(description="Empty or too long")},
    )
    def post(self, request: Request, app_uuid: uuid.UUID, customer_org_id: str) -> Response:
        app = self.application(request, app_uuid)
        data = _body(NoteInput, request)
        note = note_create(
            app=app,
            customer_org_id=customer_org_id,
            author=request.user,  # type: ignore[arg-type]  # IsAuthenticated: a User
            text=data["text"],
        )
        return Response(
            {
                "id": note.pk,
                "author": request.user.get_username(),
                "author_id": request.user.pk,
                "created_at": note.created_at,
                "text": note.text,
            },
            status=201,
        )


class NoteView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Delete a note (its author, or an owner/admin of the company)",
        responses={204: None, 403: OpenApiResponse(description="Neither author nor owner/admin"), 404: None},
    )
    def delete(self, request: Request, app_uuid: uuid.UUID, customer_org_id: str, note_id: int) -> Response:
        app = self.application(request, app_uuid)
        note_delete(app=app, note_id=note_id, user=request.user)  # type: ignore[arg-type]  # a User
        return Response(status=204)


class TagInput(serializers.Serializer):
    label = _Text(  # type: ignore[assignment]  # a field named like Field.label: DRF allows it
        trim_whitespace=False, max_length=64, help_text="Lower-cased; letters, digits and . : / + - _ spaces."
    )


class TagsView(AnalyticsView):
    parser_classes = [JSONParser]

    @extend_schema(
        tags=["analytics"],
        summary="Tag an organization (any member); adding an existing tag changes nothing",
        request={"application/json": _TAG_INPUT_SCHEMA},
        responses={200: inline_serializer("Tags", {"tags": serializers.ListField(child=serializers.CharField())})},
    )
    def post(self, request: Request, app_uuid: uuid.UUID, customer_org_id: str) -> Response:
        app = self.application(request, app_uuid)
        data = _body(TagInput, request)
        tag_add(app=app, customer_org_id=customer_org_id, label=data["label"])
        return Response({"tags": revenue.tags_of(app=app, org_ids=[customer_org_id]).get(customer_org_id, [])})


class TagView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Remove a tag from an organization (any member)",
        parameters=[OpenApiParameter("label", str, OpenApiParameter.PATH)],
        responses={204: None, 404: None},
    )
    def delete(self, request: Request, app_uuid: uuid.UUID, customer_org_id: str, label: str) -> Response:
        app = self.application(request, app_uuid)
        tag_remove(app=app, customer_org_id=customer_org_id, label=label)
        return Response(status=204)


# --- Signals ------------------------------------------------------------------------------------------


class SignalsParams(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)


class SignalsView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Organizations with active signals, highest priority first (revenue-aware)",
        description=SIGNALS_DOC,
        parameters=[SignalsParams],
        responses={
            200: inline_serializer(
                "Signals",
                {
                    "summary": inline_serializer(
                        "SignalsSummary",
                        {"orgs": serializers.IntegerField(), "mrr_at_risk": _MONEY, "expansion_mrr": _MONEY},
                    ),
                    "orgs": inline_serializer(
                        "SignalOrg",
                        {
                            "customer_org_id": serializers.CharField(),
                            "display_name": serializers.CharField(allow_null=True),
                            "signals": inline_serializer(
                                "SignalItem",
                                {
                                    "type": serializers.CharField(),
                                    "since": serializers.DateTimeField(),
                                    "dismissed": serializers.BooleanField(),
                                },
                                many=True,
                            ),
                            "priority": serializers.FloatField(),
                            "mrr": _MONEY,
                            "health": serializers.DictField(),
                            "last_seen": serializers.DateTimeField(allow_null=True),
                        },
                        many=True,
                    ),
                    "total": serializers.IntegerField(),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(SignalsParams, request)
        return Response(signals_list(app=app, limit=params["limit"]))
