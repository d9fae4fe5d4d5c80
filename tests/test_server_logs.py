"""The call-state password never reaches the logs of the production server (DESIGN §2).

A real gunicorn with pbx/gunicorn.conf.py, its access log and the application's log captured
together, as an operator would see them.
"""

import re
import secrets
import socket
import time
from urllib.parse import quote, quote_plus

import pytest
import requests

from tests.servers import WebServer

pytestmark = pytest.mark.server

URL_PATH = "/call_state.htm"
ACCESS_LINE = re.compile(r'"(GET|POST|PUT|DELETE|PATCH) /call_state\.htm HTTP/1\.1" (\d{3}) ')


def wrong_password() -> str:
    # Characters that URL encoding changes, so both spellings must be looked for.
    return f"wrong {secrets.token_urlsafe(9)}&=+"


def spellings(password: str) -> set[str]:
    """The forms a password can take in a log: raw, form-encoded, percent-encoded."""
    return {password, quote_plus(password), quote(password, safe=""), quote(password)}


def access_lines(server: WebServer) -> list[tuple[str, str]]:
    return ACCESS_LINE.findall(server.output())


def wait_for_access_lines(
    server: WebServer, count: int, method: str = "", timeout: float = 5
) -> str:
    """The server's output once it holds `count` access lines of call_state.htm (of `method`
    only, when given). gunicorn writes the line just after sending the answer."""

    def seen() -> int:
        return sum(1 for m, _ in access_lines(server) if method in ("", m))

    deadline = time.monotonic() + timeout
    while seen() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    output = server.output()
    assert seen() >= count, output
    return output


def assert_not_logged(output: str, passwords: list[str]) -> None:
    leaks = [
        line
        for line in output.splitlines()
        for password in passwords
        if any(spelling in line for spelling in spellings(password))
    ]
    assert not leaks, "a password is in the server log:\n" + "\n".join(leaks)


def test_password_never_logged_for_any_answer(start_web_server, extension):
    server = start_web_server(CALL_STATE_FAILURES_PER_EXTENSION="3")
    url = f"{server.url}{URL_PATH}"
    creds = {"domain": "abc.com", "user": "123", "password": extension.password}
    wrong = [wrong_password() for _ in range(4)]
    session = requests.Session()

    def get(**params):
        return session.get(url, params=params, timeout=10)

    def post(query=None, **form):
        return session.post(url, params=query, data=form, timeout=10)

    answers = [
        (get(**creds, number="5551234"), 200),
        (post(**creds, number="5551234"), 200),
        (post(query=creds), 200),
        (get(**creds, number="12ab"), 400),
        (post(**creds, number="not a number"), 400),
        (session.put(url, params=creds, timeout=10), 405),
        (session.delete(url, data=creds, timeout=10), 405),
        (get(**{**creds, "password": wrong[0]}, number="1"), 403),
        (post(**{**creds, "password": wrong[1]}), 403),
        (post(query={**creds, "password": wrong[2]}), 403),
        # Three failures for this extension: the limit of this server.
        (get(**{**creds, "password": wrong[3]}), 429),
        (post(**creds, number="1"), 429),
        (get(**creds), 429),
    ]
    assert [r.status_code for r, _ in answers] == [status for _, status in answers]

    # wait_ready's probe (a 400) + every request above.
    output = wait_for_access_lines(server, 1 + len(answers))
    logged = [status for _, status in access_lines(server)]
    assert sorted(logged) == sorted(["400"] + [str(status) for _, status in answers])
    # The application's own log is in the same capture.
    assert "Forbidden: /call_state.htm" in output
    assert "Too Many Requests: /call_state.htm" in output
    assert_not_logged(output, [extension.password, *wrong])


def raw_request(server: WebServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_line", "headers"),
    [
        # A provider that does not URL-encode the number: the space splits the request line.
        pytest.param(
            "GET /call_state.htm?domain=abc.com&user=123&number=+49 30 1234"
            "&password={password} HTTP/1.1",
            "",
            id="unencoded-space",
        ),
        # Raw UTF-8 in the target, as some HTTP stacks send it.
        pytest.param(
            "GET /call_state.htm?domain=abc.com&user=123&password={password}&call_id=Jörg HTTP/1.1",
            "",
            id="raw-non-ascii",
        ),
        # A charset Python knows but cannot decode text with: Django fails while building
        # the request, before any view or middleware runs.
        pytest.param(
            "GET /call_state.htm?domain=abc.com&user=123&password={password} HTTP/1.1",
            "Content-Type: text/plain; charset=rot13\r\n",
            id="unusable-charset",
        ),
    ],
)
def test_password_not_logged_for_requests_rejected_before_the_view(
    start_web_server, extension, request_line, headers
):
    # One worker handles requests in order: once the probe (a POST) is logged, whatever the
    # server logs about the bad request is in the capture.
    server = start_web_server(workers=1)
    line = request_line.format(password=extension.password)
    answer = raw_request(
        server,
        f"{line}\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 "), answer
    assert requests.post(f"{server.url}{URL_PATH}", timeout=10).status_code == 400

    output = wait_for_access_lines(server, 1, method="POST")
    assert_not_logged(output, [extension.password])


def test_kiosk_token_never_logged(web_server, domain, extension):
    from domains.credentials import issue_kiosk_token, revoke_kiosk_token

    token = issue_kiosk_token(domain)
    page = requests.get(f"{web_server.url}/board/abc.com/", params={"kiosk": token}, timeout=10)
    assert page.status_code == 200
    assert "data-stream-pass" in page.text
    revoke_kiosk_token(domain)
    refused = requests.get(f"{web_server.url}/board/abc.com/", params={"kiosk": token}, timeout=10)
    assert refused.status_code == 403
    deadline = time.monotonic() + 5
    while server_lines(web_server) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    output = web_server.output()
    assert server_lines(web_server) >= 2, output
    assert_not_logged(output, [token])


def server_lines(server: WebServer) -> int:
    return len(re.findall(r'"GET /board/abc\.com/ HTTP/1\.1" (?:200|403) ', server.output()))
