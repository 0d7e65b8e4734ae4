"""Delivery attempts: claim the rows, send, record each outcome. Plain functions; tasks are thin.

The claim is a compare-and-set on the rows, so of any number of workers holding a message for
the same delivery, exactly one sends; the others find it claimed or sent and do nothing.

A message names one delivery, but its worker also claims the submission's other deliveries that
are due (in the same statement), decrypts the submission once and sends them one after the other
on the same SMTP connection, most urgent first. Each outcome is committed before the next send
starts, so a worker killed between two sends cannot cause the first to be sent again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.crypto import PayloadError
from service.db import utcnow
from service.metrics import count_delivery
from service.models import (
    ADMISSIONS,
    AUTOREPLY,
    FAILED,
    FALLBACK,
    PENDING,
    RETRYING,
    SENDING,
    SENT,
    WEBHOOK,
    UTCDateTime,
    attempts,
    deliveries,
    submissions,
)
from service.outbox import new_id, write_transaction
from service.routing import URGENT_PRIORITY, queue_for
from workers.content import SubmissionView, admissions_context, autoreply_context
from workers.context import WorkerContext
from workers.messages import email_bytes, fallback_notice
from workers.recovery import relay_answered
from workers.rendering import ADMISSIONS_TEMPLATE, AUTOREPLY_TEMPLATES
from workers.retry import DeliveryError, PermanentFailure, RelayUnreachable, TemporaryFailure
from workers.smtp import SendReport

log = logging.getLogger("intake.delivery")

FALLBACK_ROUTE_PREFIX = "fallback-of:"
RECORD_RETRY_SECONDS = 0.5  # pause between tries to store an outcome while the database is away


# The order in which the claimed deliveries of one submission go out, after their priority: the
# people who act on an inquiry first, the person's own auto-reply last.
KIND_ORDER = {ADMISSIONS: 0, FALLBACK: 1, WEBHOOK: 2, AUTOREPLY: 3}


@dataclass
class ClaimedSubmission:
    """The submission row of a claim, shared by its claimed deliveries: decrypted once."""

    row: dict[str, Any]
    _view: SubmissionView | None = None

    def view(self, context: WorkerContext) -> SubmissionView:
        if self._view is None:
            self._view = _open(context, self.row)
        return self._view


@dataclass
class Claim:
    """A delivery this worker now owns until its lease ends, with what it needs to send."""

    delivery: dict[str, Any]
    submission: ClaimedSubmission
    attempt: int
    started_at: datetime  # when this attempt started: the claim, then the send

    @property
    def id(self) -> str:
        return str(self.delivery["id"])

    @property
    def lease_until(self) -> datetime:
        lease: datetime = self.delivery["lease_until"]
        return lease

    def remaining(self) -> list[str]:
        done = set(json.loads(self.delivery["delivered_to"])) | set(
            json.loads(self.delivery["refused"])
        )
        return [r for r in json.loads(self.delivery["recipients"]) if r not in done]


@dataclass
class Outcome:
    state: str
    code: int | None = None
    error: str = ""
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    fallback_id: str = ""
    timed_out: bool = False  # the task's soft time limit ended the send: send nothing more
    waits_for_relay: bool = False  # the relay could not be reached: nothing was sent


def _claimable(table: Any, now: Any) -> Any:
    return or_(
        and_(table.c.state.in_((PENDING, RETRYING)), table.c.next_attempt_at <= now),
        and_(table.c.state == SENDING, table.c.lease_until < now),
    )


_named = deliveries.alias("named")
# The named delivery, if it is claimable, and with it every claimable delivery of its submission:
# one statement, so the rows are taken together or not at all. A message for a delivery that is
# claimed or done matches nothing and costs one statement that writes nothing.
_CLAIM = (
    update(deliveries)
    .where(
        deliveries.c.submission_id
        == select(_named.c.submission_id)
        .where(_named.c.id == bindparam("delivery_id"), _claimable(_named, bindparam("now")))
        .scalar_subquery(),
        _claimable(deliveries, bindparam("now")),
    )
    .values(
        state=SENDING,
        attempts=deliveries.c.attempts + 1,
        lease_until=bindparam("lease_end"),
        updated_at=bindparam("now"),
    )
    .returning(*deliveries.c)
)
_SUBMISSION = select(submissions).where(submissions.c.id == bindparam("submission_id"))


def claim(context: WorkerContext, delivery_id: str, now: datetime | None = None) -> list[Claim]:
    """Take the delivery, if it is due and nobody holds it, with its submission's other due
    deliveries; most urgent first. Empty when there is nothing to do.

    The claim's commit does not wait for the disk (SQLite synchronous=NORMAL on the claims
    engine, PostgreSQL synchronous_commit off), which saves an fsync per submission and gives
    up no guarantee. Other workers see the claim as soon as it commits, which is what keeps
    them away. A crash of the machine can lose it, but only together with everything committed
    after it, because the WAL is written in order and each durable commit flushes all of it:
    a lost claim means a lost record too, and a send whose record is lost is sent again
    whether or not its claim survived (the window the record's own durability bounds).
    """
    now = now or utcnow()
    lease_end = now + timedelta(seconds=context.settings.lease_seconds)
    with write_transaction(context.claims) as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        rows = (
            connection.execute(
                _CLAIM, {"delivery_id": delivery_id, "now": now, "lease_end": lease_end}
            )
            .mappings()
            .all()
        )
        if not rows:
            return []
        submission = (
            connection.execute(_SUBMISSION, {"submission_id": rows[0]["submission_id"]})
            .mappings()
            .one()
        )
    shared = ClaimedSubmission(dict(submission))
    claims = [Claim(dict(row), shared, int(row["attempts"]), now) for row in rows]
    claims.sort(key=_send_order)
    return claims


def _send_order(owned: Claim) -> tuple[int, int, str]:
    row = owned.delivery
    return (int(row["priority"]), KIND_ORDER.get(str(row["kind"]), len(KIND_ORDER)), owned.id)


def process(context: WorkerContext, delivery_id: str) -> list[Outcome]:
    """Claim, send and record the delivery and its due siblings, one after the other; empty when
    another worker has them or they are done."""
    claims = claim(context, delivery_id)
    outcomes = []
    # When the relay took the session on which it accepted one of these emails.
    relay_up_since: datetime | None = None
    for index, owned in enumerate(claims):
        owned.started_at = utcnow()
        outcome = attempt(context, owned)
        # Committed before the next send starts: a worker killed between two sends has
        # recorded the first, which therefore cannot be sent again.
        _record_patiently(context, owned, outcome)
        outcomes.append(outcome)
        if outcome.state == SENT and owned.delivery["channel"] == "email":
            relay_up_since = context.transport.connected_at or relay_up_since
        if outcome.fallback_id:
            context.publish(outcome.fallback_id, queue_for(URGENT_PRIORITY))
        log.info(
            "delivery attempt",
            extra={
                "delivery_id": owned.id,
                "submission_id": owned.delivery["submission_id"],
                "kind": owned.delivery["kind"],
                "attempt": owned.attempt,
                "state": outcome.state,
                "code": outcome.code,
                "error": outcome.error,
            },
        )
        if outcome.timed_out:
            release(context, claims[index + 1 :])
            break
    if relay_up_since is not None and not any(outcome.timed_out for outcome in outcomes):
        _after_relay_answered(context, relay_up_since)
    return outcomes


def _after_relay_answered(context: WorkerContext, since: datetime) -> None:
    """Let email that waited for the relay go now (workers.recovery). Whatever fails here (the
    database, the broker, the time limit) costs only speed, never the task whose sends are
    recorded: the sweeper publishes those deliveries when their backoff ends."""
    try:
        relay_answered(context, since)
    except Exception as exc:
        log.warning(
            "could not release email waiting for the relay", extra={"error": type(exc).__name__}
        )


def release(context: WorkerContext, claims: list[Claim], now: datetime | None = None) -> None:
    """Give back claimed deliveries this task will not attempt (its time is up): due now, their
    attempt number unused, and published again so that another task sends them."""
    now = now or utcnow()
    released = []
    with write_transaction(context.engine) as connection:
        for owned in claims:
            result = connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == owned.id,
                    deliveries.c.state == SENDING,
                    deliveries.c.attempts == owned.attempt,
                )
                .values(
                    state=PENDING if owned.attempt == 1 else RETRYING,
                    attempts=owned.attempt - 1,
                    lease_until=None,
                    next_attempt_at=now,
                    enqueued_at=now,
                    updated_at=now,
                )
            )
            if result.rowcount == 1:
                released.append(owned)
    for owned in released:
        context.publish(owned.id, queue_for(int(owned.delivery["priority"])))
        log.info(
            "delivery released unattempted: time limit reached",
            extra={"delivery_id": owned.id, "submission_id": owned.delivery["submission_id"]},
        )


def _record_patiently(context: WorkerContext, owned: Claim, outcome: Outcome) -> None:
    """record(), retried while the database is unreachable, until the claim's lease ends.

    The server may already have the message. An outcome we fail to store leaves the row in
    sending, and when the lease runs out another worker sends it again: a duplicate. So a
    database blip (a restart, a failover, a held lock) is waited out. Past the lease the row is
    no longer ours (record's fence would refuse the write), and the task's time limit usually
    ends the wait before that."""
    while True:
        try:
            record(context, owned, outcome)
            return
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            if utcnow() + timedelta(seconds=RECORD_RETRY_SECONDS) >= owned.lease_until:
                raise
            log.warning(
                "cannot record the delivery outcome yet; retrying",
                extra={"delivery_id": owned.id, "error": type(exc).__name__},
            )
            time.sleep(RECORD_RETRY_SECONDS)


def attempt(context: WorkerContext, owned: Claim) -> Outcome:
    """Send once; every failure becomes an Outcome, never an exception out of here."""
    try:
        report = _send(context, owned)
    except DeliveryError as exc:
        return Outcome(
            RETRYING if exc.temporary else FAILED,
            code=exc.code,
            error=exc.reason,
            refused=exc.refused,
            waits_for_relay=isinstance(exc, RelayUnreachable),
        )
    except SoftTimeLimitExceeded:
        context.transport.abort()  # not close(): QUIT to a hung server would hang too
        return Outcome(RETRYING, error="time limit reached while sending", timed_out=True)
    except PayloadError as exc:
        return Outcome(FAILED, error=f"cannot read submission: {exc}")
    except Exception as exc:  # a bug must not loop: record it, fail, and let admissions know
        log.exception("delivery crashed", extra={"delivery_id": owned.id})
        return Outcome(FAILED, error=f"internal error: {type(exc).__name__}")
    state = RETRYING if report.deferred else SENT
    error = ""
    code = None
    if report.deferred:
        code, text = next(iter(report.deferred.values()))
        error = f"{len(report.deferred)} recipient(s) deferred: {code} {text}"
    elif report.refused:
        code, text = next(iter(report.refused.values()))
        error = f"{len(report.refused)} recipient(s) refused: {code} {text}"
    return Outcome(state, code, error, report.accepted, list(report.refused))


def _open(context: WorkerContext, row: dict[str, Any]) -> SubmissionView:
    if row["payload"] is None:
        raise PayloadError("the submission was purged before it could be delivered")
    payload = context.cipher.open(row["payload"])
    return SubmissionView(
        id=row["id"],
        form=row["form"],
        created_at=row["created_at"],
        language=row["language"],
        urgent=bool(row["urgent"]),
        person=payload.get("person", {}),
        subject=str(payload.get("subject", "")),
    )


def _send(context: WorkerContext, owned: Claim) -> SendReport:
    kind = owned.delivery["kind"]
    recipients = owned.remaining()
    if not recipients:
        return SendReport()
    if kind == WEBHOOK:
        _send_webhook(context, owned)
        return SendReport(accepted=recipients)
    view = owned.submission.view(context)
    reply_to = reply_name = ""
    if kind == AUTOREPLY:
        template = AUTOREPLY_TEMPLATES.get(view.language, AUTOREPLY_TEMPLATES["en"])
        rendered = context.renderer.render(template, autoreply_context(context.config, view))
    else:
        reason = _fallback_reason(context, owned) if kind == FALLBACK else ""
        try:
            rendered = context.renderer.render(
                ADMISSIONS_TEMPLATE,
                admissions_context(
                    context.config,
                    view,
                    detail=context.settings.admissions_detail,
                    fallback_reason=reason,
                ),
            )
        except Exception:
            if kind != FALLBACK:
                raise
            # The last line of defence must not depend on a template rendering.
            rendered = fallback_notice(view.id, reason, context.config.organization.name)
        if view.person.get("email") and view.person.get("email_ok") is not False:
            reply_to = str(view.person["email"])
            reply_name = str(view.person.get("name", ""))
    message = email_bytes(
        rendered,
        sender=context.sender,
        to=recipients,
        message_id=owned.delivery["message_id"],
        date=owned.delivery["created_at"],
        reply_to=reply_to,
        reply_to_name=reply_name,
        auto_reply=kind == AUTOREPLY,
        urgent=view.urgent and kind != AUTOREPLY,
    )
    return context.transport.send(message, context.sender.addr_spec, recipients)


def _send_webhook(context: WorkerContext, owned: Claim) -> None:
    route = next((r for r in context.config.routes if r.name == owned.delivery["route"]), None)
    if route is None or route.webhook is None:
        raise PermanentFailure("the webhook's route is no longer configured")
    view = owned.submission.view(context)
    person = dict(view.person)
    if context.settings.admissions_detail == "minimal":
        person = {k: person[k] for k in ("name", "phone", "email", "best_time") if k in person}
    payload = {
        "type": "inquiry.created",
        "id": owned.id,
        "submission_id": view.id,
        "form": view.form,
        "received_at": view.created_at.isoformat(),
        "urgent": view.urgent,
        "language": view.language,
        "person": person,
    }
    context.webhooks.post(route.webhook.url, route.webhook.secret, owned.id, payload)


def _fallback_reason(context: WorkerContext, owned: Claim) -> str:
    route = str(owned.delivery["route"] or "")
    original = route.removeprefix(FALLBACK_ROUTE_PREFIX)
    with context.engine.connect() as connection:
        row = connection.execute(
            select(deliveries.c.last_error, deliveries.c.recipients).where(
                deliveries.c.id == original
            )
        ).first()
    if row is None:
        return "The admissions notification could not be delivered."
    to = ", ".join(json.loads(row.recipients))
    return f"The admissions notification to {to} could not be delivered: {row.last_error}"


# The fenced outcome (only while the row is still ours: sending, with our attempt number) and
# the attempt row. Built once: building and compiling a statement cost more than running it.
_RECORD = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("delivery_id"),
        deliveries.c.state == SENDING,
        deliveries.c.attempts == bindparam("attempt"),
    )
    .values(
        state=bindparam("new_state"),
        delivered_to=bindparam("new_delivered_to"),
        refused=bindparam("new_refused"),
        updated_at=bindparam("now"),
        lease_until=None,
        last_code=bindparam("code"),
        last_error=bindparam("error"),
        waits_for_relay=bindparam("waits_for_relay"),
        # Unchanged when None: only a retry moves the next attempt, only a send sets sent_at.
        next_attempt_at=func.coalesce(
            bindparam("next_at", type_=UTCDateTime()), deliveries.c.next_attempt_at
        ),
        sent_at=func.coalesce(bindparam("sent_at", type_=UTCDateTime()), deliveries.c.sent_at),
    )
)
_INSERT_ATTEMPT = insert(attempts)


def record(
    context: WorkerContext, owned: Claim, outcome: Outcome, now: datetime | None = None
) -> None:
    """Store the outcome and its attempt row; fenced, so a worker whose lease ran out and whose
    delivery was taken over cannot overwrite the newer owner's state."""
    now = now or utcnow()
    row = owned.delivery
    delivered = json.loads(row["delivered_to"]) + outcome.accepted
    refused = json.loads(row["refused"]) + [r for r in outcome.refused if r not in delivered]
    values: dict[str, Any] = {
        "delivery_id": owned.id,
        "attempt": owned.attempt,
        "new_delivered_to": json.dumps(delivered),
        "new_refused": json.dumps(refused),
        "now": now,
        "code": outcome.code,
        "error": outcome.error[:200] or None,
        "next_at": None,
        "sent_at": None,
        "waits_for_relay": outcome.waits_for_relay,
    }
    state = outcome.state
    if state == RETRYING:
        next_at = context.policy.next_attempt(owned.attempt, row["created_at"], now)
        if next_at is None:
            state = FAILED
            values["error"] = f"gave up after {owned.attempt} attempts: {outcome.error}"[:200]
        else:
            values["next_at"] = next_at
    if state == SENT and not delivered:
        state = FAILED
    if state == SENT:
        values["sent_at"] = now
    values["new_state"] = state
    outcome.state = state
    with write_transaction(context.engine) as connection:
        result = connection.execute(_RECORD, values)
        connection.execute(
            _INSERT_ATTEMPT,
            {
                "delivery_id": owned.id,
                "number": owned.attempt,
                "started_at": owned.started_at,
                "finished_at": now,
                "outcome": _attempt_outcome(outcome, refused),
                "code": outcome.code,
                "error": outcome.error[:200] or None,
            },
        )
        taken_over = result.rowcount != 1
        if not taken_over and state == FAILED and row["kind"] == ADMISSIONS:
            outcome.fallback_id = _add_fallback(connection, context, row, now)
    # Counted once committed, so an outcome stored only on a second try is counted once.
    count_delivery(row["kind"], state, owned.attempt, owned.submission.row["created_at"], now)
    if taken_over:
        log.warning(
            "delivery was taken over; outcome kept as an attempt only",
            extra={"delivery_id": owned.id, "attempt": owned.attempt},
        )


def _attempt_outcome(outcome: Outcome, refused: list[str]) -> str:
    if outcome.state == SENT:
        return "partial" if refused else "sent"
    if outcome.state == RETRYING:
        return "temporary"
    return "permanent"


def _add_fallback(
    connection: Connection, context: WorkerContext, row: dict[str, Any], now: datetime
) -> str:
    fallback_id = new_id()
    domain = context.sender.domain
    connection.execute(
        insert(deliveries).values(
            id=fallback_id,
            submission_id=row["submission_id"],
            kind=FALLBACK,
            channel="email",
            route=f"{FALLBACK_ROUTE_PREFIX}{row['id']}",
            recipients=json.dumps(list(context.settings.fallback_email)),
            delivered_to="[]",
            refused="[]",
            state=PENDING,
            priority=URGENT_PRIORITY,
            attempts=0,
            message_id=f"<{fallback_id}@{domain}>",
            created_at=now,
            updated_at=now,
            next_attempt_at=now,
            enqueued_at=now,
        )
    )
    log.warning(
        "admissions notification failed; fallback queued",
        extra={"delivery_id": row["id"], "fallback_id": fallback_id},
    )
    return fallback_id


__all__ = [
    "Claim",
    "Outcome",
    "TemporaryFailure",
    "attempt",
    "claim",
    "process",
    "record",
    "release",
]
