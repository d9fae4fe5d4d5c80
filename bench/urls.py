"""The real URLs, plus the two reference views the benchmark compares call_state.htm with."""

from django.urls import path

from bench.views import hello, upsert
from pbx.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path("bench/hello", hello),
    path("bench/upsert", upsert),
    *product_urlpatterns,
]
