"""SIP desk-phone lamps (DESIGN §8) against a real Kamailio presence server and real SIP
subscribers (SIPp): call_state.htm → relay → pua.publish → NOTIFY to the watching phone.

Needs the Debian packages kamailio, kamailio-presence-modules, kamailio-xml-modules and
sip-tester (.ci/run installs them; see the README).
"""

import os
import statistics
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from domains.models import AVAILABLE, DND
from presence.models import SOURCE_API
from presence.service import expire_due_calls, set_availability
from relays.models import (
    FAILED,
    PENDING,
    SENT,
    SIP,
    Delivery,
    DeliveryAttempt,
    Relay,
    RelayMapping,
    SipLamp,
)
from relays.platforms.sip import Sip, dialog_info, renew_lamps
from relays.sending import send_test
from tests.relays_support import RelayWorker, run_relays
from tests.servers import server_env
from tests.sip_support import SIP_DOMAIN, Kamailio, Watcher, lit

pytestmark = [
    pytest.mark.django_db(transaction=True),
]

URL = "/call_state.htm"


def terminated(notify) -> bool:
    return "terminated" in notify.dialog_states and "confirmed" not in notify.dialog_states


@pytest.fixture
def kamailio(tmp_path):
    server = Kamailio(tmp_path / "kamailio")
    yield server
    server.stop()


@pytest.fixture
def watch(kamailio, tmp_path):
    watchers: list[Watcher] = []

    def watch(extension: str = "123", event: str = "dialog") -> Watcher:
        watcher = Watcher(kamailio, tmp_path, extension, event)
        watchers.append(watcher)
        return watcher

    yield watch
    for watcher in watchers:
        watcher.stop()


@pytest.fixture
def relay(domain, kamailio, settings) -> Relay:
    settings.RELAYS_ALLOW_PRIVATE_TARGETS = True  # Kamailio is on loopback
    settings.RELAYS_HTTP_TIMEOUT = 2
    config = Sip.clean_config({"rpc_url": kamailio.rpc_url, "sip_domain": SIP_DOMAIN})
    return Relay.objects.create(domain=domain, name="Desk phones", kind=SIP, config=config)


@pytest.fixture
def call_state(client, extension):
    def call_state(**params):
        credentials = {"domain": "abc.com", "user": "123", "password": extension.password}
        response = client.get(URL, {**credentials, **params})
        assert response.status_code == 200, response.content
        return response

    return call_state


def test_busy_lights_the_lamp_and_clear_puts_it_out(relay, watch, call_state):
    phone = watch()
    seen = len(phone.notifies())
    call_state(number="4711111111", expires="300")
    run_relays()
    notify = phone.wait_for(lit, what="confirmed", after=seen)
    assert "4711111111" not in notify.body, "the domain did not opt in to showing numbers"
    assert "sip:123@example.test" in notify.body
    seen = len(phone.notifies())
    call_state()
    run_relays()
    phone.wait_for(terminated, what="terminated", after=seen)
    lamp = SipLamp.objects.get(relay=relay)
    assert lamp.dialog_id == "" and lamp.published_until is None
    attempts = DeliveryAttempt.objects.filter(delivery__relay=relay)
    assert attempts.count() == 2 and {a.outcome for a in attempts} == {"ok"}


def test_each_call_has_its_own_dialog_and_numbers_only_when_opted_in(
    relay, watch, call_state, domain
):
    domain.show_numbers = True
    domain.save()
    phone = watch()
    ids = []
    for number in ("4711111111", "4722222222"):
        seen = len(phone.notifies())
        call_state(number=number, expires="300")
        run_relays()
        notify = phone.wait_for(lit, after=seen)
        assert number in notify.body
        ids.append(SipLamp.objects.get(relay=relay).dialog_id)
        seen = len(phone.notifies())
        call_state()
        run_relays()
        phone.wait_for(terminated, after=seen)
    assert ids[0] != ids[1]


def test_expiry_puts_the_lamp_out(relay, watch, call_state):
    phone = watch()
    seen = len(phone.notifies())
    call_state(number="4711111111", expires="60")
    run_relays()
    phone.wait_for(lit, after=seen)
    seen = len(phone.notifies())
    assert expire_due_calls(timezone.now() + timedelta(seconds=61)) == 1
    run_relays()
    phone.wait_for(terminated, what="terminated after expiry", after=seen)


def test_publication_expires_follows_the_call_and_is_renewed(relay, watch, call_state):
    phone = watch()
    call_state(number="4711111111", expires="7200")
    run_relays()
    phone.wait_for(lit)
    lamp = SipLamp.objects.get(relay=relay)
    # Capped at an hour, renewed before it runs out.
    left = (lamp.published_until - timezone.now()).total_seconds()
    assert 3590 < left <= 3600
    assert renew_lamps(timezone.now()) == 0
    assert renew_lamps(timezone.now() + timedelta(seconds=3500)) == 1
    run_relays()
    # A refresh of the same state: Kamailio extends it without NOTIFYing the phone.
    assert Delivery.objects.filter(relay=relay, renewal=True, status=SENT).count() == 1
    assert SipLamp.objects.get(relay=relay).published_until > lamp.published_until
    assert all(lit(n) for n in phone.notifies()[1:])


