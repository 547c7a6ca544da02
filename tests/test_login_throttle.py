"""Login throttling on both login forms: per username and per address, growing lockouts, a clear page,
and an unlock command (django-axes, configured in saastracker/logins.py)."""

import os
import threading

import pytest
from django.core.management import call_command

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

FORMS = {"pages": "/app/login/", "admin": "/admin/login/"}
PASSWORD = "pw-for-tests"


@pytest.fixture
def person():
    return UserFactory(username="alice", is_staff=True)


def attempt(client, form: str, username: str, password: str, address: str = "198.51.100.7", **extra):
    return client.post(FORMS[form], {"username": username, "password": password}, REMOTE_ADDR=address, **extra)


def logged_in(response) -> bool:
    return response.status_code == 302


@pytest.mark.parametrize("form", FORMS)
def test_a_username_is_locked_out_after_five_wrong_passwords_even_with_the_right_one(client, person, settings, form):
    # Given five wrong passwords for alice, from five different addresses (the fifth answers the lockout)
    for i in range(4):
        assert attempt(client, form, "alice", "wrong", address=f"203.0.113.{i}").status_code == 200
    assert attempt(client, form, "alice", "wrong", address="203.0.113.4").status_code == 429
    # When the right password comes, from yet another address
    response = attempt(client, form, "alice", PASSWORD, address="192.0.2.44")
    # Then it is refused with a page that says why and how long to wait
    assert response.status_code == 429
    assert response["Retry-After"] == str(settings.LOGIN_LOCKOUT_MINUTES * 60)
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert f"Try again in {settings.LOGIN_LOCKOUT_MINUTES} minutes" in page
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("form", FORMS)
def test_an_address_is_locked_out_after_five_wrong_passwords_for_any_usernames(client, person, form):
    for i in range(5):
        attempt(client, form, f"guess{i}", "wrong", address="198.51.100.9")
    # alice's right password from that address is refused; from another address it works
    assert attempt(client, form, "alice", PASSWORD, address="198.51.100.9").status_code == 429
    assert logged_in(attempt(client, form, "alice", PASSWORD, address="198.51.100.10"))


def test_the_lockout_grows_while_the_guessing_goes_on(client, person, settings):
    base = settings.LOGIN_LOCKOUT_MINUTES * 60
    for _ in range(5):
        attempt(client, "pages", "alice", "wrong")
    assert attempt(client, "pages", "alice", "wrong")["Retry-After"] == str(base)
    for _ in range(4):  # 10 failures in all (attempts while locked out count)
        attempt(client, "pages", "alice", "wrong")
    assert attempt(client, "pages", "alice", "wrong")["Retry-After"] == str(2 * base)
    for _ in range(4):
        attempt(client, "pages", "alice", "wrong")
    assert attempt(client, "pages", "alice", "wrong")["Retry-After"] == str(4 * base)


@pytest.mark.parametrize("form", FORMS)
def test_the_unlock_commands_let_the_right_password_in_again(client, person, form):
    for _ in range(6):
        attempt(client, form, "alice", "wrong")
    assert attempt(client, form, "alice", PASSWORD).status_code == 429

    call_command("axes_reset_username", "alice")
    call_command("axes_reset_ip", "198.51.100.7")

    assert logged_in(attempt(client, form, "alice", PASSWORD))


def test_a_success_before_the_limit_clears_the_count(client, person):
    for _ in range(4):
        attempt(client, "pages", "alice", "wrong")
    assert logged_in(attempt(client, "pages", "alice", PASSWORD))
    client.logout()
    for _ in range(4):
        attempt(client, "pages", "alice", "wrong")
    assert logged_in(attempt(client, "pages", "alice", PASSWORD))


def test_a_forged_x_forwarded_for_does_not_dodge_the_address_lockout_without_a_proxy(client, person):
    for i in range(5):
        attempt(client, "pages", f"guess{i}", "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
    assert attempt(client, "pages", "alice", PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429


def test_behind_a_configured_proxy_the_address_is_the_one_the_proxy_saw(client, person, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"  # every request arrives from the proxy
    for i in range(5):
        attempt(client, "pages", f"guess{i}", "wrong", address=proxy, HTTP_X_FORWARDED_FOR=f"forged, 203.0.113.{i}")
    # five different clients: none is locked out, and neither is the proxy
    assert logged_in(attempt(client, "pages", "alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.50"))
    client.logout()
    for _ in range(5):
        attempt(client, "pages", "bob", "wrong", address=proxy, HTTP_X_FORWARDED_FOR="forged, 203.0.113.66")
    response = attempt(client, "pages", "alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="x, 203.0.113.66")
    assert response.status_code == 429


def test_passwords_are_hashed_one_at_a_time_on_a_low_priority_thread(client, settings):
    """A login flood must not take the CPU from ingest: hashing runs at nice 10, off the request thread."""
    from django.contrib.auth.hashers import check_password, make_password

    from saastracker import logins

    settings.PASSWORD_HASHERS = ["saastracker.logins.BackgroundPBKDF2PasswordHasher"]
    encoded = make_password("correct horse")
    assert encoded.startswith("pbkdf2_sha256$")  # Django's format: hashes stored before stay valid
    assert check_password("correct horse", encoded)
    assert not check_password("wrong", encoded)
    (thread_id,) = set(logins.hashing_thread_id)
    assert thread_id != threading.get_native_id()
    assert os.getpriority(os.PRIO_PROCESS, thread_id) == logins.HASHING_NICE

    # And a real login through the form works with it
    UserFactory(username="carol", password="correct horse")
    assert logged_in(attempt(client, "pages", "carol", "correct horse"))
