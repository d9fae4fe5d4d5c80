"""Webhook relays (DESIGN §8): every event, signed per Standard Webhooks, in order, retried.

A local receiver verifies each request with the `standardwebhooks` package. The dispatcher and
the delivery tasks run in this process (tests.relays_support.run_relays); the Celery path is
in test_relays_e2e.py. Time is moved with time-machine, never slept on.
"""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from presence.models import SOURCE_API, PresenceEvent
from presence.service import CallReport, report_call, set_availability
from relays import outbox, sending
from relays.http import address_refusal
from relays.models import FAILED, PENDING, SENT, WEBHOOK, Delivery, Relay
from relays.platforms.webhook import new_secret
from tests.relays_support import WebhookReceiver, run_relays

T0 = "2026-03-02 09:00:00Z"


@pytest.fixture(autouse=True)
def local_targets(settings):
    settings.RELAYS_ALLOW_PRIVATE_TARGETS = True  # the receiver listens on 127.0.0.1
    settings.RELAYS_HTTP_TIMEOUT = 2


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def make_relay(domain, receiver) -> Relay:
    relay = Relay.objects.create(
        domain=domain,
        name="Office dashboard",
        kind=WEBHOOK,
        config={"url": f"{receiver.url}/presence"},
        secret=new_secret(),
    )
    receiver.secret = relay.secret
    return relay


@pytest.fixture
def relay(domain, receiver) -> Relay:
    return make_relay(domain, receiver)


def start(extension, number="4930123456", **fields):
    report_call(extension, CallReport(busy=True, number=number, **fields), SOURCE_API)


def clear(extension):
    report_call(extension, CallReport(busy=False), SOURCE_API)


def test_webhook_carries_the_full_state_signed_per_standard_webhooks(relay, receiver, extension):
    start(extension, expires=600)
    run_relays()
    assert receiver.violations == []
    [(webhook_id, payload)] = receiver.verified
    event = PresenceEvent.objects.get()
    delivery = Delivery.objects.get()
    assert webhook_id == delivery.webhook_id == f"msg_{delivery.uuid.hex}"
    call = event.call
    assert payload == {
        "type": "presence.changed",
        "event_id": event.id,
        "domain": "abc.com",
        "extension": {"number": "123", "name": "Ann", "department": "Sales"},
        "state": "on_call",
        "previous_state": "available",
        "reason": "call_started",
        "call": {
            "started_at": call.started_at.isoformat(),
            "expires_at": call.expires_at.isoformat(),
            "withheld": False,
        },
        "availability": "available",
        "note": "",
        "timestamp": event.created_at.isoformat(),
    }
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (SENT, 1, 200)


def test_number_is_sent_only_when_the_domain_opted_in(relay, receiver, domain, extension):
    start(extension, number="4930111")
    run_relays()
    domain.show_numbers = True
    domain.save()
    start(extension, number="4930222")
    start(extension, number="", withheld=True)
    run_relays()
    calls = [payload["call"] for payload in receiver.payloads()]
    assert "number" not in calls[0]
    assert calls[1]["number"] == "4930222"
    assert calls[2] == {**calls[2], "withheld": True} and "number" not in calls[2]


def test_every_event_arrives_in_order_once(relay, receiver, extension):
    start(extension, call_id="c1")
    start(extension, call_id="c1", expires=900)  # refresh
    set_availability(extension, availability="dnd", source=SOURCE_API)
    clear(extension)
    set_availability(extension, availability="available", note="Back at 3", source=SOURCE_API)
    run_relays()
    events = list(PresenceEvent.objects.order_by("id"))
    payloads = receiver.payloads()
    assert [p["event_id"] for p in payloads] == [e.id for e in events]
    assert [p["reason"] for p in payloads] == [
        "call_started",
        "call_refreshed",
        "availability_changed",
        "call_cleared",
        "availability_changed",
        "note_changed",
    ]
    assert [(p["previous_state"], p["state"]) for p in payloads][2:4] == [
        ("on_call", "on_call"),
        ("on_call", "dnd"),
    ]
    assert len({webhook_id for webhook_id, _ in receiver.verified}) == len(events)


