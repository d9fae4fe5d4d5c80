"""Microsoft Teams relays (DESIGN §8) against a local Graph that enforces Graph's contract:
client-credentials tokens, setPresence/clearPresence bodies, 404 for a missing session, 429."""

import pytest
import time_machine

from presence.models import SOURCE_API
from presence.service import CallReport, report_call, set_availability
from relays.models import FAILED, PENDING, SENT, TEAMS, Delivery, Relay, RelayMapping
from relays.platforms import teams
from relays.sending import send_test
from tests.relays_support import GraphServer, run_relays

TENANT = "8d3f2c1e-0b5a-4c9e-9f1d-2a7b6c5d4e3f"
CLIENT_ID = "5e1c9a7b-3d2f-4e8a-b6c1-0f9e8d7c6b5a"
CLIENT_SECRET = "client-secret-value"
ANN = "a1b2c3d4-0000-4000-8000-000000000123"
T0 = "2026-03-02 09:00:00Z"
BUSY = {
    "sessionId": CLIENT_ID,
    "availability": "Busy",
    "activity": "InACall",
    "expirationDuration": "PT5M",
}
CLEAR = {"sessionId": CLIENT_ID}


@pytest.fixture
def graph(settings):
    server = GraphServer(TENANT, CLIENT_ID, CLIENT_SECRET, users={ANN})
    settings.RELAYS_TEAMS_LOGIN_URL = server.url
    settings.RELAYS_TEAMS_GRAPH_URL = server.url
    settings.RELAYS_HTTP_TIMEOUT = 2
    teams._tokens.clear()  # tokens of an earlier test's server
    yield server
    server.close()


@pytest.fixture
def relay(domain, extension, graph) -> Relay:
    relay = Relay.objects.create(
        domain=domain,
        name="Teams",
        kind=TEAMS,
        config={"tenant_id": TENANT, "client_id": CLIENT_ID},
        secret=CLIENT_SECRET,
    )
    RelayMapping.objects.create(relay=relay, extension=extension, remote_user=ANN)
    return relay


def start(extension, **fields):
    report_call(extension, CallReport(busy=True, number="4930123456", **fields), SOURCE_API)


def clear(extension):
    report_call(extension, CallReport(busy=False), SOURCE_API)


def test_call_sets_busy_in_a_call_and_the_end_clears_it(relay, graph, extension):
    start(extension)
    run_relays()
    assert graph.accepted == [(ANN, "setPresence", BUSY)]
    assert graph.sessions[ANN][CLIENT_ID]["activity"] == "InACall"
    clear(extension)
    run_relays()
    assert graph.accepted[1:] == [(ANN, "clearPresence", CLEAR)]
    assert graph.sessions[ANN] == {}
    assert graph.violations == []
    assert set(Delivery.objects.values_list("status", "last_status_code")) == {(SENT, 200)}


def test_presence_is_renewed_while_the_call_lasts_and_never_set_available(relay, graph, extension):
    with time_machine.travel(T0, tick=False) as clock:
        start(extension, expires=1800)
        run_relays()
        clock.shift(120)
        run_relays()
        assert len(graph.accepted) == 1  # the 5-minute session has time left
        for _ in range(3):
            clock.shift(180)
            run_relays()
        clear(extension)
        run_relays()
    actions = [action for _, action, _ in graph.accepted]
    assert actions == ["setPresence"] * 4 + ["clearPresence"]
    assert Delivery.objects.filter(renewal=True).count() == 3
    assert all(body.get("availability") != "Available" for _, _, body in graph.accepted)
    assert graph.violations == []


def test_no_renewal_after_the_call_ended_by_itself(relay, graph, extension):
    with time_machine.travel(T0, tick=False) as clock:
        start(extension, expires=60)
        run_relays()
        clock.shift(240)  # past the call's deadline; the sweep has not run yet
        run_relays()
    assert [action for _, action, _ in graph.accepted] == ["setPresence"]


