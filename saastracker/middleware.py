"""The outermost middleware of both stacks (full and ingest): request id, request log line, metrics.

The request id is the client's `X-Request-ID` when it looks sane (1-128 characters of letters,
digits and `-_.:/+=`), else a new uuid; it is set on every log line of the request and returned in
the `X-Request-ID` header. One line per request (`saastracker.request`, INFO) carries method,
path (never the query string), status and duration. The path is the URL path only: the ingest
URLs carry no credentials, and keys and signatures travel in headers, which are never logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from . import logs, metrics

logger = logging.getLogger("saastracker.request")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9\-_.:/+=]{1,128}")


def request_id_from(value: str | None) -> str:
    """The incoming id if it is safe to echo and log, else a fresh one."""
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Times the request, names it in logs and metrics, and echoes its id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.access_log = settings.ACCESS_LOG

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        logs.context_reset(request_id=request_id)
        try:
            response = self.get_response(request)
            match = request.resolver_match
            endpoint = (match.url_name or "unnamed") if match is not None else "unmatched"
            if endpoint != "unmatched" and request.path.startswith("/admin/"):
                endpoint = "admin"  # one label for the back office, whatever page
            request_record(
                method=request.method or "",
                path=request.path,
                endpoint=endpoint,
                request_id=request_id,
                started=started,
                response=response,
                access_log=self.access_log,
            )
            return response
        finally:
            logs.context_clear()


def request_record(
    *, method: str, path: str, endpoint: str, request_id: str, started: float, response: HttpResponse, access_log: bool
) -> None:
    """Echo the request id, count the answer in the metrics and write the access log line.

    Shared by this middleware and the ingest endpoints' direct path (ingest/api/direct.py).
    """
    duration = time.perf_counter() - started
    response["X-Request-ID"] = request_id
    metrics.request_record(endpoint=endpoint, status=response.status_code, duration=duration, response=response)
    if access_log and logger.isEnabledFor(logging.INFO):
        logger.info(
            "%s %s %s",
            method,
            path,
            response.status_code,
            extra={
                "method": method,
                "path": path,
                "status": response.status_code,
                "duration_ms": round(duration * 1000, 2),
                "endpoint": endpoint,
            },
        )
