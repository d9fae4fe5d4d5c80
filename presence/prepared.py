"""Statements PostgreSQL plans once per connection, for call_state.htm's usual path.

psycopg2 sends every statement as text, which PostgreSQL parses and plans anew each time. For
the endpoint's statements planning is most of the work: the read of extension, domain and
active call takes ~0.25 ms to plan and ~0.05 ms to run (bench/README.md). So they are
PREPAREd on the first use in each database connection and then run by name.

Prepared statements belong to a PostgreSQL session: a pooler that hands one client's
statements to several server sessions (PgBouncer in transaction mode) cannot carry them.
There, DATABASE_PREPARED_STATEMENTS=false sends the same statements as plain text
(docs/operations.md).
"""

import re
import threading

from django.conf import settings
from django.db import connection

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_statements: list["PreparedStatement"] = []
_prepared = threading.local()  # .connection: the DB-API connection they were prepared on


class PreparedStatement:
    """SQL with %(name)s placeholders, prepared as `name` with the given parameter types."""

    def __init__(self, name: str, sql: str, types: dict[str, str]):
        params = list(dict.fromkeys(_PLACEHOLDER.findall(sql)))
        numbered = _PLACEHOLDER.sub(lambda match: f"${params.index(match[1]) + 1}", sql)
        signature = ", ".join(types[param] for param in params)
        self.prepare_sql = f"PREPARE {name} ({signature}) AS {numbered}"
        self.execute_sql = f"EXECUTE {name} ({', '.join(f'%({p})s' for p in params)})"
        # Unprepared, the same statement with each parameter cast to its type.
        self.plain_sql = _PLACEHOLDER.sub(lambda match: f"{match[0]}::{types[match[1]]}", sql)
        _statements.append(self)

    def fetchone(self, cursor, params: dict):
        if settings.DATABASE_PREPARED_STATEMENTS:
            _prepare_on_this_connection(cursor)
            cursor.execute(self.execute_sql, params)
        else:
            cursor.execute(self.plain_sql, params)
        return cursor.fetchone()


def _prepare_on_this_connection(cursor) -> None:
    # Compared by identity with a reference held here, so a new connection (after a restart
    # of PostgreSQL, CONN_MAX_AGE, a test's reconnect) is never taken for the old one.
    # PREPARE is not undone by a rollback, so a later rollback cannot lose them either.
    if getattr(_prepared, "connection", None) is connection.connection:
        return
    # One round trip; DEALLOCATE first, in case an earlier attempt got halfway.
    cursor.execute("; ".join(["DEALLOCATE ALL", *(s.prepare_sql for s in _statements)]))
    _prepared.connection = connection.connection
