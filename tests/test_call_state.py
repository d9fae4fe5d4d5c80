"""call_state.htm, row by row of DESIGN §2, through Django's test client."""

import pytest
import redis
import time_machine
from django.utils import timezone

from domains.models import Domain, Extension
from presence.models import Call, PresenceEvent

URL = "/call_state.htm"


@pytest.fixture
def creds(extension):
    return {"domain": "abc.com", "user": "123", "password": extension.password}


def active_call(extension):
    return Call.objects.filter(extension=extension, ended_at__isnull=True).first()


def test_busy_starts_a_call(client, creds, extension):
    response = client.get(URL, {**creds, "number": "12345678"})
    assert response.status_code == 200
    assert response.content == b"OK"
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "no-store"
    call = active_call(extension)
    assert call.number == "12345678"
    assert call.source == "call_state"
    event = PresenceEvent.objects.get()
    assert (event.old_state, event.new_state, event.reason) == (
        "available",
        "on_call",
        "call_started",
    )
    assert event.call == call


def test_post_form_body_works_like_get(client, creds, extension):
    response = client.post(URL, {**creds, "number": "555"})
    assert response.status_code == 200
    assert active_call(extension).number == "555"


def test_post_accepts_query_string(client, creds, extension):
    query = "&".join(f"{k}={v}" for k, v in {**creds, "number": "556"}.items())
    response = client.post(f"{URL}?{query}")
    assert response.status_code == 200
    assert active_call(extension).number == "556"


def test_domain_is_case_insensitive_and_ignores_trailing_dot(client, creds, extension):
    response = client.get(URL, {**creds, "domain": "ABC.com.", "number": "1"})
    assert response.status_code == 200
    assert active_call(extension) is not None


