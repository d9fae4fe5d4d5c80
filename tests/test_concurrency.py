"""50 clients hammering one extension leave one consistent state and a complete history
(DESIGN §9, "Concurrency"), through the production server."""

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.utils import timezone

from presence.models import (
    CALL_CLEARED,
    CALL_REFRESHED,
    CALL_REPLACED,
    CALL_STARTED,
    CLEARED,
    REPLACED,
    Call,
    PresenceEvent,
)
from presence.state import presence_state

pytestmark = pytest.mark.server

CLIENTS = 50
REQUESTS_PER_CLIENT = 20
NUMBERS = ["5550001", "5550002", "+4930123", "anonymous"]
CALL_IDS = ["a", "b", "c"]


def random_request(rng: random.Random) -> dict[str, str]:
    """One of: start or refresh (a few numbers, sometimes a call_id), clear (sometimes with
    a call_id), expires=0. Deadlines are long, so nothing expires during the run."""
    kind = rng.choice(["start", "start", "clear", "expires0"])
    params: dict[str, str] = {}
    if kind in ("start", "expires0"):
        params["number"] = rng.choice(NUMBERS)
        params["expires"] = "0" if kind == "expires0" else str(rng.choice([600, 3600]))
    if rng.random() < 0.5:
        params["call_id"] = rng.choice(CALL_IDS)
    return params


def hammer(url: str, creds: dict, seed: int, start: threading.Barrier) -> list[int]:
    rng = random.Random(seed)
    statuses = []
    with requests.Session() as session:
        start.wait(timeout=30)
        for _ in range(REQUESTS_PER_CLIENT):
            params = {**creds, **random_request(rng)}
            if rng.random() < 0.5:
                response = session.get(url, params=params, timeout=30)
            else:
                response = session.post(url, data=params, timeout=30)
            statuses.append(response.status_code)
    return statuses


def test_fifty_clients_on_one_extension_leave_a_consistent_history(web_server, extension):
    creds = {"domain": "abc.com", "user": "123", "password": extension.password}
    seed = random.randrange(2**32)
    start = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = pool.map(
            lambda n: hammer(f"{web_server.url}/call_state.htm", creds, seed + n, start),
            range(CLIENTS),
        )
        statuses = Counter(status for result in results for status in result)
    assert statuses == {200: CLIENTS * REQUESTS_PER_CLIENT}, f"seed {seed}"

    calls = list(Call.objects.filter(extension=extension))
    active = [call for call in calls if call.ended_at is None]
    assert len(active) <= 1
    assert all(call.end_reason for call in calls if call.ended_at is not None)

    events = list(PresenceEvent.objects.filter(extension=extension).order_by("id"))
    assert events, f"seed {seed}: no event recorded"
    previous = "available"
    for event in events:
        assert event.old_state == previous, f"seed {seed}: event {event} breaks the chain"
        previous = event.new_state
    extension.refresh_from_db()
    current = presence_state(
        enabled=extension.enabled,
        availability=extension.availability,
        call_expires_at=active[0].expires_at if active else None,
        now=timezone.now(),
    )
    assert events[-1].new_state == current

    reasons = Counter(event.reason for event in events)
    # The mix really exercised every transition.
    assert all(reasons[r] for r in (CALL_STARTED, CALL_REFRESHED, CALL_REPLACED, CALL_CLEARED))
    assert reasons[CALL_STARTED] + reasons[CALL_REPLACED] == len(calls)
    ends = Counter(call.end_reason for call in calls)
    assert reasons[CALL_CLEARED] == ends[CLEARED]
    assert reasons[CALL_REPLACED] == ends[REPLACED]
    # Every call is named by the event that started it.
    started = {e.call_id for e in events if e.reason in (CALL_STARTED, CALL_REPLACED)}
    assert started == {call.pk for call in calls}
