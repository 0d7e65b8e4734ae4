"""Chaos in the workers: killed, stopped, flooded with duplicate messages, doubled by mistake."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import distinct, func, select

from service.models import SENDING, deliveries
from tests.chaos.harness import Chaos, database_write_lock, variants
from tests.support.stack import wait_until
from workers.celery_app import DELIVER_TASK, create_celery

pytestmark = pytest.mark.chaos

TAKEOVER_BOUND = 40.0  # a lease (6 s) to run out, a sweep, a requeue and the sends, with room


def test_sigkill_before_smtp(chaos: Chaos) -> None:
    """1a. SIGKILL a worker before it reached the SMTP server."""
    # The workers reach SMTP through a proxy that is silent: connected, no greeting. Their
    # SMTP timeout exceeds the soft time limit, so they are still waiting when killed.
    smtp_proxy = chaos.proxy(chaos.smtp.port)
    stuck = chaos.configure(smtp_port=smtp_proxy.port, smtp_timeout_seconds=10.0)
    server = chaos.serve()
    chaos.beat()
    worker = chaos.worker(stuck)
    reached = chaos.smtp.connections
    smtp_proxy.pause()
    chaos.fault("SMTP unreachable (silent proxy), then SIGKILL of the worker and its pool")
    chaos.submit(server, 4)
    # Both pool processes stuck, each holding one submission (its deliveries claimed together).
    wait_until(lambda: held_submissions(chaos) == 2, timeout=20)
    assert chaos.smtp.connections == reached  # nothing reached the SMTP server
    chaos.kill(worker)
    smtp_proxy.restore()
    chaos.worker(label="replacement")
    chaos.cleared()
    chaos.settle(TAKEOVER_BOUND)
    chaos.verify()


def held_submissions(chaos: Chaos) -> int:
    """Submissions with a delivery claimed (sending) by a worker."""
    with chaos.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count(distinct(deliveries.c.submission_id))).where(
                    deliveries.c.state == SENDING
                )
            ).scalar_one()
        )


@variants(short=("accepted",), full=("mid-data", "accepted"))
def test_sigkill_after_data(chaos: Chaos, variant: str) -> None:
    """1b. SIGKILL a worker after DATA: the server has the message, the state is not recorded."""
    server = chaos.serve()
    chaos.beat()
    worker = chaos.worker(concurrency=1)
    if variant == "mid-data":
        # The server holds the whole message and has not answered yet when the worker dies.
        # (aiosmtpd then discards it; a server that keeps it would see one duplicate.)
        chaos.smtp.fail("hang", seconds=1.5)
        chaos.submit(server, 1)
        wait_until(lambda: chaos.smtp.armed("hang") == 0, timeout=20)
        chaos.kill(worker)
        chaos.fault("SMTP holds the message after DATA; SIGKILL before it answers")
    else:
        # The server answers 250, but the worker cannot record it (the database's write lock
        # is held elsewhere) and is killed while it waits: accepted, never recorded, so the
        # retry resends the same Message-ID.
        chaos.smtp.fail("hang", seconds=1.0)
        chaos.submit(server, 1)
        wait_until(lambda: chaos.smtp.armed("hang") == 0, timeout=20)
        with database_write_lock(chaos.settings.database_url):
            wait_until(lambda: len(chaos.smtp.received) == 1, timeout=20)
            chaos.kill(worker)
        chaos.fault("SMTP answered 250; SIGKILL while the worker waits to record it")
    chaos.allow_window_duplicates(1)
    chaos.worker(label="replacement")
    chaos.cleared()
    chaos.settle(TAKEOVER_BOUND)
    chaos.verify()


def test_sigkill_during_burst(chaos: Chaos) -> None:
    """1c. SIGKILL a worker and its pool in the middle of a burst of submissions."""
    server = chaos.serve()
    chaos.beat()
    worker = chaos.worker()
    count = chaos.scale.burst
    burst = chaos.submit_in_background(server, count, threads=4, pace=0.05)
    wait_until(lambda: chaos.states().get("sent", 0) >= count // 2, timeout=60)
    chaos.kill(worker)
    in_flight = chaos.states().get(SENDING, 0)
    chaos.fault(f"SIGKILL of the worker and its pool mid-burst ({in_flight} in flight)")
    chaos.allow_window_duplicates(in_flight)  # only a delivery in flight can be in the window
    chaos.worker(label="replacement")
    burst.result(120)
    chaos.cleared()
    chaos.settle(TAKEOVER_BOUND)
    chaos.verify()


def test_sigterm_mid_task(chaos: Chaos) -> None:
    """2. SIGTERM a worker mid-task: the warm shutdown finishes what it started."""
    server = chaos.serve()
    chaos.beat()
    worker = chaos.worker()
    chaos.smtp.fail("hang", seconds=0.8, times=6)  # slow sends after DATA: always mid-task
    count = chaos.scale.burst
    burst = chaos.submit_in_background(server, count, threads=4, pace=0.02)
    wait_until(lambda: chaos.smtp.armed("hang") <= 4, timeout=30)
    chaos.terminate(worker)
    chaos.fault("SIGTERM (warm shutdown) while sends are in flight after DATA")
    assert worker.process is not None
    assert worker.process.wait(30) == 0
    chaos.worker(label="replacement")
    burst.result(120)
    chaos.cleared()
    chaos.settle(TAKEOVER_BOUND)
    chaos.verify()


def test_same_task_many_times(chaos: Chaos) -> None:
    """7. The same delivery task enqueued many times at once, across two workers."""
    server = chaos.serve()
    chaos.worker(label="w1")
    chaos.worker(label="w2")
    chaos.smtp.fail("hang", seconds=0.3, times=-1)  # slow sends: copies land mid-send too
    answers = chaos.submit(server, 4)
    with chaos.engine.connect() as connection:
        ids = [row[0] for row in connection.execute(select(deliveries.c.id))]
    assert len(ids) == sum(2 if a.email else 1 for a in answers)
    app = create_celery(chaos.settings, include_tasks=False)
    copies = chaos.scale.copies

    def flood(delivery_id: str) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(copies):
                app.send_task(DELIVER_TASK, args=[delivery_id], queue="urgent", producer=producer)

    threads = [threading.Thread(target=flood, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chaos.fault(f"{copies} extra copies of each of {len(ids)} delivery tasks, 2 workers x 2")
    chaos.cleared()
    chaos.settle(TAKEOVER_BOUND)
    result = chaos.verify()
    assert result.attempts == len(ids)  # one claim per delivery: the copies found it taken


def test_two_workers_two_beats(chaos: Chaos) -> None:
    """9. Two workers and two beats by mistake, through temporary SMTP failures."""
    server = chaos.serve()
    chaos.beat(label="beat1")
    second_host = chaos.settings.with_overrides(var_dir=str(chaos.tmp_path / "host2"))
    chaos.beat(second_host, label="beat2")
    chaos.worker(label="w1")
    chaos.worker(second_host, label="w2")
    count = chaos.scale.burst
    chaos.smtp.fail("data", 451, times=count // 2)
    chaos.smtp.fail("connect", 421, times=3)
    chaos.fault(f"two beats, two workers; SMTP 451 after DATA x{count // 2}, 421 at connect x3")
    chaos.submit(server, count)
    chaos.cleared()
    chaos.settle(TAKEOVER_BOUND)
    chaos.verify()
