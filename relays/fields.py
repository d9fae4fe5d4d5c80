"""A model field stored encrypted: the relays' credentials (webhook signing secrets, Entra
client secrets, Slack tokens) must be usable by the server, so they cannot be hashed like
passwords, but a copy of the database alone must not give them away.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key derived from SECRET_KEY
with HKDF, so the key stays outside the database and no setting is added. SECRET_KEY_FALLBACKS
still decrypt: after a change of SECRET_KEY, the old one goes there until the secrets have
been saved again (docs/operations.md).
"""

import base64
import functools
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

logger = logging.getLogger(__name__)

_PURPOSE = b"presence relays: stored credentials"


def _fernet_key(secret_key: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(derived)


@functools.cache
def _fernet(secret_key: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    # The first key encrypts; all of them decrypt.
    return MultiFernet([Fernet(_fernet_key(key)) for key in (secret_key, *fallbacks)])


def fernet() -> MultiFernet:
    return _fernet(settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode() if value else ""


def decrypt(stored: str) -> str:
    """The plain text; empty when it was encrypted under a key no longer configured."""
    if not stored:
        return ""
    try:
        return fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        logger.error(
            "a stored relay secret cannot be decrypted with SECRET_KEY or "
            "SECRET_KEY_FALLBACKS; enter it again in the relay's settings"
        )
        return ""


class EncryptedTextField(models.TextField):
    """Plain text in Python, Fernet-encrypted in the database. Not for lookups."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value) if value is not None else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value) if value is not None else value
