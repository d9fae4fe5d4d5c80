"""The administrators' console for domains, extensions, memberships and provider keys.

Every ModelAdmin is tenant-scoped (domains/admin_scoping.py). Presence facts change only
through the presence service; secrets are shown once (domains/shown_once.py).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from domains.admin_csv import ExtensionCsvMixin
from domains.admin_scoping import DomainFilter, TenantScopedAdmin
from domains.credentials import (
    issue_kiosk_token,
    issue_password,
    issue_provider_key,
    revoke_kiosk_token,
)
from domains.models import ADMIN, AVAILABLE, DND, Domain, Extension, Membership, ProviderKey
from domains.shown_once import show_kiosk_links, show_passwords, show_provider_keys
from presence import board, service
from presence.models import SOURCE_ADMIN, Call
from presence.service import CallReport, ExtensionUnavailable
from presence.state import STATE_LABELS, presence_state


@admin.register(Domain)
class DomainAdmin(TenantScopedAdmin):
    domain_lookup = ""
    list_display = (
        "name",
        "enabled",
        "max_call_duration",
        "show_numbers",
        "has_kiosk_link",
        "live_presence",
        "created_at",
    )
    list_filter = ("enabled", "show_numbers")
    search_fields = ("name",)
    fields = (
        "name",
        "enabled",
        "max_call_duration",
        "show_numbers",
        "allowed_addresses",
        "has_kiosk_link",
        "live_presence",
    )
    actions = ["create_kiosk_links", "revoke_kiosk_links"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        shown = ("has_kiosk_link", "live_presence")
        if request.user.is_superuser:
            return shown
        # The name is the tenant's identity (call_state.htm, the board) and `enabled` is the
        # operator's switch, e.g. for a suspended customer: both are for superusers.
        return ("name", "enabled", *shown)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser

    @admin.display(boolean=True, description="Kiosk link")
    def has_kiosk_link(self, domain: Domain) -> bool:
        return bool(domain.kiosk_token_hash)

    @admin.display(description="Live presence")
    def live_presence(self, domain: Domain) -> str:
        if domain.pk is None:
            return "-"
        url = reverse("admin:domains_domain_presence", args=[domain.pk])
        return format_html('<a href="{}">Live presence</a>', url)

    @admin.action(
        description="Create a new kiosk (wall-screen) link (the previous one stops working)",
        permissions=["change"],
    )
    def create_kiosk_links(self, request: HttpRequest, queryset):
        return show_kiosk_links(request, [(d, issue_kiosk_token(d)) for d in queryset])

    @admin.action(description="Revoke the kiosk link", permissions=["change"])
    def revoke_kiosk_links(self, request: HttpRequest, queryset):
        domains = list(queryset)
        for domain in domains:
            revoke_kiosk_token(domain)
        self.message_user(
            request, f"Revoked the kiosk link of {', '.join(map(str, domains))}: it works no more."
        )

    def get_urls(self):
        view = self.admin_site.admin_view(self.presence_view)
        return [
            path("<path:object_id>/presence/", view, name="domains_domain_presence"),
            *super().get_urls(),
        ]

    def presence_view(self, request: HttpRequest, object_id: str):
        """The domain's live board inside the admin (the board page itself, in a frame)."""
        domain = self.get_object(request, object_id)
        if domain is None or not self.has_view_permission(request, domain):
            raise Http404("No such domain")
        counts = board.counts(board.board_tiles(domain, timezone.now(), show_numbers=False))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Live presence: {domain.name}",
            "opts": self.opts,
            "original": domain,
            "domain": domain,
            "counts": [(STATE_LABELS[state], count) for state, count in counts.items()],
            "board_url": reverse("board", args=[domain.name]),
        }
        return TemplateResponse(request, "admin/domains/domain/presence.html", context)


