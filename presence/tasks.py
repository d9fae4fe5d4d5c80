import logging

from celery import shared_task

from presence.service import expire_due_calls

logger = logging.getLogger(__name__)


@shared_task(name="presence.tasks.expire_calls", ignore_result=True)
def expire_calls() -> int:
    """Beat runs this every EXPIRY_SWEEP_INTERVAL seconds; most runs find nothing to do."""
    ended = expire_due_calls()
    if ended:
        logger.info("expired %d call(s)", ended)
    return ended
