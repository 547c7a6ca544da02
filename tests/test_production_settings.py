"""Production defaults that are only safe when they are the defaults: metrics token, HSTS, proxy headers.

The prod settings module is evaluated in a child process (it reads the environment once, at import),
and the headers are checked on the real server (`scripts/serve`).
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .fixtures.serve import http, serve_start, serve_stop

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {"SECRET_KEY": "s", "FIELD_ENCRYPTION_KEY": "2W5mE6bY1pQh0oBvV2c8i2nJcQ1w3m9y3r0uGZQpX1k="}
NAMES = ["SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", "METRICS_TOKEN", "METRICS_LOOPBACK_ALLOWED"]


def prod_settings(**env: str) -> subprocess.CompletedProcess:
    """Import the prod settings with exactly `env` (plus PATH) and print the settings named in NAMES."""
    code = f"import json, saastracker.settings.prod as s; print(json.dumps({{n: getattr(s, n) for n in {NAMES!r}}}))"
    return subprocess.run(  # noqa: S603 - our own interpreter and settings
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **BASE_ENV, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_refuses_to_start_without_a_metrics_token():
    result = prod_settings()
    assert result.returncode != 0
    assert "METRICS_TOKEN must be set in production" in result.stderr


@pytest.mark.parametrize("env", [{"METRICS_TOKEN": "t0k"}, {"METRICS_LOOPBACK_ALLOWED": "1"}])
def test_production_starts_with_a_token_or_with_loopback_serving_explicitly_allowed(env):
    result = prod_settings(**env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["METRICS_LOOPBACK_ALLOWED"] is (env.get("METRICS_LOOPBACK_ALLOWED") == "1")


def test_production_turns_hsts_on_by_default_and_a_setting_turns_it_off():
    assert json.loads(prod_settings(METRICS_TOKEN="t").stdout)["SECURE_HSTS_SECONDS"] == 31536000
    assert json.loads(prod_settings(METRICS_TOKEN="t", SECURE_HSTS_SECONDS="0").stdout)["SECURE_HSTS_SECONDS"] == 0


def test_x_forwarded_proto_is_believed_only_when_a_proxy_is_configured():
    assert json.loads(prod_settings(METRICS_TOKEN="t").stdout)["SECURE_PROXY_SSL_HEADER"] is None
    with_proxy = json.loads(prod_settings(METRICS_TOKEN="t", TRUSTED_PROXY_COUNT="1").stdout)
    assert with_proxy["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_real_server_sends_hsts_over_https_and_ignores_a_clients_forwarded_proto(tmp_path):
    """A client claiming https without a proxy gets the http treatment (redirect, no HSTS)."""
    claim = {"X-Forwarded-Proto": "https"}
    (tmp_path / "direct").mkdir()
    (tmp_path / "proxied").mkdir()
    proc, server = serve_start(tmp_path / "direct", workers=1, SECURE_SSL_REDIRECT="1")
    try:
        status, headers, _ = http(server, "/livez", headers=claim)  # exempt from the redirect
        assert status == 200
        assert "strict-transport-security" not in headers
        request = urllib.request.Request(server.base_url + "/app/login/", headers=claim)  # noqa: S310 - loopback
        assert _status_without_redirects(request) == 301  # to https: the claimed scheme was not believed
    finally:
        serve_stop(proc)

    proc, server = serve_start(tmp_path / "proxied", workers=1, SECURE_SSL_REDIRECT="1", TRUSTED_PROXY_COUNT="1")
    try:
        status, headers, _ = http(server, "/app/login/", headers=claim)
        assert status == 200
        assert headers["strict-transport-security"] == "max-age=31536000"
    finally:
        serve_stop(proc)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _status_without_redirects(request: urllib.request.Request) -> int:
    try:
        with urllib.request.build_opener(_NoRedirect()).open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
