import codecs
import os

from django.core.exceptions import SuspiciousOperation
from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.core.wsgi import get_wsgi_application
from django.http import QueryDict
from django.utils.http import parse_header_parameters

from pbx.startup import require_secrets

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbx.settings")

django_application = get_wsgi_application()
require_secrets()


def unreadable_request(environ) -> str | None:
    """Why Django could not even build a request from this one, or None.

    Django reads the Content-Type (and, with a charset, the query string) while it builds the
    request, before any middleware runs; a failure there would be a 500 from the server.
    """
    content_type = environ.get("CONTENT_TYPE")
    if not content_type:
        return None
    try:
        _, params = parse_header_parameters(content_type)
    except ValueError:
        return "the Content-Type header cannot be read"
    charset = params.get("charset")
    if not charset:
        return None
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        return None  # Django ignores charsets it does not know
    if not codec._is_text_encoding:
        return f"charset {charset!r} is not a text encoding"
    try:
        QueryDict(get_bytes_from_wsgi(environ, "QUERY_STRING", ""), encoding=charset)
    except (SuspiciousOperation, ValueError, UnicodeError):
        return "the query string cannot be read with that charset"
    return None


def application(environ, start_response):
    reason = unreadable_request(environ)
    if reason is None:
        return django_application(environ, start_response)
    body = f"Bad Request: {reason}".encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]
