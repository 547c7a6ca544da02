"""Login throttling (django-axes) on both login forms: `/app/login/` and `/admin/login/`.

Failed logins are counted per username and per client address, separately: `LOGIN_FAILURE_LIMIT`
failures for one username (from anywhere) or from one address (for any username) lock that
username or address out. The lockout lasts `LOGIN_LOCKOUT_MINUTES`, doubled for every further
`LOGIN_FAILURE_LIMIT` failures (attempts made while locked out count too), up to a day: growing
delays for a guesser that keeps going, one short wait for a person who mistyped. While locked out
the password is not even checked (no hashing: a flood of logins cannot buy CPU), and the answer is
a 429 page saying how long to wait, with `Retry-After`. A successful login clears its failures.

Unlock by hand: `manage.py axes_reset_username USERNAME`, `manage.py axes_reset_ip ADDRESS`, or
`manage.py axes_reset` (everything); the attempts are listed in the admin under "Axes".
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

_MAX_LOCKOUT = timedelta(days=1)


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind `TRUSTED_PROXY_COUNT` proxies the X-Forwarded-For
    entry that many from the right (the ones to its left are whatever the client wrote)."""
    count = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR", "")


def _failures(request: HttpRequest) -> int:
    """Recent failures of this username or this address, whichever is higher (axes counts the same way)."""
    from axes.models import AccessAttempt  # the app registry is ready by the time a login runs

    username = request.POST.get("username") if request.method == "POST" else None
    counts = [AccessAttempt.objects.filter(ip_address=client_ip(request)).aggregate(n=Sum("failures_since_start"))["n"]]
    if username:
        counts.append(AccessAttempt.objects.filter(username=username).aggregate(n=Sum("failures_since_start"))["n"])
    return max(c or 0 for c in counts)


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """How long a lockout lasts: the base, doubled for every `limit` failures past the first `limit`."""
    base = timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    if request is None:
        return base
    cached = getattr(request, "_login_cool_off", None)
    if cached is not None:
        return cached
    limit = settings.AXES_FAILURE_LIMIT
    doublings = max(0, _failures(request) - limit) // limit
    result = min(base * 2 ** min(doublings, 20), _MAX_LOCKOUT)
    request._login_cool_off = result  # type: ignore[attr-defined]  # asked several times per request
    return result


def locked_out(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None) -> HttpResponse:
    """429 with a page that says what happened and how long to wait (both login forms)."""
    wait = cool_off(request)
    minutes = max(1, math.ceil(wait.total_seconds() / 60))
    response = render(
        request,
        "login_locked.html",
        {"minutes": minutes, "admin": request.path.startswith("/admin/")},
        status=429,
    )
    response["Retry-After"] = str(int(wait.total_seconds()))
    return response


# --- Password hashing off the ingest path's CPU -------------------------------------------------
#
# A PBKDF2 check costs ~0.3 s of CPU. Login floods (4-16 loops in issue 18) pushed another tenant's
# ingest p99 to 0.5-0.7 s on two cores. Every hash of a web process therefore runs on one thread of
# its own, at nice 10: one at a time per process, and when ingest wants the CPU, ingest gets it.
# Logins wait their turn (on threads that are not kept for ingest; see saastracker/wsgi.py).

HASHING_NICE = 10
_hashing: ThreadPoolExecutor | None = None
_hashing_lock = threading.Lock()
hashing_thread_id: list[int] = []  # the hashing thread's native id, once started (read by the tests)


def _hashing_thread_start() -> None:
    hashing_thread_id.append(threading.get_native_id())
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: run at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICE)  # this thread only (Linux)


def _hashing_executor() -> ThreadPoolExecutor:
    global _hashing
    with _hashing_lock:
        if _hashing is None:
            _hashing = ThreadPoolExecutor(1, thread_name_prefix="password-hashing", initializer=_hashing_thread_start)
        return _hashing


class BackgroundPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256 (same name and format: stored hashes stay valid), computed on the
    low-priority hashing thread."""

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        parent = super().encode
        return _hashing_executor().submit(parent, password, salt, iterations).result()
