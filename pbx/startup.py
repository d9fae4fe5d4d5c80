"""What every long-running process checks before it starts serving or working."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def require_secrets() -> None:
    """Refuse to start without SECRET_KEY or CALL_STATE_KEY (unless DEBUG): better a server
    that does not start than one that cannot check a password or sign a session."""
    if settings.MISSING_SECRETS:
        names = " and ".join(settings.MISSING_SECRETS)
        raise ImproperlyConfigured(f"{names} must be set (a long random string) unless DEBUG=true")
