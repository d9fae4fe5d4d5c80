"""Real server processes for tests: gunicorn with the production config, Celery worker + beat.

They run against the test database (tests using them need `transactional_db`, so the data a
test writes is committed and visible to the server).
"""

import contextlib
import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_user_env(**extra: str) -> dict[str, str]:
    """A new user's shell: none of the suite's settings (database, Redis, keys, DEBUG)."""
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**kept, **extra}


def server_env(**overrides: str) -> dict[str, str]:
    """The environment of a server process pointed at the test database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pbx.settings",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "CALL_STATE_KEY": settings.CALL_STATE_KEY,
        "DEBUG": "false",
        "DATA_DIR": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"pbx-test-{os.getpid()}"),
    }
    # The browser tests allow synchronous ORM calls beside Playwright's event loop in the
    # test process only; servers keep Django's check against blocking calls in async code.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(overrides)
    return env


class ServerProcess:
    """A subprocess whose output (stdout and stderr) is kept in a file for inspection."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


_collected: set[str] = set()


def collect_static(env: dict[str, str]) -> None:
    """Production settings serve static files from a manifest: collect them once per DATA_DIR."""
    if env["DATA_DIR"] in _collected:
        return
    command = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    _collected.add(env["DATA_DIR"])


class WebServer(ServerProcess):
    """gunicorn with pbx/gunicorn.conf.py, as in production."""

    def __init__(self, log_path: Path, env: dict[str, str], workers: int = 2):
        collect_static(env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                str(VENV_BIN / "gunicorn"),
                "-c",
                "pbx/gunicorn.conf.py",
                "pbx.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
            ],
            env,
            log_path,
        )
        try:
            self.wait_ready()
        except RuntimeError:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.output()}")
            try:
                # The first answer loads the URLconf (DRF, the schema): allow it time.
                requests.get(f"{self.url}/call_state.htm", timeout=(1, 10))
                return
            # A busy machine can take over a second to get the first worker ready.
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start:\n{self.output()}")

    def call_state(self, method: str = "GET", **params) -> requests.Response:
        if method == "GET":
            return requests.get(f"{self.url}/call_state.htm?{urlencode(params)}", timeout=10)
        return requests.post(f"{self.url}/call_state.htm", data=params, timeout=10)


class CeleryWorker(ServerProcess):
    """`celery worker --beat`, the way `make run` and docker-compose start it."""

    def __init__(self, log_path: Path, env: dict[str, str]):
        super().__init__(
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
                str(log_path.with_suffix(".beat")),
            ],
            env,
            log_path,
        )


class StreamServer(ServerProcess):
    """The board stream process (uvicorn, one worker), as docker-compose runs it."""

    def __init__(self, log_path: Path, env: dict[str, str], port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                str(VENV_BIN / "uvicorn"),
                "pbx.stream_asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "2",
            ],
            {**env, "STREAM_POLL_INTERVAL_MS": "100"},
            log_path,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited:\n{self.output()}")
            try:
                requests.get(f"{self.url}/stream/board", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not start:\n{self.output()}")


class EventStream:
    """A Server-Sent Events reader in a thread: `next_event()` returns (event, id, data)."""

    def __init__(self, url: str):
        self.events: queue.Queue = queue.Queue()
        parts = urlsplit(url)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self._connection.request("GET", f"{parts.path}?{parts.query}")
        self.response = self._connection.getresponse()
        self.status_code = self.response.status
        self.headers = {name.lower(): value for name, value in self.response.getheaders()}
        if self.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event, event_id, data = "message", None, []
        try:
            while line := self.response.readline():
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self.events.put((event, event_id, json.loads("\n".join(data))))
                    event, event_id, data = "message", None, []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    event_id = int(line[3:].strip())
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        except (OSError, ValueError, AttributeError, http.client.HTTPException):  # closed
            pass
        self.events.put(("closed", None, None))

    def next_event(self, timeout: float = 5, kind: str | None = None):
        """The next event (of that kind, skipping others) within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind or 'event'} within {timeout} s")
            item = self.events.get(timeout=left)
            if kind is None or item[0] in (kind, "closed"):
                return item

    def close(self) -> None:
        """Hang up at once (a blocked read would otherwise wait for the next heartbeat)."""
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()
