from django.contrib.admin.apps import AdminConfig


class TenantAdminConfig(AdminConfig):
    """Django's admin with our site as `admin.site`, so every registration is tenant-scoped."""

    default_site = "domains.admin_scoping.TenantAdminSite"
