from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from domains.credentials import issue_password
from domains.models import Domain, Extension
from presence import service
from presence.models import SOURCE_ADMIN

PRESENCE_FIELDS = ("availability", "note", "enabled")


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "max_call_duration", "show_numbers", "created_at")
    list_filter = ("enabled", "show_numbers")
    search_fields = ("name",)


def show_passwords(request: HttpRequest, issued: list[tuple[Extension, str]]):
    """The one and only time these passwords are shown."""
    return TemplateResponse(
        request,
        "admin/domains/extension/passwords.html",
        {
            "title": "Call-state passwords",
            "issued": issued,
            "call_state_url": request.build_absolute_uri("/call_state.htm"),
            "opts": Extension._meta,
        },
    )


@admin.register(Extension)
class ExtensionAdmin(admin.ModelAdmin):
    list_display = ("number", "name", "domain", "department", "enabled", "availability")
    list_filter = ("domain", "enabled", "availability", "department")
    search_fields = ("number", "name", "department", "domain__name")
    readonly_fields = ("has_password",)
    actions = ["issue_passwords"]

    @admin.action(description="Issue new call-state passwords (the old ones stop working)")
    def issue_passwords(self, request, queryset):
        return show_passwords(request, [(ext, issue_password(ext)) for ext in queryset])

    def save_model(self, request, obj, form, change):
        """Presence facts change only through the presence service, which records events."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        other_fields = [f for f in form.changed_data if f not in PRESENCE_FIELDS]
        if other_fields:
            obj.save(update_fields=other_fields)
        wanted = {field: getattr(obj, field) for field in PRESENCE_FIELDS}
        service.set_availability(
            obj, availability=wanted["availability"], note=wanted["note"], source=SOURCE_ADMIN
        )
        service.set_enabled(obj, wanted["enabled"], source=SOURCE_ADMIN)

    def response_add(self, request, obj, post_url_continue=None):
        # A new extension gets its password right away, shown on the next page only.
        return show_passwords(request, [(obj, issue_password(obj))])
