"""Structured logs: JSON lines in production, readable lines in development.

Every line written while a request or a Celery task runs carries its context: `request_id` and,
once authenticated, `app_uuid` for requests; `task_id` and `task_name` for tasks. The context
lives in a contextvar set by `saastracker.middleware.RequestContextMiddleware` and by Celery
signals (saastracker/celery.py), and `ContextFilter` copies it onto each record, so code that logs
needs nothing special. Fields passed with `extra=` (method, path, status, duration_ms) are kept.

Never log a secret, key, signature or event body: the log test (tests/test_logs.py) sends known
ones and greps every line.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

import orjson

_context: ContextVar[dict[str, str] | None] = ContextVar("saastracker_log_context", default=None)

CONTEXT_FIELDS = ("request_id", "app_uuid", "task_id", "task_name")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", *CONTEXT_FIELDS}


def context_reset(**fields: str) -> None:
    """Start a new context (a request or a task) with these fields."""
    _context.set(dict(fields))


def context_bind(**fields: str) -> None:
    """Add fields to the current context (e.g. the app uuid once a request is authenticated)."""
    current = _context.get()
    _context.set({**(current or {}), **fields})


def context_clear() -> None:
    _context.set(None)


def context_get() -> dict[str, str]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the request or task context onto every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if context:
            for key, value in context.items():
                setattr(record, key, value)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`, context fields first: for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: getattr(record, key) for key in CONTEXT_FIELDS if getattr(record, key, None) is not None}
        fields.update(_extras(record))
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if tail:
            line += f"  [{tail}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict for settings: one console handler, JSON or text, with the context filter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "saastracker.logs.ContextFilter"}},
        "formatters": {
            "json": {"()": "saastracker.logs.JsonFormatter"},
            "text": {"()": "saastracker.logs.TextFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "text",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # 4xx/5xx are already in the request line; Django's own copies would double them.
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "WARNING"},
        },
    }
