"""Tenant first: every page, stream and admin queryset finds its domains through here."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from domains.models import ADMIN, Domain, Membership, normalize_domain_name


def visible_domains(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Domain]:
    """Domains the user may see: all for superusers, else those they are a member of."""
    if not user.is_authenticated or not user.is_active:
        return Domain.objects.none()
    if user.is_superuser:
        return Domain.objects.all()
    return Domain.objects.filter(memberships__user=user)


def administered_domains(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Domain]:
    """Domains the user may change: all for superusers, else those they administer."""
    if not user.is_authenticated or not user.is_active:
        return Domain.objects.none()
    if user.is_superuser:
        return Domain.objects.all()
    return Domain.objects.filter(memberships__user=user, memberships__role=ADMIN)


def domain_for(user, name: str) -> Domain:
    """The named domain if the user may see it; 404 otherwise, so outsiders learn nothing."""
    if "\x00" in name:  # PostgreSQL cannot compare text with NUL in it
        raise Http404("No such domain")
    try:
        return visible_domains(user).get(name=normalize_domain_name(name), enabled=True)
    except Domain.DoesNotExist:
        raise Http404("No such domain") from None


def membership(user, domain: Domain) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, domain=domain).select_related("extension").first()
