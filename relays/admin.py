"""Relays in the admin: add one, send a test event, read the delivery log and the last error.

Tenant-scoped like every ModelAdmin here (domains/admin_scoping.py): a domain administrator
sees and changes the relays of their domains only; superusers see all.
"""

import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from domains.admin_scoping import DomainFilter, ReadOnlyScopedAdmin, TenantScopedAdmin
from domains.tenancy import administered_domains
from relays.forms import RelayForm
from relays.models import PENDING, TEAMS, WEBHOOK, Delivery, DeliveryAttempt, Relay, RelayMapping
from relays.platforms import PLATFORMS
from relays.sending import send_test

TEST_BUTTON = "_send_test"
_WEBHOOK_NOTE = "The signing secret is generated when the relay is saved."
_SECTIONS = {
    "webhook": ("Webhook", ("url", "signing_secret")),
    "teams": ("Microsoft Teams", ("tenant_id", "client_id", "new_secret")),
    "slack": ("Slack", ("status_text", "status_emoji", "new_secret")),
    "sip": (
        "SIP desk-phone lamps",
        ("rpc_url", "sip_domain", "dnd_lights_lamp", "publish_presence"),
    ),
}


def _parent_admin(model: type[Model]) -> TenantScopedAdmin:
    return admin.site._registry[model]


class ScopedInline:
    """Inlines follow the rights on their parent object, not Django's model permissions."""

    parent_model: type[Model]

    def _may(self, request: HttpRequest, obj: Model | None) -> bool:
        return _parent_admin(self.parent_model).may_manage(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self._may(request, obj)


class MappingFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        relay = self.instance
        platform = PLATFORMS[relay.kind]
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE"):
                continue
            extension = data.get("extension")
            if extension is not None and extension.domain_id != relay.domain_id:
                form.add_error("extension", "Choose an extension of the relay's domain.")
            if data.get("remote_user"):
                try:
                    data["remote_user"] = platform.clean_remote_user(data["remote_user"])
                    form.instance.remote_user = data["remote_user"]
                except forms.ValidationError as error:
                    form.add_error("remote_user", error)


class RelayMappingInline(ScopedInline, admin.TabularInline):
    model = RelayMapping
    formset = MappingFormSet
    readonly_fields = ("presence_until", "status_set")
    extra = 1
    verbose_name = "extension mapping"
    verbose_name_plural = "Extension mappings: whose presence goes to which platform user"

    def get_fields(self, request: HttpRequest, obj=None):
        # What we remember having set there: the Teams session, or the Slack status.
        state = "presence_until" if obj is not None and obj.kind == TEAMS else "status_set"
        return ("extension", "remote_user", state)

    def get_formset(self, request: HttpRequest, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        if obj is not None:
            field = formset.form.base_fields["extension"]
            field.queryset = obj.domain.extensions.all()
        return formset


@admin.register(Relay)
class RelayAdmin(TenantScopedAdmin):
    form = RelayForm
    list_display = ("name", "domain", "kind", "enabled", "health", "last_success_at")
    list_filter = (DomainFilter, "kind", "enabled")
    search_fields = ("name", "domain__name")
    list_select_related = ("domain",)
    actions = ["send_test_events", "enable_relays", "disable_relays"]
    change_form_template = "admin/relays/relay/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: Relay | None = None):
        main = (None, {"fields": ("domain", "name", "kind", "enabled")})
        if obj is None:
            # One section per kind: fill in the one of the kind chosen above.
            return [
                main,
                ("Webhook", {"fields": ("url",), "description": _WEBHOOK_NOTE}),
                ("Microsoft Teams", {"fields": ("tenant_id", "client_id")}),
                ("Slack", {"fields": ("status_text", "status_emoji")}),
                (
                    "SIP desk-phone lamps",
                    {"fields": ("rpc_url", "sip_domain", "dnd_lights_lamp", "publish_presence")},
                ),
                ("Teams and Slack", {"fields": ("new_secret",)}),
            ]
        title, fields = _SECTIONS[obj.kind]
        status = (
            "Status",
            {"fields": ("health", "last_success_at", "last_error_at", "last_error", "log")},
        )
        return [main, (title, {"fields": fields}), status]

    def get_readonly_fields(self, request: HttpRequest, obj: Relay | None = None):
        fields = [
            "signing_secret",
            "health",
            "last_success_at",
            "last_error_at",
            "last_error",
            "log",
        ]
        return [*fields, "kind"] if obj else fields

    def get_inlines(self, request: HttpRequest, obj: Relay | None):
        if obj is not None and PLATFORMS[obj.kind].needs_mapping:
            return [RelayMappingInline]
        return []

    @admin.display(description="Signing secret")
    def signing_secret(self, relay: Relay) -> str:
        if relay.kind != WEBHOOK or not relay.secret:
            return "Generated when the relay is saved."
        return format_html(
            '<code class="signing-secret">{}</code><br>Receivers verify each request with it '
            "(Standard Webhooks); see docs/relays.md.",
            relay.secret,
        )

    @admin.display(description="Status")
    def health(self, relay: Relay) -> str:
        if not relay.enabled:
            if relay.disabled_reason:
                return f"Disabled: {relay.disabled_reason}"
            return "Disabled"
        if relay.last_error_at and (
            relay.last_success_at is None or relay.last_error_at > relay.last_success_at
        ):
            return f"Failing: {relay.last_error}"
        return "OK"

    @admin.display(description="Deliveries")
    def log(self, relay: Relay) -> str:
        url = reverse("admin:relays_delivery_changelist") + f"?relay={relay.pk}"
        return format_html('<a href="{}">Delivery log of this relay</a>', url)

    def save_model(self, request: HttpRequest, obj: Relay, form, change: bool) -> None:
        if obj.enabled and (not change or "enabled" in form.changed_data):
            obj.disabled_reason = ""
            obj.disabled_at = None
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: Relay, post_url_continue=None):
        if TEST_BUTTON in request.POST:
            self._test(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Relay):
        if TEST_BUTTON in request.POST:
            self._test(request, obj)
        return super().response_change(request, obj)

    def _test(self, request: HttpRequest, relay: Relay) -> None:
        ok, message = send_test(relay)
        level = messages.SUCCESS if ok else messages.ERROR
        outcome = "Test event delivered" if ok else "Test event failed"
        self.message_user(request, f"{relay.name}: {outcome}. {message}", level)

    @admin.action(description="Send a test event")
    def send_test_events(self, request: HttpRequest, queryset) -> None:
        for relay in queryset.select_related("domain")[:10]:
            self._test(request, relay)

    @admin.action(description="Enable selected relays")
    def enable_relays(self, request: HttpRequest, queryset) -> None:
        count = queryset.update(enabled=True, disabled_reason="", disabled_at=None)
        self.message_user(request, f"{count} relay(s) enabled.")

    @admin.action(description="Disable selected relays")
    def disable_relays(self, request: HttpRequest, queryset) -> None:
        count = queryset.update(
            enabled=False,
            disabled_reason="Disabled by an administrator.",
            disabled_at=timezone.now(),
        )
        self.message_user(request, f"{count} relay(s) disabled.")


class RelayFilter(admin.SimpleListFilter):
    """The administered relays (a related filter would offer every tenant's)."""

    title = "relay"
    parameter_name = "relay"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[int, str]]:
        relays = Relay.objects.filter(domain__in=administered_domains(request.user))
        return [(relay.pk, str(relay)) for relay in relays.select_related("domain")]

    def queryset(self, request: HttpRequest, queryset):
        return queryset.filter(relay=self.value()) if self.value() else queryset


