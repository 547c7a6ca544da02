"""The per-application token bucket as /v1/events uses it: exact at small limits, leased at high ones."""

import pytest

from ingest.models import Event
from saastracker.redis_client import get_redis

from .v1_helpers import event_body, send

pytestmark = pytest.mark.django_db


def bucket(application) -> tuple[float, float]:
    """(tokens left, time of the last take) as the bucket in Redis holds them."""
    tokens, ts = get_redis().hmget(f"rl:app:{application.id}", "tokens", "ts")
    return float(tokens), float(ts)


def test_high_limits_lease_tokens_so_most_requests_skip_redis(client, application, api_secret, settings):
    # Given a limit of 1000/s with a burst of 1000: a process leases 1% of the burst at a time
    settings.RATE_LIMIT_PER_SECOND = 1000
    settings.RATE_LIMIT_BURST = 1000

    # When one request arrives, the bucket gives this process ten tokens at once
    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202
    after_first = bucket(application)
    assert after_first[0] == pytest.approx(990, abs=1)

    # Then the next nine requests spend the lease without touching the bucket
    for _ in range(9):
        assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202
    assert bucket(application) == after_first

    # And the eleventh takes a new lease
    assert send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code == 202
    assert bucket(application)[1] > after_first[1]
    assert Event.objects.count() == 11


def test_small_limits_are_counted_exactly(client, application, api_secret, settings):
    # Given a burst of five and a slow refill: no lease, every request takes one token from Redis
    settings.RATE_LIMIT_PER_SECOND = 1
    settings.RATE_LIMIT_BURST = 5

    answers = [
        send(client, app_uuid=application.uuid, secret=api_secret, body=event_body()).status_code for _ in range(7)
    ]

    assert answers == [202] * 5 + [429] * 2
    assert Event.objects.count() == 5
