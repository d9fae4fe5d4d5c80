"""`make run`'s embedded defaults: SQLite and no Redis, through the production web server.

On SQLite, call_state.htm always takes the locked path (presence/service.py); on PostgreSQL
the rest of the suite covers both. Here the demo domain is loaded by its management command,
as `make run` does, and the printed curl lines are what a new user pastes.
"""

import re
import sqlite3
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.servers import ROOT, WebServer, server_env

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
