"""SIP desk-phone lamps (BLF): presence published to Kamailio's presence server (docs/sip.md).

We never speak SIP ourselves: each state goes to Kamailio's `pua.publish` over its HTTP
JSON-RPC interface, and Kamailio NOTIFYs the phones subscribed to the extension.

- `dialog` (application/dialog-info+xml, RFC 4235): while the extension is on a call (and, if
  the relay says so, while it is on do-not-disturb) one dialog in state `confirmed`, with its
  own publication id per call. At the end: the same dialog as `terminated`, then the
  publication removed (expires 0). Kamailio's quirks decide that order: removing a confirmed
  dialog NOTIFYs it as still confirmed, and a terminated dialog cannot be updated again.
- `presence` (application/pidf+xml, RFC 3863 + RPID): `on-the-phone` while lit, for phones
  whose keys watch presence instead of dialogs; `Available` at the end.

A publication's expires follows the call's deadline (capped at MAX_EXPIRES and re-published
before it runs out: `renew_lamps`). Kamailio keeps publications in memory only, so
`refresh_lamps` (the `sip_refresh` command and a periodic task) re-publishes every lit lamp.

The remote number is in the dialog only when the domain opted in (it is in the payload only
then, relays/payload.py). The relay coalesces: a lamp needs the latest state, not the history.
"""

import itertools
import math
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from domains.models import DND
from presence.models import Call, PresenceEvent
from presence.state import ON_CALL
from relays import http
from relays.errors import DeliveryError
from relays.models import PENDING, SIP, Delivery, Relay, RelayMapping, SipLamp
from relays.payload import event_payload
from relays.platforms.base import Platform

DIALOG = ("dialog", "application/dialog-info+xml")
PIDF = ("presence", "application/pidf+xml")
MAX_EXPIRES = 3600  # seconds one publication lasts at most; renewed while the call goes on
MIN_EXPIRES = 5
DND_EXPIRES = 3600
RENEW_BEFORE = timedelta(seconds=120)
RENEW_INTERVAL = 30  # seconds between two renewal runs (pbx/celery.py)
REFRESH_INTERVAL = 300  # seconds between two full refreshes (Kamailio restarts)
IDLE_EXPIRES = 60  # the terminated dialog and the Available note, until they are removed
DND_KEY = "dnd"

_rpc_ids = itertools.count(1)