def test_failed_delivery_is_retried_with_backoff_and_keeps_its_id(
    relay, receiver, extension, domain
):
    other = domain.extensions.create(number="124", name="Bob")
    receiver.script = [503]
    with time_machine.travel(T0, tick=False) as clock:
        start(extension)
        run_relays()
        first = Delivery.objects.get()
        wait = first.next_attempt_at - timezone.now()
        assert timedelta(seconds=1) <= wait <= timedelta(seconds=2)  # 2 s, half of it jitter
        clear(extension)  # queues behind the failing one
        start(other)  # another extension's queue is not held up
        run_relays()
        assert [p["extension"]["number"] for p in receiver.payloads()] == ["123", "124"]

        receiver.script = [500]
        clock.shift(2)
        run_relays()
        first.refresh_from_db()
        wait = first.next_attempt_at - timezone.now()
        assert timedelta(seconds=2) <= wait <= timedelta(seconds=4)
        assert (first.status, first.attempts, first.last_status_code) == (PENDING, 2, 500)

        clock.shift(4)
        run_relays()
    ids = [webhook_id for webhook_id, _ in receiver.verified]
    assert ids.count(first.webhook_id) == 3
    sent_order = [p["reason"] for p in receiver.payloads() if p["extension"]["number"] == "123"]
    assert sent_order == ["call_started", "call_started", "call_started", "call_cleared"]
    assert list(first.tries.values_list("number", "status_code", "outcome")) == [
        (1, 503, "retry"),
        (2, 500, "retry"),
        (3, 200, "ok"),
    ]
    assert not Delivery.objects.filter(status=PENDING).exists()


def test_429_retry_after_is_honoured_for_the_whole_relay(relay, receiver, extension, domain):
    other = domain.extensions.create(number="124")
    receiver.script = [(429, {"Retry-After": "30"})]
    with time_machine.travel(T0, tick=False) as clock:
        start(extension)
        run_relays()
        delivery = Delivery.objects.get()
        relay.refresh_from_db()
        assert delivery.next_attempt_at == timezone.now() + timedelta(seconds=30)
        assert relay.paused_until == timezone.now() + timedelta(seconds=30)
        start(other)
        clock.shift(29)
        run_relays()
        assert len(receiver.verified) == 1  # the receiver asked us to wait
        clock.shift(2)
        run_relays()
    assert sorted(p["extension"]["number"] for p in receiver.payloads()) == ["123", "123", "124"]


def test_receiver_gone_disables_the_relay_with_the_reason_and_it_catches_up(
    relay, receiver, extension
):
    receiver.script = [410]
    start(extension)
    run_relays()
    relay.refresh_from_db()
    assert not relay.enabled
    assert relay.disabled_reason.startswith("HTTP 410")
    assert "gone" in relay.disabled_reason
    clear(extension)
    run_relays()
    assert len(receiver.verified) == 1  # nothing goes to a disabled relay

    relay.enabled = True
    relay.save()
    run_relays()
    reasons = [p["reason"] for p in receiver.payloads()]
    assert reasons == ["call_started", "call_started", "call_cleared"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {SENT}


def test_rejected_message_is_given_up_and_the_next_goes_out(relay, receiver, extension):
    receiver.script = [422]
    start(extension)
    clear(extension)
    run_relays()
    statuses = list(Delivery.objects.order_by("id").values_list("status", "last_status_code"))
    assert statuses == [(FAILED, 422), (SENT, 200)]
    relay.refresh_from_db()
    assert relay.enabled and "HTTP 422" in relay.last_error


def test_retries_end_after_the_maximum_attempts(relay, receiver, extension, settings):
    settings.RELAYS_MAX_ATTEMPTS = 2
    receiver.script = [503, 503]
    with time_machine.travel(T0, tick=False) as clock:
        start(extension)
        run_relays()
        clock.shift(5)
        run_relays()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == (FAILED, 2)
    assert list(delivery.tries.values_list("outcome", flat=True)) == ["retry", "gave_up"]


def test_slow_receiver_times_out_and_is_retried(relay, receiver, extension, settings):
    settings.RELAYS_HTTP_TIMEOUT = 1
    receiver.hold.set()
    try:
        start(extension)
        run_relays()
    finally:
        receiver.release.set()
    delivery = Delivery.objects.get()
    assert delivery.status == PENDING
    assert delivery.last_error == "no answer within 1 s"


def test_loopback_target_is_refused_unless_allowed(relay, receiver, extension, settings):
    settings.RELAYS_ALLOW_PRIVATE_TARGETS = False
    start(extension)
    run_relays()
    relay.refresh_from_db()
    assert receiver.requests == []
    assert not relay.enabled
    assert "127.0.0.1 is a loopback address" in relay.disabled_reason


def test_names_resolving_to_internal_addresses_are_refused(settings, domain, extension):
    settings.RELAYS_ALLOW_PRIVATE_TARGETS = False
    relay = Relay.objects.create(
        domain=domain,
        name="Internal",
        kind=WEBHOOK,
        config={"url": "http://localhost:9/hook"},
        secret=new_secret(),
    )
    start(extension)
    run_relays()
    relay.refresh_from_db()
    assert not relay.enabled
    assert "refused to connect to localhost" in relay.disabled_reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fd00::1", "private"),
        ("100.64.0.1", "not a public address"),
        ("0.0.0.0", "not a public address"),  # noqa: S104 - an address under test
        ("224.0.0.1", "not a public address"),
    ],
)
def test_internal_addresses_are_refused(settings, address, reason):
    settings.RELAYS_ALLOW_PRIVATE_TARGETS = False
    assert reason in address_refusal(address)


