"""Call-state passwords: generated, shown once, stored as a keyed hash.

A slow password hash (PBKDF2 costs ~0.6 s here) would make every call_state.htm request that
slow. The passwords are generated with 144 bits of randomness, so a fast keyed hash is enough:
guessing is hopeless, and without CALL_STATE_KEY a database dump cannot be tested offline.
"""

import hashlib
import hmac
import secrets

from django.conf import settings

from domains.models import Extension

PASSWORD_BYTES = 18  # 144 bits, 24 URL-safe characters


def hash_password(password: str) -> str:
    key = settings.CALL_STATE_KEY.encode()
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
