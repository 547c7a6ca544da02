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

import math
from datetime import timedelta

from django.conf import settings
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
