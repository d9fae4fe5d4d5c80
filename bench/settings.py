"""The production settings plus two bench-only reference views (bench/urls.py).

Only bench/call_state uses this module: everything else — middleware, database, Redis, the
gunicorn config — is exactly what production runs.
"""

from pbx.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
