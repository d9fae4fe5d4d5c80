import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Answer 503 while the database cannot be reached, instead of a 500.

    Django drops the broken connection at the end of the request, so service resumes by
    itself once the database is back.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable: %s", type(exception).__name__)
        return service_unavailable()


def service_unavailable() -> HttpResponse:
    response = HttpResponse(
        "Service Unavailable: database unreachable, retry later\n",
        status=503,
        content_type="text/plain",
    )
    response["Retry-After"] = "5"
    response["Cache-Control"] = "no-store"
    return response
