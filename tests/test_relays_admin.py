"""Relays in the admin (DESIGN §6, §8): add a relay, send a test event, read the delivery log
and the last error; tenant-scoped like every admin page. Real sign-ins, Django's test client.
"""

import re

import pytest
from django.test import Client
from django.urls import reverse

from presence.models import SOURCE_API
from presence.service import CallReport, report_call
from relays.models import SENT, TEAMS, WEBHOOK, Delivery, Relay, RelayMapping
from relays.platforms.webhook import new_secret
from tests.admin_helpers import admin_url
from tests.relays_support import WebhookReceiver, run_relays

ADD_URL = reverse("admin:relays_relay_add")
RELAYS_URL = reverse("admin:relays_relay_changelist")
DELIVERIES_URL = reverse("admin:relays_delivery_changelist")
CLIENT_ID = "5e1c9a7b-3d2f-4e8a-b6c1-0f9e8d7c6b5a"


@pytest.fixture(autouse=True)
def local_targets(settings):
    settings.RELAYS_ALLOW_PRIVATE_TARGETS = True
    settings.RELAYS_HTTP_TIMEOUT = 2


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def other_receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def webhook_relay(domain, receiver, name="Dashboard") -> Relay:
    relay = Relay.objects.create(
        domain=domain,
        name=name,
        kind=WEBHOOK,
        config={"url": f"{receiver.url}/hook"},
        secret=new_secret(),
    )
    receiver.secret = relay.secret
    return relay


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_owner_adds_a_webhook_relay_and_finds_its_signing_secret(owner_client, domain, receiver):
    form = page(owner_client.get(ADD_URL))
    sections = re.findall(r'class="fieldset-heading">([^<]+)</h2>', form)
    assert sections == [
        "Webhook",
        "Microsoft Teams",
        "Slack",
        "SIP desk-phone lamps",
        "Teams and Slack",
    ]
    response = owner_client.post(
        ADD_URL,
        {
            "domain": domain.pk,
            "name": "Wallboard",
            "kind": WEBHOOK,
            "enabled": "on",
            "url": f"{receiver.url}/hook",
            "_continue": "Save and continue editing",
        },
    )
    relay = Relay.objects.get()
    assert response["Location"] == admin_url(relay)
    assert relay.config == {"url": f"{receiver.url}/hook"}
    assert relay.secret.startswith("whsec_")
    shown = re.findall(
        r'<code class="signing-secret">([^<]+)</code>', page(owner_client.get(admin_url(relay)))
    )
    assert shown == [relay.secret]


def test_send_a_test_event_from_the_relay_page(owner_client, domain, receiver):
    relay = webhook_relay(domain, receiver)
    response = owner_client.post(
        admin_url(relay),
        {
            "domain": domain.pk,
            "name": relay.name,
            "enabled": "on",
            "url": relay.config["url"],
            "_send_test": "Save and send a test event",
        },
        follow=True,
    )
    assert messages_of(response)[0] == (
        "Dashboard: Test event delivered. The receiver answered HTTP 200."
    )
    [(webhook_id, payload)] = receiver.verified
    assert payload["type"] == "presence.test" and payload["domain"] == "abc.com"
    test = Delivery.objects.get()
    assert (test.webhook_id, test.status, test.extension) == (webhook_id, SENT, None)
    assert receiver.violations == []


def test_test_event_action_reports_a_failure(owner_client, domain, receiver):
    relay = webhook_relay(domain, receiver)
    receiver.script = [500]
    response = owner_client.post(
        RELAYS_URL,
        {"action": "send_test_events", "_selected_action": [relay.pk]},
        follow=True,
    )
    assert messages_of(response) == ['Dashboard: Test event failed. HTTP 500: {"received": true}']
    relay.refresh_from_db()
    assert relay.enabled  # a test changes nothing about the relay


def test_deliveries_and_the_last_error_are_shown(owner_client, domain, receiver, extension):
    relay = webhook_relay(domain, receiver)
    receiver.script = [503]
    report_call(extension, CallReport(busy=True, number="4930123456"), SOURCE_API)
    run_relays()
    listing = page(owner_client.get(RELAYS_URL))
    assert "Failing: HTTP 503" in listing
    log = page(owner_client.get(f"{DELIVERIES_URL}?relay={relay.pk}"))
    assert "available → on_call" in log
    assert "HTTP 503" in log
    delivery = Delivery.objects.get()
    detail = page(owner_client.get(admin_url(delivery)))
    assert delivery.webhook_id in detail
    assert "Failed, will retry" in detail  # the attempt
    assert "4930123456" not in detail  # the domain did not opt in to numbers
    found = page(owner_client.get(f"{DELIVERIES_URL}?q={delivery.webhook_id}"))
    assert admin_url(delivery) in found


