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

SWEEP_BATCH = 500  # due deliveries (with their due siblings) marked and published per statement
MAX_SWEEP_BATCHES = 40  # statements per sweep; a larger backlog goes on at the next sweep


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


def sweep(
    context: WorkerContext,
    now: datetime | None = None,
    *,
    batch: int = SWEEP_BATCH,
    max_batches: int = MAX_SWEEP_BATCHES,
) -> int:
    """Publish the due deliveries; returns how many messages were published.

    One message per submission, for its lead due delivery (service.routing.leads): the worker
    that claims it takes the submission's other due deliveries along (workers.delivery.claim),
    so all of them are marked as published, and a backlog is not published twice over.

    It goes on in batches while there is more, up to max_batches: with one batch per sweep, a
    backlog drained at batch / sweep interval (500 deliveries every 30 s by default), far below
    what the workers deliver."""
    now = now or utcnow()
    due = _due(now, now - requeue_after(context))
    published = marked = 0
    for _ in range(max_batches):
        rows = _mark_due_submissions(context, due, now, batch)
        chosen = leads(rows)
        for delivery_id, priority in chosen:
            context.publish(delivery_id, queue_for(priority, backlog=True))
        published += len(chosen)
        marked += len(rows)
        if len(rows) < batch:  # fewer than a batch was due: nothing is left
            break
    if marked:
        log.info(
            "sweeper re-queued deliveries",
            extra={"count": marked, "messages": published},
        )
    return published


def _mark_due_submissions(
    context: WorkerContext, due: object, now: datetime, batch: int
) -> list[tuple[str, str, int]]:
    """Mark as published every due delivery of the submissions of the next `batch` due
    deliveries (most urgent, then longest due, first); returns (submission id, delivery id,
    priority) of each."""
    candidates = (
        select(deliveries.c.submission_id)
        .where(due)  # type: ignore[arg-type]
        .order_by(deliveries.c.priority, deliveries.c.next_attempt_at)
        .limit(batch)
        .scalar_subquery()
    )
    with context.engine.begin() as connection:
        rows = connection.execute(
            update(deliveries)
            .where(deliveries.c.submission_id.in_(candidates), due)  # type: ignore[arg-type]
            .values(enqueued_at=now)
            .returning(deliveries.c.submission_id, deliveries.c.id, deliveries.c.priority)
        ).all()
    return [(str(s), str(d), int(p)) for s, d, p in rows]