def test_clear_ends_the_call_and_records_duration(client, creds, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        client.get(URL, {**creds, "number": "12345678"})
        traveller.shift(90)
        response = client.get(URL, creds)
    assert response.status_code == 200
    call = Call.objects.get(extension=extension)
    assert call.end_reason == "cleared"
    assert call.duration.total_seconds() == 90
    assert PresenceEvent.objects.last().reason == "call_cleared"


def test_empty_number_clears(client, creds, extension):
    client.get(URL, {**creds, "number": "12345678"})
    client.get(URL, {**creds, "number": ""})
    assert active_call(extension) is None


def test_clear_without_active_call_is_ok(client, creds, extension):
    response = client.get(URL, creds)
    assert response.status_code == 200
    assert response.content == b"OK"
    assert not PresenceEvent.objects.exists()


def test_refresh_moves_deadline_and_keeps_start(client, creds, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        client.get(URL, {**creds, "number": "12345678", "expires": "60"})
        started = active_call(extension)
        traveller.shift(30)
        client.get(URL, {**creds, "number": "12345678", "expires": "60"})
    refreshed = active_call(extension)
    assert refreshed.pk == started.pk
    assert refreshed.started_at == started.started_at
    assert (refreshed.expires_at - started.expires_at).total_seconds() == 30
    assert PresenceEvent.objects.last().reason == "call_refreshed"


def test_different_number_replaces_the_call(client, creds, extension):
    client.get(URL, {**creds, "number": "111"})
    client.get(URL, {**creds, "number": "222"})
    calls = {c.number: c for c in Call.objects.filter(extension=extension)}
    assert calls["111"].end_reason == "replaced"
    assert calls["222"].ended_at is None
    last = PresenceEvent.objects.last()
    assert (last.reason, last.old_state, last.new_state) == ("call_replaced", "on_call", "on_call")


def test_same_call_id_is_a_refresh_even_with_another_number(client, creds, extension):
    client.get(URL, {**creds, "number": "111", "call_id": "abc"})
    client.get(URL, {**creds, "number": "112", "call_id": "abc"})
    assert Call.objects.filter(extension=extension).count() == 1


def test_other_call_id_with_same_number_replaces(client, creds, extension):
    client.get(URL, {**creds, "number": "111", "call_id": "a"})
    client.get(URL, {**creds, "number": "111", "call_id": "b"})
    assert active_call(extension).call_id == "b"
    assert Call.objects.get(call_id="a").end_reason == "replaced"


def test_late_clear_with_old_call_id_keeps_newer_call(client, creds, extension):
    client.get(URL, {**creds, "number": "111", "call_id": "old"})
    client.get(URL, {**creds, "number": "222", "call_id": "new"})
    response = client.get(URL, {**creds, "call_id": "old"})
    assert response.status_code == 200
    assert active_call(extension).call_id == "new"
    client.get(URL, {**creds, "call_id": "new"})
    assert active_call(extension) is None


def test_expires_defaults_to_domain_maximum(client, creds, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False):
        client.get(URL, {**creds, "number": "1"})
        assert (active_call(extension).expires_at - timezone.now()).total_seconds() == 7200


def test_expires_is_clamped_to_domain_maximum(client, creds, extension, domain):
    domain.max_call_duration = 600
    domain.save()
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False):
        client.get(URL, {**creds, "number": "1", "expires": "100000"})
        assert (active_call(extension).expires_at - timezone.now()).total_seconds() == 600


def test_expires_zero_clears(client, creds, extension):
    client.get(URL, {**creds, "number": "1"})
    response = client.get(URL, {**creds, "number": "1", "expires": "0"})
    assert response.status_code == 200
    assert active_call(extension) is None


def test_call_past_deadline_is_not_shown_and_ends_expired(client, creds, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        client.get(URL, {**creds, "number": "1", "expires": "5"})
        traveller.shift(6)
        response = client.get(URL, creds, HTTP_ACCEPT="application/json")
    assert response.json()["state"] == "available"
    call = Call.objects.get(extension=extension)
    assert call.end_reason == "expired"
    assert call.ended_at == call.expires_at


def test_json_answer(client, creds, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False):
        response = client.get(
            URL, {**creds, "number": "anonymous", "expires": "60"}, HTTP_ACCEPT="application/json"
        )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "state": "on_call",
        "number_withheld": True,
        "started_at": "2026-03-01T10:00:00+00:00",
        "expires_at": "2026-03-01T10:01:00+00:00",
        "expires_in": 60,
    }


def test_json_answer_after_clear(client, creds, extension):
    response = client.get(URL, creds, HTTP_ACCEPT="application/json")
    assert response.json() == {
        "state": "available",
        "number_withheld": None,
        "started_at": None,
        "expires_at": None,
        "expires_in": None,
    }


@pytest.mark.parametrize(
    "accept, json_expected",
    [
        ("*/*", False),
        ("", False),
        ("text/html", False),
        ("text/plain, application/json;q=0.5", False),
        ("application/*", True),
        ("Application/JSON", True),
        ("text/plain;q=0.1, application/json", True),
    ],
)
def test_accept_header_chooses_plain_text_or_json(client, creds, accept, json_expected):
    response = client.get(URL, creds, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    if json_expected:
        assert response.json()["state"] == "available"
    else:
        assert response.content == b"OK"


@pytest.mark.parametrize(
    ("raw", "stored", "withheld"),
    [
        ("+47 123-45.678", "+4712345678", False),
        ("(030) 1234 5678", "03012345678", False),
        ("*31#555", "*31#555", False),
        ("Anonymous", "", True),
        ("PRIVATE", "", True),
        ("unknown", "", True),
        ("restricted", "", True),
        ("1" * 32, "1" * 32, False),
    ],
)
def test_number_normalisation(client, creds, extension, raw, stored, withheld):
    assert client.get(URL, {**creds, "number": raw}).status_code == 200
    call = active_call(extension)
    assert (call.number, call.withheld) == (stored, withheld)


@pytest.mark.parametrize("raw", ["abc", "12a3", "1" * 33, "++1", "1+2", "---", "+", "١٢٣"])
def test_malformed_number_is_400(client, creds, extension, raw):
    response = client.get(URL, {**creds, "number": raw})
    assert response.status_code == 400
    assert b"number" in response.content
    assert response.content.count(b"\n") == 0
    assert active_call(extension) is None


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "1e3", "9" * 13, "٣"])
def test_malformed_expires_is_400(client, creds, extension, raw):
    response = client.get(URL, {**creds, "number": "1", "expires": raw})
    assert response.status_code == 400
    assert b"expires" in response.content


@pytest.mark.parametrize("missing", ["domain", "user", "password"])
def test_missing_required_parameter_is_400(client, creds, missing):
    params = {k: v for k, v in creds.items() if k != missing}
    response = client.get(URL, params)
    assert response.status_code == 400
    assert missing.encode() in response.content


def test_nul_character_is_400(client, creds):
    response = client.get(URL, {**creds, "user": "12\x003"})
    assert response.status_code == 400


def test_call_id_too_long_is_400(client, creds):
    response = client.get(URL, {**creds, "number": "1", "call_id": "x" * 129})
    assert response.status_code == 400
    assert b"call_id" in response.content


