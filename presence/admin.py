"""Call history and the event log: read-only, tenant-scoped."""

from datetime import timedelta

from django.contrib import admin
from django.http import HttpRequest

from domains.admin_scoping import DomainFilter, ReadOnlyScopedAdmin
from domains.models import Extension
from domains.tenancy import administered_domains
from presence.models import Call, PresenceEvent


class ExtensionFilter(admin.SimpleListFilter):
    """The extensions of one domain: the one chosen in the domain filter, or the only one
    administered. Every extension of every domain would not fit a sidebar."""

    title = "extension"
    parameter_name = "extension"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[int, str]]:
        domains = administered_domains(request.user)
        chosen = request.GET.get(DomainFilter.parameter_name, "")
        if chosen.isdigit():
            domains = domains.filter(pk=chosen)
        elif domains.count() != 1:
            return []
        extensions = Extension.objects.filter(domain__in=domains).order_by("number")
        return [(ext.pk, f"{ext.number} {ext.name}".strip()) for ext in extensions]

    def queryset(self, request: HttpRequest, queryset):
        return queryset.filter(extension=self.value()) if self.value() else queryset


def format_duration(duration: timedelta) -> str:
    minutes, seconds = divmod(int(duration.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}"


@admin.register(Call)
class CallAdmin(ReadOnlyScopedAdmin):
    domain_lookup = "extension__domain"
    list_display = (
        "extension",
        "remote_number",
        "started_at",
        "ended_at",
        "call_duration",
        "end_reason",
        "source",
    )
    list_filter = (DomainFilter, ExtensionFilter, "end_reason", "source")
    search_fields = ("number", "call_id", "extension__number", "extension__name")
    list_select_related = ("extension__domain",)
    date_hierarchy = "started_at"

    @admin.display(description="Remote number")
    def remote_number(self, call: Call) -> str:
        return call.display_number

    @admin.display(description="Duration")
    def call_duration(self, call: Call) -> str:
        return "ongoing" if call.duration is None else format_duration(call.duration)


@admin.register(PresenceEvent)
class PresenceEventAdmin(ReadOnlyScopedAdmin):
    list_display = ("id", "created_at", "extension", "old_state", "new_state", "reason", "source")
    list_filter = (DomainFilter, "reason", "source")
    list_select_related = ("extension__domain",)
    ordering = ("-id",)  # newest first: a log is read from the top
