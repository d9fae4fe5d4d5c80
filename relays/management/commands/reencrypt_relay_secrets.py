from django.core.management.base import BaseCommand

from relays.models import Relay


class Command(BaseCommand):
    help = (
        "Encrypt every relay's credential again under the current SECRET_KEY: the step after "
        "moving the old key to SECRET_KEY_FALLBACKS (docs/operations.md)."
    )

    def handle(self, *args, **options):
        relays = list(Relay.objects.exclude(secret=""))
        unreadable = [relay for relay in relays if not relay.secret]
        for relay in relays:
            if relay.secret:
                relay.save(update_fields=["secret"])
        self.stdout.write(f"Encrypted {len(relays) - len(unreadable)} relay secret(s) again.")
        for relay in unreadable:
            self.stderr.write(f"Cannot decrypt the secret of {relay}: enter it again.")
