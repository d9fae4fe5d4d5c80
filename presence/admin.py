from django.contrib import admin

from presence.models import Call, PresenceEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is written by the presence service only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = ("extension", "display_number", "started_at", "ended_at", "end_reason", "source")
    list_filter = ("end_reason", "source", "extension__domain", "started_at")
    search_fields = ("number", "call_id", "extension__number", "extension__name")
    list_select_related = ("extension__domain",)
    date_hierarchy = "started_at"


@admin.register(PresenceEvent)
class PresenceEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "extension", "old_state", "new_state", "reason", "source")
    list_filter = ("reason", "source", "domain")
    list_select_related = ("extension__domain",)
