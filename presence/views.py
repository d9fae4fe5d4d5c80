from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from presence.call_state import BadParameter, parse_request
from presence.models import SOURCE_CALL_STATE
from presence.service import CallState, apply_call_state
from presence.throttle import limiter

ALLOWED_METHODS = ("GET", "POST")


def _plain(body: str, status: int, **headers: str) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    response["Cache-Control"] = "no-store"
    return response


def client_address(request: HttpRequest) -> str:
    """The caller's address: the peer, or the one our NUM_PROXIES proxies saw."""
    if settings.NUM_PROXIES:
        header = request.META.get("HTTP_X_FORWARDED_FOR", "")
        forwarded = [a.strip() for a in header.split(",") if a.strip()]
        if len(forwarded) >= settings.NUM_PROXIES:
            return forwarded[-settings.NUM_PROXIES]
    return request.META.get("REMOTE_ADDR", "")


def _parameters(request: HttpRequest):
    """GET: the query string. POST: the form body, falling back to the query string."""
    if request.method == "GET":
        return request.GET
    params = request.GET.copy()
    for name, values in request.POST.lists():
        params.setlist(name, values)
    return params


def _wants_json(request: HttpRequest) -> bool:
    # Negotiating costs more than the rest of the answer; most providers send no Accept or
    # */*, so it only runs when the header could choose JSON (application/json or /*).
    accept = request.headers.get("Accept", "")
    return "application/" in accept.lower() and (
        request.get_preferred_type(["text/plain", "application/json"]) == "application/json"
    )


def _answer(request: HttpRequest, result: CallState) -> HttpResponse:
    wants_json = _wants_json(request)
    if not wants_json:
        return _plain("OK", 200)
    call = result.call
    response = JsonResponse(
        {
            "state": result.state,
            "number_withheld": call.withheld if call else None,
            "started_at": call.started_at.isoformat() if call else None,
            "expires_at": call.expires_at.isoformat() if call else None,
            "expires_in": round((call.expires_at - result.now).total_seconds()) if call else None,
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
def call_state(request: HttpRequest) -> HttpResponse:
    """A provider reports that an extension is on a call with `number`, or no longer is.

    The contract is DESIGN §2 (docs/providers.md for providers). Errors are one plain line;
    every refusal of credentials answers the same 403 so nothing can be probed.
    """
    if request.method not in ALLOWED_METHODS:
        return _plain("Method Not Allowed", 405, Allow=", ".join(ALLOWED_METHODS))
    try:
        domain, user, password, report = parse_request(_parameters(request))
    except BadParameter as error:
        return _plain(f"Bad Request: {error}", 400)
    except (MultiPartParserError, UnicodeError, LookupError, ValueError):
        return _plain("Bad Request: the request body cannot be read as a form", 400)
    except (BadRequest, SuspiciousOperation) as error:  # too many fields, too big, …
        return _plain(f"Bad Request: {error}".splitlines()[0], 400)

    address = client_address(request)
    extension_key = f"{domain}/{user}"
    verdict = limiter().check(address, extension_key)
    if verdict.retry_after:
        wait = verdict.retry_after
        return _plain(f"Too Many Requests: retry after {wait} seconds", 429, Retry_After=str(wait))
    result = apply_call_state(
        domain=domain,
        user=user,
        password=password,
        address=address,
        report=report,
        source=SOURCE_CALL_STATE,
    )
    if result is None:
        limiter().record_failure(address, extension_key)
        return _plain("Forbidden", 403)
    if not verdict.known_address:
        limiter().record_success(address, extension_key)
    return _answer(request, result)
