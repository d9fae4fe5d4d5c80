"""Tenant scoping of the admin: each user sees and changes only the domains they administer.

Superusers see everything. A domain administrator (a Membership with role "admin", plus
is_staff, which the admin login asks for) sees the objects of their domains only. Their rights
come from the membership, not from Django's model permissions, so nobody has to hand those
out per user. Staff members and everybody else get nothing.
"""

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from domains.models import Domain, Extension
from domains.tenancy import administered_domains


def administered_ids(request: HttpRequest) -> frozenset[int]:
    """Ids of the domains the request's user administers, looked up once per request.

    Call it for non-superusers only: for a superuser it would list every domain.
    """
    cached = getattr(request, "_administered_domain_ids", None)
    if cached is None:
        cached = frozenset(administered_domains(request.user).values_list("pk", flat=True))
        request._administered_domain_ids = cached
    return cached


def administers_any(request: HttpRequest) -> bool:
    return request.user.is_superuser or bool(administered_ids(request))


class TenantAdminSite(admin.AdminSite):
    """The admin site: only superusers and domain administrators get in."""

    site_header = "Presence administration"
    site_title = "Presence administration"
    index_title = "Domains, extensions and call history"

    def has_permission(self, request: HttpRequest) -> bool:
        # Staff status alone opens nothing here: a domain is needed to administer.
        return super().has_permission(request) and administers_any(request)


class TenantScopedAdmin(admin.ModelAdmin):
    """Base of every ModelAdmin of ours: querysets, choices and permissions per tenant."""

    #: The lookup from the model to its Domain; empty for the Domain model itself.
    domain_lookup = "domain"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        lookup = f"{self.domain_lookup}__in" if self.domain_lookup else "pk__in"
        return queryset.filter(**{lookup: administered_ids(request)})

    def domain_id_of(self, obj: Model) -> int | None:
        """Follow `domain_lookup` from an object to its domain's id."""
        if not self.domain_lookup:
            return obj.pk
        *path, last = self.domain_lookup.split("__")
        for name in path:
            obj = getattr(obj, name)
        return getattr(obj, f"{last}_id")

    def may_manage(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return bool(administered_ids(request))
        return self.domain_id_of(obj) in administered_ids(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.may_manage(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.may_manage(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.may_manage(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.may_manage(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.may_manage(request, obj)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        """Preselect the domain of an administrator who has only one."""
        initial = super().get_changeform_initial_data(request)
        if self.domain_lookup == "domain" and not request.user.is_superuser:
            ids = administered_ids(request)
            if len(ids) == 1:
                initial.setdefault("domain", next(iter(ids)))
        return initial

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        """Offer only the administered domains and their extensions."""
        if not request.user.is_superuser:
            ids = administered_ids(request)
            if db_field.related_model is Domain:
                kwargs["queryset"] = Domain.objects.filter(pk__in=ids)
            elif db_field.related_model is Extension:
                kwargs["queryset"] = Extension.objects.filter(domain__in=ids).select_related(
                    "domain"
                )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyScopedAdmin(TenantScopedAdmin):
    """History written by the presence service only: administrators read it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class DomainFilter(admin.SimpleListFilter):
    """Filter by domain, offering the administered domains.

    Django's related-only filter would scan the whole table (SELECT DISTINCT domain_id) on
    every page, which the event log cannot afford.
    """

    title = "domain"
    parameter_name = "domain"

    def __init__(self, request, params, model, model_admin):
        self.domain_lookup = model_admin.domain_lookup
        super().__init__(request, params, model, model_admin)

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[int, str]]:
        domains = administered_domains(request.user)
        return list(domains.order_by("name").values_list("pk", "name"))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.domain_lookup: self.value()})
