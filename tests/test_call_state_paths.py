"""call_state.htm's two ways of changing presence agree (presence/service.py).

On PostgreSQL a request reads without a lock and writes its change in one statement that
re-checks what it read (`_apply_unlocked`); anything that statement cannot settle goes to the
locked path, which is also SQLite's only path. These tests hold the two to the same results,
and check that the one-statement write changes nothing when the facts moved between its read
and its write — the race the locked path exists for.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from domains.credentials import issue_password
from domains.models import DND, Extension
from presence import service
from presence.models import SOURCE_API, SOURCE_CALL_STATE, Call, PresenceEvent
from presence.service import CallReport, apply_call_state, report_call, set_availability
from presence.state import presence_state

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

# (seconds after T0, report): every kind of change, in an order that reaches each branch.
SCRIPT = [
    (0, CallReport(busy=True, number="111")),  # start
    (5, CallReport(busy=True, number="111")),  # refresh
    (9, CallReport(busy=True, number="111", call_id="x")),  # refresh that brings a call_id
    (12, CallReport(busy=True, number="222", call_id="x")),  # same call_id: still a refresh
    (15, CallReport(busy=True, number="222", call_id="y")),  # replace
    (20, CallReport(busy=False, call_id="x")),  # clear naming another call: nothing
    (21, CallReport(busy=False, call_id="y")),  # clear
    (22, CallReport(busy=False)),  # clear when idle: nothing
    (30, CallReport(busy=True, withheld=True)),  # start, number withheld
    (31, CallReport(busy=True, number="333", expires=30)),  # replace, short deadline
    (40, CallReport(busy=True, number="333", expires=0)),  # expires=0 clears
    (50, CallReport(busy=True, number="444", expires=5)),  # start
    (70, CallReport(busy=True, number="444")),  # after its deadline: expired, then a new call
    (80, CallReport(busy=False)),  # clear
]


@pytest.fixture
def twin(extension) -> Extension:
    """A second extension of abc.com, alike in every fact but its number."""
    twin = Extension.objects.create(domain=extension.domain, number="124", name="Twin")
    twin.password = issue_password(twin)
    return twin


@pytest.fixture
def locked_path_calls(monkeypatch) -> list:
    """Records every request the locked path handled."""
    calls = []
    lock = service._Facts.lock.__func__

    def counting_lock(cls, cursor, lookup, params, source, now):
        calls.append(params)
        return lock(cls, cursor, lookup, params, source, now)

    monkeypatch.setattr(service._Facts, "lock", classmethod(counting_lock))
    return calls


def run_script(extension: Extension, password: str) -> list:
    answers = []
    for seconds, report in SCRIPT:
        result = apply_call_state(
            domain="abc.com",
            user=extension.number,
            password=password,
            address="192.0.2.1",
            report=report,
            source=SOURCE_CALL_STATE,
            now=T0 + timedelta(seconds=seconds),
        )
        call = result.call
        answers.append(
            (result.state, call and (call.number, call.withheld, call.call_id, call.expires_at))
        )
    return answers


def history(extension: Extension) -> tuple[list, list]:
    events = [
        (e.reason, e.old_state, e.new_state, e.expires_at, e.created_at, e.source)
        for e in PresenceEvent.objects.filter(extension=extension).order_by("id")
    ]
    calls = [
        (c.number, c.withheld, c.call_id, c.started_at, c.expires_at, c.ended_at, c.end_reason)
        for c in Call.objects.filter(extension=extension).order_by("id")
    ]
    return events, calls


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "plain-text"])
@pytest.mark.parametrize("availability", ["available", DND])
def test_both_paths_give_the_same_answers_calls_and_events(
    extension, twin, availability, prepared, settings, monkeypatch, locked_path_calls
):
    settings.DATABASE_PREPARED_STATEMENTS = prepared  # plain text: behind a transaction pooler
    for ext in (extension, twin):
        Extension.objects.filter(pk=ext.pk).update(availability=availability)

    unlocked = run_script(extension, extension.password)
    # Only the request that finds a call past its deadline needed the locked path.
    assert locked_path_calls == [["abc.com", "123"]]

    monkeypatch.setattr(service, "_apply_unlocked", lambda *args: service._UNSETTLED)
    locked = run_script(twin, twin.password)

    assert unlocked == locked
    assert history(extension) == history(twin)
    events, calls = history(extension)
    assert len(calls) == 6
    assert [e[0] for e in events] == [
        "call_started",
        "call_refreshed",
        "call_refreshed",
        "call_refreshed",
        "call_replaced",
        "call_cleared",
        "call_started",
        "call_replaced",
        "call_cleared",
        "call_started",
        "call_expired",
        "call_started",
        "call_cleared",
    ]


def interleave(monkeypatch, change) -> list:
    """Run `change` between the unlocked read and its write; returns what the write gave."""
    written = []
    write = service._Facts.write_if_unchanged

    def write_after_change(facts, call, planned, after):
        change()
        written.append(write(facts, call, planned, after))
        return written[-1]

    monkeypatch.setattr(service._Facts, "write_if_unchanged", write_after_change)
    return written


def call_state(extension, report: CallReport):
    return apply_call_state(
        domain="abc.com",
        user=extension.number,
        password=extension.password,
        address="192.0.2.1",
        report=report,
        source=SOURCE_CALL_STATE,
    )


def api_report(extension, report: CallReport):
    return lambda: report_call(extension, report, SOURCE_API)


def assert_history_replays(extension):
    """Each event starts from the state the previous one left, and the last is the truth."""
    extension.refresh_from_db()
    events = list(PresenceEvent.objects.filter(extension=extension).order_by("id"))
    for before, after in zip(events, events[1:], strict=False):
        assert after.old_state == before.new_state, (before.reason, after.reason)
    active = Call.objects.filter(extension=extension, ended_at__isnull=True).first()
    assert events[-1].new_state == presence_state(
        enabled=extension.enabled,
        availability=extension.availability,
        call_expires_at=active.expires_at if active else None,
        now=events[-1].created_at,
    )
    return active


def test_a_call_replaced_in_between_is_replaced_again_not_refreshed(extension, monkeypatch):
    call_state(extension, CallReport(busy=True, number="111"))
    written = interleave(monkeypatch, api_report(extension, CallReport(busy=True, number="222")))

    result = call_state(extension, CallReport(busy=True, number="111"))

    assert written == [None]
    assert result.call.number == "111"
    assert assert_history_replays(extension).number == "111"
    reasons = PresenceEvent.objects.filter(extension=extension).values_list("reason", flat=True)
    assert list(reasons.order_by("id")) == ["call_started", "call_replaced", "call_replaced"]


def test_a_call_refreshed_in_between_is_still_cleared(extension, monkeypatch):
    call_state(extension, CallReport(busy=True, number="111"))
    written = interleave(
        monkeypatch, api_report(extension, CallReport(busy=True, number="111", expires=60))
    )

    result = call_state(extension, CallReport(busy=False))

    assert written == [None]
    assert result.state == "available"
    assert assert_history_replays(extension) is None
    ends = list(Call.objects.filter(extension=extension).values_list("end_reason", flat=True))
    assert ends == ["cleared"]


def test_a_call_started_in_between_is_replaced(extension, monkeypatch):
    written = interleave(monkeypatch, api_report(extension, CallReport(busy=True, number="222")))

    result = call_state(extension, CallReport(busy=True, number="111"))

    assert written == [None]
    assert result.call.number == "111"
    assert assert_history_replays(extension).number == "111"
    assert Call.objects.filter(extension=extension).count() == 2


def test_a_call_cleared_in_between_leaves_a_clear_with_nothing_to_do(extension, monkeypatch):
    call_state(extension, CallReport(busy=True, number="111"))
    written = interleave(monkeypatch, api_report(extension, CallReport(busy=False)))

    result = call_state(extension, CallReport(busy=False))

    assert written == [None]
    assert result.state == "available"
    assert assert_history_replays(extension) is None
    assert PresenceEvent.objects.filter(extension=extension).count() == 2


def test_availability_changed_in_between_shows_in_the_event(extension, monkeypatch):
    call_state(extension, CallReport(busy=True, number="111"))
    written = interleave(
        monkeypatch, lambda: set_availability(extension, availability=DND, source=SOURCE_API)
    )

    result = call_state(extension, CallReport(busy=False))

    assert written == [None]
    assert result.state == DND
    assert_history_replays(extension)
    last = PresenceEvent.objects.filter(extension=extension).latest("id")
    assert (last.reason, last.old_state, last.new_state) == ("call_cleared", "on_call", DND)


def test_extension_disabled_in_between_refuses_the_request(extension, monkeypatch):
    written = interleave(
        monkeypatch,
        lambda: service.set_enabled(extension, False, source=SOURCE_API),
    )

    result = call_state(extension, CallReport(busy=True, number="111"))

    assert written == [None]
    assert result is None
    assert not Call.objects.filter(extension=extension).exists()


def test_nothing_in_between_writes_in_one_statement(extension, monkeypatch, locked_path_calls):
    written = interleave(monkeypatch, lambda: None)

    call_state(extension, CallReport(busy=True, number="111"))
    call_state(extension, CallReport(busy=True, number="111"))
    call_state(extension, CallReport(busy=False))

    call = Call.objects.get(extension=extension)
    assert written == [call.pk] * 3
    assert locked_path_calls == []
    assert_history_replays(extension)


@pytest.mark.django_db(transaction=True)
def test_a_new_database_connection_prepares_the_statements_again(extension):
    assert call_state(extension, CallReport(busy=True, number="111")).state == "on_call"
    connection.close()  # as after a restart of PostgreSQL or CONN_MAX_AGE

    assert call_state(extension, CallReport(busy=False)).state == "available"
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        prepared = {name for (name,) in cursor.fetchall()}
    assert prepared == {
        "call_state_read",
        "call_state_call_started",
        "call_state_call_refreshed",
        "call_state_call_replaced",
        "call_state_call_cleared",
    }
