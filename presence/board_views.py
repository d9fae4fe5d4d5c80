"""The presence board pages (WSGI). Live updates come from the stream process."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from domains.credentials import kiosk_token_hash
from domains.models import AVAILABILITY_CHOICES, Domain, normalize_domain_name
from domains.tenancy import domain_for, membership, visible_domains
from presence import board, service
from presence.models import SOURCE_BOARD
from presence.state import STATE_LABELS

MAX_NOTE = 200


def _kiosk_domain(name: str, token: str) -> Domain:
    if "\x00" in name:
        raise Http404("No such domain")
    domain = Domain.objects.filter(name=normalize_domain_name(name), enabled=True).first()
    if domain is None or not domain.kiosk_token_hash:
        raise PermissionDenied("This wall-screen link is not valid (any more).")
    if domain.kiosk_token_hash != kiosk_token_hash(token):
        raise PermissionDenied("This wall-screen link is not valid (any more).")
    return domain


@never_cache
@xframe_options_sameorigin  # the admin's live presence page shows the board in a frame
def board_page(request: HttpRequest, name: str) -> HttpResponse:
    """The board: members see it after logging in; a wall screen with its kiosk link."""
    kiosk_token = request.GET.get("kiosk", "")
    if kiosk_token:
        domain = _kiosk_domain(name, kiosk_token)
        member = None
        pass_ = board.stream_token(domain, user_id=None, kiosk_hash=domain.kiosk_token_hash)
    elif not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    else:
        domain = domain_for(request.user, name)
        member = membership(request.user, domain)
        pass_ = board.stream_token(domain, user_id=request.user.pk, kiosk_hash=None)
    show_numbers = domain.show_numbers and not kiosk_token
    now = timezone.now()
    tiles = board.board_tiles(domain, now, show_numbers)
    context = {
        "domain": domain,
        "tiles": tiles,
        "counts": board.counts(tiles),
        "labels": STATE_LABELS,
        "kiosk": bool(kiosk_token),
        "wall": bool(kiosk_token) or request.GET.get("wall") == "1",
        "stream_base": settings.BOARD_STREAM_URL,
        "stream_port": settings.STREAM_PORT,
        "stream_pass": pass_,
        "now": now.isoformat(),
        "me": member.extension if member and member.extension_id else None,
        "availability_choices": AVAILABILITY_CHOICES,
    }
    response = render(request, "presence/board.html", context)
    response["Referrer-Policy"] = "no-referrer"  # the kiosk link must not leak onwards
    return response


@login_required
def board_list(request: HttpRequest) -> HttpResponse:
    domains = visible_domains(request.user).filter(enabled=True)
    if domains.count() == 1:
        return redirect("board", name=domains.get().name)
    return render(request, "presence/board_list.html", {"domains": domains})


@require_POST
@login_required
def set_my_availability(request: HttpRequest, name: str) -> HttpResponse:
    """Staff set their own availability and note from the board."""
    domain = domain_for(request.user, name)
    member = membership(request.user, domain)
    if member is None or member.extension_id is None:
        raise Http404("You have no extension in this domain.")
    availability = request.POST.get("availability")
    if availability not in dict(AVAILABILITY_CHOICES):
        return HttpResponse("Bad Request: unknown availability", status=400)
    note = request.POST.get("note", "").strip()[:MAX_NOTE]
    service.set_availability(
        member.extension, availability=availability, note=note, source=SOURCE_BOARD
    )
    return redirect("board", name=domain.name)
