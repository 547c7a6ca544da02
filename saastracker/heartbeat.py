"""Worker liveness: proof that each queue's worker still runs tasks, for a supervisor and for alerts.

A webhooks worker whose pool processes had all died looked healthy for 14 minutes (issue 17, item
1d): its main process answered, but nothing ran. So liveness is measured where the work happens,
in the pool processes: each one beats when a task starts and ends, and every second while one runs
(a long task is alive, not stuck: time limits end it). Beat sends a no-op `saastracker.heartbeat`
task to every queue every `WORKER_HEARTBEAT_SECONDS`, so an idle worker beats too. A frozen, dead
or wedged pool stops beating whatever its main process does.

A beat goes to two places, at most once a second per process:
- the file named by `WORKER_HEARTBEAT_FILE` (its mtime), which `scripts/worker` sets per role and
  watches: a worker silent for `WORKER_STALE_SECONDS` is killed, process tree and all, and restarted;
- the Redis hash `saastracker:heartbeat` (queue -> Unix time), which `/metrics` turns into
  `saastracker_worker_heartbeat_age_seconds{queue}` for the alert rules, from any machine.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

REDIS_KEY = "saastracker:heartbeat"
_MIN_INTERVAL = 1.0  # seconds between two beats of one process for one queue

_last: dict[str, float] = {}
_running = 0  # tasks running in this process (prefork: 0 or 1)
_running_queue = ""
_thread_pid = 0
_lock = threading.Lock()


def beat(*, queue: str, force: bool = False) -> None:
    """Record that a pool process of `queue`'s worker runs tasks now. Never raises."""
    now = time.monotonic()
    if not force and now - _last.get(queue, 0.0) < _MIN_INTERVAL:
        return
    _last[queue] = now
    path = os.environ.get("WORKER_HEARTBEAT_FILE")
    if path:
        try:
            with open(path, "a"):
                os.utime(path, None)
        except OSError:
            logger.warning("could not touch the heartbeat file %s", path, exc_info=True)
    try:
        from saastracker.redis_client import get_redis

        get_redis().hset(REDIS_KEY, queue, f"{time.time():.3f}")
    except Exception:  # Redis down: the local supervisor still has the file; the gauge goes stale
        logger.debug("could not record the heartbeat of %s in Redis", queue, exc_info=True)


def queue_of(task: Any) -> str:
    """The queue a running task was taken from (its routing key), else the worker's role (`role@host`)."""
    request = getattr(task, "request", None)
    info = getattr(request, "delivery_info", None) or {}
    queue = info.get("routing_key") or ""
    if not queue:
        queue = (getattr(request, "hostname", None) or "").split("@", 1)[0]
    return queue or "unknown"


def task_started(task: Any) -> None:
    """From `task_prerun`: beat, and keep beating every second until the task ends."""
    global _running, _running_queue, _thread_pid
    queue = queue_of(task)
    with _lock:
        _running += 1
        _running_queue = queue
        if _thread_pid != os.getpid():  # one thread per (forked) process
            _thread_pid = os.getpid()
            threading.Thread(target=_beat_while_busy, name="heartbeat", daemon=True).start()
    beat(queue=queue)


def task_ended(task: Any) -> None:
    """From `task_postrun`."""
    global _running
    with _lock:
        _running = max(0, _running - 1)
    beat(queue=queue_of(task))


def _beat_while_busy() -> None:
    while True:
        time.sleep(_MIN_INTERVAL)
        if _running:
            beat(queue=_running_queue)


def heartbeat_collect() -> Iterable[Metric]:
    """Seconds since a pool process of each queue last beat (any machine), from Redis."""
    from saastracker.celery import QUEUES
    from saastracker.redis_client import get_redis

    stored = get_redis().hgetall(REDIS_KEY)
    now = time.time()
    age = GaugeMetricFamily(
        "saastracker_worker_heartbeat_age_seconds",
        "Seconds since a worker process of the queue last ran a task or its heartbeat (one is sent every "
        "WORKER_HEARTBEAT_SECONDS); absent until a worker of the queue first beats.",
        labels=["queue"],
    )
    for queue in QUEUES:
        value = stored.get(queue.encode())
        if value is not None:
            age.add_metric([queue], max(0.0, now - float(value)))
    return [age]
