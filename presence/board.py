"""What the presence board shows: one tile per enabled extension.

The same tile dictionaries feed the server-rendered first paint, the stream's snapshot and its
live updates, so the page, its script and the stream never disagree.
"""

from datetime import datetime

from django.core import signing
from django.db.models import Prefetch

from domains.models import Domain, Extension
from presence.models import Call, PresenceEvent
from presence.state import OFFLINE, ON_CALL, STATE_LABELS, presence_state

HIDDEN_NUMBER = "External call"
WITHHELD_NUMBER = "Withheld number"
STREAM_TOKEN_SALT = "presence.board.stream"  # noqa: S105 - a namespace, not a secret
STREAM_TOKEN_MAX_AGE = 12 * 3600  # a wall screen reloads its page at least this often


def tile(extension: Extension, call: Call | None, now: datetime, show_number: bool) -> dict:
    """The board's view of one extension. A call past its deadline is already gone."""
    state = presence_state(
        enabled=extension.enabled,
        availability=extension.availability,
        call_expires_at=call.expires_at if call else None,
        now=now,
    )
    shown_call = None
    if state == ON_CALL:
        remote = call.number if show_number else HIDDEN_NUMBER
        if call.withheld:
            remote = WITHHELD_NUMBER
        shown_call = {
            "started_at": call.started_at.isoformat(),
            "expires_at": call.expires_at.isoformat(),
            "elapsed": int((now - call.started_at).total_seconds()),  # for the first paint
            "remote": remote,
        }
    return {
        "id": extension.pk,
        "number": extension.number,
        "name": extension.name,
        "department": extension.department,
        "state": state,
        "label": STATE_LABELS[state],
        "availability": extension.availability,
        "note": extension.note,
        "call": shown_call,
    }


def hide_number(tile: dict) -> dict:
    """The tile as a screen that never shows numbers (a kiosk) sees it."""
    call = tile["call"]
    if call is None or call["remote"] in (HIDDEN_NUMBER, WITHHELD_NUMBER):
        return tile
    return {**tile, "call": {**call, "remote": HIDDEN_NUMBER}}


def _with_active_call(extensions):
    return extensions.prefetch_related(
        Prefetch(
            "calls", queryset=Call.objects.filter(ended_at__isnull=True), to_attr="active_calls"
        )
    )


def board_tiles(domain: Domain, now: datetime, show_numbers: bool) -> list[dict]:
    """Tiles of the domain's enabled extensions, ordered by department, then number."""
    extensions = _with_active_call(
        domain.extensions.filter(enabled=True).order_by("department", "number")
    )
    return [
        tile(ext, ext.active_calls[0] if ext.active_calls else None, now, show_numbers)
        for ext in extensions
    ]


def tiles_by_id(extension_ids, now: datetime, show_numbers_by_domain: dict[int, bool]):
    """Current tiles of some extensions (disabled ones included: they show offline)."""
    extensions = _with_active_call(Extension.objects.filter(pk__in=extension_ids))
    return {
        ext.pk: tile(
            ext,
            ext.active_calls[0] if ext.active_calls else None,
            now,
            show_numbers_by_domain.get(ext.domain_id, False),
        )
        for ext in extensions
    }


def counts(tiles: list[dict]) -> dict[str, int]:
    result = {state: 0 for state in STATE_LABELS if state != OFFLINE}
    for item in tiles:
        if item["state"] in result:
            result[item["state"]] += 1
    return result


def last_event_id(domain: Domain) -> int:
    last = PresenceEvent.objects.filter(domain=domain).order_by("-id").values("id").first()
    return last["id"] if last else 0


def stream_token(domain: Domain, *, user_id: int | None, kiosk_hash: str | None) -> str:
    """A signed pass for the stream process, which then needs no session or database lookup.

    A kiosk pass names the kiosk token's hash, so revoking that token ends its streams.
    """
    payload = {"d": domain.pk, "u": user_id, "k": kiosk_hash[:16] if kiosk_hash else None}
    return signing.dumps(payload, salt=STREAM_TOKEN_SALT, compress=True)


def read_stream_token(token: str) -> dict | None:
    try:
        return signing.loads(token, salt=STREAM_TOKEN_SALT, max_age=STREAM_TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
