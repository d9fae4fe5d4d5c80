"""The REST API's access rules (DESIGN §7): every endpoint, every kind of caller.

Tenant first: a domain the caller may not see answers 404, like one that does not exist.
Within their domain, administrators (and full domain keys) may change things, staff may read
and set their own availability, read-only keys and tokens may only read.
"""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from api.models import ApiToken
from api.tokens import issue_domain_key, issue_user_token
from domains.models import Extension
from presence.models import Call, PresenceEvent
from presence.service import CallReport, report_call
from tests.api_helpers import Api, caller_keys

D = "domains/abc.com/"
EXT = D + "extensions/123/"

READS = [
    D,
    D + "extensions/",
    EXT,
    D + "presence/",
    D + "calls/",
    D + "events/",
]
# (method, path, body, status when allowed)
ADMIN_WRITES = [
    ("PATCH", D, {"show_numbers": True}, 200),
    ("POST", D + "extensions/", {"number": "200", "name": "Bob"}, 201),
    ("PUT", EXT, {"name": "Ann B.", "department": "Sales"}, 200),
    ("PATCH", EXT, {"department": "Support"}, 200),
    ("DELETE", EXT, None, 204),
    ("POST", EXT + "password/", None, 201),
    ("POST", EXT + "call/", {"number": "555"}, 200),
    ("DELETE", EXT + "call/", None, 200),
]
AVAILABILITY = ("PUT", EXT + "availability/", {"availability": "dnd", "note": "Back at 3"}, 200)

READERS = ["owner", "member", "key", "read_only_key", "read_only_owner"]
ADMINS = ["owner", "key"]
READ_ONLY = ["read_only_key", "read_only_owner"]
STRANGERS = ["outsider", "foreign_key"]


@pytest.fixture
def keys(people, domain, other_domain):
    return caller_keys(people, domain, other_domain)


@pytest.fixture
def as_(client, keys):
    """`as_("owner")`: an Api client with that caller's key."""
    return lambda who: Api(client, keys[who])


def tenant_state(domain) -> dict:
    """Everything the write endpoints could change in abc.com."""
    domain.refresh_from_db()
    return {
        "domain": (domain.show_numbers, domain.max_call_duration, domain.allowed_addresses),
        "extensions": list(domain.extensions.values()),
        "calls": list(Call.objects.filter(extension__domain=domain).values()),
        "events": PresenceEvent.objects.filter(domain=domain).count(),
    }


def send(api: Api, method: str, path: str, body):
    return api.request(method, path, body)


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("who", READERS)
def test_members_and_keys_read_their_domain(as_, who, path):
    assert as_(who).get(path).status_code == 200


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("who", STRANGERS)
def test_strangers_get_404_on_reads(as_, who, path):
    response = as_(who).get(path)
    assert response.status_code == 404
    assert "abc.com" not in response.content.decode()


@pytest.mark.parametrize("path", READS)
def test_anonymous_gets_401(as_, path):
    response = as_("anonymous").get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", READS)
def test_unknown_key_gets_401(client, domain, path):
    assert Api(client, "pbx_not-a-key").get(path).status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "ok"), [*ADMIN_WRITES, AVAILABILITY])
@pytest.mark.parametrize("who", ADMINS)
def test_administrators_and_domain_keys_write(as_, extension, who, method, path, body, ok):
    assert send(as_(who), method, path, body).status_code == ok


@pytest.mark.parametrize(("method", "path", "body", "ok"), ADMIN_WRITES)
@pytest.mark.parametrize("who", ["member", *READ_ONLY])
def test_staff_and_read_only_callers_cannot_change_the_domain(
    as_, domain, who, method, path, body, ok
):
    before = tenant_state(domain)
    assert send(as_(who), method, path, body).status_code == 403
    assert tenant_state(domain) == before


@pytest.mark.parametrize(("method", "path", "body", "ok"), [*ADMIN_WRITES, AVAILABILITY])
@pytest.mark.parametrize("who", [*STRANGERS, "anonymous"])
def test_strangers_cannot_write_or_learn_anything(as_, domain, who, method, path, body, ok):
    before = tenant_state(domain)
    response = send(as_(who), method, path, body)
    assert response.status_code == (401 if who == "anonymous" else 404)
    assert tenant_state(domain) == before


def test_staff_set_their_own_availability(as_, extension):
    response = send(as_("member"), *AVAILABILITY[:3])
    assert response.status_code == 200
    extension.refresh_from_db()
    assert (extension.availability, extension.note) == ("dnd", "Back at 3")


def test_staff_cannot_set_a_colleagues_availability(as_, domain):
    Extension.objects.create(domain=domain, number="124", name="Ben")
    response = as_("member").put(D + "extensions/124/availability/", {"availability": "dnd"})
    assert response.status_code == 403
    assert Extension.objects.get(number="124").availability == "available"


@pytest.mark.parametrize("who", READ_ONLY)
def test_read_only_callers_cannot_set_availability(as_, extension, who):
    assert send(as_(who), *AVAILABILITY[:3]).status_code == 403
    extension.refresh_from_db()
    assert extension.availability == "available"


