"""How many analytics reads one tenant (company) may have running at once, across every web process.

An explorer query may run for up to `ANALYTICS_QUERY_TIMEOUT` seconds of PostgreSQL CPU. Without a
limit, one tenant sending 64 of them at once had every other tenant's ingest wait seconds (issue
18). Past `ANALYTICS_READS_PER_TENANT` reads in flight, a read is answered 429 at once with
`Retry-After`: it costs the tenant a retry, and costs everyone else nothing.

The slots are a Redis sorted set per company (member: a random token, score: when the slot lapses),
so a process that dies mid-read frees its slots after `ANALYTICS_QUERY_TIMEOUT` + a margin. If Redis
is unreachable the limit is not applied (reads go on, as ingest's rate limit fails open too).
"""

from __future__ import annotations

import logging
import secrets
import time

from django.conf import settings

from ingest.errors import ApiError
from saastracker.redis_client import get_redis

logger = logging.getLogger(__name__)

_SLOT_MARGIN_SECONDS = 30  # a slot outlives the longest read by this much, for crashed processes only

# KEYS[1]: the tenant's set. ARGV: now, lapses_at, limit, token, ttl. 1 if a slot was taken, else 0.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


def _key(company_id: int) -> str:
    return f"analytics:reads:{company_id}"


def too_many_reads() -> ApiError:
    limit = settings.ANALYTICS_READS_PER_TENANT
    return ApiError(
        status_code=429,
        code="too_many_reads",
        message=f"This company already has {limit} analytics reads running; retry after the Retry-After seconds.",
        headers={"Retry-After": str(settings.ANALYTICS_READS_RETRY_AFTER)},
    )


def read_slot_acquire(*, company_id: int) -> str | None:
    """A token holding one of the company's read slots, None when Redis is down; raises the 429 when full."""
    token = secrets.token_hex(8)
    lifetime = int(settings.ANALYTICS_QUERY_TIMEOUT) + _SLOT_MARGIN_SECONDS
    now = time.time()
    try:
        taken = get_redis().eval(
            _ACQUIRE, 1, _key(company_id), now, now + lifetime, settings.ANALYTICS_READS_PER_TENANT, token, lifetime
        )
    except Exception:  # any client or socket error: fail open, reads are not worth an outage
        logger.warning("analytics read limit not applied: Redis unreachable", exc_info=True)
        return None
    if not taken:
        raise too_many_reads()
    return token


def read_slot_release(*, company_id: int, token: str) -> None:
    try:
        get_redis().zrem(_key(company_id), token)
    except Exception:  # the slot lapses by itself
        logger.warning("analytics read slot not released: Redis unreachable", exc_info=True)
