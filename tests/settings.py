"""Settings for the test suite: the production settings, with test keys.

DATABASE_URL and REDIS_URL come from the environment (`make test` points them at the local
PostgreSQL and Redis).
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("CALL_STATE_KEY", "test-only-call-state-key")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/presence")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")

from pbx.settings import *  # noqa: E402, F403

STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test logins

# One test database per run, so runs side by side on one machine do not drop each other's.
DATABASES["default"]["TEST"] = {"NAME": f"test_presence_{os.getpid()}"}  # noqa: F405
