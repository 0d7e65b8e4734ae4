"""Rate limits in Redis: per client address and per email and phone, in one round trip.

A fixed window per key, counted by a small Lua script (INCR, and PEXPIRE on the first hit), so
every counter a request touches is read and bumped atomically in one call, and concurrent
requests share that call (service.counterbatch). Keys carry a keyed hash of the address, email
or phone, never the value itself: Redis holds no personal data.

Limits count valid submissions only (checked after validation): a person correcting a typo
is never pushed over the limit by their own 422s, and malformed posts never reach the database
anyway. Urgent messages are limited too: a limit that content can bypass would let any bot page
the on-call staff at will. Nobody is dropped silently: a 429 tells the person when to try
again, and the page shows the phone number and the crisis lines.

When Redis is down or slow the limiter fails open: a person is never refused because a counter
could not be read. After a failure it skips Redis for a few seconds, so a dead Redis costs each
request nothing rather than a timeout.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from service.config import FormConfig
from service.counterbatch import BUMP_SCRIPT, CounterBatch
from service.pages import PageRenderer
from service.rates import Rate, parse_rate
from service.replies import problem

log = logging.getLogger("intake.ratelimit")

KEY_PREFIX = "intake:rl:"  # every rate-limit counter lives under this prefix
BREAKER_SECONDS = 5.0  # after Redis failed, counters are skipped (fail open) for this long


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # seconds until the tripped window resets
    scope: str = ""  # which counter tripped: address | email | phone


ALLOWED = Decision(True)


class RateLimiter:
    """Counters per form: the form's own `rate_limit` when set, else INTAKE_RATE_LIMIT."""

    def __init__(
        self,
        client: aioredis.Redis | None,
        default: str,
        forms: Mapping[str, FormConfig],
        keyed_hash: Callable[..., str],
        timeout_seconds: float,
    ) -> None:
        self._client = client
        self._hash = keyed_hash
        self._rates: dict[str, Rate | None] = {}
        fallback = parse_rate(default)
        for name, form in forms.items():
            try:
                self._rates[name] = parse_rate(form.rate_limit) if form.rate_limit else fallback
            except ValueError as exc:
                raise ValueError(f"forms.{name}.rate_limit: {exc}") from exc
        self._batch = (
            CounterBatch(client.register_script(BUMP_SCRIPT), timeout_seconds)
            if client is not None
            else None
        )
        self._skip_until = 0.0

    @classmethod
    def connect(
        cls,
        redis_url: str,
        default: str,
        forms: Mapping[str, FormConfig],
        keyed_hash: Callable[..., str],
        timeout_seconds: float,
    ) -> RateLimiter:
        """A limiter with its own small Redis client; no connection is made until first use."""
        client = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),  # one try: the wait is bounded, never multiplied
            max_connections=64,
        )
        return cls(client, default, forms, keyed_hash, timeout_seconds)

    def rate_for(self, form: str) -> Rate | None:
        return self._rates.get(form)

    def keys(self, form: str, subjects: Mapping[str, str]) -> dict[str, str]:
        """Counter keys by scope; values are hashed with the service's secret."""
        return {
            scope: f"{KEY_PREFIX}{form}:{scope}:{self._hash('ratelimit', scope, value)[:32]}"
            for scope, value in subjects.items()
            if value
        }

    async def hit(self, form: str, subjects: Mapping[str, str]) -> Decision:
        """Count one submission against every subject; refuse when any counter is over."""
        rate = self._rates.get(form)
        if rate is None or self._batch is None or not subjects:
            return ALLOWED
        if time.monotonic() < self._skip_until:
            return ALLOWED
        keys = self.keys(form, subjects)
        if not keys:
            return ALLOWED
        try:
            counts = await self._batch.bump(list(keys.values()), rate.window_seconds * 1000)
        except (RedisError, OSError, TimeoutError, ValueError, IndexError, TypeError) as exc:
            self._skip_until = time.monotonic() + BREAKER_SECONDS
            log.warning("rate limit unavailable; allowing", extra={"error": type(exc).__name__})
            return ALLOWED
        worst = ALLOWED
        for scope, (count, ttl_ms) in zip(keys, counts, strict=True):
            if count > rate.limit:
                wait = max(1, math.ceil(ttl_ms / 1000))
                if worst.allowed or wait > worst.retry_after:
                    worst = Decision(False, wait, scope)
        return worst

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def too_many(
    request: Request, pages: PageRenderer, decision: Decision, phone: str, language: str = "en"
) -> Response:
    """429 with Retry-After, as JSON or as a page with the phone number and crisis lines."""
    call = f" If you need us sooner, please call {phone}." if phone else ""
    message = (
        "We received several messages from you in a short time. Please wait about "
        f"{_spoken(decision.retry_after)} and send it again.{call}"
    )
    return problem(
        request,
        pages,
        429,
        "RATE_LIMITED",
        message,
        headers={"Retry-After": str(decision.retry_after)},
        language=language,
    )


def _spoken(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    return f"{math.ceil(minutes / 60)} hours"


def subjects(client_address: str, person: Mapping[str, Any]) -> dict[str, str]:
    """What one submission is counted against: its address, and the email and phone it gives."""
    return {
        "address": client_address,
        "email": str(person.get("email", "")).lower(),
        "phone": str(person.get("phone", "")),
    }
