"""When the mail relay answers again, the email that waited for it goes at once.

Retries back off with full jitter, up to hours apart (INTAKE_RETRY_MAX_SECONDS). That is right
while the relay is down, but once it is back it would spread an outage's backlog over the next
hours, and an inquiry to admissions would arrive long after mail flows again. So after an email
is accepted, the email deliveries that failed before that send began because the relay could
not be reached (no SMTP reply at all, or 421 "service not available") are made due now, and the
sweeper publishes them straight away.

Failures that concern one message or one recipient (a 4xx after RCPT or DATA) keep their
backoff: a relay taking our mail says nothing about them. Webhooks are per endpoint and are
left alone too.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import bindparam, exists, or_, select, update

from service.db import utcnow
from service.models import RETRYING, deliveries
from service.outbox import write_transaction
from workers.context import WorkerContext
from workers.sweeper import sweep

log = logging.getLogger("intake.recovery")

CHECK_EVERY_SECONDS = 5.0  # per worker process: how often a successful send looks for waiters
RELAY_UNAVAILABLE = 421  # the one SMTP reply that speaks of the relay rather than the message

_WAITING_FOR_RELAY = (
    (deliveries.c.state == RETRYING)
    & (deliveries.c.next_attempt_at > bindparam("now"))
    & (deliveries.c.channel == "email")
    & (deliveries.c.updated_at < bindparam("relay_up_since"))
    & or_(deliveries.c.last_code.is_(None), deliveries.c.last_code == RELAY_UNAVAILABLE)
)
_ANY_WAITING = select(exists().where(_WAITING_FOR_RELAY))
_MAKE_DUE = update(deliveries).where(_WAITING_FOR_RELAY).values(next_attempt_at=bindparam("now"))


def relay_answered(context: WorkerContext, since: datetime) -> int:
    """The relay accepted an email whose send began at `since`: make what failed to reach it
    before then due now, and publish it. Returns how many deliveries were made due.

    Looked for at most every CHECK_EVERY_SECONDS per worker process; when nothing waits, the
    look is one read of an index."""
    if time.monotonic() - context.relay_checked_at < CHECK_EVERY_SECONDS:
        return 0
    context.relay_checked_at = time.monotonic()
    return release_waiting(context, since)


def release_waiting(context: WorkerContext, since: datetime, now: datetime | None = None) -> int:
    """Make due now the email deliveries that failed to reach the relay before `since`, and
    publish them (workers.sweeper); returns how many were made due."""
    now = now or utcnow()
    values = {"now": now, "relay_up_since": since}
    with context.engine.connect() as connection:
        if not connection.execute(_ANY_WAITING, values).scalar():
            return 0
    with write_transaction(context.engine) as connection:
        released = connection.execute(_MAKE_DUE, values).rowcount
    if released:
        published = sweep(context, now)
        log.info(
            "the mail relay answers again: deliveries that waited for it are due now",
            extra={"count": released, "messages": published},
        )
    return int(released)
