"""Keys: commands that need none run without them; servers and workers refuse to start."""

import subprocess
import sys

import pytest

from tests.servers import ROOT, VENV_BIN, new_user_env


def run(args: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=ROOT,
        env=new_user_env(DATA_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrations_can_be_checked_without_keys(tmp_path):
    result = run([sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout


@pytest.mark.parametrize(
    "entry_point",
    [
        [sys.executable, "-c", "import pbx.wsgi"],  # gunicorn's application
        [sys.executable, "-c", "import pbx.stream_asgi"],  # uvicorn's
        [str(VENV_BIN / "celery"), "-A", "pbx", "worker", "--beat", "--loglevel", "WARNING"],
    ],
    ids=["web", "stream", "worker"],
)
def test_servers_and_workers_refuse_to_start_without_keys(tmp_path, entry_point):
    result = run(entry_point, tmp_path, CALL_STATE_KEY="set, only SECRET_KEY is missing")
    assert result.returncode != 0
    message = "SECRET_KEY must be set (a long random string) unless DEBUG=true"
    assert message in result.stdout + result.stderr


def test_no_password_is_issued_without_call_state_key(tmp_path):
    result = run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            "from domains.credentials import hash_password; hash_password('x')",
        ],
        tmp_path,
        DJANGO_SETTINGS_MODULE="pbx.settings",
        SECRET_KEY="set",
    )
    assert "CALL_STATE_KEY must be set" in result.stderr
