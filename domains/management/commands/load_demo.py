import secrets
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from domains.credentials import issue_password
from domains.models import Domain, Extension

DEMO_DOMAIN = "demo.example"
DEMO_EXTENSIONS = [
    ("100", "Alice Andersen", "Sales"),
    ("101", "Bjørn Berg", "Sales"),
    ("102", "Carla Cruz", "Support"),
    ("103", "Dev Desai", "Support"),
    ("104", "Eva Eriksson", "Accounts"),
    ("105", "Farid Farah", "Management"),
]


class Command(BaseCommand):
    help = (
        f"Create the demo domain {DEMO_DOMAIN} with a few extensions (if missing), issue a "
        "fresh password for extension 100 and print ready-to-paste curl lines. Without any "
        "superuser yet, also create the administrator 'admin' and print its password once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's address")

    @transaction.atomic
    def handle(self, *args, url, **options):
        domain, _ = Domain.objects.get_or_create(name=DEMO_DOMAIN)
        for number, name, department in DEMO_EXTENSIONS:
            Extension.objects.get_or_create(
                domain=domain, number=number, defaults={"name": name, "department": department}
            )
        extension = Extension.objects.get(domain=domain, number=DEMO_EXTENSIONS[0][0])
        password = issue_password(extension)
        query = {"domain": domain.name, "user": extension.number, "password": password}
        busy = urlencode({**query, "number": "12345678"})
        self.stdout.write(
            f"Demo domain {domain.name}, extension {extension.number} ({extension.name}).\n"
            f"  on the phone:   curl '{url}/call_state.htm?{busy}'\n"
            f"  off the phone:  curl '{url}/call_state.htm?{urlencode(query)}'\n"
            f"  ends by itself: curl '{url}/call_state.htm?{busy}&expires=10'"
        )
        self.stdout.write(self._admin_login(url))

    def _admin_login(self, url: str) -> str:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return f"Administration: {url}/admin/ (existing administrator accounts)"
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", password=password)
        return f"Administration: {url}/admin/  user admin, password {password} (shown once)"
