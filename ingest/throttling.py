"""Per-application token bucket in Redis, at most one round trip per request.

If Redis cannot be reached the request is let through: a rate limiter must never be the
reason an event is lost. The failure is logged at most once a minute.

At high limits a process leases a small slice of tokens at a time (at most 1% of the burst
and 50 ms of the rate, held for at most a second) and spends it locally, so most requests do
not wait on Redis at all. Small limits lease exactly what is asked: their counting stays exact.
"""

import logging
import threading
import time
from typing import cast

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from apps_registry.selectors import AppCredentials, SdkKeyCredentials
from saastracker.redis_client import get_redis

logger = logging.getLogger(__name__)

_Credentials = AppCredentials | SdkKeyCredentials  # what request.auth holds on the ingest APIs

_LUA_BUCKET = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want = math.max(cost, tonumber(ARGV[4] or cost))
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, ts = burst, t end
tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
local wait, granted = 0, 0
if tokens >= cost then
  granted = math.max(cost, math.min(want, math.floor(tokens)))
  tokens = tokens - granted
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', t)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {tostring(wait), tostring(granted)}
"""

_LEASE_SECONDS = 1.0  # unspent leased tokens are dropped after this, so a lease cannot hoard
_leases: dict[str, list[float]] = {}  # bucket -> [tokens left, monotonic expiry]
_leases_lock = threading.Lock()


def _lease_size(rate: float, burst: float, cost: float) -> float:
    return max(cost, float(int(min(rate * 0.05, burst * 0.01))))


def _spend_leased(bucket: str, cost: float) -> bool:
    with _leases_lock:
        lease = _leases.get(bucket)
        if lease is not None and lease[0] >= cost and lease[1] > time.monotonic():
            lease[0] -= cost
            return True
    return False


_script = None
_last_warning = 0.0


def take_token(bucket: str, *, rate: float, burst: float, cost: float = 1) -> float:
    """Take `cost` tokens; return 0 when allowed, else the seconds to wait."""
    global _script, _last_warning
    if _spend_leased(bucket, cost):
        return 0.0
    want = _lease_size(rate, burst, cost)
    try:
        if _script is None:
            _script = get_redis().register_script(_LUA_BUCKET)
        wait, granted = (float(x) for x in _script(keys=[bucket], args=[rate, burst, cost, want]))
        if granted > cost:
            with _leases_lock:
                _leases[bucket] = [granted - cost, time.monotonic() + _LEASE_SECONDS]
        return wait
    except RedisError:
        if time.monotonic() - _last_warning > 60:
            _last_warning = time.monotonic()
            logger.warning("rate limiter unavailable (Redis); letting requests through", exc_info=True)
        return 0.0


class ApplicationRateThrottle(BaseThrottle):
    """Throttle per application (request.auth carries the app), configurable in settings."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        self._wait = take_token(
            f"rl:app:{cast(_Credentials, request.auth).app_id}",
            rate=settings.RATE_LIMIT_PER_SECOND,
            burst=settings.RATE_LIMIT_BURST,
        )
        return self._wait <= 0

    def wait(self) -> float:
        return self._wait
