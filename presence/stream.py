"""The live board stream: Server-Sent Events from a small ASGI process of its own.

Open streams must not tie up the WSGI workers that serve call_state.htm, so they live here.
One thread per process follows the PresenceEvent table (the outbox every change writes) and
fans each event out to the streams of its domain. That needs no Redis and loses nothing: a
stream that reconnects gets a fresh snapshot, then live events. Streams hold no database
connection: the follower thread and a small pool for snapshots share a few.

Entry point: `pbx.stream_asgi:application` (uvicorn, one worker).
"""

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection
from django.utils import timezone

from domains.models import Domain, Membership
from presence.board import board_tiles, hide_number, read_stream_token, tiles_by_id
from presence.models import PresenceEvent

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15
HEARTBEAT = b": keep-alive\n\n"
RETRY_MILLISECONDS = 2000
MAX_QUEUED = 500  # a client this far behind is dropped; it reconnects and resyncs
GAP_PATIENCE_SECONDS = 5.0  # a missing event id not seen by then was rolled back
ACCESS_CHECK_SECONDS = 2.0


def sse(event: str, data: dict | None = None, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data or {}, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


@dataclass(eq=False)
class Subscriber:
    domain_id: int
    user_id: int | None
    kiosk_prefix: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    @property
    def hides_numbers(self) -> bool:
        return self.kiosk_prefix is not None

    def push(self, message: bytes | None) -> None:
        """From any thread. None closes the stream."""
        self.loop.call_soon_threadsafe(self.put, message)

    def put(self, message: bytes | None) -> None:
        """In the event loop's thread."""
        if message is not None and self.queue.qsize() >= MAX_QUEUED:
            message = None
        self.queue.put_nowait(message)


class EventFollower:
    """Follows PresenceEvent rows in id order and hands them to the subscribers."""

    def __init__(self, interval: float):
        self.interval = interval
        self._lock = threading.Lock()
        self._subscribers: dict[int, set[Subscriber]] = {}
        self._thread: threading.Thread | None = None
        self._last_access_check = 0.0

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.setdefault(subscriber.domain_id, set()).add(subscriber)
        self._ensure_running()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            group = self._subscribers.get(subscriber.domain_id, set())
            group.discard(subscriber)
            if not group:
                self._subscribers.pop(subscriber.domain_id, None)

    def _ensure_running(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="event-follower", daemon=True)
            self._thread.start()

    def _snapshot_of_subscribers(self) -> dict[int, list[Subscriber]]:
        with self._lock:
            return {domain: list(group) for domain, group in self._subscribers.items()}

    def _run(self) -> None:
        horizon = None
        delivered: set[int] = set()
        missing_since: dict[int, float] = {}
        while True:
            try:
                if horizon is None:
                    horizon = _latest_event_id()
                horizon = self._poll(horizon, delivered, missing_since)
                if time.monotonic() - self._last_access_check > ACCESS_CHECK_SECONDS:
                    self._last_access_check = time.monotonic()
                    self._check_access()
            except Exception:
                logger.exception("event follower failed; retrying")
                connection.close()
                time.sleep(1)
            time.sleep(self.interval)

    def _poll(self, horizon: int, delivered: set[int], missing_since: dict[int, float]) -> int:
        """Deliver events above the horizon; move the horizon past what is settled.

        Ids are handed out at insert but become visible at commit, so a lower id can appear
        after a higher one. The horizon stops at a missing id until it shows up or is given
        up on (a rolled-back transaction leaves a permanent gap).
        """
        close_old_connections()
        rows = list(
            PresenceEvent.objects.filter(id__gt=horizon)
            .order_by("id")
            .values_list("id", "domain_id", "extension_id", "reason")[:1000]
        )
        fresh = [row for row in rows if row[0] not in delivered]
        if fresh:
            self._deliver(fresh)
            delivered.update(row[0] for row in fresh)
        now = time.monotonic()
        while delivered:
            candidate = horizon + 1
            if candidate in delivered:
                delivered.discard(candidate)
                missing_since.pop(candidate, None)
                horizon = candidate
                continue
            first_seen = missing_since.setdefault(candidate, now)
            if now - first_seen < GAP_PATIENCE_SECONDS:
                break
            missing_since.pop(candidate)
            horizon = candidate
        return horizon

    def _deliver(self, rows) -> None:
        """Send a poll's events to the streams of their domains.

        Each stream gets the poll's events as one batch, and all batches reach the event loop
        in one call: handing over each event to each stream separately cost ~20 µs a time,
        which 200 boards turned into CPU taken from the web workers (bench/README.md).
        """
        subscribers = self._snapshot_of_subscribers()
        wanted = [row for row in rows if row[1] in subscribers]
        if not wanted:
            return
        show_numbers = dict(
            Domain.objects.filter(pk__in={row[1] for row in wanted}).values_list(
                "pk", "show_numbers"
            )
        )
        now = timezone.now()
        extension_ids = {row[2] for row in wanted}
        tiles = tiles_by_id(extension_ids, now, show_numbers)
        for_members: dict[int, list[bytes]] = {}
        for_kiosks: dict[int, list[bytes]] = {}
        for event_id, domain_id, extension_id, reason in wanted:
            if extension_id in tiles:
                member_tile = tiles[extension_id]
                member = sse("presence", {"tile": member_tile, "reason": reason}, event_id)
                # Kiosk screens never show numbers; most tiles show none anyway.
                kiosk_tile = hide_number(member_tile)
                kiosk = (
                    member
                    if kiosk_tile is member_tile
                    else sse("presence", {"tile": kiosk_tile, "reason": reason}, event_id)
                )
                for_members.setdefault(domain_id, []).append(member)
                for_kiosks.setdefault(domain_id, []).append(kiosk)
        batches: dict[asyncio.AbstractEventLoop, list[tuple[Subscriber, bytes]]] = {}
        for domain_id, messages in for_members.items():
            members, kiosks = b"".join(messages), b"".join(for_kiosks[domain_id])
            for subscriber in subscribers.get(domain_id, []):
                batch = kiosks if subscriber.hides_numbers else members
                batches.setdefault(subscriber.loop, []).append((subscriber, batch))
        for loop, items in batches.items():
            loop.call_soon_threadsafe(_put_batches, items)

    def _check_access(self) -> None:
        """End streams whose kiosk token was revoked or whose user lost access."""
        subscribers = [s for group in self._snapshot_of_subscribers().values() for s in group]
        if not subscribers:
            return
        kiosk_hashes = dict(
            Domain.objects.filter(
                pk__in={s.domain_id for s in subscribers if s.kiosk_prefix}, enabled=True
            ).values_list("pk", "kiosk_token_hash")
        )
        user_ids = {s.user_id for s in subscribers if s.user_id}
        superusers = set(
            get_user_model()
            .objects.filter(pk__in=user_ids, is_active=True, is_superuser=True)
            .values_list("pk", flat=True)
        )
        members = set(
            Membership.objects.filter(
                user_id__in=user_ids, user__is_active=True, domain__enabled=True
            ).values_list("user_id", "domain_id")
        )
        for subscriber in subscribers:
            if subscriber.kiosk_prefix:
                allowed = kiosk_hashes.get(subscriber.domain_id, "").startswith(
                    subscriber.kiosk_prefix
                )
            else:
                allowed = (
                    subscriber.user_id in superusers
                    or (subscriber.user_id, subscriber.domain_id) in members
                )
            if not allowed:
                subscriber.push(sse("revoked"))
                subscriber.push(None)
                self.unsubscribe(subscriber)


def _put_batches(items: list[tuple[Subscriber, bytes]]) -> None:
    for subscriber, batch in items:
        subscriber.put(batch)


def _latest_event_id() -> int:
    latest = PresenceEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return latest or 0


def _snapshot(subscriber: Subscriber) -> bytes | None:
    """The whole board now, or None when the domain is gone or disabled."""
    close_old_connections()
    domain = Domain.objects.filter(pk=subscriber.domain_id, enabled=True).first()
    if domain is None:
        return None
    last_id = _latest_event_id()
    show_numbers = domain.show_numbers and not subscriber.hides_numbers
    tiles = board_tiles(domain, timezone.now(), show_numbers)
    return sse(
        "snapshot",
        {"tiles": tiles, "now": timezone.now().isoformat()},
        last_id,
    )


follower = EventFollower(interval=settings.STREAM_POLL_INTERVAL)
_db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stream-db")

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
    # The pass is in the URL, not a cookie, so any origin may open the stream.
    (b"access-control-allow-origin", b"*"),
]