def _refusals(creds, extension, other_domain):
    disabled = Extension.objects.create(domain=extension.domain, number="999", enabled=False)
    from domains.credentials import issue_password

    disabled_password = issue_password(disabled)
    no_password = Extension.objects.create(domain=extension.domain, number="998")
    return {
        "unknown domain": {**creds, "domain": "nope.example"},
        "domain of another tenant": {**creds, "domain": other_domain.name},
        "unknown extension": {**creds, "user": "124"},
        "wrong password": {**creds, "password": "wrong"},
        "disabled extension": {**creds, "user": "999", "password": disabled_password},
        "extension without password": {**creds, "user": "998", "password": ""},
        "empty password for no password": {**creds, "user": no_password.number, "password": "x"},
    }


def test_every_refusal_is_the_same_403(client, creds, extension, other_domain, settings):
    settings.CALL_STATE_FAILURES_PER_ADDRESS = 100
    bodies = set()
    for name, params in _refusals(creds, extension, other_domain).items():
        response = client.get(URL, {**params, "number": "1"})
        if name == "extension without password":
            assert response.status_code == 400  # an empty password is a missing parameter
            continue
        assert response.status_code == 403, name
        assert response["Cache-Control"] == "no-store"
        bodies.add(response.content)
    assert bodies == {b"Forbidden"}
    assert not Call.objects.exists()


def test_disabled_domain_is_403(client, creds, domain):
    Domain.objects.filter(pk=domain.pk).update(enabled=False)
    assert client.get(URL, {**creds, "number": "1"}).status_code == 403