class AttemptInline(ScopedInline, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "at", "outcome", "status_code", "duration_ms", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyScopedAdmin):
    domain_lookup = "relay__domain"
    list_display = ("created_at", "relay_name", "extension_number", "summary", "outcome", "error")
    list_display_links = ("created_at",)
    list_filter = (DomainFilter, RelayFilter, "status")
    list_select_related = ("relay__domain", "extension__domain")
    search_fields = ("relay__name", "extension__number")
    search_help_text = "A relay, an extension number, or a webhook-id (msg_…)."
    ordering = ("-id",)
    fields = (
        "relay",
        "extension",
        "webhook_id",
        "summary",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "coalesced",
        "renewal",
        "created_at",
        "finished_at",
        "pretty_payload",
    )
    readonly_fields = fields
    inlines = [AttemptInline]

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        # Receivers report the webhook-id (msg_<hex>): find its delivery.
        if search_term.strip().startswith("msg_"):
            try:
                key = uuid.UUID(search_term.strip().removeprefix("msg_"))
            except ValueError:
                return queryset.none(), False
            return queryset.filter(uuid=key), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="Webhook id")
    def webhook_id(self, delivery: Delivery) -> str:
        return delivery.webhook_id

    @admin.display(description="Change")
    def summary(self, delivery: Delivery) -> str:
        payload = delivery.payload or {}
        if payload.get("type") != "presence.changed":
            return "Test event"
        text = f"{payload.get('previous_state')} → {payload.get('state')}"
        if delivery.renewal:
            text += " (renewal)"
        elif delivery.coalesced > 1:
            text += f" ({delivery.coalesced} events)"
        return text

    @admin.display(description="Relay", ordering="relay__name")
    def relay_name(self, delivery: Delivery) -> str:
        return delivery.relay.name

    @admin.display(description="Extension", ordering="extension__number")
    def extension_number(self, delivery: Delivery) -> str:
        return delivery.extension.number if delivery.extension else "—"

    @admin.display(description="Status")
    def outcome(self, delivery: Delivery) -> str:
        tries = f"{delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''}"
        code = f", HTTP {delivery.last_status_code}" if delivery.last_status_code else ""
        if delivery.status == PENDING:
            due = timezone.localtime(delivery.next_attempt_at)
            return f"Pending after {tries}{code}; next try {due:%H:%M:%S}"
        return f"{delivery.get_status_display()} after {tries}{code}"

    @admin.display(description="Last error")
    def error(self, delivery: Delivery) -> str:
        text = delivery.last_error
        return text if len(text) <= 80 else text[:80] + "…"

    @admin.display(description="Payload")
    def pretty_payload(self, delivery: Delivery) -> str:
        # Sorted as in the webhook body.
        return format_html("<pre>{}</pre>", json.dumps(delivery.payload, indent=2, sort_keys=True))
