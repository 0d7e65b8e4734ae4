"""The sweeper: re-publishes deliveries the queue may have lost or that are due for a retry.

It is what makes a killed worker, an emptied Redis, or a Redis outage at submit time lose
nothing: the database knows every open delivery, and the sweeper wakes a worker for each one
that is due. Publishing twice is harmless (the claim lets one worker through), so two sweepers
running by mistake cost a little work, never a duplicate email.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from service.db import utcnow
from service.models import PENDING, RETRYING, SENDING, deliveries
from service.routing import leads, queue_for
from workers.context import WorkerContext

log = logging.getLogger("intake.sweeper")

SWEEP_BATCH = 500  # publishes per sweep; a larger backlog drains over successive sweeps


def requeue_after(context: WorkerContext) -> timedelta:
    """How long a published delivery may sit unclaimed before we publish it again."""
    return timedelta(seconds=context.settings.requeue_after_seconds)


def _due(now: datetime, stale: datetime) -> object:
    not_recently_published = or_(
        deliveries.c.enqueued_at.is_(None), deliveries.c.enqueued_at <= stale
    )
    return or_(
        # A retry whose time has come and that has not been published since it was scheduled.
        and_(
            deliveries.c.state == RETRYING,
            deliveries.c.next_attempt_at <= now,
            or_(
                deliveries.c.enqueued_at.is_(None),
                deliveries.c.enqueued_at < deliveries.c.next_attempt_at,
                deliveries.c.enqueued_at <= stale,
            ),
        ),
        # Written but never picked up: the publish was lost (Redis down, flushed, restarted).
        and_(deliveries.c.state == PENDING, not_recently_published),
        # Claimed by a worker that died: its lease ran out.
        and_(
            deliveries.c.state == SENDING,
            deliveries.c.lease_until < now,
            or_(
                deliveries.c.enqueued_at.is_(None),
                deliveries.c.enqueued_at < deliveries.c.lease_until,
                deliveries.c.enqueued_at <= stale,
            ),
        ),
    )


def sweep(context: WorkerContext, now: datetime | None = None) -> int:
    """Publish the due deliveries (up to a batch); returns how many messages were published.

    One message per submission, for its lead due delivery (service.routing.leads): the worker
    that claims it takes the submission's other due deliveries along (workers.delivery.claim).
    All of them are marked as published, so a backlog is not published twice over."""
    now = now or utcnow()
    due = _due(now, now - requeue_after(context))
    candidates = (
        select(deliveries.c.id)
        .where(due)  # type: ignore[arg-type]
        .order_by(deliveries.c.priority, deliveries.c.next_attempt_at)
        .limit(SWEEP_BATCH)
        .scalar_subquery()
    )
    with context.engine.begin() as connection:
        rows = connection.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(candidates), due)  # type: ignore[arg-type]
            .values(enqueued_at=now)
            .returning(deliveries.c.submission_id, deliveries.c.id, deliveries.c.priority)
        ).all()
    chosen = leads((str(s), str(d), int(p)) for s, d, p in rows)
    for delivery_id, priority in chosen:
        context.publish(delivery_id, queue_for(priority, backlog=True))
    if rows:
        log.info(
            "sweeper re-queued deliveries",
            extra={"count": len(rows), "messages": len(chosen)},
        )
    return len(chosen)
