"""The one pure function that turns presence facts into the state everybody shows."""

from datetime import datetime

from domains.models import AVAILABLE, AWAY, DND

ON_CALL = "on_call"
OFFLINE = "offline"
# dnd, away and available are the extension's availability values themselves.
STATES = (ON_CALL, DND, AWAY, AVAILABLE, OFFLINE)
STATE_LABELS = {
    ON_CALL: "On the phone",
    DND: "Do not disturb",
    AWAY: "Away",
    AVAILABLE: "Available",
    OFFLINE: "Offline",
}


def call_is_live(expires_at: datetime | None, now: datetime) -> bool:
    """A call past its deadline is over, whether or not the sweep has ended it yet."""
    return expires_at is not None and expires_at > now


def presence_state(
    *, enabled: bool, availability: str, call_expires_at: datetime | None, now: datetime
) -> str:
    """The displayed state. Priority: offline (disabled) > on_call > dnd > away > available.

    `call_expires_at` is the deadline of the extension's active call, None without one.
    """
    if not enabled:
        return OFFLINE
    if call_is_live(call_expires_at, now):
        return ON_CALL
    if availability in (DND, AWAY):
        return availability
    return AVAILABLE
