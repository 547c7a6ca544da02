"""POST /api/v1/ingest/events and /identify: the API of the mobile SDKs, authenticated by `x-api-key`.

The view reads the raw body (gunzipping it under a hard cap), hands it to the envelope
validator and one service call, and shapes the answer; it never touches the ORM itself.
"""

import zlib
from typing import cast

import msgspec
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps_registry.selectors import SdkKeyCredentials

from ..authentication import SdkKeyAuthentication
from ..errors import ApiError
from ..schemas.sdk import EnvelopeRejected, batch_validate, identify_check
from ..services.identify import identify_link_record
from ..services.sdk_events import sdk_events_ingest
from ..throttling import ApplicationRateThrottle
from .base import IngestView
from .sdk_openapi import (
    BATCH_EXAMPLES,
    BATCH_RESPONSES,
    IDENTIFY_RESPONSES,
    IdentifySerializer,
    SdkBatchSerializer,
)

CONTENT_ENCODING = OpenApiParameter(
    "Content-Encoding",
    # What `check_request_shape` accepts: gzip or identity in any case, blanks around, or empty (identity).
    {"type": "string", "pattern": "^[ \\t]*([gG][zZ][iI][pP]|[iI][dD][eE][nN][tT][iI][tT][yY])?[ \\t]*$"},
    OpenApiParameter.HEADER,
    required=False,
    description="gzip or identity (empty or absent: identity); the 1 MiB limit applies to the decompressed body.",
)


_encode = msgspec.json.Encoder().encode
_MAX_GZIP_MEMBERS = 64


def gunzip_capped(data: bytes, *, limit: int) -> bytes | None:
    """The decompressed body, or None when it would exceed `limit` bytes.

    Never holds more than `limit + 1` decompressed bytes, so a small gzip bomb costs nothing.
    Concatenated gzip members (valid per RFC 1952) are followed, up to `_MAX_GZIP_MEMBERS` so a
    body of empty members cannot spin. Raises zlib.error when the data is not gzip, is
    truncated or has too many members.
    """
    parts: list[bytes] = []
    size = 0
    for _ in range(_MAX_GZIP_MEMBERS):
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = decompressor.decompress(data, limit - size + 1)
        size += len(out)
        if size > limit:
            return None
        parts.append(out)
        if not decompressor.eof:
            raise zlib.error("truncated gzip stream")
        data = decompressor.unused_data
        if not data:
            return b"".join(parts)
    raise zlib.error("too many gzip members")


class SdkView(IngestView):
    """Shared by the SDK endpoints: key authentication, per-app throttle, gzip-aware body."""

    authentication_classes = [SdkKeyAuthentication]
    throttle_classes = [ApplicationRateThrottle]
    parser_classes: list = []  # the body is read raw and validated by ingest.schemas.sdk
    http_method_names = ["post"]

    @property
    def max_body_bytes(self) -> int:  # type: ignore[override]  # read per request from settings; never assigned
        return settings.INGEST_SDK_MAX_BODY_BYTES

    def check_request_shape(self, request: Request) -> None:
        super().check_request_shape(request)
        encoding = (request.META.get("HTTP_CONTENT_ENCODING") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise ApiError(
                status_code=415, code="unsupported_media_type", message="Content-Encoding must be gzip or absent."
            )

    def raw_body(self, request: Request) -> bytes:
        body = request._request.body
        if (request.META.get("HTTP_CONTENT_ENCODING") or "").strip().lower() != "gzip":
            return body
        try:
            unzipped = gunzip_capped(body, limit=self.max_body_bytes)
        except zlib.error:
            raise ApiError(status_code=400, code="bad_request", message="The body is not valid gzip.") from None
        if unzipped is None:
            raise self.too_large()
        return unzipped


def _rejected(exc: EnvelopeRejected) -> ApiError:
    code = "payload_too_large" if exc.status == 413 else "bad_request"
    return ApiError(status_code=exc.status, code=code, message=exc.message)


class SdkEventsView(SdkView):
    @extend_schema(
        operation_id="sdk_events_ingest",
        summary="Ingest a batch of SDK events",
        description=(
            "Each event is validated on its own: valid ones are stored (once per `event_id`, remembered at "
            "least 30 days and as long as the company keeps its events), invalid ones "
            "are listed in `errors` with their index and every wrong field. Events without analytics "
            "consent are kept for audit only."
        ),
        tags=["SDK ingest"],
        parameters=[CONTENT_ENCODING],
        request={"application/json": SdkBatchSerializer},
        examples=BATCH_EXAMPLES,
        responses=BATCH_RESPONSES,
    )
    def post(self, request: Request) -> HttpResponse:
        received_at = timezone.now()
        try:
            batch = batch_validate(self.raw_body(request), max_events=settings.INGEST_SDK_MAX_EVENTS)
        except EnvelopeRejected as exc:
            raise _rejected(exc) from None
        creds = cast(SdkKeyCredentials, request.auth)  # set by SdkKeyAuthentication
        sdk_events_ingest(app_id=creds.app_id, company_id=creds.company_id, rows=batch.rows, received_at=received_at)
        # Encoded here rather than by DRF's renderer: the same JSON, without a json.dumps pass per request.
        body = _encode({"accepted": len(batch.rows), "rejected": batch.rejected, "errors": batch.errors})
        response = HttpResponse(body, content_type="application/json")
        response.events_accepted = len(batch.rows)  # type: ignore[attr-defined]  # counted by the metrics middleware
        response.events_rejected = batch.rejected  # type: ignore[attr-defined]
        return response


class SdkIdentifyView(SdkView):
    @extend_schema(
        operation_id="sdk_identify",
        summary="Link an anonymous device to a known user",
        description="Keeps the history of links; a repeat only refreshes it. A new link triggers `user.identified`.",
        tags=["SDK ingest"],
        parameters=[CONTENT_ENCODING],
        request={"application/json": IdentifySerializer},
        responses=IDENTIFY_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        seen_at = timezone.now()
        try:
            parsed, errors = identify_check(self.raw_body(request))
        except EnvelopeRejected as exc:
            raise _rejected(exc) from None
        if parsed is None:
            raise ApiError(
                status_code=400,
                code="validation_failed",
                message="The identify request failed validation.",
                details=errors,
            )
        anon_id, user_id = parsed
        creds = cast(SdkKeyCredentials, request.auth)  # set by SdkKeyAuthentication
        _, created = identify_link_record(
            app_id=creds.app_id, company_id=creds.company_id, anon_id=anon_id, user_id=user_id, seen_at=seen_at
        )
        return Response({"status": "ok", "created": created})
