"""Overload protection: per-key request rates and bounds on open streams (per process and per
key), refused early with 429 and ``Retry-After`` instead of degrading everyone."""

import math
import time
from dataclasses import dataclass, field

from runstep.errors import RateLimited
from runstep.observability import REJECTED


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RequestLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously (0 = no limit)."""

    per_minute: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        rate = self.per_minute / 60.0
        bucket = self._buckets.setdefault(key, _Bucket(tokens=self.per_minute, updated=now))
        bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1:
            REJECTED.labels("requests_per_minute").inc()
            raise RateLimited(
                f"Rate limit reached: {self.per_minute} requests per minute for this key.",
                retry_after=max(1, math.ceil((1 - bucket.tokens) / rate)),
            )
        bucket.tokens -= 1


@dataclass
class StreamLimiter:
    """At most ``limit`` open streams in this process, ``per_key`` of them for one key
    (0 = no limit)."""

    limit: int
    per_key: int = 0
    open: int = 0
    _by_key: dict[str, int] = field(default_factory=dict)

    def acquire(self, key: str) -> None:
        if self.limit and self.open >= self.limit:
            REJECTED.labels("open_streams").inc()
            raise RateLimited(
                f"This server holds its maximum of {self.limit} open streams; retry shortly.",
                retry_after=1,
            )
        held = self._by_key.get(key, 0)
        if self.per_key and held >= self.per_key:
            REJECTED.labels("open_streams_per_key").inc()
            raise RateLimited(
                f"This key holds its maximum of {self.per_key} open streams; retry once one "
                "of them has ended.",
                retry_after=1,
            )
        self.open += 1
        self._by_key[key] = held + 1

    def release(self, key: str) -> None:
        self.open -= 1
        held = self._by_key.pop(key) - 1
        if held:
            self._by_key[key] = held
