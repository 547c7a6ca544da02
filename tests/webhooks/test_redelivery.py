"""A delivery's lease: held while the request runs, freed within seconds when its worker dies."""

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection, connections

from saastracker.celery import app
from tests.factories import WebhookMessageFactory
from webhooks import services
from webhooks.models import WebhookMessage
from webhooks.services import endpoint_create, message_deliver, messages_sweep

REPO = Path(__file__).resolve().parents[2]
SWEEP_PERIOD = 5.0  # what beat uses (saastracker/celery.py)


class SlowReceiver:
    """Answers 204 after `hold` seconds; with `hold=None` the first request is never answered."""

    def __init__(self, hold: float | None) -> None:
        self.starts: list[tuple[str, float]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                first = not receiver.starts
                receiver.starts.append((self.headers.get("webhook-id", ""), time.monotonic()))
                if hold is None and first:
                    receiver.release.wait(120)  # the sender dies meanwhile: nobody reads this answer
                elif hold:
                    time.sleep(hold)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.starts) >= count:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_receiver(request):
    receiver = SlowReceiver(request.param)
    yield receiver
    receiver.close()


def _endpoint(company, url):
    return endpoint_create(company=company, url=url, event_types=["onboarding.started"]).endpoint


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("slow_receiver", [2.5], indirect=True)
def test_a_slow_request_keeps_its_lease_and_is_sent_once(company, slow_receiver, monkeypatch):
    # Given a short lease (renewed while the request runs) and an endpoint slower than the lease
    monkeypatch.setattr(services, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(services, "LEASE_RENEW_SECONDS", 0.2)
    message = WebhookMessageFactory(endpoint=_endpoint(company, slow_receiver.url))

    # When one worker delivers it and, after the lease would have run out, a second one tries too
    outcomes = []

    def deliver() -> None:
        try:
            outcomes.append(message_deliver(message_id=message.id))
        finally:
            connections.close_all()

    first = threading.Thread(target=deliver)
    first.start()
    assert slow_receiver.wait_for(1, timeout=5)
    time.sleep(1.5)
    second = message_deliver(message_id=message.id)
    first.join(timeout=10)

    # Then the second finds it still held, and the endpoint got it exactly once
    assert second == "skipped"
    assert outcomes == [WebhookMessage.State.DELIVERED]
    assert [m for m, _ in slow_receiver.starts] == [message.id]
    message.refresh_from_db()
    assert (message.state, message.attempt_count) == (WebhookMessage.State.DELIVERED, 1)


def _deliver_in_a_process(message_id: str) -> subprocess.Popen:
    """`message_deliver` in a separate process we can SIGKILL mid-request, like a crashed worker."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1",
        "WEBHOOK_TIMEOUT_SECONDS": "60",
    }
    code = "import sys, django; django.setup(); from webhooks.services import message_deliver; "
    code += "message_deliver(message_id=sys.argv[1])"
    return subprocess.Popen([sys.executable, "-c", code, message_id], cwd=REPO, env=env)  # noqa: S603


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("slow_receiver", [None], indirect=True)
def test_a_message_in_flight_when_its_worker_dies_is_redelivered_within_30_s(company, slow_receiver):
    # Given a message whose delivery is in flight (the endpoint has the request) in a worker process
    message = WebhookMessageFactory(endpoint=_endpoint(company, slow_receiver.url))
    process = _deliver_in_a_process(message.id)
    assert slow_receiver.wait_for(1, timeout=30), "the worker process never sent the request"

    # When that worker dies, and a worker and the periodic delivery sweep keep running
    process.kill()
    process.wait(timeout=10)
    crashed = time.monotonic()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10, loglevel="WARNING"):
        while time.monotonic() - crashed < 30 and len(slow_receiver.starts) < 2:
            messages_sweep()
            slow_receiver.wait_for(2, timeout=SWEEP_PERIOD)

    # Then it is sent again (same webhook-id) within 30 s of the crash, and recorded as delivered
    assert len(slow_receiver.starts) == 2, "not redelivered within 30 s of the crash"
    (first_id, _), (again_id, again_at) = slow_receiver.starts
    assert first_id == again_id == message.id
    assert again_at - crashed < 30
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message.refresh_from_db()
        if message.state == WebhookMessage.State.DELIVERED:
            break
        time.sleep(0.1)
    assert message.state == WebhookMessage.State.DELIVERED
