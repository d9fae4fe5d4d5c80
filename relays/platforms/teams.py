"""Microsoft Teams: presence through Microsoft Graph, as an application (client credentials).

While an extension is on a call: setPresence Busy/InACall in our app's presence session
(sessionId = the app's client id) with a short expirationDuration, renewed by the dispatcher
while the call lasts, so a call we never hear the end of cannot leave anybody busy for long.
At the end: clearPresence of our session (404, no such session, counts as done); Teams then
shows whatever the user's own clients say. We never set Available: that would override the
user's own presence.

Graph: POST /v1.0/users/{id}/presence/setPresence and …/clearPresence, application permission
Presence.ReadWrite.All with admin consent. Tokens: POST {login}/{tenant}/oauth2/v2.0/token.
"""

import hashlib
import re
import threading
from datetime import datetime, timedelta
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from presence.state import ON_CALL
from relays import http
from relays.errors import DeliveryError
from relays.models import TEAMS, RelayMapping
from relays.platforms.base import Platform

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Graph accepts 5 to 240 minutes; the shortest keeps a missed end of call harmless.
SESSION = timedelta(minutes=5)
SESSION_DURATION = "PT5M"
RENEW_BEFORE = timedelta(minutes=2)
TOKEN_MARGIN = timedelta(minutes=2)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT = re.compile(r"^[A-Za-z0-9.-]+$")  # a GUID or a verified domain (contoso.com)

# Access tokens of this worker process, by relay and credentials.
_tokens: dict[tuple, tuple[str, datetime]] = {}
_tokens_lock = threading.Lock()


