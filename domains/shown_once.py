"""Admin pages that show freshly issued secrets: the one and only time they are shown.

Only hashes are stored. Each page is the answer to the POST that issued the secrets (admin
views send never-cache headers), so reloading or going back cannot bring them up again, and
nothing here writes them to a log.
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from api.models import ApiToken
from domains.models import Domain, Extension, ProviderKey


def _page(request: HttpRequest, template: str, context: dict) -> TemplateResponse:
    return TemplateResponse(request, template, {**admin.site.each_context(request), **context})


def _issued(request: HttpRequest, model, title: str, issued: list, **urls: str):
    """The page of `model`'s template `<app>/<model>/issued.html` listing (object, secret)."""
    opts = model._meta
    template = f"admin/{opts.app_label}/{opts.model_name}/issued.html"
    return _page(request, template, {"title": title, "issued": issued, "opts": opts, **urls})


def _call_state_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("call_state"))


def show_passwords(request: HttpRequest, issued: list[tuple[Extension, str]]):
    return _issued(
        request, Extension, "Call-state passwords", issued, call_state_url=_call_state_url(request)
    )


def show_provider_keys(request: HttpRequest, issued: list[tuple[ProviderKey, str]]):
    return _issued(
        request, ProviderKey, "Provider keys", issued, call_state_url=_call_state_url(request)
    )


def show_api_keys(request: HttpRequest, issued: list[tuple[ApiToken, str]]):
    domains_url = request.build_absolute_uri(reverse("api-domains"))
    return _issued(request, ApiToken, "API keys", issued, domains_url=domains_url)


def kiosk_url(request: HttpRequest, domain: Domain, token: str) -> str:
    board = reverse("board", args=[domain.name])
    return request.build_absolute_uri(f"{board}?{urlencode({'kiosk': token})}")


def show_kiosk_links(request: HttpRequest, issued: list[tuple[Domain, str]]):
    """`issued` pairs each domain with its new kiosk token."""
    links = [(domain, kiosk_url(request, domain, token)) for domain, token in issued]
    return _page(
        request,
        "admin/domains/domain/kiosk_links.html",
        {"title": "Wall-screen (kiosk) links", "links": links, "opts": Domain._meta},
    )
