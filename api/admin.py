"""API keys of domains in the admin: issued here and shown once, revoked by deleting them.

A domain administrator sees and issues the keys of their domains. People's own tokens
(`create_api_token --user`) belong to no domain: only superusers see them here.
"""

from django.contrib import admin
from django.http import HttpRequest

from api.models import ApiToken
from api.tokens import issue_key
from domains.admin_scoping import DomainFilter, TenantScopedAdmin
from domains.shown_once import show_api_keys


@admin.register(ApiToken)
class ApiTokenAdmin(TenantScopedAdmin):
    list_display = ("name", "owner", "read_only", "created_at", "last_used_at")
    list_filter = (DomainFilter, "read_only")
    search_fields = ("name", "domain__name", "user__username")
    list_select_related = ("domain", "user")
    fields = ("domain", "name", "read_only")
    actions = ["issue_keys"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return ("owner", "created_at", "last_used_at") if obj else ()

    def get_fields(self, request: HttpRequest, obj=None):
        if obj:
            return ("owner", "name", "read_only", "created_at", "last_used_at")
        return self.fields

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "domain":
            kwargs["required"] = True  # keys issued here belong to a domain
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="Domain or person")
    def owner(self, token: ApiToken) -> str:
        return str(token.domain or token.user)

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        if change:
            obj.save()
        else:
            # The key is made with the token and shown on the next page only.
            _, obj.issued_key = issue_key(obj)

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue=None):
        return show_api_keys(request, [(obj, obj.issued_key)])

    @admin.action(description="Issue new keys (the old ones stop working)", permissions=["change"])
    def issue_keys(self, request: HttpRequest, queryset):
        return show_api_keys(request, [issue_key(token) for token in queryset])
