"""The presence board page (DESIGN §5): who may see it, what it shows, staff's own status."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from domains.credentials import issue_kiosk_token, revoke_kiosk_token
from domains.models import Extension
from presence.board import hide_number, tile
from presence.models import Call, PresenceEvent
from presence.service import CallReport, report_call, set_availability

BOARD = "/board/abc.com/"


@pytest.fixture
def on_call(extension):
    report_call(extension, CallReport(busy=True, number="4712345678"), "api")
    return extension


def login(client, name):
    assert client.login(username=name, password=f"pw-{name}")


@pytest.mark.parametrize("name", ["owner", "member"])
def test_members_see_the_board(client, people, on_call, name):
    login(client, name)
    response = client.get(BOARD)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-state="on_call"' in page
    assert "On the phone" in page  # the state in text, not only colour
    assert "Ann" in page and "Sales" in page
    assert response["Cache-Control"].startswith("max-age=0")


def test_superuser_sees_every_board(client, domain, db):
    User.objects.create_superuser("root", password="pw-root")
    login(client, "root")
    assert client.get(BOARD).status_code == 200


def test_outsider_gets_404(client, people):
    login(client, "outsider")
    assert client.get(BOARD).status_code == 404
    assert client.get("/board/other.example/").status_code == 200


def test_anonymous_is_sent_to_login(client, domain):
    response = client.get(BOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_unknown_domain_is_404_like_a_foreign_one(client, people):
    login(client, "owner")
    assert client.get("/board/nope.example/").status_code == 404


def test_remote_number_hidden_unless_domain_opts_in(client, people, on_call, domain):
    login(client, "member")
    page = client.get(BOARD).content.decode()
    assert "4712345678" not in page
    assert "External call" in page
    domain.show_numbers = True
    domain.save()
    assert "4712345678" in client.get(BOARD).content.decode()


def test_withheld_number_is_said_so(client, people, extension):
    report_call(extension, CallReport(busy=True, withheld=True), "api")
    login(client, "member")
    assert "Withheld number" in client.get(BOARD).content.decode()


def test_disabled_extensions_are_not_on_the_board(client, people, domain):
    Extension.objects.create(domain=domain, number="555", name="Gone", enabled=False)
    login(client, "owner")
    assert "Gone" not in client.get(BOARD).content.decode()


def test_counts_and_departments(client, people, on_call, domain):
    other = Extension.objects.create(domain=domain, number="200", department="Support")
    set_availability(other, availability="dnd", source="admin")
    login(client, "owner")
    response = client.get(BOARD)
    assert response.context["counts"] == {"on_call": 1, "dnd": 1, "away": 0, "available": 0}
    page = response.content.decode()
    assert page.index("Sales") < page.index("Support")


def test_kiosk_link_shows_the_board_read_only_without_numbers(client, on_call, domain):
    domain.show_numbers = True
    domain.save()
    token = issue_kiosk_token(domain)
    response = client.get(BOARD, {"kiosk": token})
    assert response.status_code == 200
    page = response.content.decode()
    assert "My status" not in page
    assert "4712345678" not in page
    assert 'class="wall"' in page
    assert response["Referrer-Policy"] == "no-referrer"


def test_revoked_or_wrong_kiosk_link_is_403(client, domain):
    token = issue_kiosk_token(domain)
    assert client.get(BOARD, {"kiosk": "wrong"}).status_code == 403
    revoke_kiosk_token(domain)
    assert client.get(BOARD, {"kiosk": token}).status_code == 403


def test_kiosk_token_of_one_domain_does_not_open_another(client, domain, other_domain):
    token = issue_kiosk_token(domain)
    assert client.get("/board/other.example/", {"kiosk": token}).status_code == 403


def test_member_sets_own_availability_and_note(client, people, extension):
    login(client, "member")
    page = client.get(BOARD).content.decode()
    assert "My status (123)" in page
    response = client.post(f"{BOARD}me", {"availability": "dnd", "note": "In a meeting"})
    assert response.status_code == 302
    extension.refresh_from_db()
    assert (extension.availability, extension.note) == ("dnd", "In a meeting")
    reasons = set(PresenceEvent.objects.filter(source="board").values_list("reason", flat=True))
    assert reasons == {"availability_changed", "note_changed"}


def test_owner_without_extension_cannot_set_status(client, people, extension):
    login(client, "owner")
    assert "My status" not in client.get(BOARD).content.decode()
    assert client.post(f"{BOARD}me", {"availability": "dnd"}).status_code == 404
    extension.refresh_from_db()
    assert extension.availability == "available"


def test_outsider_cannot_set_anyones_status(client, people, extension):
    login(client, "outsider")
    assert client.post(f"{BOARD}me", {"availability": "dnd"}).status_code == 404


def test_unknown_availability_is_400(client, people, extension):
    login(client, "member")
    assert client.post(f"{BOARD}me", {"availability": "asleep"}).status_code == 400


def test_setting_status_needs_csrf_token(people, extension):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    login(client, "member")
    assert client.post(f"{BOARD}me", {"availability": "dnd"}).status_code == 403


def test_board_list_goes_straight_to_the_only_board(client, people):
    login(client, "member")
    response = client.get("/board/")
    assert response.status_code == 302
    assert response["Location"] == BOARD


def test_call_timer_is_rendered_by_the_server(client, people, extension):
    import time_machine

    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        report_call(extension, CallReport(busy=True, number="1"), "api")
        traveller.shift(3725)
        login(client, "member")
        page = client.get(BOARD).content.decode()
    assert ">1:02:05</time>" in page


def test_nul_in_domain_name_is_404_not_500(client, people, domain):
    login(client, "member")
    assert client.get("/board/abc%00.com/").status_code == 404
    token = issue_kiosk_token(domain)
    assert client.get("/board/abc%00.com/", {"kiosk": token}).status_code == 404


@pytest.mark.parametrize("number, withheld", [("4712345678", False), ("", True)])
@pytest.mark.parametrize("availability", ["available", "dnd"])
def test_hiding_the_number_of_a_tile_equals_building_it_without(
    extension, number, withheld, availability
):
    """The stream derives kiosk tiles from members' tiles instead of building them again."""
    now = timezone.now()
    extension.availability = availability
    call = Call(
        extension=extension,
        number=number,
        withheld=withheld,
        started_at=now - timedelta(seconds=30),
        expires_at=now + timedelta(seconds=60),
    )
    for current in (call, None):
        shown = tile(extension, current, now, show_number=True)
        assert hide_number(shown) == tile(extension, current, now, show_number=False)