def test_disabled_relay_shows_the_reason_and_re_enabling_clears_it(
    owner_client, domain, receiver, extension
):
    relay = webhook_relay(domain, receiver)
    receiver.script = [410]
    report_call(extension, CallReport(busy=True, number="1"), SOURCE_API)
    run_relays()
    assert "Disabled: HTTP 410" in page(owner_client.get(RELAYS_URL))
    owner_client.post(
        admin_url(relay),
        {"domain": domain.pk, "name": relay.name, "enabled": "on", "url": relay.config["url"]},
    )
    relay.refresh_from_db()
    assert relay.enabled and relay.disabled_reason == ""
    run_relays()
    assert Delivery.objects.get().status == SENT


def test_teams_relay_needs_valid_ids_and_a_secret(owner_client, domain):
    data = {"domain": domain.pk, "name": "Teams", "kind": TEAMS, "enabled": "on"}
    response = owner_client.post(ADD_URL, {**data, "tenant_id": "contoso.com", "client_id": "x"})
    errors = response.context["adminform"].form.errors
    assert errors["client_id"] == ["The application (client) id: a GUID."]
    assert errors["new_secret"] == ["Client secret is required."]
    response = owner_client.post(
        ADD_URL,
        {**data, "tenant_id": "contoso.com", "client_id": CLIENT_ID, "new_secret": "s3cret"},
    )
    relay = Relay.objects.get()
    assert relay.secret == "s3cret"
    assert "s3cret" not in page(owner_client.get(admin_url(relay)))  # never shown again


def test_mappings_take_only_extensions_of_the_relays_domain(
    owner_client, domain, extension, people, other_domain
):
    relay = Relay.objects.create(
        domain=domain,
        name="Teams",
        kind=TEAMS,
        config={"tenant_id": "contoso.com", "client_id": CLIENT_ID},
        secret="s",
    )
    foreign = other_domain.extensions.create(number="900")
    form = page(owner_client.get(admin_url(relay)))
    assert f'<option value="{extension.pk}">' in form
    assert f'<option value="{foreign.pk}">' not in form

    def save(extension_id, user):
        return owner_client.post(
            admin_url(relay),
            {
                "domain": domain.pk,
                "name": "Teams",
                "enabled": "on",
                "tenant_id": "contoso.com",
                "client_id": CLIENT_ID,
                "mappings-TOTAL_FORMS": "1",
                "mappings-INITIAL_FORMS": "0",
                "mappings-0-extension": extension_id,
                "mappings-0-remote_user": user,
            },
        )

    assert save(foreign.pk, "a1b2c3d4-0000-4000-8000-000000000123").status_code == 200
    assert save(extension.pk, "not a user id").status_code == 200
    assert not RelayMapping.objects.exists()
    assert save(extension.pk, "ann@contoso.com").status_code == 302
    assert RelayMapping.objects.get().remote_user == "ann@contoso.com"


def test_outsider_sees_neither_the_relays_nor_the_deliveries_of_another_domain(
    client, sign_in, people, domain, other_domain, receiver, other_receiver, extension
):
    mine = webhook_relay(domain, receiver, name="Ours")
    theirs = webhook_relay(other_domain, other_receiver, name="Theirs")
    report_call(extension, CallReport(busy=True, number="1"), SOURCE_API)
    run_relays()
    sign_in(people["outsider"])
    listing = page(client.get(RELAYS_URL))
    assert admin_url(theirs) in listing and admin_url(mine) not in listing
    assert client.get(admin_url(mine)).status_code == 302  # "does not exist"
    assert mine.secret not in page(client.get(admin_url(theirs)))
    deliveries = page(client.get(DELIVERIES_URL))
    assert admin_url(Delivery.objects.get()) not in deliveries
    assert client.get(admin_url(Delivery.objects.get())).status_code == 302
    stolen = client.post(RELAYS_URL, {"action": "send_test_events", "_selected_action": [mine.pk]})
    assert stolen.status_code in (200, 302)
    assert receiver.verified[0][1]["type"] == "presence.changed"  # no test event went out
    assert len(receiver.verified) == 1


def test_outsider_cannot_add_a_relay_to_another_domain(client, sign_in, people, domain):
    sign_in(people["outsider"])
    response = client.post(
        ADD_URL,
        {"domain": domain.pk, "name": "Spy", "kind": WEBHOOK, "url": "https://example.org/x"},
    )
    assert response.status_code == 200
    assert "domain" in response.context["adminform"].form.errors
    assert not Relay.objects.exists()


def test_member_gets_no_relay_page(people, domain, receiver):
    relay = webhook_relay(domain, receiver)
    member = Client()
    member.force_login(people["member"])
    for url in (RELAYS_URL, admin_url(relay), DELIVERIES_URL):
        assert member.get(url)["Location"].startswith("/admin/login/"), url
