"""Quarantined submissions for ops: list them (no personal data) and release one.

Releasing plans the deliveries the submission would have had when it arrived and writes them in
the same transaction that flips its status, so a release is all or nothing and can never run
twice. The caller publishes the returned delivery ids (the sweeper would find them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from service.config import AppConfig
from service.crypto import PayloadCipher, PayloadError
from service.db import utcnow
from service.models import QUARANTINED, RELEASED, deliveries, submissions
from service.outbox import build_record
from service.routing import plan_deliveries, queue_for
from service.settings import Settings

DEFAULT_LIST_LIMIT = 200  # rows `list_quarantined` returns unless asked for more


class QuarantineError(Exception):
    """The submission cannot be released; the message says why (no personal data)."""


@dataclass(frozen=True)
class QuarantinedItem:
    id: str
    form: str
    reason: str
    created_at: datetime
    age_seconds: float
    purged: bool  # personal fields already erased: it can no longer be released


@dataclass(frozen=True)
class Released:
    submission_id: str
    jobs: list[tuple[str, str]]  # (delivery id, queue) pairs for the publisher


def list_quarantined(
    engine: Engine, *, limit: int = DEFAULT_LIST_LIMIT, now: datetime | None = None
) -> list[QuarantinedItem]:
    """Quarantined submissions, oldest first: ids, form, reason and age only."""
    now = now or utcnow()
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                submissions.c.id,
                submissions.c.form,
                submissions.c.quarantine_reason,
                submissions.c.created_at,
                submissions.c.purged_at,
            )
            .where(submissions.c.status == QUARANTINED)
            .order_by(submissions.c.created_at)
            .limit(limit)
        ).all()
    return [
        QuarantinedItem(
            id=row.id,
            form=row.form,
            reason=row.quarantine_reason or "",
            created_at=row.created_at,
            age_seconds=(now - row.created_at).total_seconds(),
            purged=row.purged_at is not None,
        )
        for row in rows
    ]


def release(
    engine: Engine,
    settings: Settings,
    config: AppConfig,
    submission_id: str,
    *,
    now: datetime | None = None,
) -> Released:
    """Mark one quarantined submission released and create its deliveries, atomically."""
    from service.endpoints.submit import mail_domain

    now = now or utcnow()
    cipher = PayloadCipher(settings.encryption_key.reveal())
    with engine.begin() as connection:
        row = (
            connection.execute(select(submissions).where(submissions.c.id == submission_id))
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise QuarantineError(f"no submission {submission_id}")
        if row["status"] != QUARANTINED:
            raise QuarantineError(f"submission {submission_id} is {row['status']}, not quarantined")
        if row["payload"] is None:
            raise QuarantineError(f"submission {submission_id} was purged; nothing to release")
        if config.form(row["form"]) is None:
            raise QuarantineError(f"form {row['form']!r} is no longer configured")
        try:
            person = cipher.open(row["payload"])["person"]
        except (PayloadError, KeyError, ValueError) as exc:
            raise QuarantineError(f"submission {submission_id}: {exc}") from exc
        plan = plan_deliveries(
            config, settings, row["form"], person, row["language"], bool(row["urgent"])
        )
        record = build_record(dict(row), plan, now=now, mail_domain=mail_domain(settings.mail_from))
        # The status guard makes a concurrent second release update nothing, and fail here.
        flipped = connection.execute(
            update(submissions)
            .where(submissions.c.id == submission_id, submissions.c.status == QUARANTINED)
            .values(status=RELEASED)
        )
        if flipped.rowcount != 1:
            raise QuarantineError(f"submission {submission_id} was released meanwhile")
        if record.deliveries:
            connection.execute(insert(deliveries), record.deliveries)
    jobs = [(d["id"], queue_for(d["priority"])) for d in record.deliveries]
    return Released(submission_id, jobs)
