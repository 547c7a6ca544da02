"""SSRF refusal and the HTTP details of one attempt (webhooks/transport.py), on real sockets."""

import ipaddress

import pytest

from webhooks import signing, transport


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 - an address under test, not a bind
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
    ],
)
def test_internal_addresses_are_not_public(address):
    assert transport.address_is_public(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_public(address):
    assert transport.address_is_public(ipaddress.ip_address(address)) is True


def test_a_hostname_resolving_to_loopback_is_refused(receiver):
    with pytest.raises(transport.TargetRefusedError, match="non-public"):
        transport.post(
            url=f"http://localhost:{receiver.port}/hook", body=b"{}", headers={}, timeout=2, allow_private=False
        )
    assert receiver.requests == []


def test_redirects_are_not_followed_and_the_answer_is_kept(receiver):
    receiver.script((307, {"Location": "http://169.254.169.254/latest/meta-data"}))

    result = transport.post(url=receiver.url + "?x=1", body=b'{"a":1}', headers={}, timeout=2, allow_private=True)

    assert result.status == 307
    assert result.headers["location"].startswith("http://169.254.169.254")
    [request] = receiver.requests
    assert request.path == "/hook?x=1"
    assert request.body == b'{"a":1}'
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_a_closed_port_is_an_error_not_an_exception(receiver):
    receiver.down()
    result = transport.post(url=receiver.url, body=b"{}", headers={}, timeout=2, allow_private=True)
    assert result.status is None
    assert result.error


def test_signatures_follow_the_standard_webhooks_example():
    # The worked example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        signing.signature(secret=secret, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
