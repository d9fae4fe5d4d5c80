"""Parsing and checking the parameters of call_state.htm (DESIGN §2)."""

import re

from django.http import QueryDict

from domains.models import normalize_domain_name
from presence.service import CallReport

WITHHELD_WORDS = {"anonymous", "unknown", "private", "restricted"}
MAX_NUMBER_DIGITS = 32
MAX_CALL_ID = 128
MAX_EXPIRES_DIGITS = 12
_SEPARATORS = re.compile(r"[\s\-.()]")
_NUMBER = re.compile(r"\+?[0-9*#]+")


class BadParameter(ValueError):
    """A parameter is missing or malformed; the message is the one-line answer."""


def _param(params: QueryDict, name: str, required: bool = False) -> str:
    value = params.get(name, "")
    if "\x00" in value:
        raise BadParameter(f"parameter '{name}' contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from an odd charset
        raise BadParameter(f"parameter '{name}' is not valid text") from None
    if required and not value.strip():
        raise BadParameter(f"missing parameter '{name}'")
    return value.strip()


def parse_number(raw: str) -> tuple[str, bool]:
    """(digits, withheld) from a remote party as providers send it."""
    if raw.lower() in WITHHELD_WORDS:
        return "", True
    number = _SEPARATORS.sub("", raw)
    if not _NUMBER.fullmatch(number) or len(number.lstrip("+")) > MAX_NUMBER_DIGITS:
        raise BadParameter(
            "parameter 'number' must be digits with an optional leading +, * and #, "
            f"at most {MAX_NUMBER_DIGITS} digits, or anonymous"
        )
    return number, False


def parse_expires(raw: str) -> int | None:
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_EXPIRES_DIGITS:
        raise BadParameter("parameter 'expires' must be a whole number of seconds")
    return int(raw)


def parse_request(params: QueryDict) -> tuple[str, str, str, CallReport]:
    """(domain, user, password, report) from the request's parameters."""
    domain = normalize_domain_name(_param(params, "domain", required=True))
    user = _param(params, "user", required=True)
    password = _param(params, "password", required=True)
    number = _param(params, "number")
    expires = parse_expires(_param(params, "expires"))
    call_id = _param(params, "call_id")
    if len(call_id) > MAX_CALL_ID:
        raise BadParameter(f"parameter 'call_id' is longer than {MAX_CALL_ID} characters")
    if not number:
        return domain, user, password, CallReport(busy=False, call_id=call_id)
    digits, withheld = parse_number(number)
    report = CallReport(
        busy=True, number=digits, withheld=withheld, expires=expires, call_id=call_id
    )
    return domain, user, password, report
