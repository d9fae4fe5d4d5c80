"""Webhooks: every event POSTed as JSON, signed per Standard Webhooks (standardwebhooks.com).

Headers: webhook-id (the delivery's id, the same on every retry: receivers deduplicate on it),
webhook-timestamp (seconds since the epoch, of this attempt) and webhook-signature
("v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<body>'>" under the relay's whsec_ secret).
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from relays import http
from relays.errors import DeliveryError
from relays.models import WEBHOOK
from relays.platforms.base import Platform

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret

# Answers that mean the relay itself is wrong (URL, secret, the receiver turned it off):
# retrying cannot help until an administrator changes something.
_RELAY_BROKEN = {
    401: "the receiver refused our signature or credentials (check the signing secret)",
    403: "the receiver refused our signature or credentials (check the signing secret)",
    404: "no receiver at this URL",
    405: "the URL does not accept POST",
    410: "the receiver says this webhook is gone",
}
# Answers worth trying again later.
_RETRYABLE = {408, 425, 429}


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def encode(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Webhook(Platform):
    kind = WEBHOOK
    config_fields = ("url",)

    @classmethod
    def clean_config(cls, config: dict) -> dict:
        url = (config.get("url") or "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError({"url": "Enter an http:// or https:// URL."})
        if parts.username or parts.password:
            raise ValidationError({"url": "No credentials in the URL: requests are signed."})
        return {"url": url}

    def send(self, delivery, mapping) -> int:
        return self._post(delivery.webhook_id, delivery.payload)

    def test(self, delivery) -> tuple[int, str]:
        status = self._post(delivery.webhook_id, delivery.payload)
        return status, f"The receiver answered HTTP {status}."

    def _post(self, msg_id: str, payload: dict) -> int:
        body = encode(payload)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self.relay.secret, msg_id, timestamp, body),
        }
        reply = http.request("POST", self.config["url"], guarded=True, headers=headers, data=body)
        if reply.ok:
            return reply.status
        raise _error(reply)


def _error(reply: http.Reply) -> DeliveryError:
    message = f"HTTP {reply.status}"
    if snippet := reply.snippet(200):
        message += f": {snippet}"
    status = reply.status
    if 300 <= status < 400:
        return DeliveryError(
            f"{message} (redirects are not followed: enter the final URL)",
            status_code=status,
            disable_relay=True,
        )
    if status in _RELAY_BROKEN:
        return DeliveryError(
            f"{message} ({_RELAY_BROKEN[status]})", status_code=status, disable_relay=True
        )
    if status in _RETRYABLE or status >= 500:
        return DeliveryError(message, status_code=status, retry_after=reply.retry_after())
    # Any other 4xx: the receiver rejects this message; sending it again will not change that.
    return DeliveryError(message, status_code=status, permanent=True)
