"""What every ingest endpoint checks before it authenticates: method, content type, size.

DRF runs authentication before it looks up the handler, so without this a GET would answer
401/404 instead of 405. Content negotiation is pinned to JSON so no `Accept` header can turn
an answer into a 406.
"""

from collections.abc import Iterable
from typing import Any

from rest_framework.exceptions import MethodNotAllowed
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ..errors import ApiError


class JsonOnlyNegotiation(BaseContentNegotiation):
    """We only ever answer JSON, whatever the client accepts."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


def content_length(request: Request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


class IngestView(APIView):
    """Base for ingest endpoints. Subclasses set `max_body_bytes` and their authentication."""

    content_negotiation_class = JsonOnlyNegotiation
    max_body_bytes: int = 64 * 1024
    require_json = True
    unavailable_message = "The event could not be stored; retry with backoff."  # see errors.exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        http_method = request.method or ""  # never None once Django has parsed the request
        method = http_method.lower()
        if method not in self.http_method_names or not hasattr(self, method):
            raise MethodNotAllowed(http_method)
        if method == "post":
            self.check_request_shape(request)
        super().initial(request, *args, **kwargs)

    def check_request_shape(self, request: Request) -> None:
        if self.require_json:
            media_type = (request.META.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                raise ApiError(
                    status_code=415, code="unsupported_media_type", message="Content-Type must be application/json."
                )
        length = content_length(request)
        if length is None:
            raise ApiError(status_code=400, code="bad_request", message="Content-Length is not a number.")
        if length > self.max_body_bytes:
            raise self.too_large()

    def too_large(self) -> ApiError:
        return ApiError(
            status_code=413,
            code="payload_too_large",
            message=f"The request body is larger than {self.max_body_bytes} bytes.",
        )
