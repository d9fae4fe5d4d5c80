"""Call-state passwords: generated, shown once, stored as a keyed hash.

A slow password hash (PBKDF2 costs ~0.6 s here) would make every call_state.htm request that
slow. The passwords are generated with 144 bits of randomness, so a fast keyed hash is enough:
guessing is hopeless, and without CALL_STATE_KEY a database dump cannot be tested offline.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from domains.models import Domain, Extension, ProviderKey

PASSWORD_BYTES = 18  # 144 bits, 24 URL-safe characters


def hash_password(password: str) -> str:
    key = settings.CALL_STATE_KEY.encode()
    if not key:  # a command run without it must not store hashes nobody can check later
        raise ImproperlyConfigured("CALL_STATE_KEY must be set (a long random string)")
    return hmac.new(key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def password_matches(password: str, stored_hash: str) -> bool:
    """Constant-time check. An empty stored hash (no password issued) never matches."""
    return bool(stored_hash) and hmac.compare_digest(hash_password(password), stored_hash)


def issue_password(extension: Extension) -> str:
    """Generate a new password for the extension, store its hash and return it (once)."""
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    extension.secret_hash = hash_password(password)
    extension.save(update_fields=["secret_hash"])
    return password


def issue_provider_key(key: ProviderKey) -> str:
    """Generate a new provider key, store its hash and return it (once)."""
    secret = secrets.token_urlsafe(PASSWORD_BYTES)
    key.secret_hash = hash_password(secret)
    key.save(update_fields=["secret_hash"])
    return secret


def kiosk_token_hash(token: str) -> str:
    """Kiosk tokens are random (144 bits), so a plain SHA-256 is enough to keep them secret."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_kiosk_token(domain: Domain) -> str:
    """A new wall-screen token for the domain; the previous one stops working at once."""
    token = secrets.token_urlsafe(PASSWORD_BYTES)
    domain.kiosk_token_hash = kiosk_token_hash(token)
    domain.save(update_fields=["kiosk_token_hash"])
    return token


def revoke_kiosk_token(domain: Domain) -> None:
    domain.kiosk_token_hash = ""
    domain.save(update_fields=["kiosk_token_hash"])
