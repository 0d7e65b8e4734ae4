"""The retry policy: exponential backoff with full jitter, a lifetime, and the classification."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from workers.retry import (
    PermanentFailure,
    RetryPolicy,
    TemporaryFailure,
    http_failure,
    smtp_failure,
)

POLICY = RetryPolicy(base_seconds=120, max_seconds=4 * 3600, lifetime_seconds=5 * 86400)


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(7)
    for attempt in range(1, 20):
        ceiling = min(4 * 3600, 120 * 2 ** (attempt - 1))
        delays = [POLICY.delay(attempt, rng).total_seconds() for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # full jitter spreads over the whole range


def test_gives_up_after_the_lifetime() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert POLICY.next_attempt(3, created, created + timedelta(hours=1)) is not None
    assert POLICY.next_attempt(40, created, created + timedelta(days=5)) is None


def test_classification() -> None:
    assert isinstance(smtp_failure(421, "x"), TemporaryFailure)
    assert isinstance(smtp_failure(452, "x"), TemporaryFailure)
    assert isinstance(smtp_failure(550, "x"), PermanentFailure)
    assert isinstance(smtp_failure(553, "x"), PermanentFailure)
    assert isinstance(http_failure(503, "x"), TemporaryFailure)
    assert isinstance(http_failure(429, "x"), TemporaryFailure)
    assert isinstance(http_failure(400, "x"), PermanentFailure)
    assert isinstance(http_failure(410, "x"), PermanentFailure)
