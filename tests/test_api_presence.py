"""Presence through the REST API: calls, availability, extensions, snapshot, history, feed.

Setting and clearing a call follows call_state.htm's rules (DESIGN §2) through the one
presence service, with source "api".
"""

import base64

import pytest
import time_machine

from domains.credentials import issue_password
from domains.models import Extension
from presence.models import Call, PresenceEvent
from presence.service import CallReport, report_call, set_availability
from tests.api_helpers import Api, caller_keys

D = "domains/abc.com/"
EXT = D + "extensions/123/"
CALL = EXT + "call/"


@pytest.fixture
def keys(people, domain, other_domain):
    return caller_keys(people, domain, other_domain)


@pytest.fixture
def owner(client, keys) -> Api:
    return Api(client, keys["owner"])


@pytest.fixture
def member(client, keys) -> Api:
    return Api(client, keys["member"])


def active_call(extension):
    return Call.objects.filter(extension=extension, ended_at__isnull=True).first()


def last_event():
    return PresenceEvent.objects.order_by("id").last()


# --- setting and clearing a call ----------------------------------------------------------


def test_set_starts_a_call_with_source_api(owner, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False):
        response = owner.post(CALL, {"number": "+49 (30) 123-45.67", "expires": 60})
    assert response.status_code == 200
    assert response.json() == {
        "state": "on_call",
        "number_withheld": False,
        "started_at": "2026-03-01T10:00:00Z",
        "expires_at": "2026-03-01T10:01:00Z",
        "expires_in": 60,
    }
    call = active_call(extension)
    assert (call.number, call.source) == ("+49301234567", "api")
    event = last_event()
    assert (event.reason, event.source, event.old_state, event.new_state) == (
        "call_started",
        "api",
        "available",
        "on_call",
    )


