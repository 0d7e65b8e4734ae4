"""Retention: personal fields are erased once their deliveries are done and their time is up.

What remains is metadata with no personal data (ids, form, times, states, routing codes), so
ops can still count and audit. Erasure overwrites the payload column; it is not a soft flag.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, exists, or_, select, update

from service.db import utcnow
from service.models import OPEN_STATES, QUARANTINED, deliveries, submissions
from service.settings import Settings

log = logging.getLogger("intake.retention")


def purge(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Erase personal fields past retention; returns how many submissions were purged."""
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
        result = connection.execute(
            update(submissions)
            .where(submissions.c.payload.is_not(None), expired, ~open_work)
            .values(
                payload=None,
                client_address=None,
                fingerprint=None,
                state_code=None,
                purged_at=now,
            )
        )
    count = int(result.rowcount or 0)
    if count:
        log.info("purged personal fields", extra={"submissions": count})
    return count


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
