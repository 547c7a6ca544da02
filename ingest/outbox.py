"""Wake the workers after events are committed, without ever making a request wait for the broker.

Stored rows are the outbox (see models.py); this only shortens the time until a worker looks.
Requests set a flag; one daemon thread per process publishes at most one export kick per
`_EXPORT_KICK_INTERVAL` and a webhook kick as soon as one is asked for. If the broker is down,
the publish fails quietly and the periodic sweepers (beat) pick the rows up later.
"""

import logging
import threading
import time

from django.db import DEFAULT_DB_ALIAS, connections, transaction

logger = logging.getLogger(__name__)

EXPORT_TASK = "ingest.export_pending"
WEBHOOK_FANOUT_TASK = "webhooks.fanout_pending"
_EXPORT_KICK_INTERVAL = 1.0

_wake = threading.Event()
_want = {"export": False, "webhooks": False}
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def _publish(task_name: str) -> None:
    from saastracker.celery import app

    try:
        app.send_task(task_name, retry=False)
    except Exception:  # any broker failure: the sweeper will catch up
        logger.warning("could not publish %s; the periodic sweep will pick the rows up", task_name)


def _run() -> None:
    last_export = 0.0
    while True:
        _wake.wait()
        _wake.clear()
        if _want["webhooks"]:
            _want["webhooks"] = False
            _publish(WEBHOOK_FANOUT_TASK)
        if _want["export"]:
            delay = last_export + _EXPORT_KICK_INTERVAL - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _want["export"] = False
            last_export = time.monotonic()
            _publish(EXPORT_TASK)


def _ensure_thread() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        with _thread_lock:
            if _thread is None or not _thread.is_alive():
                _thread = threading.Thread(target=_run, name="outbox-kicker", daemon=True)
                _thread.start()


def kick(*, export: bool = True, webhooks: bool = False) -> None:
    """Ask for an export (coalesced) and, if `webhooks`, a webhook fan-out, once committed."""

    def _kick() -> None:
        _want["export"] = _want["export"] or export
        _want["webhooks"] = _want["webhooks"] or webhooks
        _ensure_thread()
        _wake.set()

    # Outside a transaction the rows are already committed: kick at once. `on_commit` would first
    # make sure a connection exists, and a request whose row is stored must not fail (503) because
    # the database went away right after its commit.
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        transaction.on_commit(_kick)
    else:
        _kick()
