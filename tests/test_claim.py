"""The claim, the fenced record and the sweeper, against the real database (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from service.db import utcnow
from service.models import RETRYING, SENDING, SENT, deliveries, submissions
from service.outbox import SubmissionRecord, build_record, new_id, write_records
from service.routing import PlannedDelivery
from service.settings import Settings
from workers.context import WorkerContext
from workers.delivery import Outcome, claim, record
from workers.sweeper import sweep


def context(settings: Settings, published: list[tuple[str, str]]) -> WorkerContext:
    return WorkerContext.build(
        settings, lambda delivery_id, queue: published.append((delivery_id, queue))
    )


def new_record(payload: str = 'json:{"person": {"name": "A"}}') -> SubmissionRecord:
    now = utcnow()
    submission = {
        "id": new_id(),
        "form": "contact",
        "created_at": now,
        "status": "accepted",
        "language": "en",
        "urgent": False,
        "payload": payload,
    }
    plan = [PlannedDelivery("admissions", "email", ("a@x.org",), "default", 1)]
    return build_record(submission, plan, now=now, mail_domain="x.org")


def store_one(engine: Engine) -> SubmissionRecord:
    rec = new_record()
    write_records(engine, [rec], timedelta(minutes=10))
    return rec


def state_of(engine: Engine, delivery_id: str) -> dict:
    with engine.connect() as c:
        return dict(
            c.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().one()
        )


def test_only_one_of_many_concurrent_claims_wins(settings: Settings, engine: Engine) -> None:
    ctx = context(settings, [])
    delivery_id = store_one(engine).deliveries[0]["id"]
    winners: list[object] = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        barrier.wait()
        owned = claim(ctx, delivery_id)
        if owned is not None:
            winners.append(owned)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx.close()
    assert len(winners) == 1
    assert state_of(engine, delivery_id)["state"] == SENDING


def test_a_taken_over_delivery_cannot_be_overwritten(settings: Settings, engine: Engine) -> None:
    ctx = context(settings, [])
    delivery_id = store_one(engine).deliveries[0]["id"]
    first = claim(ctx, delivery_id)
    assert first is not None
    later = utcnow() + timedelta(seconds=settings.lease_seconds + 1)
    second = claim(ctx, delivery_id, now=later)  # the first worker's lease ran out
    assert second is not None and second.attempt == 2
    record(ctx, first, Outcome(RETRYING, error="late"))  # the stale worker reports in
    assert state_of(engine, delivery_id)["state"] == SENDING
    record(ctx, second, Outcome(SENT, accepted=["a@x.org"]))
    row = state_of(engine, delivery_id)
    ctx.close()
    assert row["state"] == SENT and row["attempts"] == 2


def test_sweeper_publishes_each_due_delivery_once(settings: Settings, engine: Engine) -> None:
    published: list[tuple[str, str]] = []
    ctx = context(settings, published)
    fresh = store_one(engine).deliveries[0]["id"]
    lost = store_one(engine).deliveries[0]["id"]
    due_retry = store_one(engine).deliveries[0]["id"]
    later_retry = store_one(engine).deliveries[0]["id"]
    now = utcnow()
    old = now - timedelta(seconds=settings.requeue_after_seconds + 1)
    with engine.begin() as c:
        c.execute(update(deliveries).where(deliveries.c.id == lost).values(enqueued_at=old))
        c.execute(
            update(deliveries)
            .where(deliveries.c.id == due_retry)
            .values(state=RETRYING, next_attempt_at=now - timedelta(seconds=1), enqueued_at=old)
        )
        c.execute(
            update(deliveries)
            .where(deliveries.c.id == later_retry)
            .values(state=RETRYING, next_attempt_at=now + timedelta(hours=1), enqueued_at=old)
        )
    assert sweep(ctx, now) == 2
    assert sorted(d for d, _ in published) == sorted([lost, due_retry])
    assert {q for _, q in published} == {"backlog"}
    assert sweep(ctx, now + timedelta(seconds=0.1)) == 0  # just published: not again
    assert fresh not in [d for d, _ in published]
    ctx.close()


def test_outbox_write_is_atomic(engine: Engine) -> None:
    """A delivery row that cannot be written takes its submission down with it."""
    first = store_one(engine)
    clash = new_record("json:{}")
    clash.deliveries[0]["id"] = first.deliveries[0]["id"]  # primary key already taken
    with pytest.raises(IntegrityError):
        write_records(engine, [clash], timedelta(minutes=10))
    with engine.connect() as c:
        ids = c.execute(select(submissions.c.id)).scalars().all()
    assert ids == [first.id]