class Sip(Platform):
    kind = SIP
    coalesce = True
    needs_mapping = False  # a mapping only overrides the presentity
    config_fields = ("rpc_url", "sip_domain", "dnd_lights_lamp", "publish_presence")

    @classmethod
    def clean_config(cls, config: dict) -> dict:
        url = (config.get("rpc_url") or "").strip()
        sip_domain = (config.get("sip_domain") or "").strip().lower()
        errors = {}
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors["rpc_url"] = "Kamailio's JSON-RPC address, e.g. http://10.0.0.5:5071/RPC."
        elif parts.username or parts.password:
            errors["rpc_url"] = "No credentials in the URL."
        if not sip_domain or any(c in sip_domain for c in "@:;<> /"):
            errors["sip_domain"] = "The SIP domain of the presentities, e.g. pbx.example.com."
        if errors:
            raise ValidationError(errors)
        return {
            "rpc_url": url,
            "sip_domain": sip_domain,
            "dnd_lights_lamp": bool(config.get("dnd_lights_lamp")),
            "publish_presence": bool(config.get("publish_presence", True)),
        }

    @classmethod
    def clean_remote_user(cls, value: str) -> str:
        value = value.strip()
        user, _, host = value.removeprefix("sip:").partition("@")
        if not value.startswith("sip:") or not user or not host or any(c in value for c in "<> "):
            raise ValidationError("A SIP URI, e.g. sip:123@pbx.example.com.")
        return value

    @classmethod
    def wants(cls, old_state: str, new_state: str) -> bool:
        # Refreshes move the call's deadline (and so the publication's expires).
        return bool({ON_CALL, DND} & {old_state, new_state})

    # --- delivering ---------------------------------------------------------------------------

    def send(self, delivery, mapping) -> int | None:
        lamp, _ = SipLamp.objects.get_or_create(
            relay=self.relay, extension_id=delivery.extension_id
        )
        presentity = self.presentity(delivery.extension_id, delivery.payload)
        wanted = self._wanted(delivery)
        status = None
        if lamp.dialog_id and (wanted is None or wanted[0] != lamp.lit_key):
            status = self._end(lamp, presentity)
        if wanted is not None:
            status = self._light(lamp, presentity, delivery.payload, *wanted)
        return status

    def test(self, delivery) -> tuple[int | None, str]:
        """core.version: Kamailio answers its RPC (this publishes nothing)."""
        reply, answer = self._rpc("core.version", [])
        return reply.status, f"Kamailio answered: {answer.get('result')}"

    def presentity(self, extension_id: int, payload: dict) -> str:
        override = (
            RelayMapping.objects.filter(relay=self.relay, extension_id=extension_id)
            .values_list("remote_user", flat=True)
            .first()
        )
        return override or f"sip:{payload['extension']['number']}@{self.config['sip_domain']}"

    def _wanted(self, delivery) -> tuple[str, int, str] | None:
        """(what lights the lamp, expires in seconds, the state's note) or None: dark."""
        payload = delivery.payload
        now = timezone.now()
        if payload.get("state") == ON_CALL and payload.get("call"):
            remaining = datetime.fromisoformat(payload["call"]["expires_at"]) - now
            if remaining.total_seconds() < 1:
                return None  # over already; the expiry event follows
            call_id = delivery.event.call_id if delivery.event_id else None
            key = f"call-{call_id or payload['call']['started_at']}"
            expires = max(MIN_EXPIRES, min(MAX_EXPIRES, math.ceil(remaining.total_seconds())))
            return key, expires, "On the phone"
        if payload.get("state") == DND and self.config.get("dnd_lights_lamp"):
            return DND_KEY, DND_EXPIRES, "Do not disturb"
        return None

    def _light(self, lamp: SipLamp, presentity: str, payload: dict, key, expires, note) -> int:
        if lamp.lit_key != key:
            # Noted before publishing: a retry then re-publishes the same dialog, never a
            # second one.
            lamp.sequence += 1
            lamp.dialog_id = f"pbx-{self.relay.pk}-{lamp.extension_id}-{lamp.sequence}"
            lamp.lit_key = key
            lamp.terminated = False
            lamp.save(update_fields=["sequence", "dialog_id", "lit_key", "terminated"])
        number = (payload.get("call") or {}).get("number") if key != DND_KEY else None
        body = dialog_info(presentity, lamp.dialog_id, "confirmed", number, self._domain())
        reply = self._publish(presentity, expires, DIALOG, lamp.dialog_id, body)
        if self.config.get("publish_presence", True):
            activity = "on-the-phone" if key != DND_KEY else "busy"
            body = pidf(presentity, activity, note)
            reply = self._publish(presentity, expires, PIDF, self._pidf_id(lamp), body)
        lamp.published_until = timezone.now() + timedelta(seconds=expires)
        lamp.save(update_fields=["published_until"])
        return reply.status

    def _end(self, lamp: SipLamp, presentity: str) -> int:
        """terminated, then expires 0; each step noted, so a retry goes on where it stopped."""
        if not lamp.terminated:
            body = dialog_info(presentity, lamp.dialog_id, "terminated", None, self._domain())
            self._publish(presentity, IDLE_EXPIRES, DIALOG, lamp.dialog_id, body)
            lamp.terminated = True
            lamp.save(update_fields=["terminated"])
        reply = self._remove(presentity, DIALOG, lamp.dialog_id)
        if self.config.get("publish_presence", True):
            body = pidf(presentity, None, "Available")
            reply = self._publish(presentity, IDLE_EXPIRES, PIDF, self._pidf_id(lamp), body)
        lamp.dialog_id = ""
        lamp.lit_key = ""
        lamp.terminated = False
        lamp.published_until = None
        lamp.save(update_fields=["dialog_id", "lit_key", "terminated", "published_until"])
        return reply.status if reply else 200

    def _pidf_id(self, lamp: SipLamp) -> str:
        return f"pbx-{self.relay.pk}-{lamp.extension_id}-pidf"

    def _domain(self) -> str:
        return self.config["sip_domain"]

    # --- Kamailio's RPC ---------------------------------------------------------------------

    def _publish(self, presentity, expires: int, package, publication_id, body) -> http.Reply:
        event, content_type = package
        params = [presentity, str(expires), event, content_type, publication_id]
        reply, _ = self._rpc("pua.publish", [*params, ".", ".", ".", body or "."])
        return reply

    def _remove(self, presentity: str, package, publication_id: str) -> http.Reply | None:
        """expires 0. pua never answers that for a publication it does not know (after a
        Kamailio restart): a timeout here means there is nothing left to remove."""
        try:
            return self._publish(presentity, 0, package, publication_id, None)
        except DeliveryError as error:
            if str(error).startswith("no answer within"):
                return None
            raise

    def _rpc(self, method: str, params: list) -> tuple[http.Reply, dict]:
        body = {"jsonrpc": "2.0", "id": next(_rpc_ids), "method": method, "params": params}
        reply = http.request("POST", self.config["rpc_url"], guarded=True, json_body=body)
        answer = {}
        if reply.body:
            try:
                answer = reply.json()
            except DeliveryError:
                answer = {}
        error = answer.get("error") if isinstance(answer, dict) else None
        if reply.ok and not error:
            return reply, answer
        detail = error.get("message", error) if isinstance(error, dict) else reply.snippet(200)
        message = f"Kamailio {method}: HTTP {reply.status}: {detail}"
        if reply.status in (401, 403, 404, 405):
            # Not Kamailio's RPC at this address, or not allowed: an administrator must look.
            raise DeliveryError(message, status_code=reply.status, disable_relay=True)
        if reply.status == 400:
            raise DeliveryError(message, status_code=reply.status, permanent=True)
        raise DeliveryError(message, status_code=reply.status, retry_after=reply.retry_after())


