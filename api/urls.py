from django.urls import path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api import views

DOMAIN = "domains/<str:name>/"
EXTENSION = DOMAIN + "extensions/<str:number>/"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="api-docs", permanent=False)),
    path("domains/", views.DomainList.as_view(), name="api-domains"),
    path(DOMAIN, views.DomainDetail.as_view(), name="api-domain"),
    path(DOMAIN + "extensions/", views.ExtensionList.as_view(), name="api-extensions"),
    path(EXTENSION, views.ExtensionDetail.as_view(), name="api-extension"),
    path(EXTENSION + "password/", views.ExtensionPassword.as_view(), name="api-password"),
    path(EXTENSION + "call/", views.ExtensionCall.as_view(), name="api-call"),
    path(
        EXTENSION + "availability/",
        views.ExtensionAvailability.as_view(),
        name="api-availability",
    ),
    path(DOMAIN + "presence/", views.PresenceSnapshot.as_view(), name="api-presence"),
    path(DOMAIN + "calls/", views.CallList.as_view(), name="api-calls"),
    path(DOMAIN + "events/", views.EventList.as_view(), name="api-events"),
    path(DOMAIN + "keys/", views.ApiKeyList.as_view(), name="api-keys"),
    path(DOMAIN + "keys/<int:key_id>/", views.ApiKeyDetail.as_view(), name="api-key"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Any other URL here (e.g. a key id that is no number) is a JSON 404, not an HTML page.
    # Only URLs ending in a slash: without one, Django first redirects to the URL with it.
    re_path(r"^.*/$", views.not_found),
]
