"""WSGI entry point, served by granian in `scripts/serve`.

The ingest endpoints are machine-to-machine JSON APIs: no sessions, cookies, CSRF, messages or
frames. Requests to them go through a handler built with `INGEST_MIDDLEWARE` only (security
headers), because each skipped middleware is measurable at ingest rates; everything else (admin,
API docs) keeps the full `MIDDLEWARE` stack. Both handlers share the URLconf and settings.

Everything that is not ingest (analytics API and pages, logins, the admin) may occupy at most
`WEB_THREADS - WEB_INGEST_RESERVED_THREADS` of a process's request threads at once; past that it is
answered 503 with `Retry-After` at once, without waiting for a thread. So however many slow reads
or password hashes arrive, ingest always finds a free thread (issue 18: 64 explorer queries had
taken them all, and events waited seconds). Static files and /metrics are not counted.
"""

import gc
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saastracker.settings.dev")

INGEST_PATH_PREFIXES = ("/v1/", "/api/v1/ingest/", "/livez", "/readyz")  # probes: no session either
UNCOUNTED_PATH_PREFIXES = ("/static/", "/metrics")  # quick, and a scrape must work under load
_BUSY_BODY = json.dumps(
    {"error": "busy", "message": "Too many requests in progress on this server; retry after Retry-After seconds."}
).encode()


class IngestWSGIHandler(WSGIHandler):
    """Django's handler with `settings.INGEST_MIDDLEWARE` (synchronous middleware only)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Callable[..., Any]] = []
        self._template_response_middleware: list[Callable[..., Any]] = []
        self._exception_middleware: list[Callable[..., Any]] = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]  # private, not in the stubs
        for path in reversed(settings.INGEST_MIDDLEWARE):
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler


def other_threads() -> int:
    """Request threads of a process that non-ingest requests may occupy at once."""
    return max(1, settings.WEB_THREADS - settings.WEB_INGEST_RESERVED_THREADS)


def route_ingest(full, ingest, *, other_limit: int | None = None):
    others = threading.BoundedSemaphore(other_limit or other_threads())

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(INGEST_PATH_PREFIXES):
            response = ingest(environ, start_response)
            if getattr(response, "streaming", True):
                return response
            # Ingest answers are small and complete: hand the server a list, which granian sends in
            # one call instead of iterating a Python object while holding the GIL.
            try:
                return [response.content]
            finally:
                response.close()
        if path.startswith(UNCOUNTED_PATH_PREFIXES):
            return full(environ, start_response)
        if not others.acquire(blocking=False):
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Retry-After", "1"), ("Cache-Control", "no-store")],
            )
            return [_BUSY_BODY]
        try:
            # Released once the answer is built: every non-ingest answer here is complete by then
            # (no streaming view outside ingest holds a thread long after).
            return full(environ, start_response)
        finally:
            others.release()

    return application


def ingest_application() -> Any:
    """POSTs to the ingest endpoints take the direct path; the rest of /v1/ and /api/v1/ingest/ Django's."""
    from ingest.api.direct import direct_app  # imports models: only once Django is set up

    return direct_app(IngestWSGIHandler())


application = route_ingest(get_wsgi_application(), ingest_application())

# Everything loaded so far (settings, URLconf, models, views, libraries) lives as long as the
# process. Frozen, the cyclic collector no longer walks it: a full collection stops every request
# thread of the process while it runs, and over the whole startup heap it took 50-100 ms, which
# was the victim's p99 in bench/isolation.py (issue 18, item 3).
gc.freeze()
