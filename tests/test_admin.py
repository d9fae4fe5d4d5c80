"""The administrators' console (DESIGN §6): who gets in, tenant scoping of every page, and the
extension, membership, provider key and history pages. Real sign-ins, Django's test client."""

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client

from domains.models import Extension, Membership, ProviderKey
from presence.models import Call, PresenceEvent
from presence.service import CallReport, report_call
from tests.admin_helpers import admin_url, changelist_url, run_action, shown_secrets

MODELS = [
    "domain",
    "extension",
    "membership",
    "providerkey",
    "apitoken",
    "call",
    "presenceevent",
]


# Who gets in


def test_owner_signs_in_and_sees_the_console(client, sign_in, people, own):
    assert sign_in(people["owner"])["Location"] == "/admin/"
    page = client.get("/admin/").content.decode()
    for name in ("Domains", "Extensions", "Memberships", "Provider keys", "Calls"):
        assert name in page
    assert "/admin/auth/user/" not in page


def test_member_cannot_sign_in(client, sign_in, people):
    response = sign_in(people["member"])
    assert response.status_code == 200
    assert "correct username and password for a staff account" in response.content.decode()
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_staff_status_without_a_domain_to_administer_opens_nothing(client, sign_in, people):
    member = people["member"]
    member.is_staff = True
    member.save()
    sign_in(member)
    for url in ["/admin/", *map(changelist_url, MODELS)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url


@pytest.mark.parametrize("model_name", MODELS)
def test_member_gets_no_admin_page(client, people, own, model_name):
    client.force_login(people["member"])  # the admin's own login form refuses them
    for url in (changelist_url(model_name), admin_url(own.objects()[model_name])):
        assert client.get(url)["Location"].startswith("/admin/login/"), url


def test_domain_administrators_cannot_touch_user_accounts(owner_client, people):
    assert owner_client.get("/admin/auth/user/").status_code == 403
    owner = people["owner"]
    response = owner_client.post(
        admin_url(owner), {"username": "owner", "is_superuser": "on", "is_staff": "on"}
    )
    assert response.status_code == 403
    owner.refresh_from_db()
    assert not owner.is_superuser


# Tenant scoping of every page


@pytest.mark.parametrize("person", ["owner", "outsider"])
@pytest.mark.parametrize("model_name", MODELS)
def test_changelist_lists_only_administered_objects(
    client, sign_in, people, own, foreign, person, model_name
):
    mine, theirs = (own, foreign) if person == "owner" else (foreign, own)
    sign_in(people[person])
    response = client.get(changelist_url(model_name))
    assert response.status_code == 200
    page = response.content.decode()
    assert admin_url(mine.objects()[model_name]) in page
    assert admin_url(theirs.objects()[model_name]) not in page
    assert theirs.domain.name not in page


# Models whose objects domain administrators may not delete at all: those pages are 403.
UNDELETABLE = ("domain", "call", "presenceevent")


@pytest.mark.parametrize("view", ["change", "delete", "history"])
@pytest.mark.parametrize("model_name", MODELS)
def test_another_domains_objects_do_not_exist(owner_client, own, foreign, model_name, view):
    expected = 403 if view == "delete" and model_name in UNDELETABLE else 200
    assert owner_client.get(admin_url(own.objects()[model_name], view)).status_code == expected
    response = owner_client.get(admin_url(foreign.objects()[model_name], view), follow=True)
    if expected == 403:
        assert response.status_code == 403
    else:
        assert response.redirect_chain == [("/admin/", 302)]
        assert "doesn’t exist" in response.content.decode()
    assert str(foreign.domain) not in response.content.decode()


def test_superuser_sees_every_domain(client, sign_in, superuser, own, foreign):
    sign_in(superuser)
    page = client.get(changelist_url("extension")).content.decode()
    assert admin_url(own.extension) in page and admin_url(foreign.extension) in page


def test_filters_offer_only_administered_domains_and_their_values(owner_client, own, foreign):
    page = owner_client.get(changelist_url("extension")).content.decode()
    assert f"?domain={own.domain.pk}" in page
    assert f"?domain={foreign.domain.pk}" not in page
    assert "Secret Lab" not in page  # the department filter of other.example
    filtered = owner_client.get(changelist_url("extension"), {"domain": foreign.domain.pk})
    assert admin_url(foreign.extension) not in filtered.content.decode()


def test_actions_ignore_another_domains_objects(owner_client, own, foreign):
    run_action(owner_client, "extension", "set_dnd", [own.extension, foreign.extension])
    own.extension.refresh_from_db()
    foreign.extension.refresh_from_db()
    assert own.extension.availability == "dnd"
    assert foreign.extension.availability == "available"


def test_forms_offer_only_administered_domains(owner_client, own, foreign):
    page = owner_client.get("/admin/domains/extension/add/").content.decode()
    assert foreign.domain.name not in page
    assert f'<option value="{own.domain.pk}" selected>abc.com</option>' in page  # the only one
    response = owner_client.post(
        "/admin/domains/extension/add/", {"domain": foreign.domain.pk, "number": "555"}
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Extension.objects.filter(number="555").exists()


# Domains


def test_only_superusers_create_and_delete_domains(owner_client, own, superuser):
    assert owner_client.get("/admin/domains/domain/add/").status_code == 403
    assert owner_client.get(admin_url(own.domain, "delete")).status_code == 403
    root = Client()
    root.force_login(superuser)
    assert root.get("/admin/domains/domain/add/").status_code == 200
    assert root.get(admin_url(own.domain, "delete")).status_code == 200


def test_owner_edits_own_domain_settings_but_not_its_name(owner_client, own):
    response = owner_client.post(
        admin_url(own.domain),
        {
            "name": "stolen.example",
            "max_call_duration": "600",
            "show_numbers": "on",
            "allowed_addresses": "192.0.2.0/24",
        },
    )
    assert response.status_code == 302
    own.domain.refresh_from_db()
    assert own.domain.name == "abc.com"
    assert own.domain.enabled
    assert (own.domain.max_call_duration, own.domain.show_numbers) == (600, True)
    assert own.domain.allowed_addresses == "192.0.2.0/24"


# Extensions


def call_state(password: str, **extra) -> int:
    query = {"domain": "abc.com", "user": "124", "password": password, **extra}
    return Client().get("/call_state.htm", query).status_code


def test_adding_an_extension_shows_its_password_once(owner_client, own):
    response = owner_client.post(
        "/admin/domains/extension/add/",
        {
            "domain": own.domain.pk,
            "number": "124",
            "name": "Bea",
            "enabled": "on",
            "availability": "available",
        },
    )
    [password] = shown_secrets(response, "call-state-password")
    assert call_state(password) == 200
    assert call_state("wrong") == 403
    extension = Extension.objects.get(number="124")
    change_page = owner_client.get(admin_url(extension)).content.decode()
    assert password not in change_page
    assert password not in owner_client.get(changelist_url("extension")).content.decode()
    assert not LogEntry.objects.filter(change_message__contains=password).exists()


def test_new_passwords_replace_the_old_ones(owner_client, own):
    response = run_action(owner_client, "extension", "issue_passwords", [own.extension])
    [password] = shown_secrets(response, "call-state-password")
    query = {"domain": "abc.com", "user": "123"}
    assert Client().get("/call_state.htm", {**query, "password": password}).status_code == 200
    old = own.extension.password
    assert Client().get("/call_state.htm", {**query, "password": old}).status_code == 403
    assert password not in owner_client.get(admin_url(own.extension)).content.decode()


def test_changing_presence_fields_goes_through_the_service(owner_client, own):
    response = owner_client.post(
        admin_url(own.extension),
        {"number": "123", "name": "Ann B", "availability": "dnd", "note": "Back at 3"},
    )  # "enabled" unticked
    assert response.status_code == 302
    events = PresenceEvent.objects.filter(extension=own.extension, source="admin")
    assert sorted(events.values_list("reason", flat=True)) == [
        "availability_changed",
        "extension_disabled",
        "note_changed",
    ]
    own.extension.refresh_from_db()
    assert (own.extension.name, own.extension.note, own.extension.enabled) == (
        "Ann B",
        "Back at 3",
        False,
    )


def presence_cell(client) -> str:
    page = client.get(changelist_url("extension")).content.decode()
    start = page.index('<td class="field-presence_now">') + len('<td class="field-presence_now">')
    return page[start : page.index("</td>", start)]


def test_clear_active_call_action(owner_client, own):
    assert presence_cell(owner_client) == "On the phone"
    response = run_action(owner_client, "extension", "clear_active_calls", [own.extension])
    assert response.status_code == 302
    own.call.refresh_from_db()
    assert own.call.end_reason == "cleared"
    event = PresenceEvent.objects.latest("id")
    assert (event.reason, event.source, event.new_state) == ("call_cleared", "admin", "available")
    assert presence_cell(owner_client) == "Available"


def test_availability_actions(owner_client, own):
    run_action(owner_client, "extension", "clear_active_calls", [own.extension])
    run_action(owner_client, "extension", "set_dnd", [own.extension])
    assert presence_cell(owner_client) == "Do not disturb"
    event = PresenceEvent.objects.latest("id")
    assert (event.reason, event.source, event.new_state) == (
        "availability_changed",
        "admin",
        "dnd",
    )
    run_action(owner_client, "extension", "set_available", [own.extension])
    assert PresenceEvent.objects.latest("id").new_state == "available"
    assert presence_cell(owner_client) == "Available"


# Memberships


def test_owner_adds_a_member_by_user_name(owner_client, own):
    User.objects.create_user("newbie")
    response = owner_client.post(
        "/admin/domains/membership/add/",
        {"user": "newbie", "domain": own.domain.pk, "role": "staff", "extension": own.extension.pk},
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user__username="newbie")
    assert (membership.domain, membership.extension) == (own.domain, own.extension)


def test_owner_cannot_grant_membership_in_another_domain(owner_client, own, foreign):
    User.objects.create_user("newbie")
    for domain, extension in [(foreign.domain, None), (own.domain, foreign.extension)]:
        data = {"user": "newbie", "domain": domain.pk, "role": "admin"}
        if extension:
            data["extension"] = extension.pk
        response = owner_client.post("/admin/domains/membership/add/", data)
        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode()
    assert not Membership.objects.filter(user__username="newbie").exists()


def test_granting_the_admin_role_warns_when_staff_status_is_missing(owner_client, own):
    User.objects.create_user("newbie")
    response = owner_client.post(
        "/admin/domains/membership/add/",
        {"user": "newbie", "domain": own.domain.pk, "role": "admin"},
        follow=True,
    )
    assert "needs staff status" in response.content.decode()
    assert not User.objects.get(username="newbie").is_staff


def test_extension_autocomplete_lists_own_extensions_only(owner_client, own, foreign):
    response = owner_client.get(
        "/admin/autocomplete/",
        {"app_label": "domains", "model_name": "membership", "field_name": "extension"},
    )
    assert [item["id"] for item in response.json()["results"]] == [str(own.extension.pk)]


# Provider keys


def test_a_new_provider_key_is_shown_once_and_works(owner_client, own):
    response = owner_client.post(
        "/admin/domains/providerkey/add/",
        {
            "domain": own.domain.pk,
            "label": "Mobile carrier",
            "allowed_addresses": "127.0.0.1",
            "enabled": "on",
        },
    )
    [secret] = shown_secrets(response, "provider-key")
    query = {"domain": "abc.com", "user": "123", "password": secret}
    assert Client().get("/call_state.htm", query).status_code == 200
    key = ProviderKey.objects.get(label="Mobile carrier")
    assert secret not in owner_client.get(admin_url(key)).content.decode()
    assert secret not in owner_client.get(changelist_url("providerkey")).content.decode()


def test_a_provider_key_needs_allowed_addresses(owner_client, own):
    response = owner_client.post(
        "/admin/domains/providerkey/add/",
        {"domain": own.domain.pk, "label": "Anywhere", "allowed_addresses": ""},
    )
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not ProviderKey.objects.filter(label="Anywhere").exists()


def test_new_key_and_disable_actions(owner_client, own):
    own.key.allowed_addresses = "127.0.0.1"
    own.key.save()
    [secret] = shown_secrets(
        run_action(owner_client, "providerkey", "issue_keys", [own.key]), "provider-key"
    )
    query = {"domain": "abc.com", "user": "123", "password": secret}
    assert Client().get("/call_state.htm", query).status_code == 200
    run_action(owner_client, "providerkey", "disable_keys", [own.key])
    assert Client().get("/call_state.htm", query).status_code == 403
    run_action(owner_client, "providerkey", "enable_keys", [own.key])
    assert Client().get("/call_state.htm", query).status_code == 200


# History


def test_call_history_shows_duration_and_filters(owner_client, own):
    Call.objects.filter(pk=own.call.pk).update(started_at="2026-03-01T10:00:00Z")
    with time_machine.travel("2026-03-01 10:01:30Z", tick=False):
        run_action(owner_client, "extension", "clear_active_calls", [own.extension])
    page = owner_client.get(
        changelist_url("call"), {"end_reason__exact": "cleared"}
    ).content.decode()
    assert '<td class="field-call_duration">0:01:30</td>' in page
    assert "4711111111" in page  # administrators see the numbers
    by_date = owner_client.get(changelist_url("call"), {"started_at__year": "2025"})
    assert admin_url(own.call) not in by_date.content.decode()
    by_reason = owner_client.get(changelist_url("call"), {"end_reason__exact": "expired"})
    assert admin_url(own.call) not in by_reason.content.decode()
    colleague = Extension.objects.create(domain=own.domain, number="124")
    report_call(colleague, CallReport(busy=True, number="4722222222"), "call_state")
    by_extension = owner_client.get(changelist_url("call"), {"extension": own.extension.pk})
    assert admin_url(own.call) in by_extension.content.decode()
    assert "4722222222" not in by_extension.content.decode()


def test_extension_filter_offers_the_chosen_domains_extensions(
    owner_client, superuser, own, foreign
):
    own_choice, foreign_choice = (f"extension={t.extension.pk}" for t in (own, foreign))
    page = owner_client.get(changelist_url("call")).content.decode()
    assert own_choice in page and foreign_choice not in page  # the owner's only domain
    root = Client()
    root.force_login(superuser)
    page = root.get(changelist_url("call")).content.decode()
    assert own_choice not in page and foreign_choice not in page  # which domain?
    page = root.get(changelist_url("call"), {"domain": foreign.domain.pk}).content.decode()
    assert own_choice not in page and foreign_choice in page


def test_event_log_filters(owner_client, own):
    run_action(owner_client, "extension", "set_dnd", [own.extension])
    admin_event = PresenceEvent.objects.get(source="admin")
    page = owner_client.get(changelist_url("presenceevent"), {"source__exact": "admin"})
    assert admin_url(admin_event) in page.content.decode()
    assert admin_url(own.event) not in page.content.decode()
    by_reason = owner_client.get(changelist_url("presenceevent"), {"reason__exact": "call_started"})
    assert admin_url(own.event) in by_reason.content.decode()
    assert admin_url(admin_event) not in by_reason.content.decode()


@pytest.mark.parametrize("model_name", ["call", "presenceevent"])
def test_history_is_read_only(owner_client, own, model_name):
    obj = own.objects()[model_name]
    assert owner_client.get(changelist_url(model_name) + "add/").status_code == 403
    assert owner_client.get(admin_url(obj)).status_code == 200  # a view-only page
    assert owner_client.post(admin_url(obj), {}).status_code == 403
    assert owner_client.post(admin_url(obj, "delete"), {"post": "yes"}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_adding_an_extension_announces_it(db, domain):
    from presence.models import PresenceEvent
    from presence.service import add_extension

    extension = add_extension(Extension(domain=domain, number="300"), source="admin").extension
    event = PresenceEvent.objects.get(extension=extension)
    assert (event.reason, event.old_state, event.new_state) == (
        "extension_added",
        "offline",
        "available",
    )
