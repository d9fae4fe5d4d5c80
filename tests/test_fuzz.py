"""Fuzzing call_state.htm: whatever a client sends, never a 500 (DESIGN §2, §9 "Bad input").

Requests are built byte by byte (raw query strings, bodies, content types) and passed to the
production WSGI entry point as gunicorn would, so nothing on the way cleans them up. Valid
credentials are mixed in, so the success path is fuzzed as well as the refusals.

An exception escaping the application is a 500 in production: gunicorn answers (and logs) it.
"""

import io
import string
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

import pytest
import redis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from pbx.wsgi import application

URL = "/call_state.htm"
ANSWERS = {200, 400, 403, 405, 429}
NAMES = ["domain", "user", "password", "number", "expires", "call_id"]
# Charsets a Content-Type may name: usual ones, unknown ones, and codecs Python knows that
# turn escapes into any code point (lone surrogates included) or are no text codecs at all.
CHARSETS = [
    "utf-8",
    "UTF-8",
    "iso-8859-1",
    "utf-16",
    "utf-7",
    "unicode_escape",
    "does-not-exist",
    "rot13",
    "",
    '"utf-8"',
]
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/mixed; boundary=x",
    "",
    "text/plain; charset",
    "text/plain; charset*=bogus''x",  # RFC 2231 form, unknown charset
    ";;",
]
FAILURE_LIMIT = 2
PASSWORD_PLACEHOLDER = "{password}"  # replaced by the extension's password when sending
TOO_MANY_FIELDS = 1001  # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS is 1000
TOO_BIG = 2_700_000  # Django's DATA_UPLOAD_MAX_MEMORY_SIZE is 2.5 MiB


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    query: bytes
    body: bytes
    content_type: str
    accept: str | None = None
    budget_spent: bool = False  # the extension's failed attempts are used up beforehand
    # Bulk, added only when sending, so that examples print short.
    extra_fields: int = 0  # `&junk=1` pairs appended to the query
    padding: int = 0  # bytes appended to the body


# Values as raw bytes: text of any code point (NUL and lone surrogates included) in a few
# encodings, arbitrary bytes (mostly not UTF-8), known troublemakers, very long strings.
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
raw_values = st.one_of(
    any_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    any_text.map(lambda t: t.encode("unicode_escape")),
    any_text.map(lambda t: t.encode("utf-7")),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"",
            b" ",
            b"\x00",
            b"+2AA-",  # a lone surrogate in UTF-7
            b"\\ud800",  # a lone surrogate, backslash-escaped
            b"\xed\xa0\x80",  # a surrogate encoded as if UTF-8
            b"\xc0\x80",  # an overlong NUL
            b"%",
            b"%zz",
            b"0",
            b"-1",
            b"1e3",
            b"99999999999999",
            b"5551234",
            b"+49 (30) 123-45",
            b"anonymous",
            b"ABC.com.",
            b"123",
            b"\xef\xbb\xbf5551234",  # a byte order mark in front
        ]
    ),
    st.builds(
        lambda piece, count: piece * count,
        st.sampled_from([b"9", b"a", b"\xff", b"&", b"%"]),
        st.integers(100, 10_000),
    ),
)
names = st.one_of(st.sampled_from([n.encode() for n in NAMES]), raw_values)
# How a pair goes on the wire in a query string or a form body: percent-encoded, as is (so
# & = % + inside break the structure), or a name without "=".
pairs = st.tuples(names, raw_values, st.sampled_from(["quote", "raw", "no="]))


def wire_pair(pair: tuple[bytes, bytes, str]) -> bytes:
    name, value, mode = pair
    if mode == "raw":
        return name + b"=" + value
    quoted_name = quote_from_bytes(name, safe="").encode()
    if mode == "no=":
        return quoted_name
    return quoted_name + b"=" + quote_from_bytes(value, safe="").encode()


def form(fields: list[tuple[bytes, bytes, str]], separator: bytes) -> bytes:
    return separator.join(wire_pair(field) for field in fields)


@st.composite
def multipart(draw, fields: list[tuple[bytes, bytes, str]]) -> tuple[str, bytes]:
    """A multipart body, sometimes broken: bad or missing boundary, truncated, odd parts."""
    boundary = draw(st.sampled_from([b"b0undary", b"x" * 69, b"x" * 200, b"", b'"q"', b"=;"]))
    parts = []
    for name, value, _mode in fields:
        headers = b'Content-Disposition: form-data; name="' + name + b'"'
        if draw(st.booleans()):
            headers += b'; filename="' + draw(raw_values) + b'"'
        if draw(st.booleans()):
            charset = draw(st.sampled_from(CHARSETS)).encode()
            headers += b"\r\nContent-Type: text/plain; charset=" + charset
        if draw(st.booleans()):
            headers += b"\r\nContent-Transfer-Encoding: base64"
        parts.append(b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + value + b"\r\n")
    body = b"".join(parts) + b"--" + boundary + b"--\r\n"
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    declared = draw(st.sampled_from([boundary, b"other", None]))
    content_type = "multipart/form-data"
    if declared is not None:
        content_type += "; boundary=" + declared.decode("latin-1")
    return content_type, body


