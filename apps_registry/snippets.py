"""What a customer needs to start sending: public URLs and ready-to-paste signing examples.

Shared by the admin's application page and the management commands so both say the same thing.
"""

import shlex

from django.conf import settings

EXAMPLE_EVENT = (
    '{"event":"signup_completed","user_hash":"' + "a" * 64 + '","customer_org_id":"org_42","path":"/welcome"}'
)


def ingest_url() -> str:
    """The full `/v1/events` URL, as the public docs tell customers to use it."""
    return f"{settings.PUBLIC_INGEST_BASE_URL}/v1/events"


def batch_url() -> str:
    return f"{settings.PUBLIC_INGEST_BASE_URL}/api/v1/ingest/events"


def curl_snippet(*, app_uuid, secret: str = "$API_SECRET", body: str = EXAMPLE_EVENT) -> str:  # noqa: S107 - a shell variable name
    """A shell snippet that signs the exact bytes it sends (openssl) and posts them."""
    secret_part = secret if secret.startswith("$") else shlex.quote(secret)
    return (
        f"BODY={shlex.quote(body)}\n"
        f"SIG=$(printf '%s' \"$BODY\" | openssl dgst -sha256 -hmac {secret_part} | sed 's/^.* //')\n"
        f"curl -sS -X POST {shlex.quote(ingest_url())} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -H 'x-app-uuid: {app_uuid}' \\\n"
        '  -H "x-signature: $SIG" \\\n'
        '  --data-binary "$BODY"'
    )


def python_snippet(*, app_uuid) -> str:
    return (
        "import hashlib, hmac, json, os, urllib.request\n\n"
        'secret = os.environ["API_SECRET"].encode()\n'
        "body = json.dumps({\n"
        '    "event": "signup_completed",\n'
        '    "user_hash": hashlib.sha256(b"user-123").hexdigest(),\n'
        '    "customer_org_id": "org_42",\n'
        "}).encode()  # sign exactly the bytes you send\n"
        "request = urllib.request.Request(\n"
        f'    "{ingest_url()}",\n'
        "    data=body,\n"
        "    headers={\n"
        '        "Content-Type": "application/json",\n'
        f'        "x-app-uuid": "{app_uuid}",\n'
        '        "x-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),\n'
        "    },\n"
        ")\n"
        "print(urllib.request.urlopen(request).read().decode())"
    )
