"""The retry policy, declared in one place: what is temporary, what is permanent, how long to wait.

Like a mail server: temporary failures (connection trouble, timeouts, SMTP 4xx) are retried with
exponential backoff and full jitter until a lifetime of days runs out; permanent failures
(SMTP 5xx, a webhook's 4xx) fail at once and are recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


class DeliveryError(Exception):
    """A delivery attempt failed. `code` is the SMTP or HTTP status when there was one."""

    temporary = True

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:200]
        self.code = code
        self.refused: list[str] = []  # recipients refused for good, when the server said so


class TemporaryFailure(DeliveryError):
    """Try again later: nothing says the message can never be delivered."""


class RelayUnreachable(TemporaryFailure):
    """No SMTP session with the relay: the connection was refused, reset, timed out or failed
    its TLS handshake, or closed before MAIL. Nothing of the message was sent and the relay
    said nothing, so it is sent again as soon as the relay takes email (workers.recovery);
    a reply such as a 421 greeting keeps its backoff, since relays throttle with it."""


class PermanentFailure(DeliveryError):
    """Do not try again: the receiver refused this message for good."""

    temporary = False


def smtp_failure(code: int, reason: str) -> DeliveryError:
    """SMTP replies: 4xx temporary, 5xx permanent; anything else is treated as temporary."""
    if 500 <= code < 600:
        return PermanentFailure(reason, code)
    return TemporaryFailure(reason, code)


def http_failure(status: int, reason: str) -> DeliveryError:
    """Webhooks: 408, 425, 429 and 5xx are worth retrying; other 4xx will not change."""
    if status in (408, 425, 429) or status >= 500:
        return TemporaryFailure(reason, status)
    return PermanentFailure(reason, status)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    lifetime_seconds: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))], so a crowd of retries
        after an outage spreads out instead of arriving together. The sweeper's interval is the
        practical minimum."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(attempt - 1, 0))
        return timedelta(seconds=(rng or random).uniform(0, ceiling))

    def next_attempt(self, attempt: int, created_at: datetime, now: datetime) -> datetime | None:
        """When to try again, or None when the lifetime would be exceeded (give up)."""
        when = now + self.delay(attempt)
        if when > created_at + timedelta(seconds=self.lifetime_seconds):
            return None
        return when
