"""Retention: personal fields are erased once their deliveries are done and their time is up.

What remains is metadata with no personal data (ids, form, times, states, routing codes), so
ops can still count and audit. Erasure overwrites the payload column; it is not a soft flag.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, exists, or_, select, update

from service.db import utcnow
from service.models import AUTOREPLY, OPEN_STATES, QUARANTINED, attempts, deliveries, submissions
from service.settings import Settings

log = logging.getLogger("intake.retention")

PURGE_BATCH = 1000  # submissions per run; the hourly schedule catches up on a backlog


def purge(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Erase personal fields past retention; returns how many submissions were purged.

    Besides the payload, the person's address is erased where delivery records carry it (the
    auto-reply's recipients) and so are SMTP replies, which can quote an address.
    """
    now = now or utcnow()
    kept_until = now - timedelta(days=settings.retention_days)
    quarantine_until = now - timedelta(days=settings.quarantine_days)
    open_work = exists().where(
        deliveries.c.submission_id == submissions.c.id, deliveries.c.state.in_(OPEN_STATES)
    )
    expired = or_(
        and_(submissions.c.status != QUARANTINED, submissions.c.created_at < kept_until),
        and_(submissions.c.status == QUARANTINED, submissions.c.created_at < quarantine_until),
    )
    with engine.begin() as connection:
        ids = list(
            connection.execute(
                select(submissions.c.id)
                .where(submissions.c.payload.is_not(None), expired, ~open_work)
                .limit(PURGE_BATCH)
            ).scalars()
        )
        if not ids:
            return 0
        connection.execute(
            update(submissions)
            .where(submissions.c.id.in_(ids))
            .values(
                payload=None, client_address=None, fingerprint=None, state_code=None, purged_at=now
            )
        )
        connection.execute(
            update(deliveries)
            .where(deliveries.c.submission_id.in_(ids), deliveries.c.kind == AUTOREPLY)
            .values(recipients="[]", delivered_to="[]", refused="[]")
        )
        connection.execute(
            update(deliveries).where(deliveries.c.submission_id.in_(ids)).values(last_error=None)
        )
        connection.execute(
            update(attempts)
            .where(
                attempts.c.delivery_id.in_(
                    select(deliveries.c.id).where(deliveries.c.submission_id.in_(ids))
                )
            )
            .values(error=None)
        )
    log.info("purged personal fields", extra={"submissions": len(ids)})
    return len(ids)


def purgeable(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """How many submissions a purge would erase now (for `intake status`)."""
    now = now or utcnow()
    kept_until = now - timedelta(days=settings.retention_days)
    with engine.connect() as connection:
        rows = connection.execute(
            select(submissions.c.id).where(
                submissions.c.payload.is_not(None), submissions.c.created_at < kept_until
            )
        ).all()
    return len(rows)
