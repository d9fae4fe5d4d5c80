"""Counting failed call_state.htm attempts, per client address and per extension.

The counters live in Redis so that every web process shares them. When Redis is unreachable
the endpoint keeps answering: the counters fall back to this process's memory until Redis
answers again (checked at most every few seconds, so a dead Redis costs no time per request).
"""

import hashlib
import logging
import threading
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

REDIS_RETRY_AFTER_ERROR = 5.0  # seconds without trying Redis after it failed


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
        return self._round_trip([args])[0]

    def pipeline(self, commands: list[tuple]) -> list:
        """Several commands in one round trip."""
        return self._round_trip(commands)

    def _round_trip(self, commands: list[tuple]) -> list:
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


class FailureLimiter:
    def __init__(self, redis_url: str):
        self._redis = _RedisCommands(redis_url) if redis_url else None
        self._redis_down_until = 0.0
        self._local = _LocalCounters()

    @staticmethod
    def _keys(address: str, extension: str) -> tuple[str, str]:
        # Hashed, so keys stay short whatever a client sends.
        digest = hashlib.blake2b(extension.encode("utf-8", "replace"), digest_size=12).hexdigest()
        return f"call_state:fail:addr:{address}", f"call_state:fail:ext:{digest}"

    def _limits(self) -> tuple[int, int]:
        return settings.CALL_STATE_FAILURES_PER_ADDRESS, settings.CALL_STATE_FAILURES_PER_EXTENSION

    def _shared(self) -> _RedisCommands | None:
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return None
        return self._redis

    def _redis_failed(self, error: Exception) -> None:
        logger.warning("Redis unreachable, counting failures per process: %s", error)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_ERROR

    def retry_after(self, address: str, extension: str) -> int:
        """Seconds the caller must wait, or 0 when it may try."""
        keys = self._keys(address, extension)
        command = self._shared()
        if command is not None:
            try:
                counts = command("MGET", *keys)
                over = [
                    key
                    for key, count, limit in zip(keys, counts, self._limits(), strict=True)
                    if int(count or 0) >= limit
                ]
                return max((max(command("TTL", key), 1) for key in over), default=0)
            except redis.RedisError as error:
                self._redis_failed(error)
        waits = [
            left
            for key, limit in zip(keys, self._limits(), strict=True)
            for count, left in [self._local.get(key)]
            if count >= limit
        ]
        return max(waits, default=0)

    def record_failure(self, address: str, extension: str) -> None:
        keys = self._keys(address, extension)
        window = settings.CALL_STATE_FAILURE_WINDOW
        command = self._shared()
        if command is not None:
            try:
                command.pipeline(
                    [
                        args
                        for key in keys
                        for args in (("INCR", key), ("EXPIRE", key, window, "NX"))
                    ]
                )
                return
            except redis.RedisError as error:
                self._redis_failed(error)
        for key in keys:
            self._local.incr(key, window)


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
