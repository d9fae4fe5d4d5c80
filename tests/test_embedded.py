"""`make run`'s embedded defaults: SQLite and no Redis, through the production web server.

On SQLite, call_state.htm always takes the locked path (presence/service.py); on PostgreSQL
the rest of the suite covers both. Here the demo domain is loaded by its management command,
as `make run` does, and the printed curl lines are what a new user pastes.
"""

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.servers import ROOT, WebServer, free_port, new_user_env, server_env

pytestmark = pytest.mark.server


@pytest.fixture
def embedded(tmp_path):
    """A migrated SQLite database with the demo domain, and a gunicorn serving it."""
    database = tmp_path / "pbx.sqlite3"
    env = server_env(DATABASE_URL=f"sqlite:///{database}", DATA_DIR=str(tmp_path))
    del env["REDIS_URL"]  # absent, as in `make run`: nothing may need Redis
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    server = WebServer(tmp_path / "gunicorn.log", env)
    demo = subprocess.run(
        [*manage, "load_demo", "--url", server.url],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    yield server, demo, database
    server.stop()


def curl_line(demo: str, label: str) -> str:
    return re.search(rf"{label}:\s+curl '([^']+)'", demo)[1]


def test_demo_curl_lines_start_refresh_and_clear_a_call(embedded):
    server, demo, database = embedded
    busy, idle = curl_line(demo, "on the phone"), curl_line(demo, "off the phone")
    json = {"Accept": "application/json"}

    assert requests.get(busy, timeout=10).text == "OK"
    assert requests.get(busy, headers=json, timeout=10).json()["state"] == "on_call"
    assert requests.get(idle, headers=json, timeout=10).json()["state"] == "available"
    assert requests.get(idle.replace("password=", "password=x"), timeout=10).status_code == 403

    with sqlite3.connect(database) as db:
        reasons = [r for (r,) in db.execute("SELECT reason FROM presence_presenceevent")]
    assert reasons[-3:] == ["call_started", "call_refreshed", "call_cleared"]


def test_concurrent_requests_on_sqlite_leave_one_consistent_state(embedded):
    server, demo, database = embedded
    busy, idle = curl_line(demo, "on the phone"), curl_line(demo, "off the phone")
    urls = [busy, busy.replace("12345678", "87654321"), idle] * 40

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(lambda url: requests.get(url, timeout=30).status_code, urls))

    assert statuses == {200: len(urls)}
    with sqlite3.connect(database) as db:
        active = db.execute("SELECT count(*) FROM presence_call WHERE ended_at IS NULL")
        assert active.fetchone()[0] <= 1
        chain = db.execute(
            "SELECT old_state, new_state FROM presence_presenceevent "
            "WHERE reason LIKE 'call_%' ORDER BY id"
        ).fetchall()
    assert all(before[1] == after[0] for before, after in zip(chain, chain[1:], strict=False))


def group_alive(group: int) -> bool:
    """Whether any process of the process group is still running (zombies do not count)."""
    states = subprocess.run(
        ["ps", "-o", "stat=", "-g", str(group)], capture_output=True, text=True
    ).stdout.split()
    return any(not state.startswith("Z") for state in states)


def last_call_end_reason(database) -> str:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT end_reason FROM presence_call ORDER BY id DESC").fetchone()[0]


def test_make_run_serves_the_demo_and_expires_calls_by_itself(tmp_path):
    """`make run` after its install step: scripts/run-local as a new user starts it, with no
    DATABASE_URL or REDIS_URL. The printed busy line marks the demo extension busy, the idle
    line clears it, and a call sent with `expires` is ended by the worker's sweep."""
    env = new_user_env(DATA_DIR=str(tmp_path), PORT=str(free_port()), STREAM_PORT=str(free_port()))
    output = tmp_path / "run-local.out"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            ["scripts/run-local"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "Stop with Ctrl-C." not in output.read_text(errors="replace"):
            assert process.poll() is None, output.read_text(errors="replace")
            assert time.monotonic() < deadline, output.read_text(errors="replace")
            time.sleep(0.2)
        demo = output.read_text()
        busy, idle = curl_line(demo, "on the phone"), curl_line(demo, "off the phone")
        expiring = curl_line(demo, "ends by itself").replace("expires=10", "expires=2")
        json = {"Accept": "application/json"}

        assert requests.get(busy, headers=json, timeout=10).json()["state"] == "on_call"
        assert requests.get(idle, headers=json, timeout=10).json()["state"] == "available"
        answer = requests.get(expiring, headers=json, timeout=10).json()
        sent = time.monotonic()
        assert (answer["state"], answer["expires_in"]) == ("on_call", 2)

        # The sweep (beat, every second) ends it: 2 s of lateness at most (DESIGN §4), and
        # a little more here for polling a file the worker writes.
        while (reason := last_call_end_reason(tmp_path / "pbx.sqlite3")) != "expired":
            assert time.monotonic() - sent < 2 + 2 + 1, reason
            time.sleep(0.1)

        # Stopping it (SIGTERM, as a service manager or Ctrl-C does) stops all it started.
        process.terminate()
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while group_alive(process.pid):
            assert time.monotonic() < deadline, "servers still running after stop"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
