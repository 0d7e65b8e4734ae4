"""What `intake status` reports: queue depths, deliveries by state, time to admissions.

Counts and durations only: no personal data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from service.db import utcnow
from service.models import (
    ADMISSIONS,
    CANCELLED,
    FAILED,
    OPEN_STATES,
    PENDING,
    QUARANTINED,
    RETRYING,
    SENDING,
    SENT,
    deliveries,
    submissions,
)
from service.ops.common import BROKER_TIMEOUT_SECONDS
from service.routing import QUEUES
from service.settings import Settings

DELIVERY_STATES = (PENDING, SENDING, RETRYING, SENT, FAILED, CANCELLED)
LATENCY_WINDOW = timedelta(hours=1)  # `intake status` reports time to admissions over this span
# kombu's Redis transport keeps a queue's messages of priority 3, 6 and 9 in lists of their own.
REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


@dataclass(frozen=True)
class StateCounts:
    deliveries: dict[str, int]  # every state, zeros included
    failed: int
    quarantined: int
    oldest_open_seconds: float | None  # None: nothing is waiting


@dataclass(frozen=True)
class Latency:
    """Time from submission to admissions notification sent, over a window."""

    count: int
    p50_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True)
class Status:
    queues: dict[str, int | None]  # None: the broker did not answer
    counts: StateCounts
    admissions: Latency
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "queues": self.queues,
            "deliveries": self.counts.deliveries,
            "failed": self.counts.failed,
            "quarantined": self.counts.quarantined,
            "oldest_pending_seconds": self.counts.oldest_open_seconds,
            "time_to_admissions_last_hour": asdict(self.admissions),
        }


def state_counts(engine: Engine, now: datetime | None = None) -> StateCounts:
    now = now or utcnow()
    with engine.connect() as connection:
        by_state: dict[str, int] = dict(
            connection.execute(
                select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
            ).all()
        )
        oldest = connection.execute(
            select(func.min(deliveries.c.created_at)).where(deliveries.c.state.in_(OPEN_STATES))
        ).scalar_one()
        quarantined = connection.execute(
            select(func.count()).select_from(submissions).where(submissions.c.status == QUARANTINED)
        ).scalar_one()
    counts = {state: int(by_state.get(state, 0)) for state in DELIVERY_STATES}
    counts.update({str(k): int(v) for k, v in by_state.items() if k not in counts})
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)  # func.min bypasses the column's type
    return StateCounts(
        deliveries=counts,
        failed=counts[FAILED],
        quarantined=int(quarantined),
        oldest_open_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else None,
    )


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def admissions_latency(
    engine: Engine, now: datetime | None = None, window: timedelta = LATENCY_WINDOW
) -> Latency:
    """p50 and p95 of (sent_at - submission created_at) for admissions notifications sent in
    the window."""
    now = now or utcnow()
    query = (
        select(deliveries.c.sent_at, submissions.c.created_at)
        .join(submissions, submissions.c.id == deliveries.c.submission_id)
        .where(
            deliveries.c.kind == ADMISSIONS,
            deliveries.c.state == SENT,
            deliveries.c.sent_at >= now - window,
        )
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    waits = sorted(max((sent - created).total_seconds(), 0.0) for sent, created in rows)
    return Latency(len(waits), _percentile(waits, 0.5), _percentile(waits, 0.95))


def queue_depths(settings: Settings) -> dict[str, int | None]:
    """Messages waiting per Celery queue; None for each when the broker does not answer."""
    url = settings.celery_broker_url
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            return _redis_depths(url, settings)
        return _amqp_depths(url)
    except Exception:
        return dict.fromkeys(QUEUES)


def _redis_depths(url: str, settings: Settings) -> dict[str, int | None]:
    import redis

    timeout = max(settings.redis_timeout_seconds, BROKER_TIMEOUT_SECONDS)
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                for suffix in REDIS_PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            lengths = pipe.execute()
    finally:
        client.close()
    per_queue = len(REDIS_PRIORITY_SUFFIXES)
    return {
        queue: int(sum(lengths[i * per_queue : (i + 1) * per_queue]))
        for i, queue in enumerate(QUEUES)
    }


def _amqp_depths(url: str) -> dict[str, int | None]:
    from kombu.connection import Connection
    from kombu.exceptions import ChannelError

    depths: dict[str, int | None] = {}
    with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:  # type: ignore[no-untyped-call]
        connection.ensure_connection(max_retries=1)
        for queue in QUEUES:
            channel = connection.channel()
            try:
                depths[queue] = int(channel.queue_declare(queue, passive=True).message_count)
            except ChannelError:
                depths[queue] = 0  # not declared yet: no worker or publisher has used it
            finally:
                channel.close()
    return depths


def status(engine: Engine, settings: Settings, now: datetime | None = None) -> Status:
    now = now or utcnow()
    return Status(
        queues=queue_depths(settings),
        counts=state_counts(engine, now),
        admissions=admissions_latency(engine, now),
        at=now,
    )