def test_source_address_not_allowed_is_403(client, creds, domain, extension):
    domain.allowed_addresses = "10.0.0.0/8, 192.0.2.7"
    domain.save()
    assert client.get(URL, creds, REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get(URL, creds, REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get(URL, creds, REMOTE_ADDR="192.0.2.7").status_code == 200


@pytest.mark.parametrize("method", ["put", "delete", "patch", "options"])
def test_other_methods_are_405_with_allow(client, creds, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"
    assert response["Cache-Control"] == "no-store"


def test_failures_per_extension_give_429_with_retry_after(client, creds, settings):
    settings.CALL_STATE_FAILURES_PER_EXTENSION = 3
    for _ in range(3):
        assert client.get(URL, {**creds, "password": "bad"}).status_code == 403
    response = client.get(URL, creds)  # even the right password waits now
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= settings.CALL_STATE_FAILURE_WINDOW
    # Another extension from the same address is not affected.
    assert client.get(URL, {**creds, "user": "777", "password": "x"}).status_code == 403


def test_counters_stay_shared_when_redis_drops_the_held_connection(client, creds, settings):
    """The limiter keeps its Redis connection between requests. When Redis closes it (its
    idle timeout, a restart), the next request reconnects: it neither fails nor falls back to
    counting in this process only."""
    shared = redis.Redis.from_url(settings.REDIS_URL)
    assert client.get(URL, {**creds, "password": "bad"}).status_code == 403
    db = shared.connection_pool.connection_kwargs.get("db", 0)
    held = [
        c["addr"]
        for c in shared.client_list()
        if int(c["db"]) == db and c["cmd"] in ("mget", "expire", "incr", "del")
    ]
    assert held, shared.client_list()
    for address in held:
        shared.client_kill(address)

    assert client.get(URL, {**creds, "password": "bad"}).status_code == 403
    counts = sorted(int(shared.get(key)) for key in shared.scan_iter("call_state:fail:*"))
    assert counts == [2, 2]


def test_others_failures_do_not_lock_out_an_address_known_for_the_extension(
    client, creds, settings
):
    """Anybody who knows an extension's number could otherwise keep its provider out with
    a few wrong passwords every few minutes."""
    settings.CALL_STATE_FAILURES_PER_EXTENSION = 3
    provider, attacker, newcomer = "192.0.2.10", "198.51.100.66", "203.0.113.7"
    assert client.get(URL, {**creds, "number": "1"}, REMOTE_ADDR=provider).status_code == 200
    for _ in range(3):
        bad = client.get(URL, {**creds, "password": "guess"}, REMOTE_ADDR=attacker)
        assert bad.status_code == 403
    assert client.get(URL, creds, REMOTE_ADDR=attacker).status_code == 429

    assert client.get(URL, {**creds, "number": "2"}, REMOTE_ADDR=provider).status_code == 200
    assert client.get(URL, creds, REMOTE_ADDR=provider).status_code == 200
    # An address that never sent the right password waits like the attacker.
    assert client.get(URL, creds, REMOTE_ADDR=newcomer).status_code == 429


def test_a_wrong_password_makes_a_known_address_unknown_again(client, creds, settings):
    settings.CALL_STATE_FAILURES_PER_EXTENSION = 3
    assert client.get(URL, {**creds, "number": "1"}).status_code == 200
    for _ in range(3):
        assert client.get(URL, {**creds, "password": "old one"}).status_code == 403
    assert client.get(URL, creds).status_code == 429


def test_known_addresses_are_kept_in_redis_for_a_week(client, creds, settings):
    shared = redis.Redis.from_url(settings.REDIS_URL)
    assert client.get(URL, {**creds, "number": "1"}).status_code == 200
    (key,) = shared.scan_iter("call_state:known:*")
    assert 7 * 24 * 3600 - 10 <= shared.ttl(key) <= 7 * 24 * 3600
    assert client.get(URL, {**creds, "password": "bad"}).status_code == 403
    assert not list(shared.scan_iter("call_state:known:*"))


def test_failures_per_address_give_429(client, creds, settings):
    settings.CALL_STATE_FAILURES_PER_ADDRESS = 4
    for user in range(4):
        client.get(URL, {**creds, "user": str(user)}, REMOTE_ADDR="192.0.2.1")
    assert client.get(URL, creds, REMOTE_ADDR="192.0.2.1").status_code == 429
    assert client.get(URL, creds, REMOTE_ADDR="192.0.2.2").status_code == 200


def test_address_behind_trusted_proxy(client, creds, settings):
    settings.NUM_PROXIES = 1
    settings.CALL_STATE_FAILURES_PER_ADDRESS = 2
    for _ in range(2):
        client.get(URL, {**creds, "password": "x"}, HTTP_X_FORWARDED_FOR="spoofed, 198.51.100.9")
    assert client.get(URL, creds, HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 429
    assert client.get(URL, creds, HTTP_X_FORWARDED_FOR="198.51.100.10").status_code == 200


def test_successes_are_not_limited(client, creds, settings):
    settings.CALL_STATE_FAILURES_PER_EXTENSION = 2
    for n in range(10):
        assert client.get(URL, {**creds, "number": str(n)}).status_code == 200


def test_call_id_sent_on_refresh_is_kept_for_the_clear(client, creds, extension):
    client.get(URL, {**creds, "number": "111"})
    client.get(URL, {**creds, "number": "111", "call_id": "late"})
    assert active_call(extension).call_id == "late"
    client.get(URL, {**creds, "call_id": "late"})
    assert active_call(extension) is None


def test_missing_forwarded_header_falls_back_to_peer(client, creds, domain, settings):
    settings.NUM_PROXIES = 1
    domain.allowed_addresses = "127.0.0.1"
    domain.save()
    assert client.get(URL, creds).status_code == 200


@pytest.fixture
def provider_key(domain):
    from domains.credentials import issue_provider_key
    from domains.models import ProviderKey

    key = ProviderKey.objects.create(
        domain=domain, label="Mobile Co", allowed_addresses="192.0.2.0/24"
    )
    key.secret = issue_provider_key(key)
    return key


def test_provider_key_works_for_every_extension_of_its_domain(client, extension, provider_key):
    other = Extension.objects.create(domain=extension.domain, number="124")
    for user in ("123", "124"):
        params = {"domain": "abc.com", "user": user, "password": provider_key.secret, "number": "1"}
        assert client.get(URL, params, REMOTE_ADDR="192.0.2.10").status_code == 200
    assert active_call(other) is not None


def test_provider_key_only_from_its_addresses(client, extension, provider_key):
    params = {"domain": "abc.com", "user": "123", "password": provider_key.secret, "number": "1"}
    assert client.get(URL, params, REMOTE_ADDR="198.51.100.1").status_code == 403


def test_provider_key_not_valid_for_another_domain(client, provider_key, other_domain):
    Extension.objects.create(domain=other_domain, number="123")
    params = {"domain": other_domain.name, "user": "123", "password": provider_key.secret}
    assert client.get(URL, params, REMOTE_ADDR="192.0.2.10").status_code == 403


def test_disabled_provider_key_is_refused(client, extension, provider_key):
    provider_key.enabled = False
    provider_key.save()
    params = {"domain": "abc.com", "user": "123", "password": provider_key.secret}
    assert client.get(URL, params, REMOTE_ADDR="192.0.2.10").status_code == 403


def test_domain_allowlist_applies_to_provider_keys_too(client, extension, provider_key, domain):
    domain.allowed_addresses = "203.0.113.0/24"
    domain.save()
    params = {"domain": "abc.com", "user": "123", "password": provider_key.secret}
    assert client.get(URL, params, REMOTE_ADDR="192.0.2.10").status_code == 403
