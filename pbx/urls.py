from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from presence.board_views import board_list, board_page, set_my_availability
from presence.views import call_state

urlpatterns = [
    path("call_state.htm", call_state, name="call_state"),
    path("board/", board_list, name="board_list"),
    path("board/<str:name>/", board_page, name="board"),
    path("board/<str:name>/me", set_my_availability, name="board_me"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),  # also the schema (schema/) and its docs (docs/)
    path("", RedirectView.as_view(pattern_name="board_list", permanent=False)),
]
