"""The API's OpenAPI schema: valid, free of warnings, and true to the running app.

The schemathesis test sends generated requests (valid and invalid) for every operation to
the production WSGI application as an administrator of abc.com, and checks that no answer
is a 500 and every answer matches the schema (status code, content type, body).
"""

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.tokens import issue_user_token
from domains.models import Extension
from pbx.wsgi import application
from presence.service import CallReport, report_call, set_availability

SCHEMA_URL = "/api/v1/schema/"
EXAMPLES_PER_OPERATION = 25


def test_schema_is_valid_and_has_no_warnings(tmp_path, capsys):
    # --fail-on-warn turns any warning (an unresolvable field, a missing type) into an error.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )
    assert "Warning" not in capsys.readouterr().err
    assert (
        "/api/v1/domains/{name}/extensions/{number}/call/" in (tmp_path / "schema.yaml").read_text()
    )


def test_schema_and_docs_page_are_public(client, db):
    schema = client.get(SCHEMA_URL, headers={"Accept": "application/json"})
    assert schema.status_code == 200
    assert schema.json()["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "swagger-ui" in page
    # The page's scripts come from our own static files (drf-spectacular-sidecar), no CDN.
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower()


# Loaded through the application itself at collection time: the schema is public, so this
# needs no database. (schemathesis.pytest.from_fixture would load it per test, but it does
# not run under pytest 9.)
schema = schemathesis.openapi.from_wsgi(
    SCHEMA_URL,
    application,
    config=schemathesis.Config.from_dict(
        {
            # Mostly the real tenant and extension, so requests get past the 404s.
            "parameters": {"path.name": "abc.com", "path.number": "123"},
            "generation": {"max-examples": EXAMPLES_PER_OPERATION},
        }
    ),
)


@pytest.fixture
def owner_key(db, people, extension, domain, other_domain) -> str:
    """abc.com with a history (an active call, events, a second extension), as its owner."""
    colleague = Extension.objects.create(domain=domain, number="124", name="Ben")
    report_call(colleague, CallReport(busy=True, number="111"), "call_state")
    report_call(colleague, CallReport(busy=False), "call_state")
    report_call(extension, CallReport(busy=True, number="4711", call_id="c1"), "api")
    set_availability(colleague, availability="dnd", note="Back at 3", source="admin")
    stranger = Extension.objects.create(domain=other_domain, number="123")
    report_call(stranger, CallReport(busy=True, number="4799"), "api")
    return issue_user_token(people["owner"], "fuzz")[1]


@pytest.fixture
def in_process():
    """As Django's test client does: keep the test's connection (and its transaction) open
    across requests sent straight to the WSGI application."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_answers_as_its_schema_says(case, owner_key, in_process):
    # Each request runs in a savepoint rolled back after it: every one sees the same tenant
    # (a DELETE of extension 123 does not leave the rest with only 404s to look at).
    with transaction.atomic():
        case.call_and_validate(
            headers={"Authorization": f"Bearer {owner_key}"},
            checks=[
                not_a_server_error,
                response_schema_conformance,
                status_code_conformance,
                content_type_conformance,
            ],
        )
        transaction.set_rollback(True)
