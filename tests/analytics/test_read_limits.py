"""One tenant's analytics reads cannot take every thread and CPU: a per-company concurrency limit.

The slots are held in Redis while a read runs; here they are taken the way a running read takes
them (`read_slot_acquire`), so the test needs no slow query to hold them.
"""

import threading
import time

import pytest

from analytics.limits import read_slot_acquire, read_slot_release
from saastracker.redis_client import get_redis
from saastracker.wsgi import route_ingest
from tests.factories import ApplicationFactory, MembershipFactory, PersonalApiKeyFactory

pytestmark = pytest.mark.django_db


def read(api_client, app, key: str):
    return api_client.get(f"/api/v1/analytics/apps/{app.uuid}/activity", HTTP_AUTHORIZATION=f"Bearer {key}")


@pytest.fixture
def reader(application):
    return PersonalApiKeyFactory(user=MembershipFactory(company=application.company).user).raw_key


def test_reads_past_the_companys_limit_get_429_with_retry_after(api_client, application, reader, settings):
    settings.ANALYTICS_READS_PER_TENANT = 2
    # Given two reads of the company in flight
    held = [read_slot_acquire(company_id=application.company_id) for _ in range(2)]

    # When a third arrives, then it is refused at once, saying why and when to come back
    response = read(api_client, application, reader)
    assert response.status_code == 429
    assert response["Retry-After"] == str(settings.ANALYTICS_READS_RETRY_AFTER)
    assert response.json()["error"] == "too_many_reads"
    assert "2 analytics reads running" in response.json()["message"]

    # ... while another company's reads are not affected
    other = ApplicationFactory()
    other_key = PersonalApiKeyFactory(user=MembershipFactory(company=other.company).user).raw_key
    assert read(api_client, other, other_key).status_code == 200

    # And once one read ends, the next one runs
    read_slot_release(company_id=application.company_id, token=held[0])
    assert read(api_client, application, reader).status_code == 200


def test_a_read_gives_its_slot_back_whatever_its_answer(api_client, application, reader, settings):
    settings.ANALYTICS_READS_PER_TENANT = 1
    assert read(api_client, application, reader).status_code == 200
    bad = api_client.post(
        f"/api/v1/analytics/apps/{application.uuid}/query",
        {"source": "nope"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {reader}",
    )
    assert bad.status_code == 400
    assert get_redis().zcard(f"analytics:reads:{application.company_id}") == 0
    assert read(api_client, application, reader).status_code == 200


def test_a_slot_of_a_process_that_died_lapses(api_client, application, reader, settings):
    settings.ANALYTICS_READS_PER_TENANT = 1
    slots = f"analytics:reads:{application.company_id}"
    get_redis().zadd(slots, {"live": time.time() + 60})  # a read in flight
    assert read(api_client, application, reader).status_code == 429
    # A slot past its lapse time (its process died mid-read) is not counted
    get_redis().zadd(slots, {"live": time.time() - 1})
    assert read(api_client, application, reader).status_code == 200


def test_other_requests_cannot_take_the_threads_kept_for_ingest():
    """At most `other_limit` non-ingest requests at once per process; past that 503 at once, ingest still served."""
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_full(environ, start_response):
        started.release()
        release.wait(10)
        start_response("200 OK", [])
        return [b"read"]

    def ingest(environ, start_response):
        start_response("202 Accepted", [])
        return [b"stored"]

    app = route_ingest(slow_full, ingest, other_limit=2)
    statuses: list[str] = []

    def call(path: str) -> list[bytes]:
        return list(app({"PATH_INFO": path}, lambda status, headers: statuses.append(status)))

    # Given two slow reads occupying the threads other requests may use
    readers = [threading.Thread(target=call, args=("/api/v1/analytics/apps/",)) for _ in range(2)]
    for t in readers:
        t.start()
    assert started.acquire(timeout=5)
    assert started.acquire(timeout=5)
    # When a third read, a login and an event arrive
    began = time.monotonic()
    assert b"busy" in call("/api/v1/analytics/apps/")[0]
    assert b"busy" in call("/app/login/")[0]
    assert call("/v1/events") == [b"stored"]
    # Then the read and the login are refused at once, the event is stored
    assert time.monotonic() - began < 1
    assert statuses == ["503 Service Unavailable", "503 Service Unavailable", "202 Accepted"]
    release.set()
    for t in readers:
        t.join()
    assert call("/app/login/") == [b"read"]  # the threads are back
