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

import ast
import logging
import os
import threading
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


def _idle(value: Any) -> bool:
    """A sweep's return value that says it found nothing to do: 0, None, False, empty, or all of those."""
    if isinstance(value, dict):
        return all(_idle(v) for v in value.values())
    if isinstance(value, list | tuple | set):
        return all(_idle(v) for v in value)
    return not value


class IdleSweepFilter(logging.Filter):
    """Quiets what an idle worker repeats every few seconds, keeping what an operator needs.

    The frequent periodic sweeps (beat period of a minute or less) log three lines per run: beat's
    "Sending due task", the worker's "received" and "succeeded". An idle worker wrote ~218 lines a
    minute of them. This filter drops:
      - beat's "Sending due task" and the worker's "received" of those sweeps;
      - a sweep's "succeeded" when it returned nothing to report (0, None, empty) and ran under
        `slow_seconds`;
      - the export sweep's status line when idle (nothing pending, sending, expired or skipped,
        no lag) and the same as the last one this process wrote.
    and beat writes one summary line per `summary_seconds` instead (how many sweeps it sent, per
    task). A sweep that finds work, is slow, fails or retries, every warning and error, every other
    task and any change of the export status are still logged, one line each.
    """

    SENDING = "Scheduler: Sending due task"

    def __init__(self, summary_seconds: float = 60.0, slow_seconds: float = 5.0, enabled: bool = True) -> None:
        super().__init__()
        self.summary_seconds = summary_seconds
        self.slow_seconds = slow_seconds
        self.enabled = enabled
        self._quiet: set[str] | None = None
        self._sent: dict[str, int] = {}
        self._window_start: float | None = None
        self._last_status: Any = None
        self._lock = threading.Lock()

    def quiet_tasks(self) -> set[str]:
        """The sweeps beat sends every minute or more often (read once from the beat schedule)."""
        if self._quiet is None:
            try:
                from saastracker.celery import app

                schedule = app.conf.beat_schedule or {}
            except Exception:  # no Celery app here (a bare script): nothing to quiet
                schedule = {}
            self._quiet = {
                entry["task"]
                for entry in schedule.values()
                if isinstance(entry.get("schedule"), int | float) and entry["schedule"] <= 60
            }
        return self._quiet

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.enabled or record.levelno != logging.INFO:
            return True
        name = record.name
        if name == "celery.beat" and str(record.msg).startswith(self.SENDING):
            return self._beat_sent(record)
        if name in ("celery.worker.strategy", "celery.app.trace"):
            data = getattr(record, "data", None)
            if not isinstance(data, dict) or data.get("name") not in self.quiet_tasks():
                return True
            if name == "celery.worker.strategy":
                return "received" not in str(record.msg)
            return not self._idle_success(record, data)
        if name == "ingest.tasks" and str(record.msg).startswith("export status:"):
            return self._status_changed(record)
        return True

    def _beat_sent(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        task = str(args[1]) if len(args) > 1 else ""
        if task not in self.quiet_tasks():
            return True
        now = time.monotonic()
        with self._lock:
            self._sent[task] = self._sent.get(task, 0) + 1
            if self._window_start is None:
                self._window_start = now
                return False
            elapsed = now - self._window_start
            if elapsed < self.summary_seconds:
                return False
            sent, self._sent, self._window_start = self._sent, {}, now
        per_task = ", ".join(f"{t} {n}" for t, n in sorted(sent.items(), key=lambda item: (-item[1], item[0])))
        record.msg = (
            "periodic sweeps: beat sent %d in the last %.0f s (%s); a sweep is logged only when it finds work, "
            "fails or takes over %.0f s"
        )
        record.args = (sum(sent.values()), elapsed, per_task, self.slow_seconds)
        return True

    def _idle_success(self, record: logging.LogRecord, data: dict) -> bool:
        if "succeeded" not in str(record.msg):
            return False
        try:
            runtime = float(data.get("runtime") or 0)
            value = ast.literal_eval(str(data.get("return_value")))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return False  # a return value we cannot read: log it
        return runtime < self.slow_seconds and _idle(value)

    def _status_changed(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        # (state, lag, pending, sending, dead, in_flight_batches, expired_batches, skipped)
        if len(args) != 8:
            return True
        lag, pending, sending, _dead, in_flight, expired, skipped = args[1:]
        idle = not (lag or pending or sending or in_flight or expired or skipped)
        with self._lock:
            changed = args != self._last_status
            self._last_status = args
        return changed or not idle


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict for settings: one console handler, JSON or text, with the context filter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "saastracker.logs.ContextFilter"},
            # LOG_QUIET_SWEEPS=0 logs every periodic sweep again (three lines per run, ~218 a minute).
            "idle_sweeps": {
                "()": "saastracker.logs.IdleSweepFilter",
                "summary_seconds": float(os.environ.get("LOG_SWEEP_SUMMARY_SECONDS") or 60),
                "enabled": os.environ.get("LOG_QUIET_SWEEPS", "1") not in ("0", "false", "no", "off"),
            },
        },
        "formatters": {
            "json": {"()": "saastracker.logs.JsonFormatter"},
            "text": {"()": "saastracker.logs.TextFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "text",
                "filters": ["idle_sweeps", "context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # 4xx/5xx are already in the request line; Django's own copies would double them.
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "WARNING"},
        },
    }
