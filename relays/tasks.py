import logging

from celery import shared_task

from relays import outbox, sending

logger = logging.getLogger(__name__)


@shared_task(name="relays.tasks.dispatch", ignore_result=True)
def dispatch() -> int:
    """Beat runs this every RELAYS_DISPATCH_INTERVAL_MS milliseconds (relays/outbox.py)."""
    result = outbox.dispatch(enqueue=_enqueue)
    if result.queued:
        logger.info("queued %d relay deliveries", result.queued)
    return result.enqueued


def _enqueue(relay_id: int, extension_id: int) -> None:
    # No publish retries: with the broker down this fails at once and the dispatcher tries
    # again on its next run; the delivery rows wait meanwhile.
    deliver.apply_async((relay_id, extension_id), retry=False)


# acks_late: a task whose worker dies is given to another worker. Either way the dispatcher
# enqueues the delivery again once its lease has run out: the row is the truth.
@shared_task(
    name="relays.tasks.deliver", ignore_result=True, acks_late=True, reject_on_worker_lost=True
)
def deliver(relay_id: int, extension_id: int) -> int:
    return sending.deliver_pending(relay_id, extension_id)


@shared_task(name="relays.tasks.sip_renew", ignore_result=True)
def sip_renew() -> int:
    """SIP lamps of long calls: re-publish before Kamailio lets the publication run out."""
    from relays.platforms.sip import renew_lamps

    return renew_lamps()


@shared_task(name="relays.tasks.sip_refresh", ignore_result=True)
def sip_refresh() -> int:
    """Re-publish every lit SIP lamp: Kamailio forgets publications when it restarts."""
    from relays.platforms.sip import refresh_lamps

    queued = refresh_lamps()
    if queued:
        logger.info("queued %d SIP lamp refreshes", queued)
    return queued
