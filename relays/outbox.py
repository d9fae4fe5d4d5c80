"""The dispatcher: turns presence events into deliveries and nudges the delivery tasks.

The PresenceEvent table is the outbox and each relay keeps a cursor, the last event it has
turned into deliveries. Cursor and deliveries move in one transaction, so an event becomes a
delivery exactly once whatever crashes when. Deliveries are rows, not tasks: a broker that is
down when an event commits, a task lost on the way or a worker killed mid-send only delay a
delivery, because the dispatcher enqueues every due delivery again (relays/sending.py).

Event ids are handed out at insert and become visible at commit, so a cursor could pass an id
whose transaction commits a moment later. The dispatcher therefore reads the whole event table
in id order (one reader at a time, under a lease) and remembers each missing id for a while
(OutboxState.gaps). Relays skip those ids; when one shows up, it is delivered then, to the
relays that already passed it. That is safe for order: the presence service writes an
extension's events under that extension's row lock, so an extension's events become visible in
id order, and a late event is never older than one already delivered for the same extension.
"""

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Min, OuterRef, Q, Subquery
from django.utils import timezone

from presence.models import Call, PresenceEvent
from presence.state import ON_CALL
from relays.models import (
    PENDING,
    TEAMS,
    Delivery,
    OutboxState,
    Relay,
    RelayMapping,
    latest_event_id,
)
from relays.payload import event_payload
from relays.platforms import PLATFORMS
from relays.platforms.teams import RENEW_BEFORE
from relays.sending import delivery_lease

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=30)
RUN_BUDGET = 15.0  # seconds of relay work per run, well inside the lease
SCAN_LIMIT = 10_000  # event ids read per run
RELAY_BATCH = 2_000  # events one relay takes per run (a relay catching up)
GAP_PATIENCE = 600.0  # seconds: an id missing this long was rolled back
MAX_GAPS = 10_000
ENQUEUE_LIMIT = 2_000
PRUNE_BATCH = 500

Enqueue = Callable[[int, int], None]


@dataclass
class DispatchResult:
    ran: bool = False
    queued: int = 0  # deliveries created or brought up to date
    enqueued: int = 0  # delivery tasks sent to the broker


def dispatch(enqueue: Enqueue) -> DispatchResult:
    """One dispatcher run. Steps:

    1. take the lease (another dispatcher running: return at once);
    2. read new event ids, note missing ones, queue events that filled a gap;
    3. for each relay with new events: deliveries for them, cursor moved, in one transaction;
    4. Teams: renew the presence of extensions whose call is still going;
    5. enqueue a delivery task for each (relay, extension) whose oldest delivery is due;
    6. delete a batch of deliveries past RELAYS_DELIVERY_RETENTION_DAYS.
    """
    result = DispatchResult()
    lease = _take_lease(timezone.now())
    if lease is None:
        return result
    result.ran = True
    try:
        started = time.monotonic()
        prev, horizon, gaps, touched, late = _read_events(lease, timezone.now())
        result.queued += late
        for relay_id in _relays_to_read(prev, horizon, touched):
            if time.monotonic() - started > RUN_BUDGET:
                break  # the rest next run; the lease must not run out under us
            result.queued += _read_relay(relay_id, horizon, gaps, timezone.now())
        result.queued += _renew_teams_presence(timezone.now())
        result.enqueued = _enqueue_due(enqueue, timezone.now())
        _prune(timezone.now())
    finally:
        OutboxState.objects.filter(lease=lease).update(lease=None, lease_until=None)
    return result


def _take_lease(now: datetime) -> uuid.UUID | None:
    if not OutboxState.objects.filter(pk=1).exists():
        # The very first run reads from the oldest cursor of an enabled relay (not further
        # back than one scan), so an event still committing below the latest id is waited
        # for. Another dispatcher may create the row at the same moment.
        latest = latest_event_id()
        oldest = Relay.objects.filter(enabled=True).aggregate(oldest=Min("cursor"))["oldest"]
        horizon = max(min(latest, latest if oldest is None else oldest), latest - SCAN_LIMIT)
        with contextlib.suppress(IntegrityError), transaction.atomic():
            OutboxState.objects.create(pk=1, horizon=horizon)
    lease = uuid.uuid4()
    taken = (
        OutboxState.objects.filter(pk=1)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .update(lease=lease, lease_until=now + LEASE)
    )
    return lease if taken else None


