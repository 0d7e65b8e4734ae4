"""Chaos at the SMTP server: refusals temporary and permanent, a dropped final dot, a hang."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service.models import attempts
from tests.chaos.harness import Chaos, applicant
from tests.conftest import ADMISSIONS as ADMISSIONS_EMAIL
from tests.conftest import FALLBACK as FALLBACK_EMAIL
from tests.support.stack import wait_until

pytestmark = pytest.mark.chaos

RETRY_BOUND = 60.0  # backoff is capped at 1 s in tests; a sweep every 0.5 s; room to spare


def test_smtp_temporary_failures_then_recovery(chaos: Chaos) -> None:
    """6a. SMTP 421 at connect, 452 on RCPT, 451 after DATA, each for a while, then recovery."""
    server = chaos.serve()
    chaos.beat()
    chaos.worker()
    outage = chaos.scale.outage
    per_phase = max(3, chaos.scale.burst // 3)
    for stage, code in (("connect", 421), ("rcpt", 452), ("data", 451)):
        chaos.smtp.clear_faults()
        chaos.smtp.fail(stage, code, times=-1)
        chaos.fault(f"SMTP {code} at {stage.upper()} on every attempt for {outage:.0f} s")
        chaos.submit(server, per_phase, pace=outage / per_phase)
    chaos.smtp.clear_faults()
    chaos.cleared()
    chaos.settle(RETRY_BOUND)
    result = chaos.verify()
    assert result.failed_attempts >= per_phase  # the faults really were met, and retried


def test_smtp_permanent_refusal_notifies_fallback(chaos: Chaos) -> None:
    """6b. SMTP 550 for admissions (fallback notified, itself retried) and for one person."""
    server = chaos.serve()
    chaos.beat()
    chaos.worker()
    count = max(4, chaos.scale.burst // 2)
    refused_person = applicant(0)["email"]
    chaos.smtp.fail("rcpt", 550, times=-1, recipients=(ADMISSIONS_EMAIL, refused_person))
    chaos.smtp.fail("rcpt", 451, times=2, recipients=(FALLBACK_EMAIL,))
    chaos.fault("SMTP 550 on RCPT for admissions and for one person's address")
    chaos.fault("SMTP 451 on RCPT for the fallback address, twice")
    chaos.submit(server, count)
    chaos.cleared()
    chaos.settle(RETRY_BOUND)
    result = chaos.verify(permanent_faults=True)
    assert result.failed_with_fallback == count  # every admissions notification fell back
    assert result.failed_recorded == 1  # the one refused auto-reply, recorded, not retried


def test_smtp_drops_after_final_dot(chaos: Chaos) -> None:
    """6c. SMTP connection dropped after the final dot: the documented duplicate window."""
    server = chaos.serve()
    chaos.beat()
    chaos.worker()
    drops = 3
    for done in range(1, drops + 1):
        # One drop at a time, the next armed once the dropped message was sent again, so no
        # message is dropped twice (that would be two window events on one message).
        chaos.smtp.fail("drop", times=1)
        chaos.submit(server, 2)
        wait_until(lambda n=done: sum(r.dropped for r in chaos.smtp.received) == n, timeout=30)
        dropped = next(r for r in reversed(chaos.smtp.received) if r.dropped).message_id
        wait_until(
            lambda mid=dropped: sum(r.message_id == mid for r in chaos.smtp.received) == 2,
            timeout=30,
        )
    chaos.fault(f"SMTP took the message then dropped the connection before 250, x{drops}")
    chaos.allow_window_duplicates(drops)
    chaos.submit(server, max(4, chaos.scale.burst // 2))
    chaos.cleared()
    chaos.settle(RETRY_BOUND)
    result = chaos.verify()
    # The server kept each dropped message and the retry resent it under the same Message-ID:
    # exactly one duplicate per drop, each one counted.
    assert result.window_duplicates == drops
    assert sum(1 for r in chaos.smtp.received if r.dropped) == drops


def test_smtp_hangs_past_the_time_limit(chaos: Chaos) -> None:
    """6d. SMTP server hangs: the task's time limit ends the attempt, which is retried."""
    # The socket timeout is longer than the task's soft time limit (2.4 s), so it is the time
    # limit, not the socket, that ends the wait.
    chaos.configure(smtp_timeout_seconds=30.0, task_time_limit_seconds=3.0, lease_seconds=4.0)
    server = chaos.serve()
    chaos.beat()
    chaos.worker()
    chaos.smtp.fail("hang_mail", seconds=20.0, times=2)
    chaos.fault("SMTP hangs after MAIL FROM for 20 s, twice")
    chaos.submit(server, 2)
    wait_until(lambda: chaos.smtp.armed("hang_mail") == 0, timeout=30)
    chaos.cleared()
    chaos.settle(RETRY_BOUND)
    chaos.verify()
    with chaos.engine.connect() as connection:
        errors = [row.error or "" for row in connection.execute(select(attempts))]
    # Each hang ended as a recorded, retried attempt (the soft time limit, then the connection
    # dropped without QUIT), not as a process killed at the hard limit with nothing recorded.
    assert sum("time limit" in e for e in errors) == 2, errors
