"""Overload protection: per-key request rates and a bound on open streams, refused early
with 429 and ``Retry-After`` instead of degrading everyone."""

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
    """At most ``limit`` open streams in this process (0 = no limit)."""

    limit: int
    open: int = 0

    def acquire(self) -> None:
        if self.limit and self.open >= self.limit:
            REJECTED.labels("open_streams").inc()
            raise RateLimited(
                f"This server holds its maximum of {self.limit} open streams; retry shortly.",
                retry_after=1,
            )
        self.open += 1

    def release(self) -> None:
        self.open -= 1