def test_same_number_refreshes_keeping_the_start(owner, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        owner.post(CALL, {"number": "555", "expires": 60})
        started = active_call(extension)
        traveller.shift(30)
        response = owner.post(CALL, {"number": "555", "expires": 60})
    assert response.json()["expires_in"] == 60
    refreshed = active_call(extension)
    assert refreshed.pk == started.pk
    assert refreshed.started_at == started.started_at
    assert (refreshed.expires_at - started.expires_at).total_seconds() == 30
    assert last_event().reason == "call_refreshed"


def test_another_number_replaces_the_call(owner, extension):
    owner.post(CALL, {"number": "111"})
    owner.post(CALL, {"number": "222"})
    calls = {c.number: c for c in Call.objects.filter(extension=extension)}
    assert calls["111"].end_reason == "replaced"
    assert calls["222"].ended_at is None
    assert last_event().reason == "call_replaced"


@pytest.mark.parametrize("body", [{}, {"number": ""}, {"number": None}, {"number": "  "}])
def test_post_without_number_clears(owner, extension, body):
    owner.post(CALL, {"number": "111"})
    response = owner.post(CALL, body)
    assert response.status_code == 200
    assert response.json()["state"] == "available"
    assert active_call(extension) is None
    event = last_event()
    assert (event.reason, event.source) == ("call_cleared", "api")
    assert Call.objects.get().end_reason == "cleared"


def test_delete_clears(owner, extension):
    owner.post(CALL, {"number": "111"})
    response = owner.delete(CALL)
    assert response.status_code == 200
    assert response.json()["state"] == "available"
    assert active_call(extension) is None


def test_clear_without_a_call_is_ok_and_changes_nothing(owner, extension):
    assert owner.delete(CALL).status_code == 200
    assert owner.post(CALL, {}).status_code == 200
    assert not PresenceEvent.objects.exists()


def test_clear_with_an_old_call_id_keeps_the_newer_call(owner, extension):
    owner.post(CALL, {"number": "111", "call_id": "old"})
    owner.post(CALL, {"number": "222", "call_id": "new"})
    assert owner.delete(CALL, call_id="old").json()["state"] == "on_call"
    assert owner.post(CALL, {"call_id": "old"}).json()["state"] == "on_call"
    assert active_call(extension).call_id == "new"
    owner.delete(CALL, call_id="new")
    assert active_call(extension) is None


def test_expires_is_clamped_to_the_domain_maximum(owner, extension, domain):
    domain.max_call_duration = 600
    domain.save()
    response = owner.post(CALL, {"number": "1", "expires": 100000})
    assert response.json()["expires_in"] == 600


def test_expires_zero_clears(owner, extension):
    owner.post(CALL, {"number": "1"})
    assert owner.post(CALL, {"number": "1", "expires": 0}).json()["state"] == "available"
    assert active_call(extension) is None


def test_withheld_number(owner, extension):
    response = owner.post(CALL, {"number": "Anonymous"})
    assert response.json()["number_withheld"] is True
    assert active_call(extension).withheld


SEQUENCE = [
    {"number": "111", "call_id": "a"},
    {"number": "112", "call_id": "a"},  # same call_id: a refresh
    {"number": "112", "call_id": "b"},  # another call_id: replaces
    {"call_id": "a"},  # a late clear of the old call: nothing
    {"number": "anonymous"},  # replaces
    {"number": "anonymous", "expires": 0},  # clears
    {},  # clear when idle: nothing
]


def test_the_api_and_call_state_htm_apply_the_same_rules(owner, client, extension, domain):
    twin = Extension.objects.create(domain=domain, number="124")
    password = issue_password(twin)
    for report in SEQUENCE:
        assert owner.post(CALL, report).status_code == 200
        params = {"domain": "abc.com", "user": "124", "password": password}
        params.update({name: str(value) for name, value in report.items()})
        assert client.get("/call_state.htm", params).status_code == 200

    def history(ext):
        events = PresenceEvent.objects.filter(extension=ext).order_by("id")
        return [(e.reason, e.old_state, e.new_state) for e in events]

    assert history(extension) == history(twin)
    assert [e.reason for e in PresenceEvent.objects.filter(extension=extension)] == [
        "call_started",
        "call_refreshed",
        "call_replaced",
        "call_replaced",
        "call_cleared",
    ]
    assert {e.source for e in PresenceEvent.objects.filter(extension=extension)} == {"api"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"number": "12ab"}, "number"),
        ({"number": "1" * 33}, "number"),
        ({"number": 12345}, "number"),
        ({"number": "1", "expires": -1}, "expires"),
        ({"number": "1", "expires": 1.5}, "expires"),
        ({"number": "1", "expires": "60"}, "expires"),
        ({"number": "1", "expires": True}, "expires"),
        ({"number": "1", "expires": 10**12}, "expires"),
        ({"number": "1", "call_id": "x" * 129}, "call_id"),
        ({"number": "1\x00"}, "number"),
    ],
)
def test_bad_call_reports_are_400_naming_the_field(owner, extension, body, field):
    response = owner.post(CALL, body)
    assert response.status_code == 400
    assert field in response.json()
    assert not PresenceEvent.objects.exists()