async def _plain(send, status: int, body: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


async def board_stream(scope, receive, send) -> None:
    """GET /stream/board?t=<signed pass from the board page>."""
    if scope["method"] != "GET":
        await _plain(send, 405, "Method Not Allowed")
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = read_stream_token(query.get("t", [""])[0])
    if token is None:
        await _plain(send, 403, "Forbidden: reload the board")
        return
    loop = asyncio.get_running_loop()
    subscriber = Subscriber(token["d"], token["u"], token["k"], loop)
    follower.subscribe(subscriber)
    try:
        snapshot = await loop.run_in_executor(_db_pool, _snapshot, subscriber)
        if snapshot is None:
            await _plain(send, 404, "Not Found")
            return
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send(
            {
                "type": "http.response.body",
                "body": f"retry: {RETRY_MILLISECONDS}\n\n".encode() + snapshot,
                "more_body": True,
            }
        )
        await _pump(subscriber, receive, send)
    finally:
        follower.unsubscribe(subscriber)


async def _pump(subscriber: Subscriber, receive, send) -> None:
    """Send queued events (a heartbeat when idle) until the client leaves or we close."""
    disconnected = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        while True:
            next_message = asyncio.ensure_future(subscriber.queue.get())
            done, _ = await asyncio.wait(
                {next_message, disconnected},
                timeout=HEARTBEAT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if disconnected in done:
                next_message.cancel()
                return
            if next_message not in done:
                next_message.cancel()
                await send({"type": "http.response.body", "body": HEARTBEAT, "more_body": True})
                continue
            # Send whatever else is queued along with it, in one write.
            chunks, closing = [next_message.result()], False
            while chunks[-1] is not None and not subscriber.queue.empty():
                chunks.append(subscriber.queue.get_nowait())
            if chunks[-1] is None:
                chunks.pop()
                closing = True
            body = b"".join(chunks)
            await send({"type": "http.response.body", "body": body, "more_body": not closing})
            if closing:
                return
    finally:
        disconnected.cancel()


async def _wait_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def application(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream/board":
        await board_stream(scope, receive, send)
    else:
        await _plain(send, 404, "Not Found")
