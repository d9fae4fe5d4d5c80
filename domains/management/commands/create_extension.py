from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from domains.credentials import issue_password
from domains.models import Domain, Extension, normalize_domain_name


class Command(BaseCommand):
    help = (
        "Create an extension and print its call-state password (shown this once). "
        "With --new-password, issue a new password for an existing extension."
    )

    def add_arguments(self, parser):
        parser.add_argument("domain")
        parser.add_argument("number", help="the extension, e.g. 123")
        parser.add_argument("--name", default="")
        parser.add_argument("--department", default="")
        parser.add_argument(
            "--new-password",
            action="store_true",
            help="the extension exists: replace its password (the old one stops working)",
        )

    def handle(self, *args, domain, number, name, department, new_password, **options):
        try:
            tenant = Domain.objects.get(name=normalize_domain_name(domain))
        except Domain.DoesNotExist:
            raise CommandError(f"no domain {domain}; create it with create_domain") from None
        extension = Extension.objects.filter(domain=tenant, number=number).first()
        if extension and not new_password:
            raise CommandError(f"extension {number} exists; use --new-password for a new password")
        if extension is None:
            if new_password:
                raise CommandError(f"no extension {number} in {tenant.name}")
            extension = Extension(domain=tenant, number=number, name=name, department=department)
            try:
                extension.full_clean()
            except ValidationError as error:
                raise CommandError("; ".join(error.messages)) from None
            extension.save()
        password = issue_password(extension)
        self.stdout.write(f"domain={tenant.name} user={extension.number} password={password}")