def test_public_addresses_are_allowed(settings):
    settings.RELAYS_ALLOW_PRIVATE_TARGETS = False
    assert address_refusal("93.184.215.14") is None
    assert address_refusal("2606:4700::1111") is None


def test_deliveries_wait_in_the_table_while_the_broker_is_down(relay, receiver, extension):
    start(extension)

    def broker_down(relay_id, extension_id):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    outbox.dispatch(enqueue=broker_down)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.enqueued_at) == (PENDING, None)
    outbox.dispatch(enqueue=broker_down)
    assert Delivery.objects.count() == 1  # queued once, however often the broker fails

    run_relays()  # the broker is back
    assert [p["reason"] for p in receiver.payloads()] == ["call_started"]


@pytest.mark.django_db(transaction=True)
def test_an_event_committed_late_with_a_lower_id_is_still_delivered(domain, receiver):
    relay = make_relay(domain, receiver)
    slow, quick = (domain.extensions.create(number=n) for n in ("201", "202"))
    inserted, finish = threading.Event(), threading.Event()

    def slow_transaction():
        try:
            with transaction.atomic():
                start(slow)  # takes the lower event id ...
                inserted.set()
                finish.wait(10)  # ... and commits after the higher one
        finally:
            connection.close()

    thread = threading.Thread(target=slow_transaction)
    thread.start()
    assert inserted.wait(10)
    start(quick)
    run_relays()
    assert [p["extension"]["number"] for p in receiver.payloads()] == ["202"]
    finish.set()
    thread.join()
    run_relays()
    payloads = receiver.payloads()
    assert [p["extension"]["number"] for p in payloads] == ["202", "201"]
    assert payloads[1]["event_id"] < payloads[0]["event_id"]
    relay.refresh_from_db()
    assert relay.cursor == payloads[0]["event_id"]


def test_a_new_relay_starts_with_new_events(domain, receiver, extension):
    start(extension)
    make_relay(domain, receiver)
    clear(extension)
    run_relays()
    assert [p["reason"] for p in receiver.payloads()] == ["call_cleared"]


def test_a_form_saved_from_an_old_copy_does_not_move_the_cursor_back(relay, extension):
    stale = Relay.objects.get(pk=relay.pk)
    start(extension)
    outbox.dispatch(enqueue=lambda *queue: None)
    stale.name = "Renamed"
    stale.save()
    relay.refresh_from_db()
    assert relay.cursor == PresenceEvent.objects.get().id
    assert sending.deliver_pending(relay.pk, extension.pk) == 1


def test_old_finished_deliveries_are_pruned(relay, receiver, extension, settings):
    settings.RELAYS_DELIVERY_RETENTION_DAYS = 30
    with time_machine.travel(T0, tick=False) as clock:
        start(extension)
        run_relays()  # sent
        receiver.script = [503]
        clear(extension)
        run_relays()  # pending, waiting for a retry
        clock.shift(timedelta(days=31))
        start(extension)
        outbox.dispatch(enqueue=lambda *queue: None)
    kept = list(Delivery.objects.order_by("id").values_list("payload__reason", "status"))
    assert kept == [("call_cleared", PENDING), ("call_started", PENDING)]


def test_a_redirect_is_not_followed_and_disables_the_relay(relay, receiver, extension):
    receiver.script = [(308, {"Location": "https://example.org/elsewhere"})]
    start(extension)
    run_relays()
    relay.refresh_from_db()
    assert len(receiver.requests) == 1
    assert not relay.enabled
    assert "redirects are not followed" in relay.disabled_reason