def dialog_info(entity: str, dialog_id: str, state: str, number: str | None, domain: str) -> str:
    """RFC 4235 dialog-info with one dialog; the remote party only when it may be shown."""
    remote = ""
    if number:
        uri = f"sip:{number}@{domain}"
        remote = (
            f"<remote><identity display={quoteattr(number)}>{escape(uri)}</identity>"
            f"<target uri={quoteattr(uri)}/></remote>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" '
        f"entity={quoteattr(entity)}>"
        f"<dialog id={quoteattr(dialog_id)}><state>{state}</state>"
        f"<local><identity>{escape(entity)}</identity></local>{remote}</dialog>"
        "</dialog-info>"
    )


def pidf(entity: str, activity: str | None, note: str) -> str:
    """RFC 3863 PIDF with an RPID activity (RFC 4480): on-the-phone, busy, or none."""
    activities = f"<rpid:activities><rpid:{activity}/></rpid:activities>" if activity else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
        'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" '
        f"entity={quoteattr(entity)}>"
        '<tuple id="pbx"><status><basic>open</basic></status>'
        f"<note>{escape(note)}</note></tuple>"
        f'<dm:person id="p">{activities}<dm:note>{escape(note)}</dm:note></dm:person>'
        f"<note>{escape(note)}</note>"
        "</presence>"
    )


# --- renewal and refresh ----------------------------------------------------------------------


def renew_lamps(now: datetime | None = None) -> int:
    """Queue a re-publication of lit lamps whose publications run out soon (long calls)."""
    now = now or timezone.now()
    due = SipLamp.objects.filter(
        relay__kind=SIP,
        relay__enabled=True,
        published_until__isnull=False,
        published_until__lte=now + RENEW_BEFORE,
    ).exclude(dialog_id="")
    return _queue(due.values_list("relay_id", "extension_id")[:1000])


def refresh_lamps(relays=None, now: datetime | None = None) -> int:
    """Queue a re-publication of every lamp that should be lit, and of every lamp we think is
    lit (to darken it if it should not be): Kamailio forgets all of it when it restarts."""
    now = now or timezone.now()
    relays = relays if relays is not None else Relay.objects.filter(kind=SIP, enabled=True)
    pairs: list[tuple[int, int]] = []
    for relay in relays:
        live = Call.objects.filter(
            extension__domain_id=relay.domain_id, ended_at__isnull=True, expires_at__gt=now
        ).values_list("extension_id", flat=True)
        pairs += [(relay.pk, extension_id) for extension_id in live]
        if relay.config.get("dnd_lights_lamp"):
            dnd = relay.domain.extensions.filter(enabled=True, availability=DND)
            pairs += [(relay.pk, extension_id) for extension_id in dnd.values_list("pk", flat=True)]
        lit = relay.lamps.exclude(dialog_id="").values_list("extension_id", flat=True)
        pairs += [(relay.pk, extension_id) for extension_id in lit]
    return _queue(sorted(set(pairs)))


def _queue(pairs) -> int:
    """One renewal delivery per (relay, extension) with the extension's latest event, unless
    a delivery is waiting anyway (it publishes the latest state too)."""
    queued = 0
    now = timezone.now()
    for relay_id, extension_id in pairs:
        with transaction.atomic():
            relay = Relay.objects.select_for_update().select_related("domain").get(pk=relay_id)
            waiting = Delivery.objects.filter(
                relay=relay, extension_id=extension_id, status=PENDING
            ).exists()
            latest = (
                PresenceEvent.objects.filter(extension_id=extension_id, id__lte=relay.cursor)
                .select_related("extension", "call")
                .order_by("-id")
                .first()
            )
            if waiting or latest is None:
                continue
            Delivery.objects.create(
                relay=relay,
                extension_id=extension_id,
                event=latest,
                payload=event_payload(latest, relay.domain),
                renewal=True,
                next_attempt_at=now,
                created_at=now,
            )
            SipLamp.objects.filter(relay=relay, extension_id=extension_id).update(
                published_until=None
            )
            queued += 1
    return queued
