"""Fixtures of the admin tests: sign-ins through the admin's form, and two furnished tenants.

`people` (the root conftest) gives abc.com an owner and a member, and other.example an owner,
the outsider. Here each domain gets an extension on a call, a provider key, the call's events.
"""

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User

from api.models import ApiToken
from api.tokens import issue_domain_key
from domains.credentials import issue_provider_key
from domains.models import Domain, Extension, Membership, ProviderKey
from presence.models import SOURCE_CALL_STATE, Call, PresenceEvent
from presence.service import CallReport, report_call


@dataclass
class Tenant:
    domain: Domain
    extension: Extension
    key: ProviderKey
    api_key: ApiToken
    call: Call
    event: PresenceEvent
    membership: Membership

    def objects(self) -> dict:
        """The tenant's object of each admin page, by model name."""
        return {
            "domain": self.domain,
            "extension": self.extension,
            "membership": self.membership,
            "providerkey": self.key,
            "apitoken": self.api_key,
            "call": self.call,
            "presenceevent": self.event,
        }


def furnish(domain: Domain, extension: Extension, remote: str) -> Tenant:
    key = ProviderKey.objects.create(
        domain=domain, label=f"Carrier of {domain}", allowed_addresses="192.0.2.0/24"
    )
    issue_provider_key(key)
    report_call(extension, CallReport(busy=True, number=remote), SOURCE_CALL_STATE)
    return Tenant(
        domain=domain,
        extension=extension,
        key=key,
        api_key=issue_domain_key(domain, f"CRM sync of {domain}")[0],
        call=Call.objects.get(extension=extension),
        event=PresenceEvent.objects.filter(extension=extension).latest("id"),
        membership=Membership.objects.filter(domain=domain).earliest("id"),
    )


@pytest.fixture
def own(people, domain, extension) -> Tenant:
    """abc.com, administered by people["owner"]: extension 123 (Ann, Sales) on a call."""
    return furnish(domain, extension, "4711111111")


@pytest.fixture
def foreign(people, other_domain) -> Tenant:
    """other.example, administered by people["outsider"]: extension 900 on a call."""
    extension = Extension.objects.create(
        domain=other_domain, number="900", name="Otto", department="Secret Lab"
    )
    return furnish(other_domain, extension, "4799999999")


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", password="pw-root")


@pytest.fixture
def sign_in(client):
    """Sign in through the admin's login form, as a person does; returns the response."""

    def sign_in(user: User):
        return client.post(
            "/admin/login/",
            {"username": user.username, "password": f"pw-{user.username}", "next": "/admin/"},
        )

    return sign_in


@pytest.fixture
def owner_client(client, sign_in, people):
    assert sign_in(people["owner"])["Location"] == "/admin/"
    return client
