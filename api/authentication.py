"""`Authorization: Bearer <key>` (or `Token <key>`) with a hashed ApiToken."""

from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from api.models import ApiToken
from api.tokens import find_token

SCHEMES = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    """A person's token authenticates as that person; a domain key as nobody in particular.

    Either way `request.auth` is the ApiToken, which is what the API's access rules read.
    """

    def authenticate(self, request: Request) -> tuple[object, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in SCHEMES:
            return None  # not ours: let session authentication have a look
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: 'Bearer <key>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = find_token(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.user_id is None:
            return AnonymousUser(), token
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes unauthenticated requests 401 (with this challenge) rather than 403.
        return 'Bearer realm="api"'
