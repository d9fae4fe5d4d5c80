"""The domain admin's wall-screen (kiosk) links and live presence page."""

from django.test import Client

from tests.admin_helpers import admin_url, changelist_url, run_action, shown_secrets


def kiosk_cell(client) -> str:
    page = client.get(changelist_url("domain")).content.decode()
    start = page.index('<td class="field-has_kiosk_link">')
    return page[start : page.index("</td>", start)]


def test_kiosk_link_opens_the_board_read_only_until_revoked(owner_client, people, own):
    own.domain.show_numbers = True
    own.domain.save()
    assert "icon-no" in kiosk_cell(owner_client)

    response = run_action(owner_client, "domain", "create_kiosk_links", [own.domain])
    [url] = shown_secrets(response, "kiosk-link")
    assert url.startswith("http://testserver/board/abc.com/?kiosk=")
    assert "icon-yes" in kiosk_cell(owner_client)
    assert url not in owner_client.get(admin_url(own.domain)).content.decode()

    wall = Client().get(url)  # no login
    assert wall.status_code == 200
    page = wall.content.decode()
    assert "Ann" in page and "On the phone" in page
    assert "4711111111" not in page and "External call" in page  # despite show_numbers
    member = Client()
    member.force_login(people["member"])  # who would see their "My status" form
    assert 'name="availability"' in member.get("/board/abc.com/").content.decode()
    assert 'name="availability"' not in member.get(url).content.decode()

    run_action(owner_client, "domain", "revoke_kiosk_links", [own.domain])
    assert Client().get(url).status_code == 403
    assert "icon-no" in kiosk_cell(owner_client)


def test_a_new_kiosk_link_replaces_the_previous_one(owner_client, own):
    first = shown_secrets(
        run_action(owner_client, "domain", "create_kiosk_links", [own.domain]), "kiosk-link"
    )
    second = shown_secrets(
        run_action(owner_client, "domain", "create_kiosk_links", [own.domain]), "kiosk-link"
    )
    assert Client().get(first[0]).status_code == 403
    assert Client().get(second[0]).status_code == 200


def test_kiosk_actions_ignore_another_domain(owner_client, own, foreign):
    response = run_action(owner_client, "domain", "create_kiosk_links", [foreign.domain])
    assert shown_secrets(response, "kiosk-link") == []
    foreign.domain.refresh_from_db()
    assert foreign.domain.kiosk_token_hash == ""


def presence_url(tenant) -> str:
    return f"/admin/domains/domain/{tenant.domain.pk}/presence/"


def test_live_presence_page_embeds_the_board(owner_client, own):
    changelist = owner_client.get(changelist_url("domain")).content.decode()
    assert f'href="{presence_url(own)}"' in changelist
    response = owner_client.get(presence_url(own))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<iframe class="live-board" src="/board/abc.com/"' in page
    assert "<strong>1</strong> on the phone" in page
    # The board may be framed by our own pages only.
    board = owner_client.get("/board/abc.com/")
    assert board.status_code == 200
    assert board["X-Frame-Options"] == "SAMEORIGIN"


def test_live_presence_of_another_domain_is_404(owner_client, own, foreign):
    assert owner_client.get(presence_url(foreign)).status_code == 404
    assert (
        owner_client.get(f"/admin/domains/domain/{foreign.domain.pk + 1000}/presence/").status_code
        == 404
    )


def test_member_cannot_open_live_presence(client, people, own):
    client.force_login(people["member"])
    assert client.get(presence_url(own))["Location"].startswith("/admin/login/")


def test_superuser_opens_any_live_presence(client, superuser, own, foreign):
    client.force_login(superuser)
    assert client.get(presence_url(foreign)).status_code == 200
    assert client.get("/board/other.example/").status_code == 200
