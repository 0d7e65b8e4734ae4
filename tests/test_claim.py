"""The claim, the fenced record and the sweeper, against the real database (SQLite, PostgreSQL).

A claim takes the named delivery and its submission's other due deliveries together; they are
sent one after the other, each outcome committed before the next send starts."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from service.db import utcnow
from service.models import RETRYING, SENDING, SENT, deliveries, submissions
from service.outbox import SubmissionRecord, build_record, new_id, write_records
from service.routing import PlannedDelivery
from service.settings import Settings
from tests.support.smtp import SmtpSink
from workers.context import WorkerContext
from workers.delivery import Outcome, attempt, claim, process, record
from workers.sweeper import sweep


def context(settings: Settings, published: list[tuple[str, str]]) -> WorkerContext:
    return WorkerContext.build(
        settings, lambda delivery_id, queue: published.append((delivery_id, queue))
    )


def new_record(
    payload: str = 'json:{"person": {"name": "A"}}', *, with_autoreply: bool = False
) -> SubmissionRecord:
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
    if with_autoreply:
        plan.append(PlannedDelivery("autoreply", "email", ("p@x.org",), "default", 2))
    return build_record(submission, plan, now=now, mail_domain="x.org")


def store_one(engine: Engine, *, with_autoreply: bool = False) -> SubmissionRecord:
    rec = new_record(with_autoreply=with_autoreply)
    write_records(engine, [rec], timedelta(minutes=10))
    return rec


def set_row(engine: Engine, delivery_id: str, **values: object) -> None:
    with engine.begin() as c:
        c.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


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
        winners.extend(claim(ctx, delivery_id))

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
    [first] = claim(ctx, delivery_id)
    later = utcnow() + timedelta(seconds=settings.lease_seconds + 1)
    [second] = claim(ctx, delivery_id, now=later)  # the first worker's lease ran out
    assert second.attempt == 2
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


def test_sweeper_wakes_one_worker_per_submission_and_marks_every_delivery(
    settings: Settings, engine: Engine
) -> None:
    published: list[tuple[str, str]] = []
    ctx = context(settings, published)
    lost = store_one(engine, with_autoreply=True)  # published once, the message then lost
    old = utcnow() - timedelta(seconds=settings.requeue_after_seconds + 1)
    ids = [d["id"] for d in lost.deliveries]
    for delivery_id in ids:
        set_row(engine, delivery_id, enqueued_at=old)
    now = utcnow()
    assert sweep(ctx, now) == 1
    admissions = next(d["id"] for d in lost.deliveries if d["kind"] == "admissions")
    assert published == [(admissions, "backlog")]
    assert all(state_of(engine, d)["enqueued_at"] == now for d in ids)
    assert sweep(ctx, now + timedelta(seconds=0.1)) == 0  # the auto-reply is not published alone
    claimed = claim(ctx, admissions)  # and the worker that takes the message sends both
    assert sorted(c.id for c in claimed) == sorted(ids)
    ctx.close()


def test_sweeper_publishes_a_backlog_larger_than_a_batch_in_one_sweep(
    settings: Settings, engine: Engine
) -> None:
    """A backlog goes out in successive batches of one sweep (not one batch per sweep, which
    held the drain far below the workers' pace), every submission once, siblings together."""
    published: list[tuple[str, str]] = []
    ctx = context(settings, published)
    lost = [store_one(engine, with_autoreply=True) for _ in range(7)]
    rows = [row for submission in lost for row in submission.deliveries]
    old = utcnow() - timedelta(seconds=settings.requeue_after_seconds + 1)

    def lose_the_messages() -> None:
        for row in rows:
            set_row(engine, row["id"], enqueued_at=old)

    lose_the_messages()
    now = utcnow()
    assert sweep(ctx, now, batch=3) == 7
    leads = {row["id"] for row in rows if row["kind"] == "admissions"}
    assert {d for d, _ in published} == leads  # one message per submission, for its lead
    assert all(state_of(engine, row["id"])["enqueued_at"] == now for row in rows)
    assert sweep(ctx, now + timedelta(seconds=0.1), batch=3) == 0

    lose_the_messages()
    published.clear()
    assert sweep(ctx, now, batch=3, max_batches=2) == 6  # bounded; the next sweep goes on
    assert sweep(ctx, now, batch=3, max_batches=2) == 1
    assert {d for d, _ in published} == leads
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


# --- One message, every due delivery of its submission ---------------------------------------


def test_the_deliveries_of_a_submission_are_claimed_together_most_urgent_first(
    settings: Settings, engine: Engine
) -> None:
    ctx = context(settings, [])
    admissions, autoreply = (d["id"] for d in store_one(engine, with_autoreply=True).deliveries)
    claims = claim(ctx, autoreply)  # the message named the auto-reply
    assert [c.id for c in claims] == [admissions, autoreply]
    assert [c.attempt for c in claims] == [1, 1]
    assert claims[0].submission is claims[1].submission  # decrypted once, for both
    assert {state_of(engine, d)["state"] for d in (admissions, autoreply)} == {SENDING}
    assert claim(ctx, admissions) == [] and claim(ctx, autoreply) == []  # duplicates: no-ops
    ctx.close()


def test_a_sibling_sent_held_or_not_yet_due_is_left_alone(
    settings: Settings, engine: Engine
) -> None:
    ctx = context(settings, [])
    later = utcnow() + timedelta(hours=1)
    cases = {
        "sent": {"state": SENT, "attempts": 1},
        "held": {"state": SENDING, "attempts": 1, "lease_until": later},
        "not due": {"state": RETRYING, "attempts": 1, "next_attempt_at": later},
    }
    for case, values in cases.items():
        admissions, autoreply = (d["id"] for d in store_one(engine, with_autoreply=True).deliveries)
        set_row(engine, autoreply, **values)
        before = state_of(engine, autoreply)
        assert [c.id for c in claim(ctx, admissions)] == [admissions], case
        assert state_of(engine, autoreply) == before, case
    ctx.close()


def test_a_message_for_a_done_delivery_claims_nothing(settings: Settings, engine: Engine) -> None:
    """Its due sibling has a message of its own (from the sweeper, when it is a retry)."""
    ctx = context(settings, [])
    admissions, autoreply = (d["id"] for d in store_one(engine, with_autoreply=True).deliveries)
    set_row(engine, admissions, state=SENT, attempts=1)
    assert claim(ctx, admissions) == []
    assert state_of(engine, autoreply)["state"] == "pending"
    ctx.close()


class Killed(BaseException):
    """Stands for the worker process dying: nothing in the delivery code catches it."""


class DyingTransport:
    """Sends through the real transport, checking that every earlier outcome is already
    committed, and dies as the given send starts."""

    def __init__(self, ctx: WorkerContext, engine: Engine, die_at: int) -> None:
        self.real, self.engine, self.die_at = ctx.transport, engine, die_at
        self.sent: list[str] = []

    def send(self, message: bytes, sender: str, recipients: list[str]) -> object:
        with self.engine.connect() as c:
            states = c.execute(select(deliveries.c.state)).scalars().all()
        assert states.count(SENT) == len(self.sent)  # the HARD RULE: recorded before next send
        if len(self.sent) == self.die_at:
            raise Killed
        self.sent.extend(recipients)
        return self.real.send(message, sender, recipients)

    @property
    def connected_at(self) -> object:
        return self.real.connected_at

    def abort(self) -> None:
        self.real.abort()

    def close(self) -> None:
        self.real.close()


def test_a_worker_killed_between_two_sends_does_not_send_the_first_again(
    settings: Settings, engine: Engine, smtp: SmtpSink
) -> None:
    ctx = context(settings, [])
    admissions, autoreply = (d["id"] for d in store_one(engine, with_autoreply=True).deliveries)
    dying = DyingTransport(ctx, engine, die_at=1)
    ctx.transport = dying  # type: ignore[assignment]
    with pytest.raises(Killed):
        process(ctx, autoreply)
    assert dying.sent == ["a@x.org"] and len(smtp.received) == 1
    assert state_of(engine, admissions)["state"] == SENT
    assert state_of(engine, autoreply)["state"] == SENDING  # held until its lease ends
    # Another worker, once the lease has run out (the sweeper publishes it again):
    ctx.transport = dying.real
    after_lease = utcnow() + timedelta(seconds=settings.lease_seconds + 1)
    assert claim(ctx, admissions, now=after_lease) == []  # sent: a stray message does nothing
    [retaken] = claim(ctx, autoreply, now=after_lease)
    assert retaken.id == autoreply and retaken.attempt == 2
    record(ctx, retaken, attempt(ctx, retaken))
    ctx.close()
    assert [r.recipients for r in smtp.received] == [["a@x.org"], ["p@x.org"]]
    assert state_of(engine, admissions)["attempts"] == 1


def test_the_time_limit_gives_back_what_was_not_attempted(
    settings: Settings, engine: Engine, smtp: SmtpSink
) -> None:
    published: list[tuple[str, str]] = []
    ctx = context(settings, published)
    admissions, autoreply = (d["id"] for d in store_one(engine, with_autoreply=True).deliveries)

    def out_of_time(*_: object) -> object:
        raise SoftTimeLimitExceeded

    ctx.transport.send = out_of_time  # type: ignore[method-assign]
    outcomes = process(ctx, admissions)
    ctx.close()
    assert [o.state for o in outcomes] == [RETRYING]  # only the first was attempted
    assert state_of(engine, admissions)["state"] == RETRYING
    given_back = state_of(engine, autoreply)
    assert given_back["state"] == "pending" and given_back["attempts"] == 0
    assert given_back["lease_until"] is None
    assert published == [(autoreply, "autoreply")]
    assert smtp.received == []
