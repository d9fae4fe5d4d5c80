"""The REST API (DESIGN §7). Views find the tenant through api.access, parse and answer;
presence changes only through presence.service."""

from functools import cached_property

from django.db.models import Q
from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from api import serializers as s
from api.access import Access, api_domains, domain_access
from api.models import ApiToken
from api.pagination import MAX_ID, AfterId, CallCursor, DomainCursor, ExtensionCursor
from domains.credentials import issue_password
from domains.models import Extension
from presence import board, service
from presence.models import EXPIRED, SOURCE_API, Call, PresenceEvent
from presence.service import CallReport, CallState, ExtensionUnavailable


class ExtensionDisabled(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The extension is disabled: it takes no calls."
    default_code = "extension_disabled"


class NeverCached:
    """Presence changes by the second and is tenant data: no cache may keep an answer."""

    def finalize_response(self, request: Request, response: Response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        add_never_cache_headers(response)
        return response


@extend_schema(tags=["domains"])
class DomainList(NeverCached, generics.ListAPIView):
    """The domains you may see."""

    serializer_class = s.DomainSerializer
    pagination_class = DomainCursor

    def get_queryset(self):
        return api_domains(self.request)


class DomainScoped(NeverCached, generics.GenericAPIView):
    """A view within one domain. Tenant first: before anything else, the domain in the URL
    is looked up among those the caller may see (404 otherwise); writes then need an
    administrator of it, unless the view has a rule of its own."""

    writes_need_admin = True

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if self.writes_need_admin and request.method not in SAFE_METHODS:
            self.access.require_admin()

    @cached_property
    def access(self) -> Access:
        return domain_access(self.request, self.kwargs["name"])

    def get_serializer_context(self) -> dict:
        context = {**super().get_serializer_context(), "source": SOURCE_API}
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular introspecting
            return context
        return {**context, "domain": self.access.domain}


@extend_schema(tags=["domains"])
class DomainDetail(DomainScoped, generics.RetrieveUpdateAPIView):
    """A domain. Administrators may change its settings."""

    serializer_class = s.DomainSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.access.domain


@extend_schema(tags=["extensions"])
class ExtensionList(DomainScoped, generics.ListCreateAPIView):
    """The domain's extensions. Creating one answers with its call-state password, once."""

    pagination_class = ExtensionCursor

    def get_queryset(self):
        return self.access.domain.extensions.all()

    def get_serializer_class(self):
        return s.NewExtensionSerializer if self.request.method == "POST" else s.ExtensionSerializer


class ExtensionScoped(DomainScoped):
    """A view of one extension of the domain, found by its number (404 otherwise)."""

    def get_object(self) -> Extension:
        return self.access.extension(self.kwargs["number"])


@extend_schema(tags=["extensions"])
class ExtensionDetail(ExtensionScoped, generics.RetrieveUpdateDestroyAPIView):
    """An extension. Changing availability, note or enabled records presence events."""

    serializer_class = s.ExtensionSerializer


@extend_schema(tags=["extensions"])
class ExtensionPassword(ExtensionScoped):
    """Issue a new call-state password; the old one stops working at once."""

    serializer_class = s.NewPasswordSerializer

    @extend_schema(request=None, responses={201: s.NewPasswordSerializer})
    def post(self, request: Request, name: str, number: str) -> Response:
        extension = self.get_object()
        return Response({"password": issue_password(extension)}, status=status.HTTP_201_CREATED)


def _call_state_answer(result: CallState) -> Response:
    call = result.call
    answer = {
        "state": result.state,
        "number_withheld": call.withheld if call else None,
        "started_at": call.started_at if call else None,
        "expires_at": call.expires_at if call else None,
        "expires_in": round((call.expires_at - result.now).total_seconds()) if call else None,
    }
    return Response(s.CallStateSerializer(answer).data)


@extend_schema(tags=["presence"])
class ExtensionCall(ExtensionScoped):
    """Set or clear the extension's call, exactly as call_state.htm does (DESIGN §2)."""

    serializer_class = s.CallReportSerializer

    @extend_schema(responses={200: s.CallStateSerializer})
    def post(self, request: Request, name: str, number: str) -> Response:
        """With `number`: the extension is on a call with it (start, refresh or replace).
        Without: no call is going on (clear; harmless when there is none)."""
        extension = self.get_object()
        report = self._validated(request.data)["report"]
        return self._report(extension, report)

    @extend_schema(
        parameters=[
            OpenApiParameter("call_id", str, description="End only the call with this call_id.")
        ],
        responses={200: s.CallStateSerializer},
    )
    def delete(self, request: Request, name: str, number: str) -> Response:
        """Clear the call (harmless when there is none)."""
        extension = self.get_object()
        report = self._validated({"call_id": request.query_params.get("call_id", "")})["report"]
        return self._report(extension, report)

    def _validated(self, data) -> dict:
        serializer = self.get_serializer(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def _report(self, extension: Extension, report: CallReport) -> Response:
        try:
            result = service.report_call(extension, report, SOURCE_API)
        except ExtensionUnavailable:
            raise ExtensionDisabled() from None
        return _call_state_answer(result)


@extend_schema(tags=["presence"])
class ExtensionAvailability(ExtensionScoped):
    """Set availability (available, away, dnd) and the status note. Administrators may set
    any extension's; staff their own extension's."""

    serializer_class = s.AvailabilitySerializer
    writes_need_admin = False

    @extend_schema(responses={200: s.PresenceSerializer})
    def put(self, request: Request, name: str, number: str) -> Response:
        return self._set(request, partial=False)

    @extend_schema(responses={200: s.PresenceSerializer})
    def patch(self, request: Request, name: str, number: str) -> Response:
        return self._set(request, partial=True)

    def _set(self, request: Request, partial: bool) -> Response:
        extension = self.get_object()
        self.access.require_availability_rights(extension)
        serializer = self.get_serializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        service.set_availability(extension, **serializer.validated_data, source=SOURCE_API)
        return Response(s.PresenceSerializer(_presence(self.access, extension)).data)


def _presence(access: Access, extension: Extension) -> dict:
    shows = {access.domain.pk: access.domain.show_numbers}
    return board.tiles_by_id([extension.pk], timezone.now(), shows)[extension.pk]


@extend_schema(tags=["presence"])
class PresenceSnapshot(DomainScoped):
    """Every enabled extension's presence now, as the board shows it."""

    serializer_class = s.SnapshotSerializer

    def get(self, request: Request, name: str) -> Response:
        domain = self.access.domain
        # The last event id before the tiles: a change racing with this snapshot is then in
        # both the snapshot and the feed after it, never in neither.
        last_event_id = board.last_event_id(domain)
        now = timezone.now()
        tiles = board.board_tiles(domain, now, domain.show_numbers)
        snapshot = {
            "domain": domain.name,
            "now": now,
            "last_event_id": last_event_id,
            "counts": board.counts(tiles),
            "extensions": tiles,
        }
        return Response(s.SnapshotSerializer(snapshot).data)


@extend_schema(tags=["history"], parameters=[s.CallFilterSerializer])
class CallList(DomainScoped, generics.ListAPIView):
    """Call history, newest first. Remote numbers are shown to administrators, and to staff
    where the domain shows numbers."""

    serializer_class = s.CallSerializer
    pagination_class = CallCursor

    def get_queryset(self):
        filters = s.CallFilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        return _filter_calls(
            Call.objects.filter(extension__domain=self.access.domain).select_related("extension"),
            filters.validated_data,
            self.now,
        )

    @cached_property
    def now(self):
        return timezone.now()

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):
            return context
        return {**context, "now": self.now, "shows_numbers": self.access.shows_numbers}


def _filter_calls(calls, wanted: dict, now):
    if "extension" in wanted:
        calls = calls.filter(extension__number=wanted["extension"])
    if "since" in wanted:
        calls = calls.filter(started_at__gte=wanted["since"])
    if "until" in wanted:
        calls = calls.filter(started_at__lt=wanted["until"])
    # A call past its deadline is over (expired) even before the sweep has ended it.
    live = Q(ended_at__isnull=True, expires_at__gt=now)
    if wanted.get("active") is not None:
        calls = calls.filter(live if wanted["active"] else ~live)
    if wanted.get("end_reason") == EXPIRED:
        calls = calls.filter(Q(end_reason=EXPIRED) | Q(ended_at__isnull=True, expires_at__lte=now))
    elif "end_reason" in wanted:
        calls = calls.filter(end_reason=wanted["end_reason"])
    return calls


@extend_schema(tags=["presence"])
class EventList(DomainScoped, generics.ListAPIView):
    """The domain's presence events in id order: poll with `after=<last_id>` to follow every
    change, or to resume where you stopped."""

    serializer_class = s.EventSerializer
    pagination_class = AfterId

    def get_queryset(self):
        return PresenceEvent.objects.filter(domain=self.access.domain).select_related("extension")


class ApiKeyScoped(DomainScoped):
    """The domain's API keys: for its administrators in person, reading included."""

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        self.access.require_key_manager()

    def get_queryset(self):
        return ApiToken.objects.filter(domain=self.access.domain)


@extend_schema(tags=["api keys"])
class ApiKeyList(ApiKeyScoped, generics.ListCreateAPIView):
    """The domain's API keys: credentials of integrations that act on this domain alone.
    Administrators manage them with their own token or session, not with an API key."""

    def get_serializer_class(self):
        return s.NewApiKeySerializer if self.request.method == "POST" else s.ApiKeySerializer


@extend_schema(tags=["api keys"])
class ApiKeyDetail(ApiKeyScoped, generics.RetrieveDestroyAPIView):
    """An API key of the domain. Deleting it revokes it at once."""

    serializer_class = s.ApiKeySerializer

    def get_object(self) -> ApiToken:
        key_id = self.kwargs["key_id"]
        # A larger id cannot exist, and PostgreSQL would refuse to compare with it.
        key = self.get_queryset().filter(pk=key_id).first() if key_id <= MAX_ID else None
        if key is None:
            raise Http404("No such API key.")
        return key


@csrf_exempt  # it changes nothing; a CSRF refusal would be an HTML page
@never_cache
def not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    return JsonResponse({"detail": "Not found."}, status=404)
