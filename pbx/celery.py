import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbx.settings")

app = Celery("pbx")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def refuse_to_start_without_keys(**kwargs) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from pbx.startup import require_secrets

    try:
        require_secrets()
    except ImproperlyConfigured as error:
        # Celery only logs what its signal handlers raise; a worker without keys must stop.
        raise SystemExit(f"ImproperlyConfigured: {error}") from error


@app.on_after_finalize.connect
def schedule_periodic_tasks(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    interval = settings.EXPIRY_SWEEP_INTERVAL
    # A sweep queued behind a slow one is pointless: the next beat brings a fresh one.
    sender.add_periodic_task(
        interval,
        sender.signature("presence.tasks.expire_calls"),
        name="expire stale calls",
        expires=max(interval * 5, 5),
    )
    relay_interval = settings.RELAYS_DISPATCH_INTERVAL
    sender.add_periodic_task(
        relay_interval,
        sender.signature("relays.tasks.dispatch"),
        name="dispatch relay deliveries",
        expires=max(relay_interval * 5, 5),
    )
    from relays.platforms.sip import REFRESH_INTERVAL, RENEW_INTERVAL

    # SIP lamps: renew long calls' publications; re-publish all (a Kamailio restart).
    sender.add_periodic_task(
        RENEW_INTERVAL,
        sender.signature("relays.tasks.sip_renew"),
        name="renew SIP lamps",
        expires=RENEW_INTERVAL,
    )
    sender.add_periodic_task(
        REFRESH_INTERVAL,
        sender.signature("relays.tasks.sip_refresh"),
        name="refresh SIP lamps",
        expires=REFRESH_INTERVAL,
    )
