"""Chaos in the database: unavailable when a person submits, when a worker claims, and between
the SMTP server's 250 and the worker's record of it.

What an outage looks like: on PostgreSQL the server goes away (a restart, a failover, a network
cut), made here by cutting a TCP proxy in front of it. On SQLite the file stays, but a long job
(a migration, a VACUUM, a backup) holds the write lock: readers go on, writers wait for
busy_timeout and then fail, made here by holding BEGIN EXCLUSIVE from another connection.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import (
    Chaos,
    database_write_lock,
    shorten_sqlite_busy_timeout,
    variants,
)
from tests.chaos.proxy import TcpProxy
from tests.support.stack import wait_until

pytestmark = pytest.mark.chaos

DRAIN_BOUND = 40.0  # a requeue (2 s), a sweep, the sends; a lease (6 s) at most, with room
WEB_BUSY_TIMEOUT_MS = 1000  # the web process gives up on a held SQLite lock after this


def test_database_down_at_submit(chaos: Chaos) -> None:
    """8a. Database unavailable when people submit: 503, nothing half-written, then recovery."""
    proxy: TcpProxy | None = None
    if chaos.is_sqlite:
        server = chaos.serve()
        shorten_sqlite_busy_timeout(server.state.engine, WEB_BUSY_TIMEOUT_MS)
    else:
        proxy, through = chaos.database_through_proxy()
        server = chaos.serve(through)
    chaos.beat()
    chaos.worker()
    per_phase = max(4, chaos.scale.burst // 3)
    chaos.submit(server, per_phase)
    chaos.settle(DRAIN_BOUND)  # no send in flight: this scenario is about the web process
    if proxy is not None:
        proxy.cut()
        refused = chaos.submit(server, per_phase)
        proxy.restore()
        chaos.fault(f"PostgreSQL cut under the web process for {per_phase} submissions")
    else:
        with database_write_lock(chaos.settings.database_url):
            refused = chaos.submit(server, per_phase)
        chaos.fault(
            f"SQLite write lock held elsewhere (> busy_timeout) for {per_phase} submissions"
        )
    assert {a.status for a in refused} == {503}
    chaos.cleared()
    chaos.submit(server, per_phase)
    chaos.settle(DRAIN_BOUND)
    chaos.verify()


def test_database_down_in_worker(chaos: Chaos) -> None:
    """8b. Database unavailable when a worker claims: no send without a claim, then recovery."""
    server = chaos.serve()
    count = max(3, chaos.scale.burst // 4)
    if chaos.is_sqlite:
        chaos.submit(server, count)  # stored and queued, with no worker yet
        with database_write_lock(chaos.settings.database_url):
            worker = chaos.worker()
            wait_until(lambda: worker.log().count("intake.deliver[") >= 2, timeout=20)
            time.sleep(min(chaos.scale.outage, 2.5))  # below the task's soft time limit
            assert chaos.smtp.received == []  # no claim, no send
        chaos.fault("SQLite write lock held elsewhere while the worker took its tasks")
        chaos.beat()
    else:
        chaos.beat()
        proxy, through = chaos.database_through_proxy()
        worker = chaos.worker(through)
        proxy.cut()
        chaos.submit(server, count)  # the web writes directly; only the worker is cut off
        wait_until(lambda: "OperationalError" in worker.log(), timeout=20)
        time.sleep(chaos.scale.outage)
        assert chaos.smtp.received == []  # no claim, no send
        proxy.restore()
        chaos.fault(f"PostgreSQL cut under the worker for {chaos.scale.outage:.0f} s")
    chaos.cleared()
    chaos.settle(DRAIN_BOUND)
    result = chaos.verify()
    assert result.attempts == result.sent  # every send followed exactly one successful claim


@variants(short=("blip",), full=("blip", "outlasting"))
def test_database_down_between_send_and_record(chaos: Chaos, variant: str) -> None:
    """8c. Database unavailable after the SMTP server's 250, before the worker records it."""
    # A blip is waited out: the outcome is recorded when the database returns. An outage that
    # outlasts the task's time limit is the after-DATA window: the worker is killed with the
    # outcome unrecorded, and the retry after the lease resends the same Message-ID.
    seconds = 1.5 if variant == "blip" else chaos.settings.task_time_limit_seconds + 1.5
    server = chaos.serve()
    chaos.beat()
    proxy: TcpProxy | None = None
    if chaos.is_sqlite:
        chaos.worker(concurrency=1)
    else:
        proxy, through = chaos.database_through_proxy()
        chaos.worker(through, concurrency=1)
    chaos.smtp.fail("hang", seconds=1.0)
    chaos.submit(server, 1)
    wait_until(lambda: chaos.smtp.armed("hang") == 0, timeout=20)
    if proxy is not None:
        proxy.cut()
        wait_until(lambda: len(chaos.smtp.received) == 1, timeout=20)
        time.sleep(seconds)
        proxy.restore()
        chaos.fault(f"PostgreSQL cut for {seconds:.1f} s between the server's 250 and the record")
    else:
        with database_write_lock(chaos.settings.database_url):
            wait_until(lambda: len(chaos.smtp.received) == 1, timeout=20)
            time.sleep(seconds)
        chaos.fault(
            f"SQLite write lock held {seconds:.1f} s between the server's 250 and the record"
        )
    if variant == "outlasting":
        chaos.allow_window_duplicates(1)
    chaos.cleared()
    chaos.settle(DRAIN_BOUND)
    result = chaos.verify()
    if variant == "blip":
        assert result.window_duplicates == 0
