"""Relays end to end through real Celery workers (beat + worker), Redis and PostgreSQL:
order and ids over a scripted call sequence, a broker outage, a worker killed mid-delivery.

Outages are simulated without touching the real Redis (others use it): the worker reaches
Redis through a TCP proxy the test switches off and on.
"""

from urllib.parse import urlsplit

import pytest
from django.conf import settings

from domains.models import DND
from presence.models import SOURCE_API, PresenceEvent
from presence.service import set_availability
from relays.models import SENT, WEBHOOK, Delivery, Relay
from relays.platforms.webhook import new_secret
from tests.relays_support import RelayWorker, TcpProxy, WebhookReceiver, wait_until
from tests.servers import server_env

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

URL = "/call_state.htm"


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def relay(domain, receiver) -> Relay:
    relay = Relay.objects.create(
        domain=domain,
        name="Dashboard",
        kind=WEBHOOK,
        config={"url": f"{receiver.url}/hook"},
        secret=new_secret(),
    )
    receiver.secret = relay.secret
    return relay


@pytest.fixture
def start_worker(tmp_path):
    """A factory of `celery worker --beat` processes; all are stopped after the test."""
    workers: list[RelayWorker] = []

    def start(**env: str) -> RelayWorker:
        worker = RelayWorker(
            tmp_path / f"worker-{len(workers)}.log",
            server_env(RELAYS_ALLOW_PRIVATE_TARGETS="true", RELAYS_HTTP_TIMEOUT="2", **env),
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def call_state(client, extension):
    def call_state(**params):
        credentials = {"domain": "abc.com", "user": "123", "password": extension.password}
        response = client.get(URL, {**credentials, **params})
        assert response.status_code == 200, response.content
        return response

    return call_state


def logs(*workers: RelayWorker) -> str:
    return "\n".join(worker.output() for worker in workers)


def test_scripted_call_sequence_arrives_in_order_once_per_id(
    relay, receiver, start_worker, call_state, extension
):
    worker = start_worker()
    call_state(number="4930111", call_id="c1")
    call_state(number="4930111", call_id="c1", expires="600")  # refresh
    call_state(number="4930222", call_id="c2")  # replaces c1
    set_availability(extension, availability=DND, source=SOURCE_API)
    call_state(call_id="c2")  # clear
    call_state(number="4930333", expires="1")  # ends by itself: the worker's sweep
    try:
        received = receiver.wait_for(7, timeout=30)
    except TimeoutError:
        pytest.fail(logs(worker))
    events = list(PresenceEvent.objects.order_by("id").values_list("id", "reason"))
    assert [(p["event_id"], p["reason"]) for _, p in received] == events
    assert [reason for _, reason in events] == [
        "call_started",
        "call_refreshed",
        "call_replaced",
        "availability_changed",
        "call_cleared",
        "call_started",
        "call_expired",
    ]
    webhook_ids = [webhook_id for webhook_id, _ in received]
    assert len(set(webhook_ids)) == len(webhook_ids)  # once per id
    assert receiver.violations == []
    # The receiver has answered; the worker records that a moment later.
    wait_until(lambda: not Delivery.objects.exclude(status=SENT).exists(), 10, "all recorded")
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


def test_events_committed_while_the_broker_is_down_arrive_when_it_returns(
    relay, receiver, start_worker, call_state
):
    redis = urlsplit(settings.REDIS_URL)
    proxy = TcpProxy(redis.hostname, redis.port or 6379)
    try:
        worker = start_worker(REDIS_URL=f"redis://127.0.0.1:{proxy.port}{redis.path}")
        call_state(number="4930111")
        receiver.wait_for(1, timeout=30)

        proxy.down()
        call_state()  # clear
        call_state(number="4930222")
        # Down until the worker has failed to reconnect twice (beat misses its runs too).
        wait_until(lambda: "(2/100)" in worker.output(), 30, "two failed reconnections")
        assert len(receiver.verified) == 1  # committed; nobody could hand them on

        proxy.up()
        try:
            received = receiver.wait_for(3, timeout=60)
        except TimeoutError:
            pytest.fail(logs(worker))
    finally:
        proxy.close()
    assert [p["reason"] for _, p in received] == ["call_started", "call_cleared", "call_started"]
    assert len({webhook_id for webhook_id, _ in received}) == 3


def test_worker_killed_mid_delivery_redelivers_with_the_same_webhook_id(
    relay, receiver, start_worker, call_state
):
    receiver.hold.set()  # the first request waits: the worker is killed while sending it
    first = start_worker()
    call_state(number="4930111")
    if not receiver.arrived.wait(30):
        pytest.fail(logs(first))
    first.kill()
    receiver.release.set()

    second = start_worker()
    try:
        received = receiver.wait_for(2, timeout=60)
    except TimeoutError:
        pytest.fail(logs(first, second))
    (first_id, first_payload), (again_id, again_payload) = received
    assert again_id == first_id
    assert again_payload == first_payload
    delivery = Delivery.objects.get()
    wait_until(lambda: Delivery.objects.get().status == SENT, 10, "delivery recorded")
    delivery.refresh_from_db()
    assert delivery.attempts == 2  # the killed attempt counts
    assert list(delivery.tries.values_list("number", "outcome")) == [(2, "ok")]
