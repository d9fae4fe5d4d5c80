from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from api.tokens import issue_domain_key, issue_user_token
from domains.models import Domain, normalize_domain_name


class Command(BaseCommand):
    help = (
        "Issue a REST API token and print its key (shown this once): for a person "
        "(--user, acts with their memberships) or for a domain (--domain, an API key "
        "acting on that domain alone)."
    )

    def add_arguments(self, parser):
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--user", help="user name: the token acts as this person")
        owner.add_argument("--domain", help="domain name: an API key of this domain")
        parser.add_argument("--name", default="", help="what it is for, e.g. 'CRM sync'")
        parser.add_argument("--read-only", action="store_true", help="it may only read")

    def handle(self, *args, user, domain, name, read_only, **options):
        if user:
            token, key = issue_user_token(self._user(user), name or "API token", read_only)
        else:
            token, key = issue_domain_key(self._domain(domain), name or "API key", read_only)
        self.stdout.write(f"{token}: {key}")

    def _user(self, username: str):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {username}") from None

    def _domain(self, name: str) -> Domain:
        try:
            return Domain.objects.get(name=normalize_domain_name(name))
        except Domain.DoesNotExist:
            raise CommandError(f"no domain {name}; create it with create_domain") from None
