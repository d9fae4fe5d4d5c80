from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from api.access import api_token


class ApiCaller(BasePermission):
    """Signed in (a token or a session), and read-only tokens only read.

    What the caller may do within a domain is decided per domain by `api.access`.
    """

    message = "This token is read-only."

    def has_permission(self, request: Request, view) -> bool:
        token = api_token(request)
        if token is None:
            return bool(request.user and request.user.is_authenticated)
        return request.method in SAFE_METHODS or not token.read_only
