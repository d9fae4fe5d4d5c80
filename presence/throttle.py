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


class FailureLimiter:
    def __init__(self, redis_url: str):
        self._redis = (
            redis.Redis.from_url(
                redis_url, socket_connect_timeout=0.2, socket_timeout=0.2, retry=None
            )
            if redis_url
            else None
        )
        self._redis_down_until = 0.0
        self._local = _LocalCounters()

    @staticmethod
    def _keys(address: str, extension: str) -> tuple[str, str]:
        # Hashed, so keys stay short whatever a client sends.
        digest = hashlib.blake2b(extension.encode("utf-8", "replace"), digest_size=12).hexdigest()
        return f"call_state:fail:addr:{address}", f"call_state:fail:ext:{digest}"

    def _limits(self) -> tuple[int, int]:
        return settings.CALL_STATE_FAILURES_PER_ADDRESS, settings.CALL_STATE_FAILURES_PER_EXTENSION

    def _shared(self) -> redis.Redis | None:
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return None
        return self._redis

    def _redis_failed(self, error: Exception) -> None:
        logger.warning("Redis unreachable, counting failures per process: %s", error)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_ERROR

    def retry_after(self, address: str, extension: str) -> int:
        """Seconds the caller must wait, or 0 when it may try."""
        keys = self._keys(address, extension)
        client = self._shared()
        if client is not None:
            try:
                counts = client.mget(keys)
                over = [
                    key
                    for key, count, limit in zip(keys, counts, self._limits(), strict=True)
                    if int(count or 0) >= limit
                ]
                return max((max(client.ttl(key), 1) for key in over), default=0)
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
        client = self._shared()
        if client is not None:
            try:
                with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.incr(key)
                        pipe.expire(key, window, nx=True)
                    pipe.execute()
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
