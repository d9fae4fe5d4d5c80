"""The one door for every presence change.

Every change — call_state.htm, the REST API, an administrator, the expiry sweep — goes
through this module, which writes the new facts and a PresenceEvent row in one transaction.

Concurrency protocol: a change locks the extension row first, then reads and changes its
calls. call_state.htm on PostgreSQL reads first, without a lock, and writes in one statement
that takes the lock and re-checks what was read; if anything changed in between, it writes
nothing and the request takes the locked way. The expiry sweep locks both rows with SKIP
LOCKED, so it never waits on (or double-ends) a call being changed.

The call_state.htm path is a few plain SQL statements through `connection.cursor()`: the ORM's
per-query cost and round trips, not the database, limit that endpoint (bench/README.md).
Times are passed from Python, so the locked path's SQL runs on PostgreSQL and on the embedded
SQLite alike. The one-statement writes need PostgreSQL's data-modifying WITH; SQLite, which
serializes writers anyway, always takes the locked path.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from domains.credentials import password_matches
from domains.models import (
    AVAILABILITY_CHOICES,
    Domain,
    Extension,
    ProviderKey,
    address_allowed,
)
from presence.models import (
    AVAILABILITY_CHANGED,
    CALL_CLEARED,
    CALL_EXPIRED,
    CALL_REFRESHED,
    CALL_REPLACED,
    CALL_STARTED,
    CLEARED,
    EXPIRED,
    EXTENSION_ADDED,
    EXTENSION_DISABLED,
    EXTENSION_ENABLED,
    NOTE_CHANGED,
    REPLACED,
    SOURCE_SWEEP,
    Call,
    PresenceEvent,
)
from presence.prepared import PreparedStatement
from presence.state import OFFLINE, presence_state

_INSTANT = timedelta(microseconds=1)
_EXT = Extension._meta.db_table
_DOMAIN = Domain._meta.db_table
_CALL = Call._meta.db_table
_EVENT = PresenceEvent._meta.db_table

_EXTENSION_COLUMNS = """
    e.id, e.secret_hash, e.availability, d.id, d.max_call_duration, d.allowed_addresses"""
_EXTENSION_FROM = f"FROM {_EXT} e JOIN {_DOMAIN} d ON d.id = e.domain_id"
_BY_NAME = "WHERE d.name = %s AND e.number = %s AND d.enabled AND e.enabled"
_LOOKUP_BY_NAME = f"SELECT {_EXTENSION_COLUMNS} {_EXTENSION_FROM} {_BY_NAME}"
_LOOKUP_BY_ID = f"SELECT {_EXTENSION_COLUMNS} {_EXTENSION_FROM} WHERE e.id = %s AND e.enabled"
_PROVIDER_KEYS = f"""
    SELECT secret_hash, allowed_addresses FROM {ProviderKey._meta.db_table}
    WHERE domain_id = %s AND enabled"""
_ACTIVE_CALL = f"""
    SELECT id, number, withheld, call_id, started_at, expires_at
    FROM {_CALL} WHERE extension_id = %s AND ended_at IS NULL"""
_START_CALL = f"""
    INSERT INTO {_CALL}
        (extension_id, number, withheld, call_id, source, started_at, expires_at, end_reason)
    VALUES (%s, %s, %s, %s, %s, %s, %s, '') RETURNING id"""
_REFRESH_CALL = f"UPDATE {_CALL} SET expires_at = %s, call_id = %s WHERE id = %s"
_END_CALL = f"UPDATE {_CALL} SET ended_at = %s, end_reason = %s WHERE id = %s"
_INSERT_EVENT = f"""
    INSERT INTO {_EVENT} (domain_id, extension_id, call_id, old_state, new_state, reason,
                          source, expires_at, created_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""

# PostgreSQL, `_apply_unlocked`: the read, and one statement per change. `locked` takes the
# extension's row lock first (as the locked path does: no deadlock between them) and is empty
# when the extension was disabled or its availability changed since the read; `_SAME_CALL`
# holds only while the active call is still the one read. Either failing, nothing is written
# and the statement returns no row. A start needs no check of its own: ON CONFLICT finds a
# call started in between (the partial unique index on active calls).
_PARAM_TYPES = {
    "domain_name": "text",
    "user": "text",
    "ext": "bigint",
    "availability": "text",
    "call": "bigint",
    "old_call_id": "text",
    "old_expires_at": "timestamptz",
    "number": "text",
    "withheld": "boolean",
    "call_id": "text",
    "source": "text",
    "now": "timestamptz",
    "expires_at": "timestamptz",
    "end_reason": "text",
    "domain": "bigint",
    "old_state": "text",
    "new_state": "text",
    "reason": "text",
}
_READ = PreparedStatement(
    "call_state_read",
    f"""SELECT {_EXTENSION_COLUMNS},
        c.id, c.number, c.withheld, c.call_id, c.started_at, c.expires_at
    {_EXTENSION_FROM}
    LEFT JOIN {_CALL} c ON c.extension_id = e.id AND c.ended_at IS NULL
    WHERE d.name = %(domain_name)s AND e.number = %(user)s AND d.enabled AND e.enabled""",
    _PARAM_TYPES,
)
_LOCKED = f"""locked AS (
    SELECT id FROM {_EXT}
    WHERE id = %(ext)s AND enabled AND availability = %(availability)s FOR UPDATE)"""
_SAME_CALL = """id = %(call)s AND ended_at IS NULL AND call_id = %(old_call_id)s
    AND expires_at = %(old_expires_at)s AND EXISTS (SELECT FROM locked)"""
_NEW_CALL = f"""INSERT INTO {_CALL}
        (extension_id, number, withheld, call_id, source, started_at, expires_at, end_reason)
    SELECT extension_id, %(number)s, %(withheld)s, %(call_id)s, %(source)s, %(now)s,
        %(expires_at)s, ''"""
_EVENT_OF_WRITTEN = f"""
    INSERT INTO {_EVENT} (domain_id, extension_id, call_id, old_state, new_state, reason,
                          source, expires_at, created_at)
    SELECT %(domain)s, %(ext)s, id, %(old_state)s, %(new_state)s, %(reason)s, %(source)s,
        %(expires_at)s, %(now)s
    FROM written RETURNING call_id"""
_WRITE_IF_UNCHANGED = {
    reason: PreparedStatement(f"call_state_{reason}", sql, _PARAM_TYPES)
    for reason, sql in {
        CALL_STARTED: f"""WITH {_LOCKED}, written AS (
            {_NEW_CALL} FROM (SELECT id AS extension_id FROM locked) AS ext
            ON CONFLICT (extension_id) WHERE ended_at IS NULL DO NOTHING RETURNING id)
            {_EVENT_OF_WRITTEN}""",
        CALL_REFRESHED: f"""WITH {_LOCKED}, written AS (
            UPDATE {_CALL} SET expires_at = %(expires_at)s, call_id = %(call_id)s
            WHERE {_SAME_CALL} RETURNING id)
            {_EVENT_OF_WRITTEN}""",
        CALL_CLEARED: f"""WITH {_LOCKED}, written AS (
            UPDATE {_CALL} SET ended_at = %(now)s, end_reason = %(end_reason)s
            WHERE {_SAME_CALL} RETURNING id)
            {_EVENT_OF_WRITTEN}""",
        CALL_REPLACED: f"""WITH {_LOCKED}, ended AS (
            UPDATE {_CALL} SET ended_at = %(now)s, end_reason = %(end_reason)s
            WHERE {_SAME_CALL} RETURNING extension_id),
        written AS ({_NEW_CALL} FROM ended RETURNING id)
            {_EVENT_OF_WRITTEN}""",
    }.items()
}


@dataclass(frozen=True)
class CallReport:
    """What a provider reported: a call with `number`, or no call (busy=False)."""

    busy: bool
    number: str = ""
    withheld: bool = False
    expires: int | None = None  # seconds; None = the domain's maximum
    call_id: str = ""


@dataclass(frozen=True)
class ActiveCall:
    id: int | None  # None until a new call is written
    number: str
    withheld: bool
    call_id: str
    started_at: datetime
    expires_at: datetime

    def is_same_call(self, report: CallReport) -> bool:
        """Same call_id when both carry one, else same number."""
        if self.call_id and report.call_id:
            return self.call_id == report.call_id
        return (self.number, self.withheld) == (report.number, report.withheld)


@dataclass(frozen=True)
class CallState:
    """What call_state.htm answers after a request."""

    state: str
    call: ActiveCall | None
    now: datetime


def _aware(value) -> datetime:
    """SQLite hands back naive UTC datetimes (or strings) from raw queries."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _db_time(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _lock_suffix() -> str:
    # SQLite runs IMMEDIATE transactions: writers are serialized already.
    return " FOR UPDATE OF e" if connection.vendor == "postgresql" else ""


class ExtensionUnavailable(Exception):
    """The extension is disabled or gone: it cannot take a call."""


def apply_call_state(
    *,
    domain: str,
    user: str,
    password: str,
    address: str,
    report: CallReport,
    source: str,
    now: datetime | None = None,
) -> CallState | None:
    """Authenticate a call_state.htm request and apply it. None means refused (403).

    On PostgreSQL a request first tries the two-statement path (`_apply_unlocked`). What that
    path does not settle, and every request on SQLite, takes the locked path, in one short
    transaction:
    1. find and lock the enabled extension of the enabled domain (one indexed lookup);
    2. check the password and the domain's address allowlist;
    3. apply the report (see `_Facts.apply`).
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        settled = _apply_unlocked(domain, user, password, address, report, source, now)
        if settled is not _UNSETTLED:
            return settled
    with transaction.atomic(), connection.cursor() as cursor:
        facts = _Facts.lock(cursor, _LOOKUP_BY_NAME, [domain, user], source, now)
        if facts is None or not facts.accepts(password, address):
            return None
        return facts.apply(report)


_UNSETTLED = object()


def _apply_unlocked(domain, user, password, address, report, source, now):
    """call_state.htm in two statements and no transaction around them: the usual request.

    Read the extension with its active call (no lock), decide, then write the change and its
    event in one statement that first locks the extension row and re-checks that the
    extension and its call are still exactly as read. If another change came in between, that
    statement writes nothing and this answers _UNSETTLED: the locked path then does it again
    on fresh facts. So does a call past its deadline, which the locked path ends first.
    Round trips are what this endpoint's time goes to (bench/README.md): this saves four of
    the locked path's seven.
    """
    with connection.cursor() as cursor:
        row = _READ.fetchone(cursor, {"domain_name": domain, "user": user})
        if row is None:
            return None
        facts = _Facts(cursor, row[:6], source, now)
        if not facts.accepts(password, address):
            return None
        call = _active_call(row[6:])
        if call and call.expires_at <= now:
            return _UNSETTLED
        change = facts.plan(call, report)
        if change.reason is None:
            return CallState(facts.state(call), call, now)
        after = facts.outcome(call, change, report)
        written = facts.write_if_unchanged(call, change, after)
        if written is None:
            return _UNSETTLED
        after = replace(after, id=written) if after else None
        return CallState(facts.state(after), after, now)


def report_call(
    extension: Extension, report: CallReport, source: str, now: datetime | None = None
) -> CallState:
    """Apply a call report for an already authorised caller (REST API, administrator)."""
    with transaction.atomic(), connection.cursor() as cursor:
        facts = _Facts.lock(cursor, _LOOKUP_BY_ID, [extension.pk], source, now)
        if facts is None:
            raise ExtensionUnavailable(str(extension))
        return facts.apply(report)


def _active_call(row) -> ActiveCall | None:
    if row is None or row[0] is None:
        return None
    call_id, number, withheld, provider_call_id, started_at, expires_at = row
    return ActiveCall(
        call_id, number, bool(withheld), provider_call_id, _aware(started_at), _aware(expires_at)
    )


@dataclass(frozen=True)
class _Change:
    """What a report does to an extension: the event it makes (None: nothing changes)."""

    reason: str | None
    expires_at: datetime | None = None  # the deadline of the call it starts or refreshes


class _Facts:
    """An extension of apply_call_state or report_call, read and changed with plain SQL."""

    def __init__(self, cursor, row, source: str, now: datetime):
        self.cursor = cursor
        (
            self.ext_id,
            self.secret_hash,
            self.availability,
            self.domain_id,
            self.max_duration,
            self.allowlist,
        ) = row
        self.source = source
        self.now = now

    @classmethod
    def lock(cls, cursor, lookup: str, params: list, source: str, now: datetime | None):
        """Find the extension and lock its row; None when there is no such enabled one."""
        cursor.execute(lookup + _lock_suffix(), params)
        row = cursor.fetchone()
        return cls(cursor, row, source, now or timezone.now()) if row else None

    def accepts(self, password: str, address: str) -> bool:
        """The extension's password or a provider key of the domain, from an allowed address.

        Provider keys are read only when the extension's password does not match, so the
        usual request pays nothing for them.
        """
        if not address_allowed(self.allowlist, address):
            return False
        if password_matches(password, self.secret_hash):
            return True
        self.cursor.execute(_PROVIDER_KEYS, [self.domain_id])
        return any(
            password_matches(password, key_hash)
            and bool(key_allowlist)  # a provider key without an allowlist is never valid
            and address_allowed(key_allowlist, address)
            for key_hash, key_allowlist in self.cursor.fetchall()
        )

    def apply(self, report: CallReport) -> CallState:
        """The locked path: end the active call if past its deadline (reason expired); then
        start, refresh, replace or clear as reported, writing an event row for the change."""
        call = _active_call(self._fetch(_ACTIVE_CALL, [self.ext_id]))
        if call and call.expires_at <= self.now:
            self.expire(call)
            call = None
        change = self.plan(call, report)
        if change.reason is None:
            return CallState(self.state(call), call, self.now)
        after = self.outcome(call, change, report)
        written = self.write(call, change, after)
        after = replace(after, id=written) if after else None
        self._insert_event(call, after, change.reason, written)
        return CallState(self.state(after), after, self.now)

    def plan(self, call: ActiveCall | None, report: CallReport) -> _Change:
        """What the report does to the extension with this (live) active call."""
        expires = self.max_duration
        if report.expires is not None:
            expires = min(report.expires, self.max_duration)
        if report.busy and expires > 0:
            expires_at = self.now + timedelta(seconds=expires)
            if call is None:
                return _Change(CALL_STARTED, expires_at)
            reason = CALL_REFRESHED if call.is_same_call(report) else CALL_REPLACED
            return _Change(reason, expires_at)
        if call and (not report.call_id or report.call_id == call.call_id):
            return _Change(CALL_CLEARED)
        return _Change(None)

    def outcome(self, call, change: _Change, report: CallReport) -> ActiveCall | None:
        """The active call after the change; a new call's id is known once it is written."""
        if change.reason == CALL_CLEARED:
            return None
        if change.reason == CALL_REFRESHED:
            # A refresh may bring the provider's call_id late: keep it, so a clear with it
            # ends this call.
            call_id = call.call_id or report.call_id
            return replace(call, expires_at=change.expires_at, call_id=call_id)
        return ActiveCall(
            None, report.number, report.withheld, report.call_id, self.now, change.expires_at
        )

    def state(self, call: ActiveCall | None, at: datetime | None = None) -> str:
        return presence_state(
            enabled=True,
            availability=self.availability,
            call_expires_at=call.expires_at if call else None,
            now=at or self.now,
        )

    def write(self, call, change: _Change, after) -> int:
        """The change, statement by statement; the id of the call it leaves or ends."""
        if change.reason == CALL_REFRESHED:
            self.cursor.execute(_REFRESH_CALL, [_db_time(after.expires_at), after.call_id, call.id])
            return call.id
        if call:
            end_reason = CLEARED if change.reason == CALL_CLEARED else REPLACED
            self.cursor.execute(_END_CALL, [_db_time(self.now), end_reason, call.id])
        if change.reason == CALL_CLEARED:
            return call.id
        return self._fetch(_START_CALL, [self.ext_id, *self._new_call(after)])[0]

    def write_if_unchanged(self, call, change: _Change, after) -> int | None:
        """The change and its event in one statement (PostgreSQL), provided the extension and
        its call are still as read; the id of the call it leaves or ends, None if not."""
        params = {
            "ext": self.ext_id,
            "availability": self.availability,
            "domain": self.domain_id,
            "source": self.source,
            "now": self.now,
            "old_state": self.state(call),
            "new_state": self.state(after),
            "reason": change.reason,
            "expires_at": after.expires_at if after else None,
            "end_reason": CLEARED if change.reason == CALL_CLEARED else REPLACED,
        }
        if call:
            params.update(call=call.id, old_call_id=call.call_id, old_expires_at=call.expires_at)
        if after:
            params.update(number=after.number, withheld=after.withheld, call_id=after.call_id)
        row = _WRITE_IF_UNCHANGED[change.reason].fetchone(self.cursor, params)
        return row[0] if row else None

    def expire(self, call: ActiveCall) -> None:
        """End a call found past its deadline, as the sweep would have."""
        self.cursor.execute(_END_CALL, [_db_time(call.expires_at), EXPIRED, call.id])
        # It was still shown until its deadline: the old state is the one just before it.
        self._insert_event(
            call,
            None,
            CALL_EXPIRED,
            call.id,
            old_state=self.state(call, call.expires_at - _INSTANT),
            at=call.expires_at,
        )

    def _new_call(self, call: ActiveCall) -> list:
        return [
            call.number,
            call.withheld,
            call.call_id,
            self.source,
            _db_time(self.now),
            _db_time(call.expires_at),
        ]

    def _insert_event(self, old, new, reason, call_id, *, old_state=None, at=None) -> None:
        self.cursor.execute(
            _INSERT_EVENT,
            [
                self.domain_id,
                self.ext_id,
                call_id,
                old_state or self.state(old),
                self.state(new),
                reason,
                self.source,
                _db_time(new.expires_at) if new else None,
                _db_time(at or self.now),
            ],
        )

    def _fetch(self, sql: str, params):
        self.cursor.execute(sql, params)
        return self.cursor.fetchone()


def _locked_extension(extension_id: int) -> tuple[Extension, Call | None]:
    extension = Extension.objects.select_for_update().get(pk=extension_id)
    return extension, Call.objects.filter(extension=extension, ended_at__isnull=True).first()


def _orm_state(extension: Extension, call: Call | None, now: datetime) -> str:
    return presence_state(
        enabled=extension.enabled,
        availability=extension.availability,
        call_expires_at=call.expires_at if call else None,
        now=now,
    )


def _record(extension, call, old_state, reason, source, now) -> PresenceEvent:
    return PresenceEvent.objects.create(
        domain_id=extension.domain_id,
        extension=extension,
        call=call,
        old_state=old_state,
        new_state=_orm_state(extension, call, now),
        reason=reason,
        source=source,
        expires_at=call.expires_at if call else None,
        created_at=now,
    )


_VALID_AVAILABILITY = {value for value, _ in AVAILABILITY_CHOICES}


@transaction.atomic
def set_availability(
    extension: Extension,
    *,
    availability: str | None = None,
    note: str | None = None,
    source: str,
    now: datetime | None = None,
) -> list[PresenceEvent]:
    """Set an extension's availability (available/away/dnd) and/or status note."""
    if availability is not None and availability not in _VALID_AVAILABILITY:
        raise ValueError(f"unknown availability {availability!r}")
    now = now or timezone.now()
    locked, call = _locked_extension(extension.pk)
    events = []
    for field, value, reason in (
        ("availability", availability, AVAILABILITY_CHANGED),
        ("note", note, NOTE_CHANGED),
    ):
        if value is None or getattr(locked, field) == value:
            continue
        old_state = _orm_state(locked, call, now)
        setattr(locked, field, value)
        locked.save(update_fields=[field])
        events.append(_record(locked, call, old_state, reason, source, now))
    _copy_facts(locked, extension)
    return events


@transaction.atomic
def set_enabled(
    extension: Extension, enabled: bool, *, source: str, now: datetime | None = None
) -> PresenceEvent | None:
    """Enable or disable an extension: a disabled one shows offline and takes no calls."""
    now = now or timezone.now()
    locked, call = _locked_extension(extension.pk)
    if locked.enabled == enabled:
        return None
    old_state = _orm_state(locked, call, now)
    locked.enabled = enabled
    locked.save(update_fields=["enabled"])
    _copy_facts(locked, extension)
    reason = EXTENSION_ENABLED if enabled else EXTENSION_DISABLED
    return _record(locked, call, old_state, reason, source, now)


PRESENCE_FIELDS = ("availability", "note", "enabled")


@transaction.atomic
def update_extension(extension: Extension, changes: dict, *, source: str) -> None:
    """Change an extension's fields (admin form, CSV import, REST API).

    Other fields are saved as they are; presence facts (availability, note, enabled) go
    through this module, so each change records its event.
    """
    plain = [name for name in changes if name not in PRESENCE_FIELDS]
    for name in plain:
        setattr(extension, name, changes[name])
    if plain:
        extension.save(update_fields=plain)
    if "availability" in changes or "note" in changes:
        set_availability(
            extension,
            availability=changes.get("availability"),
            note=changes.get("note"),
            source=source,
        )
    if "enabled" in changes:
        set_enabled(extension, changes["enabled"], source=source)


@transaction.atomic
def add_extension(extension: Extension, *, source: str, now: datetime | None = None):
    """Save a new extension and announce it, so open boards and relays learn of it."""
    now = now or timezone.now()
    extension.save()
    return _record(extension, None, OFFLINE, EXTENSION_ADDED, source, now)


def _copy_facts(source: Extension, target: Extension) -> None:
    """Keep the caller's instance in step with what was saved."""
    for field in ("availability", "note", "enabled"):
        setattr(target, field, getattr(source, field))


def expire_due_calls(now: datetime | None = None, batch_size: int = 500) -> int:
    """End every active call whose deadline has passed (reason expired). Returns the count.

    Safe to run twice at once: each batch claims its rows with SKIP LOCKED, so a call is ended
    by exactly one sweep, and a call whose extension is being changed right now is left to
    that change (it ends expired calls itself). Small batches keep each transaction short, so
    a backlog of stale calls never stalls call_state.htm.
    """
    now = now or timezone.now()
    total = 0
    while True:
        ended = _expire_batch(now, batch_size)
        total += ended
        if ended < batch_size:
            return total


@transaction.atomic
def _expire_batch(now: datetime, batch_size: int) -> int:
    due = list(
        Call.objects.filter(ended_at__isnull=True, expires_at__lte=now)
        .select_related("extension")
        .select_for_update(skip_locked=True, of=("self", "extension"))
        .order_by("expires_at")[:batch_size]
    )
    if not due:
        return 0
    Call.objects.filter(pk__in=[call.pk for call in due]).update(
        ended_at=F("expires_at"), end_reason=EXPIRED
    )
    PresenceEvent.objects.bulk_create(
        PresenceEvent(
            domain_id=call.extension.domain_id,
            extension_id=call.extension_id,
            call=call,
            old_state=_orm_state(call.extension, call, call.expires_at - _INSTANT),
            new_state=_orm_state(call.extension, None, now),
            reason=CALL_EXPIRED,
            source=SOURCE_SWEEP,
            created_at=now,
        )
        for call in due
    )
    return len(due)
