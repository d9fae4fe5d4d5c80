from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from domains.models import DEFAULT_MAX_CALL_DURATION, Domain, normalize_domain_name


class Command(BaseCommand):
    help = "Create a domain (tenant)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="e.g. abc.com")
        parser.add_argument(
            "--max-call-duration",
            type=int,
            default=DEFAULT_MAX_CALL_DURATION,
            help="seconds after which an uncleared call ends by itself (default %(default)s)",
        )
        parser.add_argument(
            "--show-numbers", action="store_true", help="show remote numbers to colleagues"
        )

    def handle(self, *args, name, max_call_duration, show_numbers, **options):
        name = normalize_domain_name(name)
        if Domain.objects.filter(name=name).exists():
            raise CommandError(f"domain {name} exists already")
        domain = Domain(name=name, max_call_duration=max_call_duration, show_numbers=show_numbers)
        try:
            domain.full_clean()
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        domain.save()
        self.stdout.write(f"created domain {domain.name}")
