"""Reference views for bench/call_state, served by the same server and middleware.

- `hello`: the cost of a request through Django with no work at all;
- `upsert`: the least a writing request can do here — one indexed row upserted with raw SQL in
  one transaction. The table is created by bench/call_state, not by a migration.
"""

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse

TABLE = "bench_upsert"
CREATE_TABLE = f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        key integer PRIMARY KEY,
        hits bigint NOT NULL,
        updated_at timestamptz NOT NULL
    )"""
_UPSERT = f"""
    INSERT INTO {TABLE} (key, hits, updated_at) VALUES (%s, 1, now())
    ON CONFLICT (key) DO UPDATE SET hits = {TABLE}.hits + 1, updated_at = excluded.updated_at"""


def _plain(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


def hello(request: HttpRequest) -> HttpResponse:
    return _plain("OK")


def upsert(request: HttpRequest) -> HttpResponse:
    try:
        key = int(request.GET["key"])
    except (KeyError, ValueError):
        return _plain("Bad Request: key", 400)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_UPSERT, [key])
    return _plain("OK")
