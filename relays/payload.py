"""What a relay is told about a presence event: one platform-neutral dictionary.

Built when the dispatcher queues the delivery and stored with it, so every retry and
redelivery carries the same content. Webhooks send it as it is; Teams and Slack read the state
and the call's deadline from it. The remote number is in it only when the domain opted in to
showing numbers (Domain.show_numbers), and never for a withheld number.
"""

from datetime import datetime

from django.utils import timezone

from domains.models import Domain
from presence.models import PresenceEvent
from presence.state import ON_CALL

PRESENCE_CHANGED = "presence.changed"
PRESENCE_TEST = "presence.test"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def event_payload(event: PresenceEvent, domain: Domain) -> dict:
    """The state after `event`. Use select_related("extension", "call") on the event."""
    extension = event.extension
    call = None
    if event.new_state == ON_CALL and event.call is not None:
        call = {
            "started_at": _iso(event.call.started_at),
            # The deadline as of this event: a later refresh moves it, with its own event.
            "expires_at": _iso(event.expires_at or event.call.expires_at),
            "withheld": event.call.withheld,
        }
        if domain.show_numbers and not event.call.withheld:
            call["number"] = event.call.number
    return {
        "type": PRESENCE_CHANGED,
        "event_id": event.id,
        "domain": domain.name,
        "extension": {
            "number": extension.number,
            "name": extension.name,
            "department": extension.department,
        },
        "state": event.new_state,
        "previous_state": event.old_state,
        "reason": event.reason,
        "call": call,
        # Availability and note as they were when the delivery was queued, a moment after
        # the event (events record states, not these facts).
        "availability": extension.availability,
        "note": extension.note,
        "timestamp": _iso(event.created_at),
    }


def test_payload(domain: Domain) -> dict:
    return {
        "type": PRESENCE_TEST,
        "event_id": None,
        "domain": domain.name,
        "timestamp": _iso(timezone.now()),
    }
