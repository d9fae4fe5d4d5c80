"""Re-publish every lit SIP desk-phone lamp, e.g. after Kamailio restarted (docs/sip.md)."""

from django.core.management.base import BaseCommand, CommandError

from relays.models import PENDING, SIP, Delivery, Relay
from relays.platforms.sip import refresh_lamps
from relays.sending import deliver_pending


class Command(BaseCommand):
    help = "Re-publish the state of every lit SIP lamp to Kamailio (it forgets on restart)."

    def add_arguments(self, parser):
        parser.add_argument("--domain", help="Only the SIP relays of this domain.")
        parser.add_argument(
            "--deliver",
            action="store_true",
            help="Send the re-publications from this process now instead of leaving them to "
            "the Celery workers.",
        )

    def handle(self, *args, domain=None, deliver=False, **options):
        relays = Relay.objects.filter(kind=SIP, enabled=True).select_related("domain")
        if domain:
            relays = relays.filter(domain__name=domain)
            if not relays.exists():
                raise CommandError(f"no enabled SIP relay in domain {domain!r}")
        relays = list(relays)
        queued = refresh_lamps(relays)
        self.stdout.write(f"queued {queued} lamp refresh(es) for {len(relays)} SIP relay(s)")
        if deliver:
            queues = (
                Delivery.objects.filter(relay__in=relays, status=PENDING)
                .values_list("relay_id", "extension_id")
                .distinct()
            )
            sent = sum(deliver_pending(relay_id, ext_id) for relay_id, ext_id in queues)
            self.stdout.write(f"delivered {sent}")
