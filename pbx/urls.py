from django.contrib import admin
from django.urls import path

from presence.views import call_state

urlpatterns = [
    path("call_state.htm", call_state, name="call_state"),
    path("admin/", admin.site.urls),
]
