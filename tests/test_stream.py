"""The board stream process (DESIGN §5): snapshot, live events within a second, revocation."""

import time

import pytest
import requests

from domains.credentials import issue_kiosk_token, revoke_kiosk_token
from domains.models import Membership
from presence import board
from presence.service import CallReport, report_call, set_availability
from tests.servers import EventStream

pytestmark = pytest.mark.server


def open_stream(server, domain, **who) -> EventStream:
    token = board.stream_token(domain, **who)
    return EventStream(f"{server.url}/stream/board?t={token}")


@pytest.fixture
def member_stream(stream_server, people, domain):
    stream = open_stream(stream_server, domain, user_id=people["member"].pk, kiosk_hash=None)
    yield stream
    stream.close()


def test_stream_starts_with_a_snapshot(member_stream, extension):
    assert member_stream.status_code == 200
    assert member_stream.headers["content-type"].startswith("text/event-stream")
    assert member_stream.headers["cache-control"] == "no-store"
    event, _, data = member_stream.next_event(kind="snapshot")
    assert event == "snapshot"
    assert [(t["number"], t["state"]) for t in data["tiles"]] == [("123", "available")]


def test_a_call_reaches_the_stream_within_a_second(member_stream, extension):
    member_stream.next_event(kind="snapshot")
    sent = time.monotonic()
    report_call(extension, CallReport(busy=True, number="555"), "api")
    event, event_id, data = member_stream.next_event(timeout=1, kind="presence")
    assert time.monotonic() - sent < 1
    assert event == "presence" and event_id > 0
    assert data["tile"]["state"] == "on_call"
    assert data["tile"]["call"]["remote"] == "External call"
    assert data["reason"] == "call_started"
    report_call(extension, CallReport(busy=False), "api")
    _, _, data = member_stream.next_event(timeout=1, kind="presence")
    assert data["tile"]["state"] == "available"


def test_other_domains_events_do_not_reach_the_stream(member_stream, other_domain, domain):
    from domains.models import Extension

    member_stream.next_event(kind="snapshot")
    foreign = Extension.objects.create(domain=other_domain, number="9")
    report_call(foreign, CallReport(busy=True, number="1"), "api")
    own = Extension.objects.get(domain=domain, number="123")
    set_availability(own, availability="away", source="admin")
    _, _, data = member_stream.next_event(timeout=2, kind="presence")
    assert data["tile"]["number"] == "123"  # the foreign call came first and was not sent


def test_a_forged_or_missing_pass_is_refused(stream_server):
    assert requests.get(f"{stream_server.url}/stream/board", timeout=5).status_code == 403
    forged = requests.get(f"{stream_server.url}/stream/board?t=abc:def", timeout=5)
    assert forged.status_code == 403


def test_kiosk_stream_never_shows_numbers(stream_server, domain, extension):
    domain.show_numbers = True
    domain.save()
    issue_kiosk_token(domain)
    stream = open_stream(stream_server, domain, user_id=None, kiosk_hash=domain.kiosk_token_hash)
    try:
        stream.next_event(kind="snapshot")
        report_call(extension, CallReport(busy=True, number="4712345678"), "api")
        _, _, data = stream.next_event(timeout=1, kind="presence")
        assert data["tile"]["call"]["remote"] == "External call"
    finally:
        stream.close()


def test_revoking_the_kiosk_link_closes_its_streams(stream_server, domain, extension):
    issue_kiosk_token(domain)
    stream = open_stream(stream_server, domain, user_id=None, kiosk_hash=domain.kiosk_token_hash)
    try:
        stream.next_event(kind="snapshot")
        revoke_kiosk_token(domain)
        event, _, _ = stream.next_event(timeout=5, kind="revoked")
        assert event == "revoked"
        assert stream.next_event(timeout=5)[0] == "closed"
    finally:
        stream.close()


def test_a_member_removed_from_the_domain_loses_the_stream(member_stream, people):
    member_stream.next_event(kind="snapshot")
    Membership.objects.filter(user=people["member"]).delete()
    assert member_stream.next_event(timeout=5, kind="revoked")[0] == "revoked"