@admin.register(Extension)
class ExtensionAdmin(ExtensionCsvMixin, TenantScopedAdmin):
    list_display = (
        "number",
        "name",
        "domain",
        "department",
        "enabled",
        "availability",
        "presence_now",
        "has_password",
    )
    list_filter = (DomainFilter, "department", "enabled", "availability")
    search_fields = ("number", "name", "department", "domain__name")
    list_select_related = ("domain",)
    fields = ("domain", "number", "name", "department", "enabled", "availability", "note")
    actions = ["clear_active_calls", "set_dnd", "set_available", "issue_passwords"]

    def get_queryset(self, request: HttpRequest):
        # The active call, for the presence column: one more query per page, not per row.
        active = Call.objects.filter(ended_at__isnull=True)
        calls = Prefetch("calls", queryset=active, to_attr="active_calls")
        return super().get_queryset(request).prefetch_related(calls)

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        # An extension stays in its tenant: its history and events belong there.
        return ("domain", "has_password") if obj else ()

    def get_fields(self, request: HttpRequest, obj=None):
        return (*self.fields, "has_password") if obj else self.fields

    @admin.display(description="Presence now")
    def presence_now(self, extension: Extension) -> str:
        call = extension.active_calls[0] if extension.active_calls else None
        state = presence_state(
            enabled=extension.enabled,
            availability=extension.availability,
            call_expires_at=call.expires_at if call else None,
            now=timezone.now(),
        )
        return STATE_LABELS[state]

    @admin.display(boolean=True, description="Password issued")
    def has_password(self, extension: Extension) -> bool:
        return extension.has_password

    @admin.action(description="Clear the active call", permissions=["change"])
    def clear_active_calls(self, request: HttpRequest, queryset):
        cleared, disabled = 0, 0
        for extension in queryset:
            if not extension.active_calls:
                continue
            try:
                service.report_call(extension, CallReport(busy=False), SOURCE_ADMIN)
                cleared += 1
            except ExtensionUnavailable:
                disabled += 1
        self.message_user(request, f"Cleared the active call of {cleared} extension(s).")
        if disabled:
            self.message_user(
                request,
                f"{disabled} disabled extension(s) skipped: they show offline, and their "
                "calls end when they expire.",
                messages.WARNING,
            )

    @admin.action(description="Set do not disturb", permissions=["change"])
    def set_dnd(self, request: HttpRequest, queryset):
        self._set_availability(request, queryset, DND)

    @admin.action(description="Set available", permissions=["change"])
    def set_available(self, request: HttpRequest, queryset):
        self._set_availability(request, queryset, AVAILABLE)

    def _set_availability(self, request: HttpRequest, queryset, availability: str) -> None:
        changed = sum(
            bool(service.set_availability(ext, availability=availability, source=SOURCE_ADMIN))
            for ext in queryset
        )
        label = STATE_LABELS[availability]
        self.message_user(request, f"{changed} extension(s) set to “{label}”.")

    @admin.action(
        description="Issue new call-state passwords (the old ones stop working)",
        permissions=["change"],
    )
    def issue_passwords(self, request: HttpRequest, queryset):
        return show_passwords(request, [(ext, issue_password(ext)) for ext in queryset])

    def save_model(self, request: HttpRequest, obj, form, change) -> None:
        """Presence facts change only through the presence service, which records events."""
        if not change:
            service.add_extension(obj, source=SOURCE_ADMIN)
            return
        changes = {name: getattr(obj, name) for name in form.changed_data}
        service.update_extension(obj, changes, source=SOURCE_ADMIN)

    def response_add(self, request: HttpRequest, obj, post_url_continue=None):
        # A new extension gets its password right away, shown on the next page only.
        return show_passwords(request, [(obj, issue_password(obj))])


class MembershipForm(forms.ModelForm):
    # A user name to type, not a list of every account of every tenant.
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.all(),
        to_field_name="username",
        widget=forms.TextInput,
        label="User name",
        help_text="The person's login name. Accounts are created by a superuser.",
        error_messages={"invalid_choice": "There is no user with this user name."},
    )

    class Meta:
        model = Membership
        fields = ("user", "domain", "role", "extension")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["user"] = self.instance.user.get_username()


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    form = MembershipForm
    list_display = ("user", "domain", "role", "extension")
    list_filter = (DomainFilter, "role")
    search_fields = ("user__username", "user__first_name", "user__last_name", "domain__name")
    list_select_related = ("user", "domain", "extension__domain")
    autocomplete_fields = ("extension",)

    def save_model(self, request: HttpRequest, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if obj.role == ADMIN and not obj.user.is_staff:
            self.message_user(
                request,
                f"{obj.user} administers {obj.domain} now, but needs staff status to sign in "
                "here: ask a superuser to set it.",
                messages.WARNING,
            )


@admin.register(ProviderKey)
class ProviderKeyAdmin(TenantScopedAdmin):
    list_display = ("label", "domain", "enabled", "has_key", "created_at")
    list_filter = (DomainFilter, "enabled")
    search_fields = ("label", "domain__name")
    list_select_related = ("domain",)
    fields = ("domain", "label", "allowed_addresses", "enabled")
    actions = ["issue_keys", "enable_keys", "disable_keys"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return ("domain", "has_key") if obj else ()

    def get_fields(self, request: HttpRequest, obj=None):
        return (*self.fields, "has_key") if obj else self.fields

    @admin.display(boolean=True, description="Key issued")
    def has_key(self, key: ProviderKey) -> bool:
        return bool(key.secret_hash)

    @admin.action(description="Issue new keys (the old ones stop working)", permissions=["change"])
    def issue_keys(self, request: HttpRequest, queryset):
        return show_provider_keys(request, [(key, issue_provider_key(key)) for key in queryset])

    @admin.action(description="Enable", permissions=["change"])
    def enable_keys(self, request: HttpRequest, queryset):
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} key(s).")

    @admin.action(description="Disable", permissions=["change"])
    def disable_keys(self, request: HttpRequest, queryset):
        self.message_user(request, f"Disabled {queryset.update(enabled=False)} key(s).")

    def response_add(self, request: HttpRequest, obj, post_url_continue=None):
        # The key is generated on creation and shown on the next page only.
        return show_provider_keys(request, [(obj, issue_provider_key(obj))])