def test_clearing_a_session_that_is_gone_counts_as_done(relay, graph, extension):
    start(extension)
    run_relays()
    graph.sessions[ANN].clear()  # expired at Microsoft meanwhile
    clear(extension)
    run_relays()
    last = Delivery.objects.order_by("id").last()
    assert (last.status, last.last_status_code) == (SENT, 404)


def test_rate_limited_teams_gets_only_the_latest_state(relay, graph, extension, domain):
    bob = domain.extensions.create(number="124")
    graph.users.add("b0b00000-0000-4000-8000-000000000124")
    RelayMapping.objects.create(
        relay=relay, extension=bob, remote_user="b0b00000-0000-4000-8000-000000000124"
    )
    graph.throttle = [20]
    with time_machine.travel(T0, tick=False) as clock:
        start(extension)
        run_relays()
        throttled = Delivery.objects.get()
        assert throttled.status == PENDING
        clear(extension)
        start(extension)
        clear(extension)
        start(bob)  # the whole app is throttled: Bob waits too
        clock.shift(19)
        run_relays()
        assert graph.accepted == []
        clock.shift(2)
        run_relays()
    throttled.refresh_from_db()
    assert throttled.coalesced == 4
    assert throttled.payload["state"] == "available"
    assert sorted(action for _, action, _ in graph.accepted) == ["clearPresence", "setPresence"]
    assert Delivery.objects.count() == 2


def test_wrong_client_secret_disables_the_relay_with_the_reason(relay, graph, extension):
    relay.secret = "expired-secret"
    relay.save()
    start(extension)
    run_relays()
    relay.refresh_from_db()
    assert not relay.enabled
    assert "invalid_client" in relay.disabled_reason
    assert "AADSTS7000215" in relay.disabled_reason
    assert Delivery.objects.get().status == PENDING  # goes out once the secret is fixed
    assert graph.violations == []


def test_missing_permission_disables_the_relay(relay, graph, extension):
    graph.forbidden = True
    start(extension)
    run_relays()
    relay.refresh_from_db()
    assert not relay.enabled
    assert "Presence.ReadWrite.All" in relay.disabled_reason


def test_a_revoked_token_is_replaced(relay, graph, extension):
    start(extension)
    run_relays()
    graph.revoke_tokens()
    clear(extension)
    run_relays()
    assert [action for _, action, _ in graph.accepted] == ["setPresence", "clearPresence"]
    relay.refresh_from_db()
    assert relay.enabled and relay.last_error == ""


def test_unknown_user_gives_up_that_delivery_only(relay, graph, extension, domain):
    bob = domain.extensions.create(number="124")
    RelayMapping.objects.create(
        relay=relay, extension=bob, remote_user="deadbeef-0000-4000-8000-000000000000"
    )
    start(bob)
    start(extension)
    run_relays()
    statuses = dict(Delivery.objects.values_list("extension__number", "status"))
    assert statuses == {"124": FAILED, "123": SENT}
    relay.refresh_from_db()
    assert relay.enabled


def test_only_calls_of_mapped_extensions_are_sent(relay, graph, extension, domain):
    unmapped = domain.extensions.create(number="125")
    start(unmapped)
    set_availability(extension, availability="dnd", source=SOURCE_API)
    set_availability(extension, availability="away", note="Lunch", source=SOURCE_API)
    run_relays()
    assert graph.requests == []
    assert not Delivery.objects.exists()


def test_test_event_signs_in_and_reads_presence_without_changing_it(relay, graph):
    ok, message = send_test(relay)
    assert ok, message
    assert message == f"Signed in to Microsoft Graph. {ANN}: Available"
    assert graph.accepted == [] and graph.violations == []
    relay.secret = "wrong"
    ok, message = send_test(relay)
    assert not ok and "invalid_client" in message
    relay.refresh_from_db()
    assert relay.enabled
