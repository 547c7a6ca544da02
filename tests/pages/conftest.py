"""Fixtures of the pages' tests: the real server (`scripts/serve`) on the suite's database, Debian's
Chromium driven by Playwright, a guard that fails a test on any browser console error, screenshots.

The server is a separate process, so it sees only committed rows: browser tests use
`transactional_db`, and the server is pointed at pytest-django's test database by `DATABASE_URL`.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter
from django.conf import settings
from django.test import Client
from playwright.sync_api import BrowserContext, Page

from apps_registry.models import Membership
from tests.factories import ApplicationFactory, CompanyFactory, MembershipFactory

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("PAGES_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "saastracker-screenshots")
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"

# Playwright's sync API runs an event loop in the test's thread; the test still talks to the database
# synchronously between browser calls (creating users, checking rows), which is safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def outsider_client(db: None) -> Client:
    """Logged in as the owner of another company (with an application of its own)."""
    other = CompanyFactory()
    ApplicationFactory(company=other)
    client = Client()
    client.force_login(MembershipFactory(company=other, role=Membership.Role.OWNER).user)
    return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pages_server(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """`scripts/serve` (granian, the production entry point) on a free port, on the test database."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (scripts/test installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run the browser tests, not skip them
        pytest.skip(message)
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "saastracker.settings.test",
        "DATABASE_URL": f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "8",
        "PAGES_STREAM_POLL_MS": "1000",
        "LOG_LEVEL": "WARNING",
    }
    log = tempfile.NamedTemporaryFile(prefix="pages-server-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603 - our own script
        [str(ROOT / "scripts" / "serve")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/app/login/", timeout=2):  # noqa: S310 - loopback
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"scripts/serve did not start: {Path(log.name).read_text()[-2000:]}") from None
            time.sleep(0.3)
    yield base
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium: a browser downloaded by Playwright cannot be fetched here."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}, "accept_downloads": True}


class ConsoleGuard:
    """Every console error and uncaught exception of the page; a test fails if any is left."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []

    def allow(self, fragment: str) -> None:
        """Expect errors containing `fragment` (e.g. the 404 a test asks for on purpose)."""
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def console() -> ConsoleGuard:
    return ConsoleGuard()


@pytest.fixture
def page(context: BrowserContext, console: ConsoleGuard) -> Iterator[Page]:
    """pytest-playwright's page, watched: a console error or a page error fails the test."""
    page = context.new_page()
    page.on("console", lambda msg: console.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    page.set_default_timeout(15_000)
    yield page
    page.close()
    unexpected = console.unexpected()
    assert not unexpected, f"browser console errors: {unexpected}"


TAKEN: list[Path] = []  # this run's screenshots, for the summary line


class Screenshots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def take(self, page: Page, name: str) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        TAKEN.append(path)
        if os.environ.get("PAGES_SCREENSHOTS_UPDATE_DOCS"):
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
        return path


@pytest.fixture(scope="session")
def screenshots() -> Screenshots:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return Screenshots(SCREENSHOTS)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if TAKEN:
        terminalreporter.write_line(f"Screenshots of the pages ({len(TAKEN)}): {SCREENSHOTS}")