def test_malformed_json_is_400(client, keys, extension):
    response = client.post(
        "/api/v1/" + CALL,
        "{not json",
        content_type="application/json",
        headers={"Authorization": f"Bearer {keys['owner']}"},
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_form_bodies_are_refused_with_415(client, keys, extension):
    response = client.post(
        "/api/v1/" + CALL,
        {"number": "1"},
        headers={"Authorization": f"Bearer {keys['owner']}"},
    )
    assert response.status_code == 415


def test_disabled_extension_takes_no_call(owner, extension):
    owner.patch(EXT, {"enabled": False})
    response = owner.post(CALL, {"number": "1"})
    assert response.status_code == 409
    assert active_call(extension) is None


def test_unknown_extension_is_404(owner, extension):
    assert owner.post(D + "extensions/999/call/", {"number": "1"}).status_code == 404


# --- availability -------------------------------------------------------------------------


def test_availability_and_note_go_through_the_service(owner, extension):
    response = owner.put(EXT + "availability/", {"availability": "dnd", "note": "Back at 3"})
    assert response.status_code == 200
    assert response.json()["state"] == "dnd"
    assert response.json()["note"] == "Back at 3"
    events = list(PresenceEvent.objects.order_by("id"))
    assert [(e.reason, e.source) for e in events] == [
        ("availability_changed", "api"),
        ("note_changed", "api"),
    ]
    assert (events[0].old_state, events[0].new_state) == ("available", "dnd")


def test_patch_availability_changes_only_what_is_sent(member, extension):
    set_availability(extension, availability="away", note="Lunch", source="admin")
    response = member.patch(EXT + "availability/", {"note": ""})
    assert response.status_code == 200
    extension.refresh_from_db()
    assert (extension.availability, extension.note) == ("away", "")


def test_put_availability_requires_availability(member, extension):
    response = member.put(EXT + "availability/", {"note": "x"})
    assert response.status_code == 400
    assert "availability" in response.json()


@pytest.mark.parametrize(
    "body", [{"availability": "busy"}, {"availability": "dnd", "note": "x" * 201}]
)
def test_bad_availability_is_400(member, extension, body):
    assert member.put(EXT + "availability/", body).status_code == 400
    assert not PresenceEvent.objects.exists()


def test_on_call_shows_over_dnd(owner, extension):
    owner.post(CALL, {"number": "1"})
    response = owner.put(EXT + "availability/", {"availability": "dnd"})
    assert response.json()["state"] == "on_call"


# --- extensions ---------------------------------------------------------------------------


def test_new_extension_answers_its_password_once(owner, client, domain):
    response = owner.post(D + "extensions/", {"number": "200", "name": "Bob"})
    assert response.status_code == 201
    created = response.json()
    password = created["password"]
    assert created["has_password"] is True
    extension = Extension.objects.get(number="200")
    assert password not in str(Extension.objects.filter(pk=extension.pk).values().get())
    added = last_event()  # announced, so open boards show it
    assert (added.extension, added.reason, added.source) == (extension, "extension_added", "api")
    assert "password" not in owner.get(D + "extensions/200/").json()
    params = {"domain": "abc.com", "user": "200", "password": password, "number": "1"}
    assert client.get("/call_state.htm", params).status_code == 200


def test_new_password_replaces_the_old_one(owner, client, extension):
    params = {"domain": "abc.com", "user": "123", "number": "1"}
    assert (
        client.get("/call_state.htm", {**params, "password": extension.password}).status_code == 200
    )
    response = owner.post(EXT + "password/")
    assert response.status_code == 201
    new = response.json()["password"]
    assert client.get("/call_state.htm", {**params, "password": new}).status_code == 200
    old = client.get("/call_state.htm", {**params, "password": extension.password})
    assert old.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"number": "123"},  # taken
        {"number": "a/b"},
        {"number": ""},
        {"number": "1" * 33},
        {"name": "no number"},
        {"number": "201", "availability": "busy"},
    ],
)
def test_bad_new_extensions_are_400(owner, extension, body):
    response = owner.post(D + "extensions/", body)
    assert response.status_code == 400
    assert Extension.objects.count() == 1


def test_presence_fields_of_an_extension_change_through_the_service(owner, extension):
    response = owner.patch(EXT, {"enabled": False, "availability": "away", "name": "Ann C."})
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    extension.refresh_from_db()
    assert (extension.enabled, extension.availability, extension.name) == (
        False,
        "away",
        "Ann C.",
    )
    reasons = [(e.reason, e.source) for e in PresenceEvent.objects.order_by("id")]
    assert reasons == [("availability_changed", "api"), ("extension_disabled", "api")]


def test_plain_fields_change_without_events(owner, extension):
    assert owner.patch(EXT, {"department": "Support"}).status_code == 200
    assert not PresenceEvent.objects.exists()


def test_the_number_cannot_be_changed(owner, extension):
    response = owner.patch(EXT, {"number": "999"})
    assert response.status_code == 200
    assert response.json()["number"] == "123"


def test_delete_extension(owner, extension):
    assert owner.delete(EXT).status_code == 204
    assert owner.get(EXT).status_code == 404


def test_extensions_are_listed_by_number_in_pages(owner, domain):
    for number in ["30", "10", "20"]:
        Extension.objects.create(domain=domain, number=number)
    first = owner.get(D + "extensions/", limit=2).json()
    assert [e["number"] for e in first["results"]] == ["10", "123"]  # text order
    second = owner.client.get(first["next"], headers=owner.headers).json()
    assert [e["number"] for e in second["results"]] == ["20", "30"]
    assert second["next"] is None