@pytest.mark.parametrize(
    ("who", "names"),
    [
        ("owner", ["abc.com"]),
        ("member", ["abc.com"]),
        ("outsider", ["other.example"]),
        ("key", ["abc.com"]),
        ("read_only_key", ["abc.com"]),
        ("foreign_key", ["other.example"]),
    ],
)
def test_domain_list_shows_only_the_callers_domains(as_, who, names):
    response = as_(who).get("domains/")
    assert response.status_code == 200
    assert [item["name"] for item in response.json()["results"]] == names


def test_superusers_see_every_domain(client, people):
    root = User.objects.create_superuser("root", password="pw-root")
    api = Api(client, issue_user_token(root, "root")[1])
    names = [item["name"] for item in api.get("domains/").json()["results"]]
    assert names == ["abc.com", "other.example"]
    assert api.get("domains/other.example/presence/").status_code == 200


def test_outsider_works_in_their_own_domain(as_, other_domain):
    """The 404s above are about the tenant, not a broken caller."""
    api = as_("outsider")
    assert api.get("domains/other.example/").status_code == 200
    response = api.post("domains/other.example/extensions/", {"number": "900"})
    assert response.status_code == 201


def test_lists_never_mix_tenants(as_, extension, other_domain):
    theirs = Extension.objects.create(domain=other_domain, number="123", name="Twin")
    report_call(theirs, CallReport(busy=True, number="4799"), "api")
    report_call(extension, CallReport(busy=True, number="4711"), "api")
    api = as_("owner")
    assert [e["name"] for e in api.get(D + "extensions/").json()["results"]] == ["Ann"]
    assert [c["number"] for c in api.get(D + "calls/").json()["results"]] == ["4711"]
    events = api.get(D + "events/").json()["results"]
    assert {e["extension"] for e in events} == {"123"} and len(events) == 1
    tiles = api.get(D + "presence/").json()["extensions"]
    assert [t["name"] for t in tiles] == ["Ann"]
    assert api.get(EXT).json()["name"] == "Ann"


def test_domain_name_in_the_url_is_case_insensitive(as_):
    assert as_("owner").get("domains/ABC.com./").json()["name"] == "abc.com"


def test_disabled_domain_is_404_for_everybody(as_, domain):
    domain.enabled = False
    domain.save()
    assert as_("owner").get(D).status_code == 404
    assert as_("key").get(D).status_code == 404
    assert as_("owner").get("domains/").json()["results"] == []


def test_nul_in_the_url_is_404_not_500(as_):
    assert as_("owner").get("domains/abc%00.com/").status_code == 404
    assert as_("owner").get(D + "extensions/1%002/").status_code == 404


# --- the domain's API keys: administrators in person only ----------------------------------

KEYS = D + "keys/"


@pytest.mark.parametrize(
    ("who", "read", "create"),
    [
        ("owner", 200, 201),
        ("read_only_owner", 200, 403),
        ("member", 403, 403),
        ("key", 403, 403),  # a leaked key must not mint keys that outlive it
        ("read_only_key", 403, 403),
        ("outsider", 404, 404),
        ("foreign_key", 404, 404),
        ("anonymous", 401, 401),
    ],
)
def test_who_manages_api_keys(as_, domain, who, read, create):
    count = ApiToken.objects.count()
    api = as_(who)
    assert api.get(KEYS).status_code == read
    assert api.post(KEYS, {"name": "CRM"}).status_code == create
    assert ApiToken.objects.count() == count + (create == 201)


def test_owner_issues_lists_and_revokes_a_domain_key(as_, client, extension):
    owner = as_("owner")
    created = owner.post(KEYS, {"name": "CRM", "read_only": True}).json()
    key = created["key"]
    listed = owner.get(KEYS).json()
    assert {"id": created["id"], "name": "CRM", "read_only": True}.items() <= listed[-1].items()
    assert all("key" not in item for item in listed)
    crm = Api(client, key)
    assert crm.get(D + "presence/").status_code == 200
    assert crm.get("domains/other.example/").status_code == 404
    assert crm.post(EXT + "call/", {"number": "1"}).status_code == 403  # read-only
    assert owner.delete(KEYS + f"{created['id']}/").status_code == 204
    assert crm.get(D + "presence/").status_code == 401


@pytest.mark.parametrize("key_id", ["999999", str(2**63), str(10**30)])
def test_unknown_key_ids_are_404(as_, domain, key_id):
    assert as_("owner").delete(KEYS + f"{key_id}/").status_code == 404


def test_keys_of_another_domain_are_404(as_, other_domain):
    theirs, _ = issue_domain_key(other_domain, "theirs")
    assert as_("owner").get(KEYS + f"{theirs.pk}/").status_code == 404
    assert as_("owner").delete(KEYS + f"{theirs.pk}/").status_code == 404


@pytest.mark.parametrize("path", ["nope/", D + "keys/not-a-number/", D + "extensions/1/2/3/"])
def test_unknown_api_urls_are_json_404s(keys, path):
    api = Api(Client(enforce_csrf_checks=True), keys["owner"])
    for method in ("GET", "DELETE"):
        response = api.request(method, path)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


def test_a_missing_slash_is_redirected(client):
    response = client.get("/api/v1/domains")
    assert (response.status_code, response["Location"]) == (301, "/api/v1/domains/")
