"""POSTs to the ingest endpoints, served without Django's request cycle: the same views, fewer layers.

At ingest rates the framework around a view costs more than the view: Django's handler builds a
`WSGIRequest`, sends `request_started`/`request_finished` to every receiver, resolves the URL and
runs the middleware; DRF wraps the request, negotiates and instantiates its policies. Together
that was half of a web process's Python time per event (issue 17, item 0; `bench/ingest_cpu.py`).

This path does what those layers do for a POST to `/v1/events`, `/api/v1/ingest/events` and
`/api/v1/ingest/identify`, calling the same code in the same order: the view's method and shape
check, its authenticators, its throttles, its `post`, DRF's exception handler and renderer, the
view's `Allow` header, `SecurityMiddleware.process_response`, then the request id, metrics and
access log line of `saastracker.middleware`, and finally `request_finished` (its receivers return a
pooled connection to the pool). `request_started` is not sent: its receivers close connections
left over by an earlier request, and `request_finished` already did. Every other request (another
method, another path, an http request that production redirects to https) goes through Django.
`tests/ingest/test_direct_path.py` sends the same requests both ways and compares the answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from saastracker import logs
from saastracker.middleware import request_id_from, request_record

from ..errors import exception_handler
from .base import IngestView
from .sdk import SdkEventsView, SdkIdentifyView
from .v1_events import V1EventsView

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class DirectRequest:
    """What the ingest views, their policies and the exception handler read of a request.

    DRF's `Request` and Django's `WSGIRequest` both expose these names; the views use no others
    (`request._request.body` is the raw body, as on a DRF request).
    """

    method = "POST"

    def __init__(self, environ: dict) -> None:
        self.META = environ
        self.path = environ.get("PATH_INFO", "")
        self._request = self
        self._body: bytes | None = None
        self.user: Any = None
        self.auth: Any = None

    @property
    def body(self) -> bytes:
        """Django's rule: read CONTENT_LENGTH bytes (none when absent or invalid), once."""
        if self._body is None:
            try:
                length = max(0, int(self.META.get("CONTENT_LENGTH") or 0))
            except ValueError:
                length = 0
            self._body = self.META["wsgi.input"].read(length) if length else b""
        return self._body

    def is_secure(self) -> bool:
        """`HttpRequest.is_secure()`: the trusted proxy's header when one is configured, else the scheme."""
        if settings.SECURE_PROXY_SSL_HEADER:
            header, secure_value = settings.SECURE_PROXY_SSL_HEADER
            value = self.META.get(header)
            if value is not None:
                return value.split(",", 1)[0].strip() == secure_value
        return self.META.get("wsgi.url_scheme") == "https"


@dataclass(frozen=True)
class Endpoint:
    name: str  # the URL name: the `endpoint` label of the metrics and the access log
    view_class: type[IngestView]


ENDPOINTS = {
    "/v1/events": Endpoint("v1-events", V1EventsView),
    "/api/v1/ingest/events": Endpoint("sdk-events", SdkEventsView),
    "/api/v1/ingest/identify": Endpoint("sdk-identify", SdkIdentifyView),
}


def _view_answer(view: APIView, request: DirectRequest) -> HttpResponse:
    """`APIView.dispatch` minus what ingest views never use (parsers, negotiation, versioning)."""
    try:
        view.check_request_shape(request)  # type: ignore[attr-defined]  # IngestView's, as its `initial` runs it
        for authenticator in view.get_authenticators():
            user_auth = authenticator.authenticate(request)  # type: ignore[arg-type]  # duck-typed request
            if user_auth is not None:
                request.user, request.auth = user_auth
                break
        waits = [t.wait() for t in view.get_throttles() if not t.allow_request(request, view)]  # type: ignore[arg-type]
        if waits:
            raise exceptions.Throttled(max((w for w in waits if w is not None), default=None))
        return view.post(request)  # type: ignore[attr-defined]
    except Exception as exc:  # what DRF's handle_exception does with it: one error shape
        return exception_handler(exc, {"view": view, "request": request})


def direct_app(fallback: WsgiApp) -> WsgiApp:
    """A WSGI app serving ingest POSTs directly and everything else with `fallback` (Django)."""
    security = SecurityMiddleware(lambda request: HttpResponse())
    renderer = JSONRenderer()
    access_log = settings.ACCESS_LOG

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        endpoint = ENDPOINTS.get(environ.get("PATH_INFO", ""))
        if endpoint is None or environ.get("REQUEST_METHOD") != "POST":
            return fallback(environ, start_response)
        request = DirectRequest(environ)
        if security.redirect and not request.is_secure():
            return fallback(environ, start_response)  # Django answers the redirect to https
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        logs.context_reset(request_id=request_id)
        try:
            view = endpoint.view_class()
            view.request = request  # type: ignore[assignment]  # as dispatch sets it (read by the policies)
            response = _view_answer(view, request)
            if isinstance(response, Response):  # DRF's finalize_response: render the data as JSON
                response.accepted_renderer = renderer
                response.accepted_media_type = renderer.media_type
                response.renderer_context = {"view": view, "request": request, "response": response}  # type: ignore[attr-defined]
                response.render()
            for name, value in view.default_response_headers.items():
                response[name] = value
            security.process_response(request, response)  # type: ignore[arg-type]  # reads is_secure() only
            request_record(
                method="POST",
                path=request.path,
                endpoint=endpoint.name,
                request_id=request_id,
                started=started,
                response=response,
                access_log=access_log,
            )
        finally:
            logs.context_clear()
            request_finished.send(sender=DirectRequest)  # as Django's handler does: a pooled connection goes back
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return [response.content]

    return application