@transaction.atomic
def _read_events(lease: uuid.UUID, now: datetime):
    """Move the horizon over the event ids committed since the last run (step 2).

    Returns (previous horizon, new horizon, ids still missing, domains with new events,
    deliveries queued for late events).
    """
    state = OutboxState.objects.select_for_update().get(pk=1)
    if state.lease != lease:
        raise RuntimeError("dispatcher lease lost")
    prev = state.horizon
    stamp = now.timestamp()
    gaps = {int(key): seen for key, seen in state.gaps.items()}
    queued = 0
    if gaps:
        arrived = list(
            PresenceEvent.objects.filter(id__in=list(gaps))
            .select_related("extension", "call")
            .order_by("id")
        )
        for event in arrived:
            del gaps[event.id]
            queued += _queue_late_event(event, now)
    rows = list(
        PresenceEvent.objects.filter(id__gt=prev)
        .order_by("id")
        .values_list("id", "domain_id")[:SCAN_LIMIT]
    )
    expected = prev + 1
    for event_id, _ in rows:
        # A jump of more than MAX_GAPS ids (a sequence reset) is not waited for.
        for missing in range(max(expected, event_id - MAX_GAPS), event_id):
            gaps.setdefault(missing, stamp)
        expected = event_id + 1
    gaps = {key: seen for key, seen in gaps.items() if stamp - seen < GAP_PATIENCE}
    if len(gaps) > MAX_GAPS:
        gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
    state.horizon = rows[-1][0] if rows else prev
    state.gaps = {str(key): seen for key, seen in sorted(gaps.items())}
    state.save(update_fields=["horizon", "gaps"])
    touched = {domain_id for _, domain_id in rows}
    return prev, state.horizon, set(gaps), touched, queued


def _queue_late_event(event: PresenceEvent, now: datetime) -> int:
    """An event that committed after relays read past its id: queue it for those relays.

    Relays whose cursor is below it read it in step 3 like any other event.
    """
    queued = 0
    relays = Relay.objects.filter(domain_id=event.domain_id, cursor__gte=event.id)
    for relay in relays.select_related("domain"):
        queued += _queue_events(relay, [event], now)
    return queued


def _relays_to_read(prev: int, horizon: int, touched: set[int]) -> list[int]:
    """Relays with events to read. Those of quiet domains just move their cursor."""
    behind = Relay.objects.filter(enabled=True, cursor__lt=horizon)
    behind.filter(cursor__gte=prev).exclude(domain_id__in=touched).update(cursor=horizon)
    return list(
        behind.filter(Q(domain_id__in=touched) | Q(cursor__lt=prev))
        .order_by("cursor")
        .values_list("pk", flat=True)
    )


@transaction.atomic
def _read_relay(relay_id: int, horizon: int, gaps: set[int], now: datetime) -> int:
    """Queue one relay's events up to the horizon and move its cursor (step 3)."""
    relay = Relay.objects.select_for_update().select_related("domain").get(pk=relay_id)
    if not relay.enabled or relay.cursor >= horizon:
        return 0
    skipped = [gap for gap in gaps if relay.cursor < gap <= horizon]
    events = list(
        PresenceEvent.objects.filter(
            domain_id=relay.domain_id, id__gt=relay.cursor, id__lte=horizon
        )
        .exclude(id__in=skipped)
        .select_related("extension", "call")
        .order_by("id")[:RELAY_BATCH]
    )
    cursor = events[-1].id if len(events) == RELAY_BATCH else horizon
    queued = _queue_events(relay, events, now)
    Relay.objects.filter(pk=relay.pk).update(cursor=cursor)
    return queued


def _queue_events(relay: Relay, events: list[PresenceEvent], now: datetime) -> int:
    """Deliveries for the events the relay's platform wants. Webhooks: one per event.
    Coalescing platforms: one per extension, a waiting one taking the newest event."""
    platform = PLATFORMS[relay.kind]
    wanted = [e for e in events if platform.wants(e.old_state, e.new_state)]
    if platform.needs_mapping and wanted:
        mapped = set(
            relay.mappings.filter(extension_id__in={e.extension_id for e in wanted}).values_list(
                "extension_id", flat=True
            )
        )
        wanted = [e for e in wanted if e.extension_id in mapped]
    if not platform.coalesce:
        Delivery.objects.bulk_create(_delivery(relay, event, now) for event in wanted)
        return len(wanted)
    latest: dict[int, tuple[PresenceEvent, int]] = {}
    for event in wanted:
        _, count = latest.get(event.extension_id, (None, 0))
        latest[event.extension_id] = (event, count + 1)
    for extension_id, (event, count) in latest.items():
        if not _coalesce(relay, extension_id, event, count, now):
            delivery = _delivery(relay, event, now)
            delivery.coalesced = count
            delivery.save()
    return len(latest)


