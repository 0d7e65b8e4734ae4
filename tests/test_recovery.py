"""When the relay answers again, email that waited for it goes at once, not at its backoff.

Against the real database (SQLite, PostgreSQL), then end to end: a real worker, real Redis and a
real SMTP server that refuses connections for a while, with backoff set to an hour."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from service.db import utcnow
from service.models import RETRYING, SENDING
from service.settings import Settings
from tests.conftest import ADMISSIONS as ADMISSIONS_EMAIL
from tests.support.forms import person
from tests.support.smtp import SmtpSink
from tests.support.stack import ServiceProcess, delivery_states, wait_until
from tests.test_claim import context, set_row, state_of, store_one
from workers.delivery import attempt, claim, record
from workers.recovery import CHECK_EVERY_SECONDS, relay_answered, release_waiting


def test_only_email_that_could_not_reach_the_relay_is_released(
    settings: Settings, engine: Engine
) -> None:
    published: list[tuple[str, str]] = []
    ctx = context(settings, published)
    failed_at = utcnow() - timedelta(minutes=5)
    relay_back = utcnow() - timedelta(minutes=1)
    later = utcnow() + timedelta(hours=1)
    waiting = {}
    for name, values in {
        "refused connection": {"waits_for_relay": True},
        "timed out": {"waits_for_relay": True},
        # May have arrived: sending it again at once could make a duplicate.
        "connection lost during DATA": {"waits_for_relay": False},
        "451 for a recipient": {"waits_for_relay": False, "last_code": 451},
        "could not reach it after it was back": {"waits_for_relay": True, "updated_at": utcnow()},
        "due already": {"waits_for_relay": True, "next_attempt_at": failed_at},
        "being sent": {"waits_for_relay": True, "state": SENDING},
    }.items():
        delivery_id = store_one(engine).deliveries[0]["id"]
        row = {"state": RETRYING, "next_attempt_at": later, "updated_at": failed_at}
        row.update(values)
        set_row(engine, delivery_id, enqueued_at=failed_at, **row)
        waiting[name] = delivery_id

    now = utcnow()
    assert release_waiting(ctx, relay_back, now) == 2
    released = {waiting["refused connection"], waiting["timed out"]}
    for name, delivery_id in waiting.items():
        due = state_of(engine, delivery_id)["next_attempt_at"]
        assert (due == now) == (delivery_id in released), name
    # Published at once, not at the next sweep (which also takes what was due anyway).
    assert {d for d, _ in published} == released | {waiting["due already"]}
    assert release_waiting(ctx, relay_back, now) == 0  # nothing left waiting
    ctx.close()


@pytest.mark.parametrize(
    ("fault", "waits"),
    [
        ({}, True),  # nothing listens: the connection is refused
        ({"stage": "connect", "code": 421}, False),  # a reply: relays throttle with it
        ({"stage": "drop"}, False),  # the connection was cut after the final dot
        ({"stage": "rcpt", "code": 451}, False),
        ({"stage": "mail", "code": 421}, False),
    ],
)
def test_an_attempt_says_whether_it_could_reach_the_relay(
    settings: Settings, engine: Engine, smtp: SmtpSink, fault: dict, waits: bool
) -> None:
    ctx = context(settings, [])
    if fault:
        smtp.fail(**fault)
    else:
        smtp.stop()
    delivery_id = store_one(engine).deliveries[0]["id"]
    set_row(engine, delivery_id, waits_for_relay=not waits)  # each outcome sets it anew
    owned = claim(ctx, delivery_id)[0]
    outcome = attempt(ctx, owned)
    record(ctx, owned, outcome)
    assert outcome.state == RETRYING
    assert state_of(engine, delivery_id)["waits_for_relay"] is waits
    ctx.close()


def test_a_process_looks_at_most_every_few_seconds(settings: Settings, engine: Engine) -> None:
    ctx = context(settings, [])

    def lose_one() -> None:
        set_row(
            engine,
            store_one(engine).deliveries[0]["id"],
            state=RETRYING,
            waits_for_relay=True,
            updated_at=utcnow() - timedelta(minutes=5),
            next_attempt_at=utcnow() + timedelta(hours=1),
        )

    lose_one()
    assert relay_answered(ctx, utcnow()) == 1
    assert ctx.relay_checked_at <= time.monotonic()
    lose_one()
    ctx.relay_checked_at = time.monotonic()  # looked a moment ago (however slow this machine)
    assert relay_answered(ctx, utcnow()) == 0
    ctx.relay_checked_at -= CHECK_EVERY_SECONDS
    assert relay_answered(ctx, utcnow()) == 1
    ctx.close()


@pytest.mark.integration
def test_after_an_outage_the_backlog_goes_when_the_relay_is_back(
    client: httpx.Client,
    settings: Settings,
    smtp: SmtpSink,
    engine: Engine,
    tmp_path: Path,
) -> None:
    """Backoff of up to an hour and no sweeper running: only the recovery can send the email
    that failed during the outage within this test's wait."""
    patient = settings.with_overrides(
        retry_base_seconds=3600.0, retry_max_seconds=3600.0, retry_lifetime_seconds=86400.0
    )
    worker = ServiceProcess(
        patient,
        ["worker", "--concurrency", "2", "--name", f"r{secrets.token_hex(3)}@%h"],
        tmp_path / "worker.log",
    ).start()
    try:
        smtp.stop()  # the relay is down: connections are refused
        for n in range(3):
            client.post("/f/contact", json=person(name=f"Person {n}", email=None))
        wait_until(lambda: delivery_states(engine) == {"retrying": 3})
        smtp.start()  # back; the three wait for their backoff of up to an hour
        client.post("/f/contact", json=person(name="Person 3", email=None))
        notices = smtp.wait_for(4, address=ADMISSIONS_EMAIL, timeout=30)
        wait_until(lambda: delivery_states(engine) == {"sent": 4})
    finally:
        worker.stop()
    assert len({n.message_id for n in notices}) == 4 and len(smtp.received) == 4
