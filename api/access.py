"""Tenant first, for the API: every view finds its domain and extension through here.

A domain the caller may not see answers 404, exactly like one that does not exist, so nobody
can probe for tenant names. What the caller may do there is decided once, in `Access`.
"""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from api.models import ApiToken
from domains.models import ADMIN, Domain, Extension, normalize_domain_name
from domains.tenancy import domain_for, membership, visible_domains


def api_token(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def api_domains(request: Request) -> QuerySet[Domain]:
    """The enabled domains the caller may see: a domain key sees its own domain only."""
    token = api_token(request)
    if token is not None and token.domain_id is not None:
        domains = Domain.objects.filter(pk=token.domain_id)
    else:
        domains = visible_domains(request.user)
    return domains.filter(enabled=True)


def _path_value(value: str) -> str:
    # PostgreSQL refuses NUL characters in text: such a name cannot exist, so it is not found.
    if "\x00" in value:
        raise Http404("Not found.")
    return value


@dataclass(frozen=True)
class Access:
    """What the caller may do in one domain."""

    domain: Domain
    admin: bool  # an administrator of the domain, a superuser or a domain key
    writable: bool  # False for read-only tokens
    own_extension_id: int | None = None  # a staff member's own extension
    by_key: bool = False  # a domain's API key, not a person

    def require_key_manager(self) -> None:
        """API keys are managed by administrators in person: a leaked key must not be able
        to mint keys that outlive its own revocation."""
        if self.by_key:
            raise PermissionDenied("API keys cannot manage API keys.")
        if not self.admin:
            raise PermissionDenied("Only administrators of this domain may do this.")

    def require_admin(self) -> None:
        """Changing the domain, its extensions and their calls takes a writing administrator."""
        if not self.admin:
            raise PermissionDenied("Only administrators of this domain may do this.")
        if not self.writable:
            raise PermissionDenied("This token is read-only.")

    def require_availability_rights(self, extension: Extension) -> None:
        """Administrators set anybody's availability; staff only their own extension's."""
        if not self.writable:
            raise PermissionDenied("This token is read-only.")
        if not self.admin and extension.pk != self.own_extension_id:
            raise PermissionDenied("Staff may set the availability of their own extension only.")

    @property
    def shows_numbers(self) -> bool:
        """Remote numbers in call history: administrators always, staff if the domain opts in."""
        return self.admin or self.domain.show_numbers

    def extension(self, number: str) -> Extension:
        """The domain's extension with this number, or 404."""
        extension = self.domain.extensions.filter(number=_path_value(number)).first()
        if extension is None:
            raise Http404("No such extension.")
        return extension


def domain_access(request: Request, name: str) -> Access:
    """The named domain if the caller may see it (404 otherwise) and what they may do there."""
    token = api_token(request)
    writable = token is None or not token.read_only
    name = _path_value(name)
    if token is not None and token.domain_id is not None:
        domain = api_domains(request).filter(name=normalize_domain_name(name)).first()
        if domain is None:
            raise Http404("No such domain.")
        return Access(domain, admin=True, writable=writable, by_key=True)
    domain = domain_for(request.user, name)
    if request.user.is_superuser:
        return Access(domain, admin=True, writable=writable)
    member = membership(request.user, domain)
    return Access(
        domain,
        admin=member is not None and member.role == ADMIN,
        writable=writable,
        own_extension_id=member.extension_id if member else None,
    )
