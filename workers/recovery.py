"""When the mail relay takes email again, the email that could not reach it goes at once.

Retries back off with full jitter, up to hours apart (INTAKE_RETRY_MAX_SECONDS). That is right
while the relay is down, but once it is back it would spread an outage's backlog over the next
hours, and an inquiry to admissions would arrive long after mail flows again. So when an email
is accepted on a connection, the deliveries whose last attempt could not reach the relay before
that connection was opened (`waits_for_relay`: a connection refused, reset or timed out, a
failed TLS handshake; the relay said nothing and nothing was sent) are made due now and
published at once.

Only those: sending them again can never make a duplicate, and the relay has since taken a new
session. Every other temporary failure keeps its backoff: any reply from the relay (a 421
greeting or a refused login, with which relays throttle; a 4xx for one recipient or after DATA)
and a connection lost during DATA (the message may have arrived). Webhooks never wait for the
relay.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import bindparam, exists, select, update

from service.db import utcnow
from service.models import RETRYING, deliveries
from service.outbox import write_transaction
from workers.context import WorkerContext
from workers.sweeper import sweep

log = logging.getLogger("intake.recovery")

CHECK_EVERY_SECONDS = 5.0  # per worker process: how often a successful send looks for waiters
_WAITING_FOR_RELAY = (
    (deliveries.c.state == RETRYING)
    & (deliveries.c.next_attempt_at > bindparam("now"))
    & deliveries.c.waits_for_relay
    & (deliveries.c.updated_at < bindparam("relay_up_since"))
)
_ANY_WAITING = select(exists().where(_WAITING_FOR_RELAY))
_MAKE_DUE = update(deliveries).where(_WAITING_FOR_RELAY).values(next_attempt_at=bindparam("now"))


def relay_answered(context: WorkerContext, since: datetime) -> int:
    """The relay accepted an email on a connection opened at `since`: make what could not reach
    it before then due now, and publish it. Returns how many deliveries were made due.

    Looked for at most every CHECK_EVERY_SECONDS per worker process (so a failure in the
    moments before may wait for the next look): one read of the retrying rows that are not due
    yet, through the (state, next_attempt_at) index."""
    if time.monotonic() - context.relay_checked_at < CHECK_EVERY_SECONDS:
        return 0
    context.relay_checked_at = time.monotonic()
    return release_waiting(context, since)


def release_waiting(context: WorkerContext, since: datetime, now: datetime | None = None) -> int:
    """Make due now the deliveries that could not reach the relay before `since`, and publish
    them (workers.sweeper); returns how many were made due."""
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
