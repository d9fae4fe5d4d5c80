"""Counting failed call_state.htm attempts, per client address and per extension.

The counters live in Redis so that every web process shares them. When Redis is unreachable
the endpoint keeps answering: the counters fall back to this process's memory until Redis
answers again (checked at most every few seconds, so a dead Redis costs no time per request).

An extension's limit would let anybody who knows its number lock its provider out: a few
wrong passwords every few minutes, from anywhere. So an address that sent the extension's
right password lately, and no wrong one since, is *known* for that extension and not held up
by the extension's limit (its own address limit still applies). Attempts from anywhere else
are. Known addresses are kept in Redis only: without Redis every address is unknown.
"""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

REDIS_RETRY_AFTER_ERROR = 5.0  # seconds without trying Redis after it failed
KNOWN_ADDRESS_SECONDS = 7 * 24 * 3600  # how long a right password makes an address known


class _LocalCounters:
    """Fixed-window counters in process memory: the fallback when Redis is down."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def get(self, key: str) -> tuple[int, int]:
        """(count, seconds left in the window)."""
        count, reset_at = self._counts.get(key, (0, 0.0))
        left = reset_at - time.monotonic()
        return (count, int(left) + 1) if left > 0 else (0, 0)

    def incr(self, key: str, window: int) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, reset_at = self._counts.get(key, (0, 0.0))
            if reset_at <= now:
                count, reset_at = 0, now + window
            self._counts[key] = (count + 1, reset_at)


class _RedisCommands:
    """Redis commands on a connection of this thread's own.

    Every call_state.htm request reads the counters, so this is on the endpoint's hot path:
    going through redis-py's client and connection pool costs three times the CPU of the
    command on one held connection (60 µs against 21 µs, bench/README.md).
    """

    def __init__(self, redis_url: str):
        self._pool = redis.ConnectionPool.from_url(
            redis_url, socket_connect_timeout=0.2, socket_timeout=0.2
        )
        self._held = threading.local()

    def __call__(self, *args):
        return self.pipeline([args])[0]

    def pipeline(self, commands: list[tuple]) -> list:
        """Several commands in one round trip; their replies."""
        connection = getattr(self._held, "connection", None)
        if connection is None:
            connection = self._held.connection = self._pool.make_connection()
        held_open = connection.is_connected
        try:
            return self._send(connection, commands)
        except redis.ConnectionError:
            if not held_open:
                raise
            # A socket held since an earlier request may have been closed by the server (its
            # idle timeout, a restart): one more try on a new one before Redis counts as down.
            return self._send(connection, commands)

    @staticmethod
    def _send(connection, commands: list[tuple]) -> list:
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            return [connection.read_response() for _ in commands]
        except BaseException:
            # Whatever broke, a reply may be left unread: start over on a new socket.
            connection.disconnect()
            raise


@dataclass(frozen=True)
class Verdict:
    retry_after: int  # seconds the caller must wait; 0: it may try
    known_address: bool = False  # the address sent this extension's right password lately


class FailureLimiter:
    def __init__(self, redis_url: str):
        self._redis = _RedisCommands(redis_url) if redis_url else None
        self._redis_down_until = 0.0
        self._local = _LocalCounters()

    @staticmethod
    def _keys(address: str, extension: str) -> tuple[str, str, str]:
        """The failure counters of the address and of the extension, and the mark that the
        address is known for the extension."""
        # Hashed, so keys stay short whatever a client sends.
        digest = hashlib.blake2b(extension.encode("utf-8", "replace"), digest_size=12).hexdigest()
        return (
            f"call_state:fail:addr:{address}",
            f"call_state:fail:ext:{digest}",
            f"call_state:known:{digest}:{address}",
        )

    def _shared(self) -> _RedisCommands | None:
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return None
        return self._redis

    def _redis_failed(self, error: Exception) -> None:
        logger.warning("Redis unreachable, counting failures per process: %s", error)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_ERROR

    def check(self, address: str, extension: str) -> Verdict:
        """Whether the caller must wait, and whether its address is known for the extension."""
        address_key, extension_key, known_key = self._keys(address, extension)
        counters = (address_key, extension_key)
        command = self._shared()
        if command is not None:
            try:
                *counts, known = command("MGET", *counters, known_key)
                over = self._over(counts, known=bool(known))
                limited = [key for key, is_over in zip(counters, over, strict=True) if is_over]
                wait = max((max(command("TTL", key), 1) for key in limited), default=0)
                return Verdict(wait, known_address=bool(known))
            except redis.RedisError as error:
                self._redis_failed(error)
        local = [self._local.get(key) for key in counters]
        over = self._over([count for count, _ in local], known=False)
        lefts = [left for (_, left), is_over in zip(local, over, strict=True) if is_over]
        return Verdict(max(lefts, default=0))

    @staticmethod
    def _over(counts: list, known: bool) -> tuple[bool, bool]:
        """Whether the address and the extension are over their limits."""
        address_count, extension_count = (int(count or 0) for count in counts)
        return (
            address_count >= settings.CALL_STATE_FAILURES_PER_ADDRESS,
            not known and extension_count >= settings.CALL_STATE_FAILURES_PER_EXTENSION,
        )

    def record_failure(self, address: str, extension: str) -> None:
        """Count a refused attempt; the address is no longer known for the extension."""
        address_key, extension_key, known_key = self._keys(address, extension)
        window = settings.CALL_STATE_FAILURE_WINDOW
        command = self._shared()
        if command is not None:
            try:
                command.pipeline(
                    [
                        *(("INCR", key) for key in (address_key, extension_key)),
                        *(("EXPIRE", key, window, "NX") for key in (address_key, extension_key)),
                        ("DEL", known_key),
                    ]
                )
                return
            except redis.RedisError as error:
                self._redis_failed(error)
        for key in (address_key, extension_key):
            self._local.incr(key, window)

    def record_success(self, address: str, extension: str) -> None:
        """The right password came from this address: it becomes known for the extension."""
        command = self._shared()
        if command is not None:
            try:
                command("SET", self._keys(address, extension)[2], 1, "EX", KNOWN_ADDRESS_SECONDS)
            except redis.RedisError as error:
                self._redis_failed(error)


_limiter: FailureLimiter | None = None


def limiter() -> FailureLimiter:
    global _limiter
    if _limiter is None:
        _limiter = FailureLimiter(settings.REDIS_URL)
    return _limiter


def reset_limiter() -> None:
    """Forget the limiter, e.g. after settings changed in tests."""
    global _limiter
    _limiter = None
