"""WSGI entry point, served by granian in `scripts/serve`.

The ingest endpoints are machine-to-machine JSON APIs: no sessions, cookies, CSRF, messages or
frames. Requests to them go through a handler built with `INGEST_MIDDLEWARE` only (security
headers), because each skipped middleware is measurable at ingest rates; everything else (admin,
API docs) keeps the full `MIDDLEWARE` stack. Both handlers share the URLconf and settings.
"""

import os
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saastracker.settings.dev")

INGEST_PATH_PREFIXES = ("/v1/", "/api/v1/ingest/", "/livez", "/readyz")  # probes: no session either


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


def route_ingest(full, ingest):
    def application(environ, start_response):
        if environ.get("PATH_INFO", "").startswith(INGEST_PATH_PREFIXES):
            response = ingest(environ, start_response)
            if getattr(response, "streaming", True):
                return response
            # Ingest answers are small and complete: hand the server a list, which granian sends in
            # one call instead of iterating a Python object while holding the GIL.
            try:
                return [response.content]
            finally:
                response.close()
        return full(environ, start_response)

    return application


application = route_ingest(get_wsgi_application(), IngestWSGIHandler())