# --- domain -------------------------------------------------------------------------------


def test_domain_settings(owner, domain):
    response = owner.patch(D, {"max_call_duration": 600, "allowed_addresses": "192.0.2.0/24"})
    assert response.status_code == 200
    domain.refresh_from_db()
    assert (domain.max_call_duration, domain.allowed_addresses) == (600, "192.0.2.0/24")


@pytest.mark.parametrize(
    "body",
    [{"max_call_duration": 0}, {"max_call_duration": 10**9}, {"allowed_addresses": "x.y"}],
)
def test_bad_domain_settings_are_400(owner, domain, body):
    assert owner.patch(D, body).status_code == 400


def test_name_and_enabled_are_not_the_tenants_to_change(owner, domain):
    owner.patch(D, {"name": "evil.example", "enabled": False})
    domain.refresh_from_db()
    assert (domain.name, domain.enabled) == ("abc.com", True)


# --- snapshot -----------------------------------------------------------------------------


def test_snapshot_shows_enabled_extensions_and_hides_numbers(owner, extension, domain):
    Extension.objects.create(domain=domain, number="555", name="Gone", enabled=False)
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False):
        report_call(extension, CallReport(busy=True, number="4712345678", expires=60), "api")
        snapshot = owner.get(D + "presence/").json()
    assert snapshot["domain"] == "abc.com"
    assert snapshot["counts"] == {"on_call": 1, "dnd": 0, "away": 0, "available": 0}
    assert snapshot["last_event_id"] == last_event().id
    (tile,) = snapshot["extensions"]
    assert (tile["number"], tile["state"], tile["label"]) == ("123", "on_call", "On the phone")
    assert tile["call"] == {
        "started_at": "2026-03-01T10:00:00Z",
        "expires_at": "2026-03-01T10:01:00Z",
        "remote": "External call",
    }
    domain.show_numbers = True
    domain.save()
    with time_machine.travel("2026-03-01 10:00:30Z", tick=False):
        tile = owner.get(D + "presence/").json()["extensions"][0]
    assert tile["call"]["remote"] == "4712345678"


def test_snapshot_never_shows_a_call_past_its_deadline(owner, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        report_call(extension, CallReport(busy=True, number="1", expires=5), "api")
        traveller.shift(6)
        tile = owner.get(D + "presence/").json()["extensions"][0]
    assert (tile["state"], tile["call"]) == ("available", None)


# --- call history -------------------------------------------------------------------------


@pytest.fixture
def history(extension, domain):
    """Three calls of 123 and one of 124, an hour apart from 08:00; the last is active."""
    other = Extension.objects.create(domain=domain, number="124")
    with time_machine.travel("2026-03-01 08:00:00Z", tick=False) as traveller:
        report_call(extension, CallReport(busy=True, number="111"), "api")
        traveller.shift(3600)
        report_call(extension, CallReport(busy=True, number="222"), "api")  # replaces 111
        traveller.shift(60)
        report_call(extension, CallReport(busy=False), "api")
        traveller.shift(3600)
        report_call(other, CallReport(busy=True, number="333", expires=60), "api")
        traveller.shift(3600)
        report_call(extension, CallReport(busy=True, withheld=True), "api")
    return other


def numbers(response) -> list:
    assert response.status_code == 200, response.content
    return [(call["extension"], call["number"]) for call in response.json()["results"]]


def test_history_is_newest_first_with_derived_fields(owner, history):
    with time_machine.travel("2026-03-01 12:00:00Z", tick=False):
        calls = owner.get(D + "calls/").json()["results"]
    assert [(c["number"], c["end_reason"], c["active"]) for c in calls] == [
        (None, None, True),  # withheld
        ("333", "expired", False),  # past its deadline, not swept yet: reads as expired
        ("222", "cleared", False),
        ("111", "replaced", False),
    ]
    assert calls[1]["ended_at"] == "2026-03-01T10:02:00Z"
    assert calls[2]["duration"] == 60
    assert calls[0]["duration"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"extension": "124"}, [("124", "333")]),
        ({"extension": "999"}, []),
        ({"end_reason": "cleared"}, [("123", "222")]),
        ({"end_reason": "expired"}, [("124", "333")]),
        ({"active": "true"}, [("123", None)]),
        ({"active": "false"}, [("124", "333"), ("123", "222"), ("123", "111")]),
        ({"since": "2026-03-01T09:00:00Z", "until": "2026-03-01T10:01:00Z"}, [("123", "222")]),
        ({"since": "2026-03-01T10:00:00"}, [("123", None), ("124", "333")]),  # naive: UTC
    ],
)
def test_history_filters(owner, history, params, expected):
    with time_machine.travel("2026-03-01 12:00:00Z", tick=False):
        assert numbers(owner.get(D + "calls/", **params)) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2026-13-01"},
        {"end_reason": "hung_up"},
        {"active": "maybe"},
        {"extension": "1" * 33},
        {"since": "0001-01-01T00:00:00+14:00"},
    ],
)
def test_bad_history_filters_are_400(owner, history, params):
    assert owner.get(D + "calls/", **params).status_code == 400


