from datetime import UTC, datetime, timedelta

import pytest

from presence.state import presence_state

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIVE = NOW + timedelta(seconds=30)
PAST = NOW - timedelta(seconds=1)


@pytest.mark.parametrize(
    ("enabled", "availability", "call_expires_at", "expected"),
    [
        (True, "available", None, "available"),
        (True, "away", None, "away"),
        (True, "dnd", None, "dnd"),
        (True, "available", LIVE, "on_call"),
        (True, "away", LIVE, "on_call"),
        (True, "dnd", LIVE, "on_call"),
        # A call past its deadline is not shown, even before the sweep ended it.
        (True, "available", PAST, "available"),
        (True, "dnd", PAST, "dnd"),
        (True, "available", NOW, "available"),
        (False, "available", None, "offline"),
        (False, "dnd", LIVE, "offline"),
    ],
)
def test_presence_state_priority(enabled, availability, call_expires_at, expected):
    state = presence_state(
        enabled=enabled, availability=availability, call_expires_at=call_expires_at, now=NOW
    )
    assert state == expected