@st.composite
def fuzz_requests(draw) -> FuzzRequest:
    method = draw(
        st.one_of(
            st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
            st.sampled_from(["get", "Post", "TRACE", "PROPFIND", "CONNECT"]),
            st.text(alphabet=string.ascii_letters + "-_!#~", min_size=1, max_size=12),
        )
    )
    fields = draw(st.lists(pairs, max_size=8))
    # Valid credentials, when drawn, come last: the last value of a name counts.
    for name in ("domain", "user", "password"):
        if draw(st.booleans()):
            fields.append((name.encode(), f"{{{name}}}".encode(), "quote"))
    in_body = [draw(st.booleans()) for _ in fields]
    query_fields = [f for f, body in zip(fields, in_body, strict=True) if not body]
    body_fields = [f for f, body in zip(fields, in_body, strict=True) if body]
    separator = draw(st.sampled_from([b"&", b"&", b";", b"&&"]))
    query = form(query_fields, separator)

    kind = draw(st.sampled_from(["form", "multipart", "raw", "none"]))
    if kind == "form":
        content_type = "application/x-www-form-urlencoded"
        charset = draw(st.sampled_from([None, *CHARSETS]))
        if charset is not None:
            content_type += f"; charset={charset}"
        body = form(body_fields, separator)
    elif kind == "multipart":
        content_type, body = draw(multipart(body_fields))
    elif kind == "raw":
        content_type = draw(
            st.one_of(
                st.sampled_from(CONTENT_TYPES),
                st.text(alphabet=st.characters(max_codepoint=255), max_size=60),
            )
        )
        body = draw(st.binary(max_size=200))
    else:  # no body; the charset still applies to the query string
        charset = draw(st.sampled_from(["", *CHARSETS]))
        content_type, body = (f"text/plain; charset={charset}" if charset else ""), b""
    accept = draw(
        st.one_of(
            st.none(),
            st.sampled_from(
                ["application/json", "*/*", "text/plain;q=0, application/json", "a/b/c", ";q="]
            ),
            st.text(alphabet=st.characters(max_codepoint=255), max_size=60),
        )
    )
    return FuzzRequest(
        method,
        query,
        body,
        content_type,
        accept,
        budget_spent=draw(st.booleans()),
        extra_fields=draw(st.sampled_from([0] * 9 + [TOO_MANY_FIELDS])),
        padding=draw(st.sampled_from([0] * 9 + [TOO_BIG])),
    )


def fill(data: bytes, password: bytes) -> bytes:
    """Put the real credentials in place of their placeholders (the generated requests keep
    placeholders so that a failing example prints the same on every run)."""
    for name, value in (("domain", b"abc.com"), ("user", b"123"), ("password", password)):
        for placeholder in (f"{{{name}}}".encode(), f"%7B{name}%7D".encode()):
            data = data.replace(placeholder, value)
    return data


def creds_form(secret: str = PASSWORD_PLACEHOLDER, **extra: str) -> bytes:
    params = {"domain": "abc.com", "user": "123", "password": secret, **extra}
    return "&".join(f"{k}={v}" for k, v in params.items()).encode()


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def get(self, name: str, default=None):
        return self.headers.get(name.lower(), default)


def wsgi_call(method: str, query: bytes, body: bytes, content_type: str, accept) -> Answer:
    """Call the production WSGI entry point (pbx.wsgi.application), as gunicorn does.

    Not Django's test client: it builds the request itself, so it would skip the guard in
    pbx.wsgi that answers requests Django cannot build.
    """
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": URL,
        "SCRIPT_NAME": "",
        # WSGI hands the query string and headers over as bytes decoded as latin-1.
        "QUERY_STRING": query.decode("latin-1"),
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if content_type:
        environ["CONTENT_TYPE"] = content_type
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"] = int(status.split()[0])
        started["headers"] = {name.lower(): value for name, value in headers}

    # As Django's test client does: keep the test's connection (and its transaction) open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        chunks = application(environ, start_response)
        content = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return Answer(started["status"], started["headers"], content)


def send(client, req: FuzzRequest, password: str):
    """Send `req` with fresh failure counters; whatever it writes is rolled back, so every
    example starts from the same database."""
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()
    if req.budget_spent:
        for _ in range(FAILURE_LIMIT):
            spend = client.generic("GET", URL, QUERY_STRING=creds_form("wrong").decode())
            assert spend.status_code == 403
    query = fill(req.query, password.encode()) + b"&junk=1" * req.extra_fields
    body = fill(req.body, password.encode()) + b"9" * req.padding
    with transaction.atomic():
        response = wsgi_call(req.method, query, body, req.content_type, req.accept)
        transaction.set_rollback(True)
    return response