def test_staff_see_numbers_only_where_the_domain_shows_them(member, history, domain):
    assert {number for _, number in numbers(member.get(D + "calls/"))} == {None}
    domain.show_numbers = True
    domain.save()
    assert numbers(member.get(D + "calls/"))[1:] == [("124", "333"), ("123", "222"), ("123", "111")]


def test_history_pages_follow_the_cursor(owner, history):
    first = owner.get(D + "calls/", limit=3).json()
    assert len(first["results"]) == 3
    second = owner.client.get(first["next"], headers=owner.headers).json()
    assert [c["number"] for c in second["results"]] == ["111"]
    assert second["next"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        base64.b64encode(b"p=not-a-date").decode(),
        base64.b64encode(b"p=2026-01-01%00").decode(),
    ],
)
def test_forged_cursors_are_404(owner, history, cursor):
    response = owner.get(D + "calls/", cursor=cursor)
    assert response.status_code == 404
    assert response.json()["detail"] == "Invalid cursor"


# --- event feed ---------------------------------------------------------------------------


def test_event_feed_resumes_after_an_id(owner, extension):
    for number in ["1", "2", "3"]:
        report_call(extension, CallReport(busy=True, number=number), "api")
    ids = list(PresenceEvent.objects.order_by("id").values_list("id", flat=True))
    page = owner.get(D + "events/", after=ids[0], limit=1).json()
    assert [e["id"] for e in page["results"]] == [ids[1]]
    assert page["last_id"] == ids[1]
    assert f"after={ids[1]}" in page["next"]
    rest = owner.client.get(page["next"], headers=owner.headers).json()
    assert [e["id"] for e in rest["results"]] == [ids[2]]
    assert rest["next"] is None
    empty = owner.get(D + "events/", after=ids[2]).json()
    assert (empty["results"], empty["last_id"], empty["next"]) == ([], ids[2], None)


def test_events_carry_the_change(owner, extension):
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False):
        report_call(extension, CallReport(busy=True, number="1", expires=60), "call_state")
    (event,) = owner.get(D + "events/").json()["results"]
    assert event == {
        "id": event["id"],
        "extension": "123",
        "call": Call.objects.get().pk,
        "old_state": "available",
        "new_state": "on_call",
        "reason": "call_started",
        "source": "call_state",
        "expires_at": "2026-03-01T10:01:00Z",
        "created_at": "2026-03-01T10:00:00Z",
    }


def test_snapshot_then_feed_misses_nothing(owner, extension):
    snapshot = owner.get(D + "presence/").json()
    set_availability(extension, availability="dnd", source="admin")
    feed = owner.get(D + "events/", after=snapshot["last_event_id"]).json()["results"]
    assert [e["new_state"] for e in feed] == ["dnd"]


@pytest.mark.parametrize(
    "params", [{"after": "-1"}, {"after": "x"}, {"after": str(2**63)}, {"limit": "0"}]
)
def test_bad_feed_parameters_are_400(owner, domain, params):
    assert owner.get(D + "events/", **params).status_code == 400


def test_answers_are_never_cached(owner, domain):
    assert "no-store" in owner.get(D + "presence/")["Cache-Control"]
