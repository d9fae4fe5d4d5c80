"""The extension admin's CSV pages: export a domain's extensions, import a file into one."""

from django import forms
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import content_disposition_header

from domains.extension_csv import COLUMNS, ImportPlan, apply_import, plan_import, write_csv
from domains.models import Domain, Extension
from domains.shown_once import show_passwords
from domains.tenancy import administered_domains
from presence.models import SOURCE_ADMIN

MAX_FILE_BYTES = 2 * 1024 * 1024
CHANGED_MEANWHILE = "The extensions changed while importing; nothing was imported. Try again."


class ExportForm(forms.Form):
    domain = forms.ModelChoiceField(queryset=Domain.objects.none())

    def __init__(self, *args, domains, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["domain"].queryset = domains


class ImportForm(ExportForm):
    file = forms.FileField(label="CSV file")

    def clean_file(self) -> str:
        """The file's text; a byte order mark (Excel's "CSV UTF-8") is dropped."""
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_FILE_BYTES // 1024} KiB.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "The file is not UTF-8 text: save it as “CSV UTF-8”."
            ) from None


class ExtensionCsvMixin:
    """CSV views of ExtensionAdmin: csv/ (the import page, with an export form) and
    csv/export/?domain=<id> (the download)."""

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("csv/", wrap(self.csv_import_view), name="domains_extension_csv"),
            path("csv/export/", wrap(self.csv_export_view), name="domains_extension_csv_export"),
            *super().get_urls(),
        ]

    def csv_export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ExportForm(request.GET, domains=administered_domains(request.user))
        if not form.is_valid():
            raise Http404("No such domain")
        domain = form.cleaned_data["domain"]
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=f"{domain.name}-extensions.csv"
        )
        write_csv(domain, response)
        return response

    def csv_import_view(self, request: HttpRequest) -> HttpResponse:
        """Check the whole file; import it only when every row is right."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        domains = administered_domains(request.user)
        errors: list[str] = []
        if request.method == "POST":
            form = ImportForm(request.POST, request.FILES, domains=domains)
            if form.is_valid():
                plan = plan_import(form.cleaned_data["domain"], form.cleaned_data["file"])
                errors = plan.errors
                if not errors:
                    try:
                        issued = apply_import(plan, SOURCE_ADMIN)
                    except (IntegrityError, Extension.DoesNotExist):
                        # The domain's extensions changed between the check and now; the
                        # transaction rolled back.
                        errors = [CHANGED_MEANWHILE]
                    else:
                        return self._imported(request, plan, issued)
        else:
            form = ImportForm(domains=domains)
        context = {
            **self.admin_site.each_context(request),
            "title": "Import and export extensions (CSV)",
            "opts": self.opts,
            "form": form,
            "export_form": ExportForm(domains=domains, auto_id="export_%s"),
            "errors": errors,
            "columns": COLUMNS,
        }
        return TemplateResponse(request, "admin/domains/extension/csv.html", context)

    def _imported(self, request: HttpRequest, plan: ImportPlan, issued) -> HttpResponse:
        """Log the import, then show the new extensions' passwords (once)."""
        for extension, _password in issued:
            self.log_addition(request, extension, "Imported from CSV.")
        for extension, changed in plan.changes:
            self.log_change(request, extension, f"Imported from CSV: {', '.join(changed)}.")
        self.message_user(
            request,
            f"Imported into {plan.domain}: {len(issued)} new and "
            f"{len(plan.changes)} changed extension(s).",
        )
        if issued:
            return show_passwords(request, issued)
        changelist = reverse("admin:domains_extension_changelist")
        return redirect(f"{changelist}?domain={plan.domain.pk}")
