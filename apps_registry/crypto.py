"""Secret material: generation, encryption at rest, hashing and masking.

Everything that touches a raw secret lives here so it is easy to audit that none is logged.
"""

import hashlib
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

API_SECRET_PREFIX = "sts_"  # noqa: S105 - a public prefix, not a secret
SDK_KEY_PREFIX = "stk_"


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])


def fernet() -> MultiFernet:
    """The first key of FIELD_ENCRYPTION_KEY encrypts; every listed key decrypts."""
    return _fernet(settings.FIELD_ENCRYPTION_KEY)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return fernet().decrypt(token.encode()).decode()


def new_api_secret() -> str:
    return API_SECRET_PREFIX + secrets.token_urlsafe(32)


def new_sdk_key() -> tuple[str, str]:
    """Return (full key, readable prefix). The prefix identifies the key to support staff."""
    prefix = SDK_KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_key(key: str) -> str:
    """SHA-256 is enough for 256-bit random keys: there is nothing to brute-force."""
    return hashlib.sha256(key.encode()).hexdigest()
