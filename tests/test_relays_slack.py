"""Slack relays (DESIGN §8) against a local Slack Web API that enforces its contract: bearer
token, JSON with charset, users.profile.set/get, ok:false errors, 429 with Retry-After."""

import pytest
import time_machine

from presence.models import SOURCE_API, Call
from presence.service import CallReport, report_call
from relays.models import FAILED, PENDING, SENT, SLACK, Delivery, Relay, RelayMapping
from relays.sending import send_test
from tests.relays_support import SlackServer, run_relays

TOKEN = "xoxp-1111-2222-3333-abcdef"
ANN = "U0ANN1234"
T0 = "2026-03-02 09:00:00Z"
ON_A_CALL = {"status_text": "On a call", "status_emoji": ":telephone_receiver:"}


@pytest.fixture
def slack(settings):
    server = SlackServer(TOKEN, members={ANN}, scopes="users.profile:read,users.profile:write")
    settings.RELAYS_SLACK_API_URL = f"{server.url}/api"
    settings.RELAYS_HTTP_TIMEOUT = 2
    yield server
    server.close()


def make_relay(domain, extension) -> Relay:
    relay = Relay.objects.create(
        domain=domain, name="Slack", kind=SLACK, config=ON_A_CALL, secret=TOKEN
    )
    RelayMapping.objects.create(relay=relay, extension=extension, remote_user=ANN)
    return relay


@pytest.fixture
def relay(domain, extension, slack) -> Relay:
    return make_relay(domain, extension)


def start(extension, **fields):
    report_call(extension, CallReport(busy=True, number="4930123456", **fields), SOURCE_API)


def clear(extension):
    report_call(extension, CallReport(busy=False), SOURCE_API)


def test_call_sets_the_status_until_its_deadline_and_the_end_resets_it(relay, slack, extension):
    start(extension, expires=600)
    run_relays()
    deadline = int(Call.objects.get().expires_at.timestamp())
    assert slack.profiles[ANN] == {**ON_A_CALL, "status_expiration": deadline}
    assert slack.profile_sets() == [
        {"user": ANN, "profile": {**ON_A_CALL, "status_expiration": deadline}}
    ]
    clear(extension)
    run_relays()
    assert slack.profiles[ANN] == {"status_text": "", "status_emoji": "", "status_expiration": 0}
    assert slack.violations == []
    assert set(Delivery.objects.values_list("status", flat=True)) == {SENT}


def test_end_of_call_keeps_a_status_the_user_chose(relay, slack, extension):
    start(extension)
    run_relays()
    slack.set_status_by_hand(ANN, "Lunch", ":sandwich:")
    clear(extension)
    run_relays()
    assert slack.profiles[ANN]["status_text"] == "Lunch"
    assert len(slack.profile_sets()) == 1
    assert slack.violations == []


def test_end_of_call_without_our_status_leaves_slack_alone(slack, extension, domain):
    start(extension)  # before the relay existed: we never set a status
    make_relay(domain, extension)
    slack.set_status_by_hand(ANN, *ON_A_CALL.values())  # the user's own, same words
    clear(extension)
    run_relays()
    assert slack.requests == []
    assert slack.profiles[ANN]["status_text"] == "On a call"
    assert Delivery.objects.get().status == SENT


def test_refresh_moves_the_status_expiration(relay, slack, extension):
    with time_machine.travel(T0, tick=False) as clock:
        start(extension, call_id="c1", expires=600)
        run_relays()
        clock.shift(300)
        start(extension, call_id="c1", expires=600)
        run_relays()
    expirations = [body["profile"]["status_expiration"] for body in slack.profile_sets()]
    assert expirations[1] - expirations[0] == 300


def test_rate_limited_slack_gets_only_the_latest_state(relay, slack, extension):
    slack.throttle = [30]
    with time_machine.travel(T0, tick=False) as clock:
        start(extension, expires=600)
        run_relays()
        clear(extension)
        start(extension, expires=900)
        clock.shift(31)
        run_relays()
    [sent] = slack.profile_sets()
    assert sent["profile"]["status_expiration"] == int(
        Call.objects.latest("id").expires_at.timestamp()
    )
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.coalesced, delivery.attempts) == (SENT, 3, 2)


def test_revoked_token_disables_the_relay_with_the_reason(relay, slack, extension):
    relay.secret = "xoxp-revoked"
    relay.save()
    start(extension)
    run_relays()
    relay.refresh_from_db()
    assert not relay.enabled
    assert relay.disabled_reason == "Slack users.profile.set: invalid_auth"
    assert Delivery.objects.get().status == PENDING


def test_unknown_member_gives_up_that_delivery_only(relay, slack, extension, domain):
    bob = domain.extensions.create(number="124")
    RelayMapping.objects.create(relay=relay, extension=bob, remote_user="U0NOBODY1")
    start(bob)
    start(extension)
    run_relays()
    statuses = dict(Delivery.objects.values_list("extension__number", "status"))
    assert statuses == {"124": FAILED, "123": SENT}
    assert Delivery.objects.get(status=FAILED).last_error == (
        "Slack users.profile.set: user_not_found"
    )


def test_test_event_checks_the_token_and_its_scopes(relay, slack):
    assert send_test(relay) == (True, "Signed in to Acme as relay-admin.")
    slack.scopes = "users.profile:write"
    ok, message = send_test(relay)
    assert not ok
    assert message == "The token lacks the scope(s) users.profile:read"
    relay.refresh_from_db()
    assert relay.enabled  # a test changes nothing about the relay
