"""Local stand-ins for the platforms relays talk to, each enforcing its documented contract.

- WebhookReceiver verifies every request with the `standardwebhooks` package (the reference
  implementation), not with our code.
- GraphServer is Microsoft's token endpoint and Graph's presence API: client credentials,
  bearer tokens, setPresence/clearPresence bodies, 404 for a session that is not there, 429
  with Retry-After on demand.
- SlackServer is Slack's Web API: bearer token, JSON with charset, users.profile.set/get,
  ok:false errors, 429 with Retry-After on demand.

Anything a server finds against its contract is answered 400 and kept in `violations`; tests
assert that list is empty. Plus `run_relays()`, which drives the dispatcher and the delivery
tasks in this process, and helpers for real worker processes.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relays import outbox, sending
from tests.servers import ROOT, VENV_BIN, ServerProcess

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
PRESENCE_PAIRS = {
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
}
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?$")


def run_relays(rounds: int = 5) -> list[tuple[int, int]]:
    """Dispatch, then run the delivery tasks it enqueued, until nothing is left to do.

    Returns the (relay, extension) queues that were worked on.
    """
    worked: list[tuple[int, int]] = []
    queues: list[tuple[int, int]] = []

    def enqueue(relay_id: int, extension_id: int) -> None:
        queues.append((relay_id, extension_id))

    for _ in range(rounds):
        queues.clear()
        outbox.dispatch(enqueue=enqueue)
        if not queues:
            break
        for queue in queues:
            sending.deliver_pending(*queue)
        worked += queues
    return worked


class Recorded:
    def __init__(self, method: str, path: str, headers: dict, body: bytes):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.at = datetime.now(UTC)

    def json(self):
        return json.loads(self.body)


class LocalServer:
    """A threading HTTP server on 127.0.0.1; subclasses answer in `handle`."""

    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                owner._dispatch(self)

            def do_POST(self):
                owner._dispatch(self)

            def log_message(self, *args):
                pass

        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in handler.headers.items()}
        request = Recorded(handler.command, handler.path, headers, body)
        with self._lock:
            self.requests.append(request)
        try:
            status, reply_headers, reply = self.handle(request)
        except ContractViolation as violation:
            with self._lock:
                self.violations.append(f"{request.method} {request.path}: {violation}")
            status, reply_headers, reply = 400, {}, {"error": str(violation)}
        data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
        try:
            handler.send_response(status)
            for name, value in reply_headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client went away (a killed worker)

    def handle(self, request: Recorded) -> tuple[int, dict, object]:
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ContractViolation(Exception):
    pass


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


# --- webhooks -------------------------------------------------------------------------------


class WebhookReceiver(LocalServer):
    """Verifies each request with standardwebhooks; answers from `script`, then 200.

    `script` items: a status code, or (status, headers). `hold`: when set, the first request
    blocks until `release` is set (to kill a worker mid-delivery).
    """

    def __init__(self, secret: str = ""):
        self.secret = secret
        self.script: list = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.verified: list[tuple[str, dict]] = []  # (webhook-id, payload)
        super().__init__()

    def handle(self, request):
        require(request.method == "POST", "webhooks are POSTed")
        require(request.headers.get("content-type") == "application/json", "JSON body")
        try:
            payload = Webhook(self.secret).verify(request.body, request.headers)
        except WebhookVerificationError as error:
            raise ContractViolation(f"signature: {error}") from None
        with self._lock:
            self.verified.append((request.headers["webhook-id"], payload))
        self.arrived.set()
        if self.hold.is_set():
            self.hold.clear()
            self.release.wait(30)
        with self._lock:
            step = self.script.pop(0) if self.script else 200
        status, headers = step if isinstance(step, tuple) else (step, {})
        return status, headers, {"received": True}

    def payloads(self) -> list[dict]:
        return [payload for _, payload in self.verified]

    def wait_for(self, count: int, timeout: float = 20) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.verified) >= count:
                    return list(self.verified)
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.verified)} of {count} webhooks within {timeout} s")


# --- Microsoft Graph --------------------------------------------------------------------------


class GraphServer(LocalServer):
    """login.microsoftonline.com's token endpoint and Graph's presence endpoints in one."""

    def __init__(self, tenant: str, client_id: str, client_secret: str, users: set[str]):
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = set(users)
        self.tokens: dict[str, str] = {}  # access token -> client id
        self.sessions: dict[str, dict[str, dict]] = {}  # user -> session id -> presence
        self.throttle: list[int] = []  # Retry-After seconds of the next presence calls
        self.forbidden = False  # no Presence.ReadWrite.All consent
        self.accepted: list[tuple[str, str, dict]] = []  # (user, action, body) that got through
        super().__init__()

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def handle(self, request):
        path = urlsplit(request.path).path
        if path.endswith("/oauth2/v2.0/token"):
            return self._token(request, path)
        match = re.match(r"^/v1\.0/users/([^/]+)/presence(?:/(setPresence|clearPresence))?$", path)
        require(match is not None, "unknown Graph path")
        client = self._authorized(request)
        if client is None:
            error = {"code": "InvalidAuthenticationToken", "message": "Access token is invalid."}
            return 401, {}, {"error": error}
        if self.forbidden:
            error = {"code": "Forbidden", "message": "Insufficient privileges."}
            return 403, {}, {"error": error}
        with self._lock:
            throttled = self.throttle.pop(0) if self.throttle else None
        if throttled is not None:
            error = {"code": "TooManyRequests", "message": "Too many requests."}
            return 429, {"Retry-After": str(throttled)}, {"error": error}
        user, action = match[1], match[2]
        if user not in self.users:
            error = {"code": "Request_ResourceNotFound", "message": f"'{user}' does not exist."}
            return 404, {}, {"error": error}
        if action is None:
            require(request.method == "GET", "presence is read with GET")
            busy = bool(self.sessions.get(user))
            return 200, {}, {"id": user, "availability": "Busy" if busy else "Available"}
        require(request.method == "POST", f"{action} is a POST")
        require(request.headers.get("content-type", "").startswith("application/json"), "JSON")
        body = json.loads(request.body)
        require(body.get("sessionId") == client, "sessionId must be the calling app's id")
        with self._lock:
            self.accepted.append((user, action, body))
        if action == "clearPresence":
            require(set(body) == {"sessionId"}, "clearPresence takes only sessionId")
            if not self.sessions.get(user, {}).pop(client, None):
                error = {"code": "NotFound", "message": "Presence session not found."}
                return 404, {}, {"error": error}
            return 200, {}, b""
        pair = (body.get("availability"), body.get("activity"))
        require(pair in PRESENCE_PAIRS, f"unsupported availability/activity {pair}")
        duration = _DURATION.match(body.get("expirationDuration", "PT5M"))
        require(duration is not None, "expirationDuration is an ISO 8601 duration")
        minutes = int(duration[1] or 0) * 60 + int(duration[2] or 0)
        require(5 <= minutes <= 240, "expirationDuration must be 5 to 240 minutes")
        self.sessions.setdefault(user, {})[client] = {
            "availability": pair[0],
            "activity": pair[1],
            "expires_at": datetime.now(UTC) + timedelta(minutes=minutes),
        }
        return 200, {}, b""

    def _token(self, request, path: str):
        require(request.method == "POST", "the token endpoint takes POST")
        require(
            request.headers.get("content-type") == "application/x-www-form-urlencoded",
            "the token request is form-encoded",
        )
        require(path == f"/{self.tenant}/oauth2/v2.0/token", "token request for another tenant")
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        require(form.get("grant_type") == "client_credentials", "grant_type=client_credentials")
        require(form.get("scope") == GRAPH_SCOPE, f"scope must be {GRAPH_SCOPE}")
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return (
                401,
                {},
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        token = f"token-{len(self.tokens) + 1}-{time.monotonic_ns()}"
        with self._lock:
            self.tokens[token] = form["client_id"]
        return 200, {}, {"token_type": "Bearer", "expires_in": 3599, "access_token": token}

    def _authorized(self, request) -> str | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        with self._lock:
            return self.tokens.get(auth.removeprefix("Bearer "))


# --- Slack ----------------------------------------------------------------------------------


class SlackServer(LocalServer):
    """Slack's Web API: users.profile.set, users.profile.get, auth.test."""

    def __init__(self, token: str, members: set[str], scopes: str):
        self.token = token
        self.scopes = scopes
        self.profiles = {member: _empty_profile() for member in members}
        self.throttle: list[int] = []
        self._sets: list[dict] = []
        super().__init__()

    def set_status_by_hand(self, member: str, text: str, emoji: str) -> None:
        """The user changes their own status in Slack."""
        self.profiles[member].update(status_text=text, status_emoji=emoji, status_expiration=0)

    def profile_sets(self) -> list[dict]:
        """The bodies of users.profile.set calls that went through."""
        with self._lock:
            return list(self._sets)

    def handle(self, request):
        path = urlsplit(request.path).path
        require(path.startswith("/api/"), "Web API methods live under /api/")
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        with self._lock:
            throttled = self.throttle.pop(0) if self.throttle else None
        if throttled is not None:
            return 429, {"Retry-After": str(throttled)}, {"ok": False, "error": "ratelimited"}
        method = path.removeprefix("/api/")
        scopes = {"X-OAuth-Scopes": self.scopes}
        if method == "auth.test":
            return 200, scopes, {"ok": True, "team": "Acme", "user": "relay-admin"}
        if method == "users.profile.get":
            require(request.method == "GET", "users.profile.get: use GET with a query string")
            user = parse_qs(urlsplit(request.path).query).get("user", [""])[0]
            if user not in self.profiles:
                return 200, scopes, {"ok": False, "error": "user_not_found"}
            return 200, scopes, {"ok": True, "profile": dict(self.profiles[user])}
        require(method == "users.profile.set", f"unexpected method {method}")
        require(request.method == "POST", "users.profile.set is a POST")
        require(
            request.headers.get("content-type") == "application/json; charset=utf-8",
            "JSON bodies must say charset=utf-8",
        )
        body = request.json()
        profile = body.get("profile")
        require(isinstance(profile, dict), "profile is a JSON object")
        require(set(profile) <= {"status_text", "status_emoji", "status_expiration"}, "fields")
        text, emoji = profile.get("status_text", ""), profile.get("status_emoji", "")
        require(len(text) <= 100, "status_text is at most 100 characters")
        require(emoji == "" or re.match(r"^:[a-z0-9_+'-]+:$", emoji), "status_emoji is :name:")
        expiration = profile.get("status_expiration", 0)
        require(isinstance(expiration, int) and expiration >= 0, "status_expiration: epoch int")
        if body.get("user") not in self.profiles:
            return 200, scopes, {"ok": False, "error": "user_not_found"}
        with self._lock:
            self._sets.append(body)
        self.profiles[body["user"]].update(
            status_text=text, status_emoji=emoji, status_expiration=expiration
        )
        return 200, scopes, {"ok": True, "profile": dict(self.profiles[body["user"]])}


def _empty_profile() -> dict:
    return {"status_text": "", "status_emoji": "", "status_expiration": 0}


# --- real processes -------------------------------------------------------------------------


class RelayWorker(ServerProcess):
    """`celery worker --beat` in a process group of its own, so a test can kill it outright
    (worker and pool children at once, as a crashed machine would)."""

    def __init__(self, log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "pbx",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--schedule",
                str(log_path.with_suffix(f".{time.monotonic_ns()}.beat")),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown, no acknowledgements, no cleanup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self._log.close()


class TcpProxy:
    """A switchable TCP proxy in front of a real server: off, it drops every connection and
    refuses new ones, as a server that went down does (the real one keeps running)."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._on = threading.Event()
        self._on.set()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._on.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def down(self) -> None:
        self._on.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def up(self) -> None:
        self._on.set()

    def close(self) -> None:
        self.down()
        _close(self._listener)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def wait_until(check: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `check` until it returns something true (for real processes only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout} s")
