"""Issuing and checking API tokens. Keys are shown once and stored only as a hash."""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from api.models import ApiToken
from domains.models import Domain

KEY_PREFIX = "pbx_"  # lets secret scanners and people recognise a leaked key
KEY_BYTES = 24  # 192 bits
# Recording every use would turn each read into a write; a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(minutes=1)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def issue_key(token: ApiToken) -> tuple[ApiToken, str]:
    """Give `token` a new key and save it; returns it with its key (the only time it is known).
    An existing token's old key stops working."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    token.key_hash = key_hash(key)
    token.full_clean()
    token.save()
    return token, key


def issue_user_token(
    user: AbstractBaseUser, name: str, read_only: bool = False
) -> tuple[ApiToken, str]:
    """A new token acting as `user`; returns it with its key (the only time it is known)."""
    return issue_key(ApiToken(user=user, name=name, read_only=read_only))


def issue_domain_key(domain: Domain, name: str, read_only: bool = False) -> tuple[ApiToken, str]:
    """A new API key of `domain`; returns it with its key (the only time it is known)."""
    return issue_key(ApiToken(domain=domain, name=name, read_only=read_only))


def find_token(key: str) -> ApiToken | None:
    """The token with this key, None for an unknown key. One indexed lookup."""
    if not key.startswith(KEY_PREFIX):
        return None
    token = ApiToken.objects.select_related("user", "domain").filter(key_hash=key_hash(key)).first()
    if token is not None:
        _record_use(token)
    return token


def _record_use(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at and now - token.last_used_at < LAST_USED_PRECISION:
        return
    # An UPDATE by primary key, not save(): the token's other fields are left alone.
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
