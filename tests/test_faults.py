"""call_state.htm through outages of Redis and PostgreSQL (DESIGN §2, §9 "Faults").

The real servers keep running for everybody else: outages are simulated, Redis by pointing
the web server at a port where no Redis answers, PostgreSQL by a TCP proxy in front of it that
the test switches off and on.
"""

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from django.db import connection

from presence.models import Call, PresenceEvent
from tests.servers import WebServer, free_port

pytestmark = pytest.mark.server

FAST = 1.0  # seconds: an answer while Redis is down
NO_HANG = 5.0  # seconds: an answer while PostgreSQL is down
RECOVERY = 10.0  # seconds: back to 200 once PostgreSQL is reachable again


def timed(call) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def reasons(extension) -> list[str]:
    return list(
        PresenceEvent.objects.filter(extension=extension)
        .order_by("id")
        .values_list("reason", flat=True)
    )


# --- Redis unreachable -------------------------------------------------------------------


@pytest.fixture(params=["refused", "silent"])
def dead_redis_url(request) -> Iterator[str]:
    """A Redis URL where nothing answers: a closed port (connections refused at once), or a
    port that accepts connections and never replies (every read times out)."""
    if request.param == "refused":
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield f"redis://127.0.0.1:{silent.getsockname()[1]}/0"


def test_redis_unreachable_call_state_keeps_answering(start_web_server, extension, dead_redis_url):
    # One worker, so one process sees every failure: the counters fall back to its memory.
    server = start_web_server(
        workers=1,
        WEB_WORKERS="1",
        REDIS_URL=dead_redis_url,
        CALL_STATE_FAILURES_PER_EXTENSION="3",
    )
    creds = {"domain": "abc.com", "user": "123", "password": extension.password}
    wrong = {**creds, "password": "wrong"}
    steps = [
        ("start", lambda: server.call_state(**creds, number="5551234", call_id="c1"), 200),
        ("clear", lambda: server.call_state("POST", **creds, call_id="c1"), 200),
        ("wrong 1", lambda: server.call_state(**wrong), 403),
        ("wrong 2", lambda: server.call_state("POST", **wrong), 403),
        ("wrong 3", lambda: server.call_state(**wrong, number="1"), 403),
        ("over the limit", lambda: server.call_state(**wrong), 429),
        ("right password, over the limit", lambda: server.call_state(**creds), 429),
    ]
    for name, call, status in steps:
        response, elapsed = timed(call)
        assert (response.status_code, name) == (status, name), response.text
        assert elapsed < FAST, f"{name} took {elapsed:.2f} s"
        assert response.headers["Cache-Control"] == "no-store"
    assert int(response.headers["Retry-After"]) >= 1
    # The server did try that Redis, and told the operator.
    assert "Redis unreachable" in server.output()

    call = Call.objects.get(extension=extension)
    assert (call.number, call.call_id, call.end_reason) == ("5551234", "c1", "cleared")
    assert reasons(extension) == ["call_started", "call_cleared"]


# --- PostgreSQL unreachable, then back -------------------------------------------------------


class SwitchableProxy:
    """A TCP proxy from 127.0.0.1:`port` to `upstream`. Switched off, it closes its listener
    and cuts every forwarded connection (as a database restart does); switched on again, it
    listens on the same port."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self.switch_on()

    def switch_on(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def switch_off(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, set()
        if listener is not None:
            _close(listener)  # shutdown() wakes the thread blocked in accept()
        for sock in connections:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # switched off
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # switched off meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._connections |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        # Either side hanging up ends the forwarded connection.
        with self._lock:
            self._connections -= {source, target}
        _close(source)
        _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def pg_proxy(transactional_db) -> Iterator[SwitchableProxy]:
    db = connection.settings_dict
    proxy = SwitchableProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    yield proxy
    proxy.switch_off()


def assert_unavailable(response: requests.Response, elapsed: float) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert elapsed < NO_HANG, f"503 took {elapsed:.2f} s"
    assert len(response.text.splitlines()) == 1, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Cache-Control"] == "no-store"


def worker_boots(server: WebServer) -> int:
    return server.output().count("Booting worker with pid")


def test_database_outage_gives_503_then_recovers_without_restart(
    start_web_server, pg_proxy, extension
):
    db = connection.settings_dict
    server = start_web_server(
        DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{pg_proxy.port}/{db['NAME']}"
    )
    creds = {"domain": "abc.com", "user": "123", "password": extension.password}
    # Several requests, so every worker holds a persistent connection through the proxy.
    for _ in range(4):
        assert server.call_state(**creds, number="111").status_code == 200
    boots = worker_boots(server)
    assert boots == 2

    pg_proxy.switch_off()
    # More requests than workers: each worker finds its connection cut, then cannot connect.
    outage = [
        lambda: server.call_state(**creds, number="222"),
        lambda: server.call_state("POST", **creds),
        lambda: server.call_state(**{**creds, "password": "wrong"}),
        lambda: server.call_state(**creds, number="333"),
        lambda: server.call_state("POST", **creds, number="444"),
        lambda: requests.get(
            f"{server.url}/call_state.htm",
            params=creds,
            headers={"Accept": "application/json"},
            timeout=10,
        ),
    ]
    for call in outage:
        assert_unavailable(*timed(call))

    pg_proxy.switch_on()
    deadline = time.monotonic() + RECOVERY
    while True:
        response, elapsed = timed(lambda: server.call_state(**creds, number="555"))
        if response.status_code != 503:
            break
        assert_unavailable(response, elapsed)
        assert time.monotonic() < deadline, "still 503 after PostgreSQL came back"
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    # Every worker is back (sync workers take turns, so a few requests reach them all).
    for _ in range(4):
        assert server.call_state(**creds, number="555").status_code == 200
    assert server.call_state("POST", **creds).status_code == 200
    assert worker_boots(server) == boots, "a worker was restarted"

    calls = {call.number: call for call in Call.objects.filter(extension=extension)}
    assert set(calls) == {"111", "555"}  # nothing from the outage was written
    assert calls["111"].end_reason == "replaced"
    assert calls["555"].end_reason == "cleared"
    assert reasons(extension) == (
        ["call_started"]
        + ["call_refreshed"] * 3
        + ["call_replaced"]
        + ["call_refreshed"] * 4
        + ["call_cleared"]
    )
