"""API credentials: keys shown once and stored hashed, the Authorization header, sessions,
the management command."""

import hashlib
import io

import pytest
import time_machine
from django.core.management import CommandError, call_command

from api.models import ApiToken
from api.tokens import issue_domain_key, issue_user_token
from tests.api_helpers import Api

D = "domains/abc.com/"


def test_only_a_hash_of_the_key_is_stored(people):
    token, key = issue_user_token(people["owner"], "laptop")
    assert key.startswith("pbx_") and len(key) >= 36
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert key not in str(row)
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()


def test_keys_are_unique(people):
    keys = {issue_user_token(people["owner"], str(n))[1] for n in range(20)}
    assert len(keys) == 20


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "Token"])
def test_bearer_and_token_schemes(client, people, scheme):
    key = issue_user_token(people["owner"], "t")[1]
    response = client.get("/api/v1/" + D, headers={"Authorization": f"{scheme} {key}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer a b", "Bearer pbx_unknown", "Bearer pbx_\u00e9", "Token not-ours"],
)
def test_bad_authorization_is_401(client, people, header):
    response = client.get("/api/v1/" + D, headers={"Authorization": header})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_token_of_an_inactive_user_is_refused(client, people):
    key = issue_user_token(people["owner"], "t")[1]
    people["owner"].is_active = False
    people["owner"].save()
    assert Api(client, key).get(D).status_code == 401


def test_revoked_token_stops_working(client, people):
    token, key = issue_user_token(people["owner"], "t")
    assert Api(client, key).get(D).status_code == 200
    token.delete()
    assert Api(client, key).get(D).status_code == 401


def test_a_user_token_follows_the_users_memberships(client, people, domain):
    key = issue_user_token(people["owner"], "t")[1]
    people["owner"].memberships.filter(domain=domain).delete()
    assert Api(client, key).get(D).status_code == 404


def test_last_use_is_recorded_about_once_a_minute(client, people):
    token, key = issue_user_token(people["owner"], "t")
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False) as traveller:
        Api(client, key).get(D)
        token.refresh_from_db()
        first = token.last_used_at
        traveller.shift(30)
        Api(client, key).get(D)
        token.refresh_from_db()
        assert token.last_used_at == first
        traveller.shift(31)
        Api(client, key).get(D)
        token.refresh_from_db()
    assert (token.last_used_at - first).total_seconds() == 61


def test_a_token_belongs_to_a_user_or_a_domain_never_both(people, domain):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        ApiToken(user=people["owner"], domain=domain, name="x", key_hash="0" * 64).full_clean()


def test_session_sign_in_reads_but_writes_need_csrf(client, people, extension):
    """The interactive docs page works for a signed-in administrator; a session alone is no
    way around CSRF protection."""
    from django.test import Client

    assert client.login(username="owner", password="pw-owner")
    assert client.get("/api/v1/" + D).status_code == 200
    strict = Client(enforce_csrf_checks=True)
    assert strict.login(username="owner", password="pw-owner")
    response = strict.patch(
        "/api/v1/" + D, '{"show_numbers": true}', content_type="application/json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def run_command(*args) -> str:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().strip()


def test_command_issues_a_user_token(client, people):
    line = run_command("--user", "owner", "--name", "laptop")
    key = line.rsplit(" ", 1)[1]
    assert line.startswith("laptop (owner)")
    assert Api(client, key).get(D).status_code == 200


def test_command_issues_a_read_only_domain_key(client, people, extension):
    key = run_command("--domain", "ABC.com", "--read-only").rsplit(" ", 1)[1]
    api = Api(client, key)
    assert api.get(D + "presence/").status_code == 200
    assert api.post(D + "extensions/123/call/", {"number": "1"}).status_code == 403
    assert ApiToken.objects.get().read_only


@pytest.mark.parametrize(
    "args", [["--user", "nobody"], ["--domain", "nope.example"], ["--user", "a", "--domain", "b"]]
)
def test_command_refuses_unknowns(people, args):
    with pytest.raises((CommandError, SystemExit)):
        run_command(*args)


def test_domain_keys_of_a_deleted_domain_go_with_it(domain):
    issue_domain_key(domain, "k")
    domain.delete()
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("domains/", 200),
        (D, 200),
        (D + "extensions/", 200),
        (D + "extensions/123/", 200),
        (D + "extensions/123/call/", 405),  # POST and DELETE only
        (D + "extensions/123/availability/", 405),  # PUT and PATCH only
        (D + "presence/", 200),
        (D + "calls/", 200),
        (D + "events/", 200),
        (D + "keys/", 200),
    ],
)
def test_browsable_pages_render_for_a_signed_in_administrator(client, people, path, status):
    assert client.login(username="owner", password="pw-owner")
    response = client.get("/api/v1/" + path, headers={"Accept": "text/html"})
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")


def test_the_api_root_leads_to_its_docs(client, db):
    response = client.get("/api/v1/")
    assert (response.status_code, response["Location"]) == (302, "/api/v1/docs/")
