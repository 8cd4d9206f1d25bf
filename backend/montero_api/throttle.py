"""Password-guessing defence: failed attempts per account *and* client address, with a growing delay.

Counting attempts per account (what Flask-Limiter's per-key limit does) let anyone who knows an e-mail lock
its owner out: after 5 wrong passwords the right one got 429 too. Following OWASP's authentication cheat
sheet, only *failures* are counted, per (account, address): a stranger's failures never delay the owner
logging in from another address, a success clears the counter, and past the threshold each further failure
doubles the wait (1 s, 2 s, 4 s, ... up to the window) instead of a fixed wall. Guessing from many addresses
is bounded by the per-address limit on the endpoint.

State lives in Redis (shared by every worker and replica); while Redis is unreachable a per-process dict
takes over, the same way the rate limiter falls back to memory.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

log = logging.getLogger("montero_api.throttle")

# After a failure Redis is not asked again for this long: a hung Redis must not add its socket
# timeout to every login.
REDIS_RETRY_SECONDS = 5.0


def _key(account: str, address: str) -> str:
    # Hash: an account name may hold bytes Redis cannot encode or be long; the hash is always 64 hex chars.
    raw = f"{account.strip().lower()}\0{address}".encode("utf-8", "backslashreplace")
    return "montero:loginfail:" + hashlib.sha256(raw).hexdigest()


class LoginThrottle:
    def __init__(self, redis_url: str | None, threshold: int, window_seconds: int) -> None:
        self.threshold = max(1, threshold)
        self.window = max(1, window_seconds)
        self._memory: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._redis: Any = None
        self._redis_down_until = 0.0
        if redis_url and redis_url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)

    # -- storage: (failures, time of the last failure) ---------------------------------------------
    def _use_redis(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: Exception) -> None:
        log.warning("login throttle: Redis unreachable (%s); counting failures per process", exc)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS

    def _read(self, key: str) -> tuple[int, float]:
        if self._use_redis():
            try:
                count, last = self._redis.hmget(key, "n", "t")
                return (int(count or 0), float(last or 0.0))
            except Exception as exc:  # noqa: BLE001 - any Redis error means: use the fallback
                self._redis_failed(exc)
        with self._lock:
            count, last = self._memory.get(key, (0, 0.0))
            if last and time.time() - last > self.window:
                self._memory.pop(key, None)
                return (0, 0.0)
            return (count, last)

    def _record_failure(self, key: str, now: float) -> None:
        if self._use_redis():
            try:
                pipe = self._redis.pipeline()
                pipe.hincrby(key, "n", 1)
                pipe.hset(key, "t", repr(now))
                pipe.expire(key, self.window)
                pipe.execute()
                return
            except Exception as exc:  # noqa: BLE001
                self._redis_failed(exc)
        with self._lock:
            count, _ = self._memory.get(key, (0, 0.0))
            self._memory[key] = (count + 1, now)
            if len(self._memory) > 100_000:  # bounded: drop the oldest half
                for old in sorted(self._memory, key=lambda k: self._memory[k][1])[:50_000]:
                    del self._memory[old]

    def _clear(self, key: str) -> None:
        with self._lock:
            self._memory.pop(key, None)
        if self._use_redis():
            try:
                self._redis.delete(key)
            except Exception as exc:  # noqa: BLE001
                self._redis_failed(exc)

    # -- API -------------------------------------------------------------------------------------------
    def retry_after(self, account: str, address: str) -> int:
        """Seconds this (account, address) must still wait before its next attempt; 0 when it may try."""
        count, last = self._read(_key(account, address))
        if count < self.threshold:
            return 0
        delay = min(float(self.window), 2.0 ** (count - self.threshold))
        remaining = last + delay - time.time()
        return max(0, int(remaining + 0.999))

    def failed(self, account: str, address: str) -> None:
        self._record_failure(_key(account, address), time.time())

    def succeeded(self, account: str, address: str) -> None:
        self._clear(_key(account, address))
