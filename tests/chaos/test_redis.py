"""Chaos in the broker: Redis emptied, down, slow, silent, cut. Redis only wakes workers up;
the database holds the work, so none of this may lose or duplicate a message."""

from __future__ import annotations

import time

import pytest
import redis

from service.models import RETRYING
from tests.chaos.harness import Chaos, database_write_lock, variants
from tests.support.stack import wait_until

pytestmark = pytest.mark.chaos

RECOVERY_BOUND = 60.0  # workers and beat reconnect (Celery backs off), a sweep, the sends


@variants(short=("restart",), full=("restart", "flushall"))
def test_redis_loses_its_data(chaos: Chaos, variant: str) -> None:
    """3. Redis loses everything (restart without persistence, or FLUSHALL) with work queued and
    retries scheduled."""
    chaos.configure(retry_base_seconds=2.0, retry_max_seconds=2.0)  # retries wait in the DB
    server = chaos.serve()
    chaos.beat()
    chaos.worker(concurrency=1)
    count = chaos.scale.burst
    chaos.smtp.fail("data", 451, times=count // 3)  # these become retries, scheduled ahead
    chaos.smtp.fail("hang", seconds=0.3, times=-1)  # slow sends: the queue backs up
    chaos.submit(server, count)
    wait_until(lambda: chaos.states().get(RETRYING, 0) >= 2, timeout=30)
    queued = chaos.redis_queue_length()
    if variant == "restart":
        chaos.redis.restart()
    else:
        client = redis.Redis.from_url(chaos.redis.url)
        client.flushall()
        client.close()
    chaos.fault(
        f"Redis {variant} with {queued} task messages queued, "
        f"{chaos.states().get(RETRYING, 0)} retries scheduled, sends in flight"
    )
    chaos.allow_window_duplicates(0)
    chaos.cleared()
    chaos.smtp.clear_faults()
    chaos.settle(RECOVERY_BOUND)
    chaos.verify()


def test_redis_down_while_people_submit(chaos: Chaos) -> None:
    """4. Redis down while people submit: every answer is still 2xx, all delivered on its return."""
    server = chaos.serve()
    chaos.beat()
    chaos.worker()
    chaos.submit(server, 4)  # the stack is warm and working
    chaos.redis.stop()
    started = time.monotonic()
    answers = chaos.submit(server, chaos.scale.burst, pace=0.05)
    time.sleep(max(0.0, chaos.scale.outage - (time.monotonic() - started)))
    chaos.redis.start()
    chaos.cleared()
    assert all(a.ok for a in answers), sorted({a.status for a in answers})
    chaos.fault(
        f"Redis stopped for {time.monotonic() - started:.1f} s while {len(answers)} people "
        f"submitted ({chaos.slowest_answer(answers)})"
    )
    chaos.settle(RECOVERY_BOUND)
    chaos.verify()


def test_redis_slow_cut_silent(chaos: Chaos) -> None:
    """5. Redis slow, cut with a send in flight, then silent (blackhole), then back."""
    proxy, through = chaos.redis_through_proxy()
    chaos.configure(redis_url=through.redis_url)
    server = chaos.serve()
    chaos.beat()
    chaos.worker()
    outage = chaos.scale.outage
    per_phase = max(4, chaos.scale.burst // 3)

    proxy.delay(0.2)
    chaos.fault(f"Redis 0.2 s slower each way for {outage:.0f} s")
    chaos.submit(server, per_phase, pace=outage / per_phase)
    proxy.restore()
    chaos.settle(RECOVERY_BOUND)

    # A send the server has accepted, its worker still recording it, when Redis is cut.
    chaos.smtp.fail("hang", seconds=1.0)
    chaos.submit(server, 1)
    wait_until(lambda: chaos.smtp.armed("hang") == 0, timeout=30)
    before = len(chaos.smtp.received)
    with database_write_lock(chaos.settings.database_url):
        wait_until(lambda: len(chaos.smtp.received) > before, timeout=30)
        proxy.cut()
        time.sleep(1.0)  # the worker notices the lost connection while the send is unrecorded
    chaos.fault(f"Redis cut and refused for {outage:.0f} s, a send accepted but not yet recorded")
    chaos.submit(server, per_phase, pace=outage / per_phase)

    proxy.pause()
    chaos.fault(f"Redis silent (blackhole) for {outage:.0f} s")
    chaos.submit(server, per_phase, pace=outage / per_phase)

    proxy.restore()
    chaos.cleared()
    during = chaos.answers[-3 * per_phase :]
    assert all(a.ok for a in during), sorted({a.status for a in during})
    chaos.fault(chaos.slowest_answer(during))
    chaos.settle(RECOVERY_BOUND)
    chaos.verify()
