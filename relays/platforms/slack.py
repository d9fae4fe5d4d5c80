"""Slack: the user's status says "On a call" while the extension is on one.

users.profile.set with status_text, status_emoji and status_expiration (the call's deadline,
so Slack clears the status itself if we never hear the end of the call). At the end we reset
the status only if it is still the one we set: a status the user chose meanwhile stays.

Setting another member's profile takes a user token (xoxp-…) of a workspace admin or owner
with the scopes users.profile:write and users.profile:read (docs/relays.md).
"""

import json
import re
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError

from presence.state import ON_CALL
from relays import http
from relays.errors import DeliveryError
from relays.models import SLACK, RelayMapping
from relays.platforms.base import Platform

DEFAULT_TEXT = "On a call"
DEFAULT_EMOJI = ":telephone_receiver:"
REQUIRED_SCOPES = {"users.profile:write", "users.profile:read"}

_MEMBER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_EMOJI = re.compile(r"^:[a-z0-9_+'-]+:$")

# Errors that no retry fixes and that concern the whole relay: its token or its rights.
_RELAY_ERRORS = {
    "not_authed",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "not_allowed_token_type",
    "team_access_not_granted",
    "ekm_access_denied",
    "access_denied",
    "two_factor_setup_required",
}
# Slack's own trouble: try again later.
_RETRY_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


class Slack(Platform):
    kind = SLACK
    coalesce = True
    needs_mapping = True
    config_fields = ("status_text", "status_emoji")
    secret_label = "User token (xoxp-…)"  # noqa: S105 - a label, not a secret

    @classmethod
    def clean_config(cls, config: dict) -> dict:
        text = (config.get("status_text") or "").strip() or DEFAULT_TEXT
        emoji = (config.get("status_emoji") or "").strip() or DEFAULT_EMOJI
        errors = {}
        if len(text) > 100:
            errors["status_text"] = "Slack allows at most 100 characters."
        if not _EMOJI.match(emoji):
            errors["status_emoji"] = "An emoji code like :telephone_receiver:."
        if errors:
            raise ValidationError(errors)
        return {"status_text": text, "status_emoji": emoji}

    @classmethod
    def clean_remote_user(cls, value: str) -> str:
        value = value.strip().upper()
        if not _MEMBER_ID.match(value):
            raise ValidationError("The Slack member id, e.g. U0123ABCD (profile → ⋮ → Copy).")
        return value

    @classmethod
    def wants(cls, old_state: str, new_state: str) -> bool:
        # A refresh moves the call's deadline, and with it the status' expiration.
        return ON_CALL in (old_state, new_state)

    def send(self, delivery, mapping: RelayMapping) -> int:
        if delivery.payload["state"] == ON_CALL:
            return self._set_status(delivery.payload, mapping)
        return self._reset_status(mapping)

    def test(self, delivery) -> tuple[int, str]:
        """auth.test: the token works and carries the scopes we need (this changes nothing)."""
        reply, answer = self._api("POST", "auth.test")
        scopes = {s.strip() for s in reply.headers.get("x-oauth-scopes", "").split(",")}
        missing = REQUIRED_SCOPES - scopes
        if missing:
            raise DeliveryError(
                f"The token lacks the scope(s) {', '.join(sorted(missing))}",
                status_code=reply.status,
            )
        return reply.status, f"Signed in to {answer.get('team')} as {answer.get('user')}."

    def _set_status(self, payload: dict, mapping: RelayMapping) -> int:
        expires_at = datetime.fromisoformat(payload["call"]["expires_at"])
        # Noted before the call: if we die after Slack took it, the end of the call still
        # resets it (only if it is still ours, see _reset_status).
        RelayMapping.objects.filter(pk=mapping.pk).update(status_set=True)
        reply, _ = self._api(
            "POST",
            "users.profile.set",
            json_body={
                "user": mapping.remote_user,
                "profile": {
                    "status_text": self.config["status_text"],
                    "status_emoji": self.config["status_emoji"],
                    "status_expiration": int(expires_at.timestamp()),
                },
            },
        )
        return reply.status

    def _reset_status(self, mapping: RelayMapping) -> int | None:
        if not mapping.status_set:
            return None  # we set nothing: nothing of ours to reset
        reply, answer = self._api("GET", "users.profile.get", params={"user": mapping.remote_user})
        profile = answer.get("profile") or {}
        ours = (self.config["status_text"], self.config["status_emoji"])
        if (profile.get("status_text"), profile.get("status_emoji")) == ours:
            reply, _ = self._api(
                "POST",
                "users.profile.set",
                json_body={
                    "user": mapping.remote_user,
                    "profile": {"status_text": "", "status_emoji": "", "status_expiration": 0},
                },
            )
        RelayMapping.objects.filter(pk=mapping.pk).update(status_set=False)
        return reply.status

    def _api(
        self, method: str, name: str, json_body: dict | None = None, params: dict | None = None
    ) -> tuple[http.Reply, dict]:
        headers = {"Authorization": f"Bearer {self.relay.secret}"}
        data = None
        if json_body is not None:
            # Slack wants the charset named for JSON bodies.
            headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(json_body).encode()
        reply = http.request(
            method,
            f"{settings.RELAYS_SLACK_API_URL}/{name}",
            guarded=False,
            headers=headers,
            data=data,
            params=params,
        )
        if reply.status == 429 or reply.status >= 500:
            raise DeliveryError(
                f"Slack {name}: HTTP {reply.status}",
                status_code=reply.status,
                retry_after=reply.retry_after(),
            )
        if not reply.ok:
            raise DeliveryError(
                f"Slack {name}: HTTP {reply.status}: {reply.snippet(200)}",
                status_code=reply.status,
                permanent=True,
            )
        answer = reply.json()
        if answer.get("ok"):
            return reply, answer
        error = str(answer.get("error", "unknown_error"))
        message = f"Slack {name}: {error}"
        if error in _RELAY_ERRORS:
            raise DeliveryError(message, status_code=reply.status, disable_relay=True)
        if error in _RETRY_ERRORS:
            raise DeliveryError(message, status_code=reply.status, retry_after=reply.retry_after())
        raise DeliveryError(message, status_code=reply.status, permanent=True)
