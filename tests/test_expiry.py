"""The expiry sweep (DESIGN §4): ends stale calls once, with reason expired, on time."""

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from domains.models import Extension
from presence.models import Call, PresenceEvent
from presence.service import CallReport, expire_due_calls, report_call

URL = "/call_state.htm"


def start_calls(domain, count: int, expires: int) -> list[Extension]:
    extensions = Extension.objects.bulk_create(
        Extension(domain=domain, number=str(1000 + n)) for n in range(count)
    )
    for ext in extensions:
        report_call(ext, CallReport(busy=True, number="555", expires=expires), "api")
    return extensions


def test_sweep_ends_due_calls_with_reason_expired(domain):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        start_calls(domain, 3, expires=30)
        report_call(
            Extension.objects.create(domain=domain, number="9"),
            CallReport(busy=True, number="1", expires=300),
            "api",
        )
        traveller.shift(31)
        assert expire_due_calls() == 3
    expired = Call.objects.filter(end_reason="expired")
    assert expired.count() == 3
    assert all(call.ended_at == call.expires_at for call in expired)
    assert Call.objects.filter(ended_at__isnull=True).count() == 1
    events = PresenceEvent.objects.filter(reason="call_expired")
    assert {(e.old_state, e.new_state, e.source) for e in events} == {
        ("on_call", "available", "sweep")
    }


def test_sweep_keeps_dnd_after_the_call(domain):
    ext = Extension.objects.create(domain=domain, number="1", availability="dnd")
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        report_call(ext, CallReport(busy=True, number="1", expires=5), "api")
        traveller.shift(6)
        expire_due_calls()
    event = PresenceEvent.objects.get(reason="call_expired")
    assert (event.old_state, event.new_state) == ("on_call", "dnd")


def test_sweep_twice_is_harmless(domain):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        start_calls(domain, 2, expires=10)
        traveller.shift(11)
        assert expire_due_calls() == 2
        assert expire_due_calls() == 0
    assert PresenceEvent.objects.filter(reason="call_expired").count() == 2


def test_sweep_works_through_more_than_one_batch(domain):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        start_calls(domain, 25, expires=10)
        traveller.shift(11)
        assert expire_due_calls(batch_size=10) == 25
    assert not Call.objects.filter(ended_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_end_each_call_once(domain):
    start_calls(domain, 400, expires=1)
    due_at = timezone.now() + timedelta(seconds=2)
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def sweep():
        barrier.wait()
        try:
            counts.append(expire_due_calls(now=due_at, batch_size=50))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 400
    assert PresenceEvent.objects.filter(reason="call_expired").count() == 400
    assert Call.objects.filter(end_reason="expired").count() == 400


@pytest.mark.server
def test_worker_expires_a_call_within_two_seconds(extension, celery_worker, client):
    response = client.get(
        URL,
        {
            "domain": "abc.com",
            "user": "123",
            "password": extension.password,
            "number": "12345678",
            "expires": "2",
        },
    )
    assert response.status_code == 200
    call = Call.objects.get(extension=extension)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        call.refresh_from_db()
        if call.ended_at:
            break
        time.sleep(0.1)
    assert call.end_reason == "expired", celery_worker.output()
    event = PresenceEvent.objects.get(reason="call_expired")
    lateness = (event.created_at - call.expires_at).total_seconds()
    assert 0 <= lateness <= 2, f"expired {lateness:.2f} s late"
