"""Helpers of the REST API tests: JSON requests as one caller, and a key for every kind of
caller of abc.com (see the `people` fixture)."""

import json

from django.test import Client

from api.tokens import issue_domain_key, issue_user_token
from domains.models import Domain

BASE = "/api/v1/"


class Api:
    """JSON requests to /api/v1/ with one caller's key (none: anonymous)."""

    def __init__(self, client: Client, key: str | None = None):
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, path: str, body=None, **params):
        url = BASE + path
        if params:
            query = "&".join(f"{name}={value}" for name, value in params.items())
            url += f"?{query}"
        data = json.dumps(body) if body is not None else ""
        return self.client.generic(
            method, url, data, content_type="application/json", headers=self.headers
        )

    def get(self, path: str, **params):
        return self.request("GET", path, **params)

    def post(self, path: str, body=None):
        return self.request("POST", path, body)

    def put(self, path: str, body=None):
        return self.request("PUT", path, body)

    def patch(self, path: str, body=None):
        return self.request("PATCH", path, body)

    def delete(self, path: str, **params):
        return self.request("DELETE", path, **params)


def caller_keys(people: dict, domain: Domain, other_domain: Domain) -> dict[str, str | None]:
    """A key per kind of caller: people's tokens, abc.com's keys, and a key of other.example."""
    return {
        "owner": issue_user_token(people["owner"], "owner")[1],
        "member": issue_user_token(people["member"], "member")[1],
        "outsider": issue_user_token(people["outsider"], "outsider")[1],
        "key": issue_domain_key(domain, "integration")[1],
        "read_only_key": issue_domain_key(domain, "reports", read_only=True)[1],
        "read_only_owner": issue_user_token(people["owner"], "ro", read_only=True)[1],
        "foreign_key": issue_domain_key(other_domain, "theirs")[1],
        "anonymous": None,
    }
