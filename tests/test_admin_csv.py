"""CSV export and import of extensions in the admin: per domain, all or nothing."""

import csv
import html
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from domains.models import ADMIN, Extension, Membership
from presence.models import PresenceEvent
from tests.admin_helpers import changelist_url, shown_secrets

CSV_PAGE = "/admin/domains/extension/csv/"
EXPORT = "/admin/domains/extension/csv/export/"
HEADER = "number,name,department,enabled,availability,note\n"


def export(client, domain) -> list[dict]:
    response = client.get(EXPORT, {"domain": domain.pk})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="{domain.name}-extensions.csv"' in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def upload(client, domain, text: str, **kwargs):
    file = SimpleUploadedFile("extensions.csv", text.encode(), content_type="text/csv")
    return client.post(CSV_PAGE, {"domain": domain.pk, "file": file}, **kwargs)


def errors_of(response) -> list[str]:
    page = response.content.decode()
    assert "Nothing was imported" in page
    start = page.index('<ul class="errorlist import-errors">')
    items = page[start : page.index("</ul>", start)].split("<li>")[1:]
    return [html.unescape(item.split("</li>")[0]) for item in items]


def test_changelist_links_the_csv_page(owner_client, own):
    page = owner_client.get(changelist_url("extension")).content.decode()
    assert f'href="{CSV_PAGE}"' in page
    assert owner_client.get(CSV_PAGE).status_code == 200


def test_export_has_the_domains_extensions_and_no_secrets(owner_client, own, foreign):
    own.extension.note = "Back at 3"
    own.extension.save()
    response = owner_client.get(EXPORT, {"domain": own.domain.pk})
    assert response.content.decode().startswith(HEADER.replace("\n", "\r\n"))
    assert export(owner_client, own.domain) == [
        {
            "number": "123",
            "name": "Ann",
            "department": "Sales",
            "enabled": "true",
            "availability": "available",
            "note": "Back at 3",
        }
    ]
    assert own.extension.password not in response.content.decode()
    assert own.extension.secret_hash not in response.content.decode()


def test_export_of_another_domain_is_404(owner_client, own, foreign):
    assert owner_client.get(EXPORT, {"domain": foreign.domain.pk}).status_code == 404
    assert owner_client.get(EXPORT, {"domain": "x"}).status_code == 404


def test_round_trip_into_another_domain(owner_client, people, own, foreign):
    Membership.objects.create(user=people["owner"], domain=foreign.domain, role=ADMIN)
    Extension.objects.create(
        domain=own.domain, number="+49", name="=cmd()", department="-", availability="dnd"
    )
    rows = export(owner_client, own.domain)
    assert rows[0]["number"] == "'+49" and rows[0]["name"] == "'=cmd()"  # no formulas
    exported = owner_client.get(EXPORT, {"domain": own.domain.pk}).content.decode()

    response = upload(owner_client, foreign.domain, exported)
    assert response.status_code == 200
    assert "2 new and 0 changed" in response.content.decode()
    passwords = shown_secrets(response, "call-state-password")
    assert len(passwords) == 2
    assert export(owner_client, foreign.domain) == [
        *rows,
        {
            "number": "900",
            "name": "Otto",
            "department": "Secret Lab",
            "enabled": "true",
            "availability": "available",
            "note": "",
        },
    ]
    copied = Extension.objects.get(domain=foreign.domain, number="+49")
    assert (copied.name, copied.department, copied.availability) == ("=cmd()", "-", "dnd")
    query = {"domain": "other.example", "user": "123", "password": passwords[1]}
    assert Client().get("/call_state.htm", query).status_code == 200


def test_one_bad_row_imports_nothing(owner_client, own):
    text = HEADER + "200,Bo,Sales,true,away,\n123,Ann,Sales,true,dnd,Out\n201,Cy,,true,busy,\n"
    response = upload(owner_client, own.domain, text)
    assert response.status_code == 200
    assert errors_of(response) == ["Row 4: availability: Value 'busy' is not a valid choice."]
    assert not Extension.objects.filter(number__in=["200", "201"]).exists()
    own.extension.refresh_from_db()
    assert (own.extension.availability, own.extension.note) == ("available", "")
    assert not PresenceEvent.objects.filter(source="admin").exists()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("number,name,colour\n1,A,red\n", 'Row 1: unknown column "colour"'),
        ("name,note\nAnn,x\n", "Row 1: the column number is required."),
        ("number,name\n1,A\n,B\n", "Row 3: the number is missing."),
        ("number,name\n1,A\n2,B\n1,C\n", "Row 4: number 1 is already on row 2."),
        ("number,enabled\n1,maybe\n", "Row 2: enabled: “maybe” is neither true nor false."),
        ("number,name\n1\n", "Row 2: 1 values for 2 columns."),
        ("number\nno spaces\n", "Row 2: number: Letters, digits and _ . + * # - only."),
        ("number,name\n1," + "x" * 101 + "\n", "Row 2: name: Ensure this value has at most"),
    ],
)
def test_row_errors_name_their_row(owner_client, own, text, error):
    response = upload(owner_client, own.domain, text)
    assert any(e.startswith(error) for e in errors_of(response)), errors_of(response)
    assert list(Extension.objects.values_list("number", flat=True)) == ["123"]


def test_import_changes_existing_extensions_through_the_service(owner_client, own):
    text = "number;name;availability;note;enabled\n123;Ann B;dnd;Back at 3;false\n"
    response = upload(owner_client, own.domain, text, follow=True)
    assert "0 new and 1 changed" in response.content.decode()
    own.extension.refresh_from_db()
    assert (own.extension.name, own.extension.availability) == ("Ann B", "dnd")
    assert (own.extension.note, own.extension.enabled) == ("Back at 3", False)
    reasons = PresenceEvent.objects.filter(source="admin").values_list("reason", flat=True)
    assert sorted(reasons) == ["availability_changed", "extension_disabled", "note_changed"]


def test_missing_columns_and_empty_cells_keep_values(owner_client, own):
    own.extension.availability = "away"
    own.extension.save()
    upload(owner_client, own.domain, "number,availability,enabled\n123,,\n")
    own.extension.refresh_from_db()
    assert (own.extension.name, own.extension.availability, own.extension.enabled) == (
        "Ann",
        "away",
        True,
    )
    assert not PresenceEvent.objects.filter(source="admin").exists()


def test_import_into_another_domain_is_refused(owner_client, own, foreign):
    response = upload(owner_client, foreign.domain, HEADER + "555,X,,true,available,\n")
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Extension.objects.filter(number="555").exists()


def test_not_utf8_is_refused(owner_client, own):
    file = SimpleUploadedFile("x.csv", "number,name\n1,Bjørn\n".encode("latin-1"))
    response = owner_client.post(CSV_PAGE, {"domain": own.domain.pk, "file": file})
    assert "not UTF-8" in response.content.decode()
    assert not Extension.objects.filter(number="1").exists()


def test_member_and_outsider_cannot_use_the_csv_pages(client, sign_in, people, own):
    client.force_login(people["member"])
    assert client.get(CSV_PAGE)["Location"].startswith("/admin/login/")
    assert client.get(EXPORT, {"domain": own.domain.pk})["Location"].startswith("/admin/login/")
    client.logout()
    sign_in(people["outsider"])
    assert client.get(EXPORT, {"domain": own.domain.pk}).status_code == 404
    response = upload(client, own.domain, HEADER + "555,X,,true,available,\n")
    assert "Select a valid choice" in response.content.decode()
    assert not Extension.objects.filter(number="555").exists()