def assert_clean_answer(response, password: str) -> None:
    summary = (response.status_code, response.get("Content-Type"), response.content[:300])
    assert response.status_code in ANSWERS, summary
    assert response.get("Cache-Control") == "no-store", summary
    assert password.encode() not in response.content
    if response.status_code == 405:
        assert response.get("Allow") == "GET, POST"
    if response.status_code == 429:
        assert int(response.get("Retry-After")) >= 1


@pytest.fixture
def low_failure_limit(settings):
    settings.CALL_STATE_FAILURES_PER_EXTENSION = FAILURE_LIMIT


@settings(
    max_examples=300,
    deadline=None,
    # No "explain" phase: on a failure it costs more time than it tells here.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(req=fuzz_requests())
@example(
    req=FuzzRequest(
        "POST",
        b"",
        creds_form(number="5551234"),
        "application/x-www-form-urlencoded; charset=does-not-exist",
    )
)
@example(
    req=FuzzRequest(
        "POST",
        creds_form(),
        b"--b\r\nContent-Disposition: form-data; name=number\r\n\r\n555",
        "multipart/form-data; boundary=b",
        accept="application/json",
    )
)
@example(req=FuzzRequest("GET", creds_form(), b"", "", budget_spent=True))
def test_call_state_never_answers_500(client, low_failure_limit, extension, req: FuzzRequest):
    assert_clean_answer(send(client, req, extension.password), extension.password)


# Requests the fuzzer found, or that stand for a class it found, kept as named cases.
FOUND = [
    pytest.param(
        FuzzRequest(
            "POST",
            b"",
            creds_form(number="5551234"),
            "application/x-www-form-urlencoded; charset=does-not-exist",
        ),
        {200},
        id="unknown-form-charset-is-ignored",
    ),
    pytest.param(
        FuzzRequest("POST", creds_form(), b"--b\r\nbroken", "multipart/form-data"),
        {400},
        id="multipart-without-boundary",
    ),
    # A Content-Type charset that decodes escapes into lone surrogates, which PostgreSQL's
    # driver cannot encode: UnicodeEncodeError in the lookup (no credentials needed) ...
    pytest.param(
        FuzzRequest("GET", b"domain=%2B2AA-&user=123&password=x", b"", "text/plain; charset=utf-7"),
        {400, 403},
        id="lone-surrogate-in-domain",
    ),
    # ... or in the INSERT of the call.
    pytest.param(
        FuzzRequest(
            "GET",
            creds_form(number="1", call_id="%5Cud800"),
            b"",
            "text/plain; charset=unicode_escape",
        ),
        {200, 400},
        id="lone-surrogate-in-call-id",
    ),
    # Django refuses the request data with its own 400 page, without Cache-Control.
    pytest.param(
        FuzzRequest("GET", creds_form(), b"", "", extra_fields=TOO_MANY_FIELDS),
        {400},
        id="too-many-fields",
    ),
    pytest.param(
        FuzzRequest(
            "POST", creds_form(), b"a=1", "application/x-www-form-urlencoded", padding=TOO_BIG
        ),
        {400},
        id="body-too-big",
    ),
    pytest.param(
        FuzzRequest(
            "POST",
            b"",
            creds_form(number="5551234"),
            "application/x-www-form-urlencoded; charset=ISO-8859-1",
        ),
        {200, 400},
        id="form-charset-not-utf-8",
    ),
    # Django fails while building the request, before any middleware: gunicorn answers 500.
    # (A charset makes Django parse the query string at once, and the 1001 fields fail.)
    pytest.param(
        FuzzRequest(
            "GET", creds_form(), b"", "text/plain; charset=utf-8", extra_fields=TOO_MANY_FIELDS
        ),
        {400},
        id="too-many-fields-with-a-charset",
    ),
    pytest.param(
        FuzzRequest("GET", creds_form(), b"", "text/plain; charset=rot13"),
        {200, 400},
        id="charset-not-a-text-codec",
    ),
    pytest.param(
        FuzzRequest("GET", creds_form(), b"", "text/plain; charset*=bogus''x"),
        {200, 400},
        id="rfc2231-charset-unknown",
    ),
    pytest.param(
        FuzzRequest("GET", creds_form(), b"", "text/plain; a=" + "x" * 10_000),
        {200, 400},
        id="content-type-over-10000-characters",
    ),
]


@pytest.mark.parametrize(("req", "statuses"), FOUND)
def test_request_found_by_fuzzing_gets_a_clean_answer(client, extension, req, statuses):
    """Each answer is clean, with a status the contract allows: 400 for a request that cannot
    be read, or, where its charset can be ignored, what its parameters deserve."""
    response = send(client, req, extension.password)
    assert_clean_answer(response, extension.password)
    assert response.status_code in statuses, response.content[:300]
