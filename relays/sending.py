"""Sending deliveries: one (relay, extension) queue at a time, oldest first.

A delivery task claims the oldest pending delivery of its queue with a lease (a conditional
UPDATE, so two tasks never send the same one), sends it with no transaction open, then records
the attempt. A task that dies leaves the lease to run out; the dispatcher then enqueues the
delivery again, which goes out with the same id (webhook-id). Nothing newer of the same queue
goes out while an older one is pending: that keeps each extension's order.
"""

import logging
import random
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from relays.errors import DeliveryError
from relays.models import (
    FAILED,
    GAVE_UP,
    OK,
    PENDING,
    RELAY_DISABLED,
    RETRY,
    SENT,
    Delivery,
    DeliveryAttempt,
    Relay,
    RelayMapping,
)
from relays.payload import test_payload
from relays.platforms import platform_for

logger = logging.getLogger(__name__)

RETRY_BASE = 2.0  # seconds before the second attempt, doubling after each failure
RETRY_CAP = 900.0  # the longest wait between two attempts
TASK_BUDGET = 5.0  # seconds one delivery task keeps sending before it yields


def delivery_lease() -> timedelta:
    """How long a task may take to send one delivery: two HTTP calls at most (a token and
    the call itself), each within the timeout, and some slack."""
    return timedelta(seconds=2 * settings.RELAYS_HTTP_TIMEOUT + 5)


def backoff(attempt: int) -> timedelta:
    """Exponential backoff with jitter: between half and all of RETRY_BASE * 2^(n-1), so
    deliveries that failed together do not all come back at the same moment."""
    ceiling = min(RETRY_CAP, RETRY_BASE * 2 ** (attempt - 1))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))


def deliver_pending(relay_id: int, extension_id: int, limit: int = 20) -> int:
    """Send the due deliveries of one queue in order; stop at one that does not go through.

    Returns how many were delivered. A task stops after `limit` deliveries or TASK_BUDGET
    seconds, so a slow receiver does not keep a worker process to itself; the dispatcher
    enqueues what is left on its next run.
    """
    started = time.monotonic()
    delivered = 0
    while delivered < limit and time.monotonic() - started < TASK_BUDGET:
        delivery = _claim_oldest(relay_id, extension_id)
        if delivery is None or _attempt(delivery) != OK:
            break
        delivered += 1
    return delivered


def _claim_oldest(relay_id: int, extension_id: int) -> Delivery | None:
    now = timezone.now()
    relay = Relay.objects.select_related("domain").filter(pk=relay_id, enabled=True).first()
    if relay is None or (relay.paused_until and relay.paused_until > now):
        return None
    oldest = (
        Delivery.objects.filter(relay_id=relay_id, extension_id=extension_id, status=PENDING)
        .order_by("id")
        .first()
    )
    if oldest is None or oldest.next_attempt_at > now:
        return None  # nothing to do, or a retry that is not due (newer ones wait behind it)
    if oldest.claimed_until and oldest.claimed_until > now:
        return None  # another task is sending it
    claim = uuid.uuid4()
    won = (
        Delivery.objects.filter(pk=oldest.pk, status=PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
        .update(claim=claim, claimed_until=now + delivery_lease(), attempts=F("attempts") + 1)
    )
    if not won:
        return None
    # Read it again under our claim: the dispatcher may have given it a newer event.
    delivery = Delivery.objects.get(pk=oldest.pk)
    delivery.relay = relay
    return delivery


def _attempt(delivery: Delivery) -> str:
    started = time.monotonic()
    status_code = None
    error = None
    try:
        platform = platform_for(delivery.relay)
        mapping = None
        if platform.needs_mapping:
            mapping = RelayMapping.objects.filter(
                relay_id=delivery.relay_id, extension_id=delivery.extension_id
            ).first()
            if mapping is None:
                raise DeliveryError("the extension is no longer mapped", permanent=True)
        status_code = platform.send(delivery, mapping)
    except DeliveryError as failure:
        error = failure
        status_code = failure.status_code
    except Exception as failure:  # a bug of ours: log it, retry like a network error
        logger.exception("relay %s: delivery %s failed", delivery.relay_id, delivery.pk)
        error = DeliveryError(f"internal error: {failure!r}")
    duration = time.monotonic() - started
    return _record(delivery, error, status_code, duration)


def _outcome(delivery: Delivery, error: DeliveryError | None) -> str:
    if error is None:
        return OK
    if error.disable_relay:
        return RELAY_DISABLED
    if error.permanent or delivery.attempts >= settings.RELAYS_MAX_ATTEMPTS:
        return GAVE_UP
    return RETRY


@transaction.atomic
def _record(
    delivery: Delivery, error: DeliveryError | None, status_code: int | None, duration: float
) -> str:
    """Write the attempt, then the delivery's and the relay's new state."""
    now = timezone.now()
    outcome = _outcome(delivery, error)
    message = str(error) if error else ""
    if not Delivery.objects.select_for_update().filter(pk=delivery.pk).exists():
        return outcome  # deleted meanwhile, with its relay
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        at=now,
        duration_ms=round(duration * 1000),
        status_code=status_code,
        outcome=outcome,
        error=message,
    )
    # Only while the claim is still ours: a lease that ran out went to another task.
    ours = Delivery.objects.filter(pk=delivery.pk, claim=delivery.claim, status=PENDING)
    common = {
        "claim": None,
        "claimed_until": None,
        "last_status_code": status_code,
        "last_error": message,
    }
    relay = Relay.objects.filter(pk=delivery.relay_id)
    if outcome == OK:
        ours.update(status=SENT, finished_at=now, **common)
        relay.update(last_success_at=now)
        return outcome
    relay.update(last_error=message, last_error_at=now)
    if outcome == GAVE_UP:
        ours.update(status=FAILED, finished_at=now, **common)
    elif outcome == RETRY:
        wait = error.retry_after if error.retry_after is not None else backoff(delivery.attempts)
        ours.update(next_attempt_at=now + wait, enqueued_at=None, **common)
        if error.retry_after is not None:
            # The platform throttles the whole app, not one user: the relay waits.
            relay.update(paused_until=now + error.retry_after)
    else:
        # Kept pending: it goes out once an administrator has fixed and re-enabled the relay.
        ours.update(enqueued_at=None, **common)
        disabled = relay.filter(enabled=True).update(
            enabled=False, disabled_reason=message, disabled_at=now
        )
        if disabled:
            logger.warning("relay %s disabled: %s", delivery.relay_id, message)
    return outcome


def send_test(relay: Relay) -> tuple[bool, str]:
    """The admin's "send a test event": sent now, logged as a delivery without extension.

    It changes nothing about the relay: a failing test neither disables nor pauses it.
    """
    now = timezone.now()
    delivery = Delivery.objects.create(
        relay=relay,
        payload=test_payload(relay.domain),
        attempts=1,
        next_attempt_at=now,
        created_at=now,
    )
    started = time.monotonic()
    try:
        status_code, message = platform_for(relay).test(delivery)
        ok = True
    except DeliveryError as error:
        status_code, message, ok = error.status_code, str(error), False
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        at=timezone.now(),
        duration_ms=round((time.monotonic() - started) * 1000),
        status_code=status_code,
        outcome=OK if ok else GAVE_UP,
        error="" if ok else message,
    )
    Delivery.objects.filter(pk=delivery.pk).update(
        status=SENT if ok else FAILED,
        finished_at=timezone.now(),
        last_status_code=status_code,
        last_error="" if ok else message,
    )
    return ok, message