def _coalesce(relay: Relay, extension_id: int, event, count: int, now: datetime) -> bool:
    """Give the extension's last waiting delivery the newer event; False if there is none.

    A delivery being sent right now (claimed) is left alone: the new state queues behind it.
    One waiting for a retry takes the new event and keeps its retry time (Retry-After).
    """
    last = (
        Delivery.objects.filter(relay=relay, extension_id=extension_id, status=PENDING)
        .order_by("-id")
        .values_list("pk", flat=True)
        .first()
    )
    if last is None:
        return False
    return bool(
        Delivery.objects.filter(pk=last, status=PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(
            event=event,
            payload=event_payload(event, relay.domain),
            coalesced=F("coalesced") + count,
            renewal=False,
            claim=None,
            claimed_until=None,
        )
    )


def _delivery(relay: Relay, event: PresenceEvent, now: datetime) -> Delivery:
    return Delivery(
        relay=relay,
        extension_id=event.extension_id,
        event=event,
        payload=event_payload(event, relay.domain),
        next_attempt_at=now,
        created_at=now,
    )


def _renew_teams_presence(now: datetime) -> int:
    """Queue a setPresence again for mapped extensions still on a call whose Teams session
    runs out soon (step 4)."""
    due = RelayMapping.objects.filter(
        relay__kind=TEAMS, relay__enabled=True, presence_until__lte=now + RENEW_BEFORE
    ).select_related("relay__domain")
    queued = 0
    for mapping in due[:500]:
        relay = mapping.relay
        # No renewal of this session again unless this one goes through.
        RelayMapping.objects.filter(pk=mapping.pk).update(presence_until=None)
        live = Call.objects.filter(
            extension_id=mapping.extension_id, ended_at__isnull=True, expires_at__gt=now
        ).exists()
        waiting = Delivery.objects.filter(
            relay=relay, extension_id=mapping.extension_id, status=PENDING
        ).exists()
        latest = (
            PresenceEvent.objects.filter(extension_id=mapping.extension_id, id__lte=relay.cursor)
            .select_related("extension", "call")
            .order_by("-id")
            .first()
        )
        if not live or waiting or latest is None or latest.new_state != ON_CALL:
            continue  # over, or a newer delivery will set the state anyway
        delivery = _delivery(relay, latest, now)
        delivery.renewal = True
        delivery.save()
        queued += 1
    return queued


def _enqueue_due(enqueue: Enqueue, now: datetime) -> int:
    """Send a task for each (relay, extension) whose oldest pending delivery is due (step 5).

    That covers new deliveries, retries whose time has come, and deliveries whose task was
    lost (broker down, worker killed): those are enqueued again once their lease or last
    enqueueing is older than a delivery lease.
    """
    lease = delivery_lease()
    oldest = (
        Delivery.objects.filter(
            relay=OuterRef("relay"), extension=OuterRef("extension"), status=PENDING
        )
        .order_by("id")
        .values("pk")[:1]
    )
    heads = list(
        Delivery.objects.filter(status=PENDING, next_attempt_at__lte=now, relay__enabled=True)
        .filter(Q(relay__paused_until__isnull=True) | Q(relay__paused_until__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - lease))
        .filter(pk=Subquery(oldest))
        .values_list("pk", "relay_id", "extension_id")[:ENQUEUE_LIMIT]
    )
    sent = []
    for pk, relay_id, extension_id in heads:
        try:
            enqueue(relay_id, extension_id)
        except Exception as error:  # any broker failure: the next run tries again
            logger.warning("cannot enqueue relay deliveries (broker down?): %s", error)
            break
        sent.append(pk)
    if sent:
        Delivery.objects.filter(pk__in=sent).update(enqueued_at=now)
    return len(sent)


def _prune(now: datetime) -> int:
    """Delete finished deliveries (and their attempts) older than the retention (step 6).

    Looks only at the oldest PRUNE_BATCH rows by id, an index range: ids grow with time, so
    that is where old rows are, and a table with none to delete costs next to nothing.
    """
    cutoff = now - timedelta(days=settings.RELAYS_DELIVERY_RETENTION_DAYS)
    oldest = Delivery.objects.order_by("id").values_list("pk", flat=True)[:PRUNE_BATCH]
    stale = Delivery.objects.filter(pk__in=list(oldest), created_at__lt=cutoff).exclude(
        status=PENDING
    )
    deleted, _ = stale.delete()
    return deleted