class Teams(Platform):
    kind = TEAMS
    coalesce = True
    needs_mapping = True
    config_fields = ("tenant_id", "client_id")
    secret_label = "Client secret"  # noqa: S105 - a label, not a secret

    @classmethod
    def clean_config(cls, config: dict) -> dict:
        tenant = (config.get("tenant_id") or "").strip()
        client = (config.get("client_id") or "").strip()
        errors = {}
        if not _TENANT.match(tenant):
            errors["tenant_id"] = "The directory (tenant) id of the app registration."
        if not _GUID.match(client):
            errors["client_id"] = "The application (client) id: a GUID."
        if errors:
            raise ValidationError(errors)
        return {"tenant_id": tenant, "client_id": client.lower()}

    @classmethod
    def clean_remote_user(cls, value: str) -> str:
        value = value.strip()
        if not (_GUID.match(value) or "@" in value):
            raise ValidationError("The user's Entra object id (a GUID) or user principal name.")
        return value

    @classmethod
    def wants(cls, old_state: str, new_state: str) -> bool:
        # Only the start and the end of being on the phone; renewals keep the session alive.
        return (old_state == ON_CALL) != (new_state == ON_CALL)

    def send(self, delivery, mapping: RelayMapping) -> int:
        user = quote(mapping.remote_user, safe="@")
        client_id = self.config["client_id"]
        if delivery.payload["state"] == ON_CALL:
            status = self._graph(
                f"/v1.0/users/{user}/presence/setPresence",
                {
                    "sessionId": client_id,
                    "availability": "Busy",
                    "activity": "InACall",
                    "expirationDuration": SESSION_DURATION,
                },
            )
            until = timezone.now() + SESSION
        else:
            status = self._graph(
                f"/v1.0/users/{user}/presence/clearPresence",
                {"sessionId": client_id},
                not_found_ok=True,
            )
            until = None
        RelayMapping.objects.filter(pk=mapping.pk).update(presence_until=until)
        return status

    def test(self, delivery) -> tuple[int | None, str]:
        """Get a token, then read the presence of a few mapped users (this changes nothing)."""
        self._token(fresh=True)
        checked, status = [], None
        for mapping in self.relay.mappings.all()[:3]:
            user = quote(mapping.remote_user, safe="@")
            reply = self._call("GET", f"/v1.0/users/{user}/presence", None)
            status = reply.status
            if not reply.ok:
                raise _graph_error(reply, f"user {mapping.remote_user}")
            checked.append(f"{mapping.remote_user}: {reply.json().get('availability', '?')}")
        if not checked:
            return 200, "Signed in to Microsoft Graph. No extension is mapped to a user yet."
        return status, "Signed in to Microsoft Graph. " + "; ".join(checked)

    # --- Graph -----------------------------------------------------------------------------

    def _graph(self, path: str, body: dict, not_found_ok: bool = False) -> int:
        reply = self._call("POST", path, body)
        if reply.ok or (reply.status == 404 and not_found_ok):
            return reply.status
        raise _graph_error(reply, "")

    def _call(self, method: str, path: str, body: dict | None) -> http.Reply:
        url = settings.RELAYS_TEAMS_GRAPH_URL + path
        reply = self._send(method, url, body, self._token())
        if reply.status == 401:
            # The token expired early or was revoked: one more try with a new one.
            reply = self._send(method, url, body, self._token(fresh=True))
        return reply

    @staticmethod
    def _send(method: str, url: str, body: dict | None, token: str) -> http.Reply:
        return http.request(
            method,
            url,
            guarded=False,
            headers={"Authorization": f"Bearer {token}"},
            json_body=body,
        )

    def _token(self, fresh: bool = False) -> str:
        key = (
            self.relay.pk,
            self.config["tenant_id"],
            self.config["client_id"],
            hashlib.sha256(self.relay.secret.encode()).hexdigest(),
        )
        now = timezone.now()
        with _tokens_lock:
            cached = _tokens.get(key)
        if cached and not fresh and cached[1] > now:
            return cached[0]
        tenant = quote(self.config["tenant_id"], safe="")
        reply = http.request(
            "POST",
            f"{settings.RELAYS_TEAMS_LOGIN_URL}/{tenant}/oauth2/v2.0/token",
            guarded=False,
            data={
                "client_id": self.config["client_id"],
                "client_secret": self.relay.secret,
                "scope": GRAPH_SCOPE,
                "grant_type": "client_credentials",
            },
        )
        if reply.status in (400, 401):
            answer = reply.json() if reply.body else {}
            description = str(answer.get("error_description", "")).split("\r\n")[0]
            raise DeliveryError(
                f"Microsoft sign-in refused: {answer.get('error', reply.status)}: {description}",
                status_code=reply.status,
                disable_relay=True,
            )
        if not reply.ok:
            raise DeliveryError(
                f"Microsoft sign-in: HTTP {reply.status}: {reply.snippet(200)}",
                status_code=reply.status,
                retry_after=reply.retry_after(),
            )
        answer = reply.json()
        token = answer.get("access_token")
        if not token:
            raise DeliveryError("Microsoft sign-in: no access_token in the answer")
        lifetime = timedelta(seconds=int(answer.get("expires_in", 3599)))
        with _tokens_lock:
            _tokens[key] = (token, now + lifetime - TOKEN_MARGIN)
        return token


def _graph_error(reply: http.Reply, what: str) -> DeliveryError:
    try:
        error = reply.json().get("error", {})
        detail = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    except (DeliveryError, AttributeError):
        detail = reply.snippet(200)
    prefix = f"Graph HTTP {reply.status}" + (f" for {what}" if what else "")
    message = f"{prefix}: {detail}" if detail else prefix
    status = reply.status
    if status == 403:
        return DeliveryError(
            f"{message} (grant the app Presence.ReadWrite.All with admin consent)",
            status_code=status,
            disable_relay=True,
        )
    if status == 404:
        return DeliveryError(
            f"{message} (no such user: check the extension's mapping)",
            status_code=status,
            permanent=True,
        )
    if status in (408, 429) or status >= 500 or status == 401:
        return DeliveryError(message, status_code=status, retry_after=reply.retry_after())
    return DeliveryError(message, status_code=status, permanent=True)
