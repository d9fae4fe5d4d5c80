"""Domain API keys in the administrators' console: issued in the browser, shown once,
reissued and revoked there. Tenant scoping of the pages is in test_admin.py (MODELS)."""

from django.test import Client

from api.models import ApiToken
from api.tokens import issue_user_token
from tests.admin_helpers import admin_url, changelist_url, run_action, shown_secrets

ADD = "/admin/api/apitoken/add/"


def api_status(key: str) -> int:
    """What the REST API answers this key for abc.com's presence."""
    response = Client().get("/api/v1/domains/abc.com/presence/", HTTP_AUTHORIZATION=f"Bearer {key}")
    return response.status_code


def test_an_api_key_added_in_the_admin_is_shown_once_and_works(owner_client, own):
    page = owner_client.get(ADD).content.decode()
    assert f'<option value="{own.domain.pk}" selected>abc.com</option>' in page

    response = owner_client.post(ADD, {"domain": own.domain.pk, "name": "Wallboard"})

    [key] = shown_secrets(response, "api-key")
    assert api_status(key) == 200
    token = ApiToken.objects.get(name="Wallboard")
    assert (token.domain, token.user, token.read_only) == (own.domain, None, False)
    assert key not in owner_client.get(admin_url(token)).content.decode()
    assert key not in owner_client.get(changelist_url("apitoken")).content.decode()


def test_new_keys_replace_the_old_ones(owner_client, own):
    response = owner_client.post(ADD, {"domain": own.domain.pk, "name": "CRM"})
    [old] = shown_secrets(response, "api-key")
    token = ApiToken.objects.get(name="CRM")

    [new] = shown_secrets(run_action(owner_client, "apitoken", "issue_keys", [token]), "api-key")

    assert new != old
    assert (api_status(old), api_status(new)) == (401, 200)


def test_deleting_a_key_revokes_it(owner_client, own):
    [key] = shown_secrets(
        owner_client.post(ADD, {"domain": own.domain.pk, "name": "Old sync"}), "api-key"
    )
    token = ApiToken.objects.get(name="Old sync")

    response = owner_client.post(admin_url(token, "delete"), {"post": "yes"})

    assert response.status_code == 302
    assert api_status(key) == 401


def test_a_key_for_another_domain_cannot_be_issued(owner_client, own, foreign):
    response = owner_client.post(ADD, {"domain": foreign.domain.pk, "name": "Sneaky"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.filter(name="Sneaky").exists()


def test_a_key_needs_a_domain(client, sign_in, superuser, own):
    sign_in(superuser)
    response = client.post(ADD, {"name": "Nobody's"})
    assert "This field is required" in response.content.decode()
    assert not ApiToken.objects.filter(name="Nobody's").exists()


def test_peoples_own_tokens_are_listed_for_superusers_only(owner_client, people, superuser, own):
    personal, _ = issue_user_token(people["owner"], "My laptop")
    assert admin_url(personal) not in owner_client.get(changelist_url("apitoken")).content.decode()
    assert owner_client.get(admin_url(personal)).status_code == 302  # "doesn't exist"

    root = Client()
    root.force_login(superuser)
    page = root.get(changelist_url("apitoken")).content.decode()
    assert admin_url(personal) in page and admin_url(own.api_key) in page