def test_presence_key_sees_on_the_phone(relay, watch, call_state):
    phone = watch(event="presence")
    seen = len(phone.notifies())
    call_state(number="4711111111", expires="300")
    run_relays()
    phone.wait_for(lambda n: "on-the-phone" in n.body, what="on-the-phone", after=seen)
    seen = len(phone.notifies())
    call_state()
    run_relays()
    phone.wait_for(lambda n: "on-the-phone" not in n.body and "Available" in n.body, after=seen)


def test_dnd_lights_the_lamp_only_when_the_relay_says_so(relay, watch, extension):
    phone = watch()
    set_availability(extension, availability=DND, source=SOURCE_API)
    run_relays()
    assert not SipLamp.objects.filter(relay=relay).exclude(dialog_id="").exists()
    set_availability(extension, availability=AVAILABLE, source=SOURCE_API)
    run_relays()
    relay.config = {**relay.config, "dnd_lights_lamp": True}
    relay.save()
    seen = len(phone.notifies())
    set_availability(extension, availability=DND, source=SOURCE_API)
    run_relays()
    phone.wait_for(lit, what="DND confirmed", after=seen)
    seen = len(phone.notifies())
    set_availability(extension, availability=AVAILABLE, source=SOURCE_API)
    run_relays()
    phone.wait_for(terminated, after=seen)


def test_mapping_overrides_the_presentity(relay, watch, call_state, extension):
    RelayMapping.objects.create(
        relay=relay, extension=extension, remote_user="sip:ann@example.test"
    )
    phone = watch("ann")
    seen = len(phone.notifies())
    call_state(number="4711111111", expires="300")
    run_relays()
    phone.wait_for(lit, after=seen)


def test_kamailio_restart_then_refresh_restores_the_lamp(relay, kamailio, watch, call_state):
    from django.core.management import call_command

    watch()
    call_state(number="4711111111", expires="300")
    run_relays()
    kamailio.restart()  # publications and subscriptions are gone
    phone = watch()  # the phone subscribes again
    assert not any(lit(n) for n in phone.notifies())
    seen = len(phone.notifies())
    call_command("sip_refresh", deliver=True)
    phone.wait_for(lit, what="confirmed after the refresh", after=seen)
    seen = len(phone.notifies())
    call_state()
    run_relays()
    phone.wait_for(terminated, after=seen)


def test_kamailio_down_is_retried_and_logged(relay, kamailio, watch, call_state):
    kamailio.stop()
    call_state(number="4711111111", expires="300")
    run_relays()
    delivery = Delivery.objects.get(relay=relay)
    assert delivery.status == PENDING and delivery.attempts == 1
    assert "could not connect" in delivery.last_error
    kamailio.start()
    phone = watch()
    seen = len(phone.notifies())
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    run_relays()
    phone.wait_for(lit, after=seen)
    delivery.refresh_from_db()
    assert delivery.status == SENT and delivery.tries.count() == 2


def test_a_wrong_rpc_path_disables_the_relay_and_the_test_button_reports(relay, call_state):
    ok, message = send_test(relay)
    assert ok and "kamailio 5" in message
    relay.config = {**relay.config, "rpc_url": relay.config["rpc_url"].replace("/RPC", "/x")}
    relay.save()
    call_state(number="4711111111", expires="300")
    run_relays()
    relay.refresh_from_db()
    assert not relay.enabled and "HTTP 404" in relay.disabled_reason
    assert Delivery.objects.get(relay=relay, extension__isnull=False).status == PENDING
    assert not Delivery.objects.filter(status=FAILED, extension__isnull=False).exists()


def test_config_and_mapping_are_checked():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        Sip.clean_config({"rpc_url": "ftp://x/RPC", "sip_domain": "a b"})
    with pytest.raises(ValidationError):
        Sip.clean_remote_user("123@example.test")
    assert Sip.clean_remote_user(" sip:123@example.test ") == "sip:123@example.test"
    body = dialog_info("sip:1@d", "x", "confirmed", "<&>", "d")
    assert "<&>" not in body and "&lt;&amp;&gt;" in body


@pytest.mark.server
def test_latency_from_call_state_to_notify(relay, watch, call_state, tmp_path, capsys):
    """Real Celery worker + beat: the time from call_state.htm's response to the phone's
    NOTIFY, over SIP_BENCH_CALLS calls (default 50). Prints the figures (docs/sip.md)."""
    calls = int(os.environ.get("SIP_BENCH_CALLS", "50"))
    worker = RelayWorker(
        tmp_path / "worker.log",
        server_env(RELAYS_ALLOW_PRIVATE_TARGETS="true", RELAYS_HTTP_TIMEOUT="2"),
    )
    try:
        phone = watch()
        lit_times, dark_times = [], []
        for _ in range(calls):
            seen = len(phone.notifies())
            call_state(number="4711111111", expires="300")
            answered = time.time()
            notify = phone.wait_for(lit, timeout=20, after=seen)
            lit_times.append(notify.at - answered)
            seen = len(phone.notifies())
            call_state()
            answered = time.time()
            notify = phone.wait_for(terminated, timeout=20, after=seen)
            dark_times.append(notify.at - answered)
    finally:
        worker.stop()

    def figures(values):
        ms = sorted(v * 1000 for v in values)
        p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
        return f"p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"

    with capsys.disabled():
        print(f"\nSIP lamp latency over {calls} calls (call_state.htm response → NOTIFY):")
        print(f"  busy  → confirmed:  {figures(lit_times)}")
        print(f"  clear → terminated: {figures(dark_times)}")
