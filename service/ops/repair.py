"""Mending: list failed deliveries, send them again, wake workers, re-seal payloads with a new key.

Failure reasons are shown with addresses masked unless `personal=True` (SMTP replies can quote
the address they refuse).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import Engine, select, update

from service.crypto import PayloadCipher, PayloadError
from service.db import utcnow
from service.models import FAILED, PENDING, RETRYING, deliveries, submissions
from service.ops.common import BROKER_TIMEOUT_SECONDS, OpsError, mask_addresses
from service.routing import queue_for
from service.settings import Settings

ROTATE_BATCH = 500  # payloads re-sealed per transaction


@dataclass(frozen=True)
class FailedDelivery:
    id: str
    submission_id: str
    kind: str
    route: str
    attempts: int
    code: int | None
    reason: str
    failed_at: datetime
    recipients: list[str] = field(default_factory=list)  # only when personal data was asked for

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_at"] = self.failed_at.isoformat()
        return data


def failed_deliveries(
    engine: Engine, *, limit: int = 100, personal: bool = False
) -> list[FailedDelivery]:
    """Failed deliveries, newest first. Reasons have addresses masked unless personal."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries)
            .where(deliveries.c.state == FAILED)
            .order_by(deliveries.c.updated_at.desc())
            .limit(limit)
        ).mappings()
        found = []
        for row in rows:
            reason = row["last_error"] or ""
            found.append(
                FailedDelivery(
                    id=row["id"],
                    submission_id=row["submission_id"],
                    kind=row["kind"],
                    route=row["route"] or "",
                    attempts=int(row["attempts"]),
                    code=row["last_code"],
                    reason=reason if personal else mask_addresses(reason),
                    failed_at=row["updated_at"],
                    recipients=json.loads(row["recipients"]) if personal else [],
                )
            )
    return found


@dataclass
class RetryResult:
    jobs: list[tuple[str, str]]  # (delivery id, queue) set back to pending, to publish
    skipped: dict[str, str]  # delivery id -> why it was not retried (not found, its state)


def retry_failed(
    engine: Engine, ids: Iterable[str] | None = None, now: datetime | None = None
) -> RetryResult:
    """Set failed deliveries (the given ids, or every failed one) back to pending, attempts kept.

    Recipients that refused are tried again (the cause may be fixed); those that already
    received the message are not. The state guard makes a concurrent second retry a no-op.
    """
    now = now or utcnow()
    wanted = None if ids is None else list(dict.fromkeys(ids))
    where = [deliveries.c.state == FAILED]
    if wanted is not None:
        if not wanted:
            return RetryResult([], {})
        where.append(deliveries.c.id.in_(wanted))
    with engine.begin() as connection:
        rows = connection.execute(
            update(deliveries)
            .where(*where)
            .values(
                state=PENDING,
                refused="[]",
                next_attempt_at=now,
                enqueued_at=now,
                lease_until=None,
                updated_at=now,
            )
            .returning(deliveries.c.id, deliveries.c.priority)
        ).all()
        done = {row.id for row in rows}
        skipped: dict[str, str] = {}
        if wanted is not None:
            others = [i for i in wanted if i not in done]
            states = dict(
                connection.execute(
                    select(deliveries.c.id, deliveries.c.state).where(deliveries.c.id.in_(others))
                ).all()
            )
            skipped = {i: f"is {states[i]}" if i in states else "not found" for i in others}
    jobs = [(row.id, queue_for(row.priority)) for row in sorted(rows, key=lambda r: r.priority)]
    return RetryResult(jobs, skipped)


def hurry_retrying(engine: Engine, now: datetime | None = None) -> list[tuple[str, str]]:
    """Bring every waiting retry forward to now (after an outage is fixed, rather than wait out
    the backoff). Returns (delivery id, queue) pairs to publish; urgent first, the rest on the
    backlog queue behind fresh work."""
    now = now or utcnow()
    with engine.begin() as connection:
        rows = connection.execute(
            update(deliveries)
            .where(deliveries.c.state == RETRYING)
            .values(next_attempt_at=now, enqueued_at=now, updated_at=now)
            .returning(deliveries.c.id, deliveries.c.priority)
        ).all()
    ordered = sorted(rows, key=lambda r: r.priority)
    return [(row.id, queue_for(row.priority, backlog=True)) for row in ordered]


def publish(engine: Engine, settings: Settings, jobs: Sequence[tuple[str, str]]) -> int:
    """Wake workers for these deliveries; returns how many were published. What the broker did
    not take is marked unpublished, so the next sweep publishes it."""
    if not jobs:
        return 0
    from workers.celery_app import DELIVER_TASK, create_celery

    app = create_celery(settings, include_tasks=False)
    app.conf.broker_connection_timeout = BROKER_TIMEOUT_SECONDS
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for delivery_id, queue in jobs:
                app.send_task(
                    DELIVER_TASK,
                    args=[delivery_id],
                    queue=queue,
                    producer=producer,
                    retry=False,
                    ignore_result=True,
                )
                sent += 1
    except Exception:
        missed = [delivery_id for delivery_id, _ in jobs[sent:]]
        with engine.begin() as connection:
            connection.execute(
                update(deliveries).where(deliveries.c.id.in_(missed)).values(enqueued_at=None)
            )
    finally:
        app.close()
    return sent


@dataclass
class RotateResult:
    resealed: int = 0
    unreadable: list[str] = field(default_factory=list)  # submission ids no configured key opens
    changed_meanwhile: int = 0  # rewritten or purged by someone else during the rotation


def rotate_keys(engine: Engine, settings: Settings, *, batch: int = ROTATE_BATCH) -> RotateResult:
    """Re-seal every stored payload under the newest INTAKE_ENCRYPTION_KEY (the first listed);
    plain payloads get sealed. Afterwards the older keys can be removed from the setting."""
    cipher = PayloadCipher(settings.encryption_key.reveal())
    if not cipher.encrypts:
        raise OpsError(
            "INTAKE_ENCRYPTION_KEY is not set: put the new key first, the old ones after it, "
            "comma-separated"
        )
    result = RotateResult()
    after = ""
    while True:
        with engine.begin() as connection:
            rows = connection.execute(
                select(submissions.c.id, submissions.c.payload)
                .where(submissions.c.payload.is_not(None), submissions.c.id > after)
                .order_by(submissions.c.id)
                .limit(batch)
            ).all()
            for submission_id, stored in rows:
                try:
                    sealed = cipher.rotate(stored)
                except (PayloadError, InvalidToken):  # rotate() lets InvalidToken through
                    result.unreadable.append(submission_id)
                    continue
                changed = connection.execute(
                    update(submissions)
                    .where(submissions.c.id == submission_id, submissions.c.payload == stored)
                    .values(payload=sealed)
                )
                if changed.rowcount == 1:
                    result.resealed += 1
                else:
                    result.changed_meanwhile += 1
        if len(rows) < batch:
            return result
        after = rows[-1][0]
