"""The six measurements of `make bench`, each returning plain figures for the report.

Each one starts from a fresh database and an empty Redis, and runs only the processes it needs,
so one measurement's leftovers never load the next.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from bench.loadgen import (
    Sample,
    mixed_bodies,
    paced,
    percentile,
    submission_body,
    wrk,
)
from bench.naive_task import NAIVE_QUEUE, NAIVE_TASK
from bench.stack import (
    Bench,
    count_submissions,
    delivery_counts,
    delivery_index,
    postgres_available,
)
from service.db import migrate
from service.models import ADMISSIONS

Log = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """How long each part runs; `quick()` is the smoke test's."""

    warmup: float = 3.0  # seconds of load before each wrk measurement
    measure: float = 12.0  # seconds of each wrk measurement
    steady: float = 15.0  # seconds at each steady rate
    step: float = 6.0  # seconds per step of the capacity ramp
    preload: int = 1000  # submissions queued for the delivery throughput measurement
    rounds: int = 2  # delivery throughput: ours then naive, this many times
    backlog: int = 1200  # submissions (two deliveries each) pending while SMTP is down
    down: float = 8.0  # seconds SMTP stays down after the backlog is written
    stream: float = 12.0  # seconds of fresh submissions during the drain
    inline: float = 8.0  # seconds per condition of the inline-send comparison
    postgres: bool = True  # also measure JSON ingest on PostgreSQL when it answers

    @classmethod
    def quick(cls) -> Plan:
        return cls(1, 1, 2, 1, 20, 1, 20, 1, 2, 1, False)


@dataclass
class Figures:
    """What one measurement found: named values, plus notes for the report."""

    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def ms(seconds: float) -> float:
    return seconds * 1000


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# 1. Ingest at 64 connections, beside a bare GET under the same uvicorn settings.
def ingest(bench: Bench, plan: Plan, log: Log) -> Figures:
    found = Figures()
    baselines = []
    for turn in ("before", "after"):
        if turn == "after":
            log("1. ingest: bare Starlette GET again (the baseline is the mean of both)")
        else:
            log("1. ingest: bare Starlette GET (bench/baseline_app.py)")
        proc, url = bench.serve("baseline", "bench.baseline_app:app")
        wrk(url + "/", "get.lua", seconds=plan.warmup)
        baselines.append(wrk(url + "/", "get.lua", seconds=plan.measure))
        if turn == "before":
            log("1. ingest: validation only, JSON (bench/baseline_app.py, nothing stored)")
            run = f"v{time.time_ns()}"
            wrk(url + "/f/contact", "submit.lua", seconds=plan.warmup, script_args=["json", run])
            found.values["validate_only"] = wrk(
                url + "/f/contact", "submit.lua", seconds=plan.measure, script_args=["json", run]
            )
        bench.stop(proc)
        if turn == "after":
            break
        log("1. ingest: the floor of the design, JSON (bench/floor_app.py: validation, group")
        log("   commit and publish, without the limiter, encryption, triage, logs, middleware)")
        bench.flush_redis()
        bench.fresh_database("sqlite")
        migrate(bench.database_url)
        proc, url = bench.serve("floor", "bench.floor_app:create_floor_app", factory=True)
        run = f"f{time.time_ns()}"
        wrk(url + "/f/contact", "submit.lua", seconds=plan.warmup, script_args=["json", run + "w"])
        found.values["floor"] = wrk(
            url + "/f/contact", "submit.lua", seconds=plan.measure, script_args=["json", run]
        )
        bench.stop(proc)
        kinds = ["sqlite"] + (["postgresql"] if plan.postgres and postgres_available() else [])
        for kind in kinds:
            bench.flush_redis()
            bench.fresh_database(kind)
            proc, url = bench.web()
            modes = ("json", "form") if kind == "sqlite" else ("json",)
            answered = 0
            for mode in modes:
                log(f"1. ingest: POST /f/contact, {mode}, {kind}")
                run = f"{mode}{time.time_ns()}"
                warm = wrk(url + "/f/contact", "submit.lua", seconds=plan.warmup,
                           script_args=[mode, run + "w"])  # fmt: skip
                result = wrk(url + "/f/contact", "submit.lua", seconds=plan.measure,
                             script_args=[mode, run])  # fmt: skip
                answered += warm.requests - warm.errors + result.requests - result.errors
                found.values[f"{mode}_{kind}"] = result
            bench.stop(proc)
            with bench.engine() as engine:
                stored = count_submissions(engine)
            found.values[f"stored_{kind}"] = (stored, answered)
            found.notes.append(
                f"Ingest on {kind}: the database holds {stored:,} submissions for {answered:,} "
                "accepted answers (wrk does not count the requests in flight when it stops)."
            )
    found.values["baseline"] = baselines
    return found


# 3. Delivery throughput: ours (claim, send, record) against the naive stateless task.
def _throughput(times: list[float], per_submission: int) -> float:
    """Submissions per second over the middle 80% of the accepted messages (start-up and the
    last stragglers excluded)."""
    times = sorted(times)
    if len(times) < 10:
        return float("nan")
    low, high = times[len(times) // 10], times[len(times) * 9 // 10 - 1]
    count = len(times) * 9 // 10 - len(times) // 10 - 1
    return count / max(high - low, 1e-6) / per_submission


def person_for_naive(index: int) -> dict[str, Any]:
    """The normalized person our validator stores for submission_body(), for the naive task."""
    return {
        "name": "Jordan Rivera",
        "email": f"naive-{index}@example.com",
        "phone": "+14155552671",
        "for_whom": "loved_one",
        "preferred_contact": "phone",
        "best_time": "Evenings after 6",
        "voicemail_ok": True,
        "state": "CA",
        "program": "detox",
        "message": f"My brother needs help and we do not know where to start. {index}",
        "consent": True,
    }


def delivery(bench: Bench, plan: Plan, log: Log) -> Figures:
    """Ours and the naive task, alternated twice (ours, naive, ours, naive): a burst of load
    from elsewhere on a shared machine then spoils one round, not the ratio."""
    found = Figures()
    ours, naive = [], []
    for _ in range(plan.rounds):
        ours.append(_ours_throughput(bench, plan, log, found))
        naive.append(_naive_throughput(bench, found.values["submissions"], log))
    found.values.update(
        ours=sum(ours) / len(ours), naive=sum(naive) / len(naive), ours_runs=ours, naive_runs=naive
    )
    return found


def _ours_throughput(bench: Bench, plan: Plan, log: Log, found: Figures) -> float:
    bench.flush_redis()
    bench.fresh_database()
    web, url = bench.web()
    rate = 200.0
    log(f"3. delivery: writing {plan.preload} submissions with no worker running")
    samples = paced(url + "/f/contact", rate, plan.preload / rate, submission_body("tp"))
    bench.stop(web)
    accepted = sum(1 for s in samples if s.status == 202)
    with bench.engine() as engine:
        total, _ = delivery_counts(engine)
        log(f"3. delivery: our worker (prefork, concurrency 2) sends {total} deliveries")
        worker = bench.worker()
        done = _wait(lambda: delivery_counts(engine)[1] >= total, timeout=300, interval=0.5)
        bench.stop(worker)
        index = delivery_index(engine)
    found.values.update(deliveries=total, submissions=accepted, drained=done)
    return _throughput([a.at for a in bench.sink.accepted() if a.message_id in index], 2)


def _naive_throughput(bench: Bench, tasks: int, log: Log) -> float:
    log(f"3. delivery: naive reference task (bench/naive_task.py), {tasks} tasks")
    bench.flush_redis()
    app = Celery("naive-publisher", broker=bench.redis.url)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
    run = f"{time.time_ns()}"
    now = datetime.now(UTC).isoformat()
    with app.producer_or_acquire() as producer:
        for i in range(tasks):
            submission = {"id": f"{run}{i:06d}", "created_at": now, "person": person_for_naive(i)}
            app.send_task(NAIVE_TASK, args=[submission], queue=NAIVE_QUEUE, producer=producer)
    naive_worker = bench.naive_worker()
    prefix = f"<naive-{run}"

    def sent() -> list[float]:
        return [a.at for a in bench.sink.accepted() if a.message_id.startswith(prefix)]

    _wait(lambda: len(sent()) >= 2 * tasks, timeout=300, interval=0.5)
    bench.stop(naive_worker)
    return _throughput(sent(), 2)


# 2 and 4: steady rates with the whole stack running: answer latency and POST-to-admissions.
def _admissions_latency(bench: Bench, samples: list[Sample]) -> tuple[list[float], int]:
    """Seconds from each POST being due to its admissions notification's 250; and how many
    accepted submissions had no notification yet."""
    with bench.engine() as engine:
        index = delivery_index(engine)
    arrived: dict[str, float] = {}
    for accepted in bench.sink.accepted():
        owner = index.get(accepted.message_id)
        if owner and owner[1] == ADMISSIONS:
            arrived.setdefault(owner[0], accepted.at)
    latencies, missing = [], 0
    for sample in samples:
        if not sample.submission_id:
            continue
        if sample.submission_id in arrived:
            latencies.append(arrived[sample.submission_id] - sample.due)
        else:
            missing += 1
    return latencies, missing


def _unsent(bench: Bench) -> int:
    with bench.engine() as engine:
        total, sent = delivery_counts(engine)
    return total - sent


def _http(samples: list[Sample]) -> dict[str, float]:
    ok = [s.latency for s in samples if 200 <= s.status < 400]
    return {
        "count": len(samples),
        "errors": len(samples) - len(ok),
        "p50": ms(percentile(ok, 50)),
        "p99": ms(percentile(ok, 99)),
        "max": ms(max(ok)) if ok else float("nan"),
    }


def steady(bench: Bench, plan: Plan, log: Log, capacity_hint: float) -> Figures:
    found = Figures()
    bench.flush_redis()
    bench.fresh_database()
    web, url = bench.web()
    worker = bench.worker()
    paced(url + "/f/contact", 20, 2, submission_body("warm"))  # warm both up
    for rate in (50, 100):
        log(f"2/4. steady {rate}/s for {plan.steady:.0f} s: answer latency, POST to admissions")
        samples = paced(url + "/f/contact", rate, plan.steady, submission_body(f"s{rate}"))
        _wait(lambda: _unsent(bench) == 0, timeout=30)
        latencies, missing = _admissions_latency(bench, samples)
        found.values[f"http_{rate}"] = _http(samples)
        found.values[f"e2e_{rate}"] = {
            "p50": ms(percentile(latencies, 50)),
            "p99": ms(percentile(latencies, 99)),
            "max": ms(max(latencies)) if latencies else float("nan"),
            "missing": missing,
        }

    # The ramp: where does the queue start to grow? Steps around the measured throughput.
    base = capacity_hint if capacity_hint == capacity_hint and capacity_hint > 0 else 60.0
    stable, grows = 0.0, 0.0
    for factor in (0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0):
        step_rate = max(5.0, round(base * factor))
        log(f"4. ramp: {step_rate:.0f} submissions/s for {plan.step:.0f} s")
        samples = paced(url + "/f/contact", step_rate, plan.step, submission_body(f"r{step_rate}"))
        backlog = _unsent(bench)
        latencies, _ = _admissions_latency(bench, samples)
        found.values.setdefault("ramp", []).append(
            {"rate": step_rate, "unsent_after": backlog, "e2e_p50": ms(percentile(latencies, 50))}
        )
        # Growing: more than a second of work (two deliveries per submission) still waiting.
        if backlog > 2 * step_rate:
            grows = step_rate
            break
        stable = step_rate
        _wait(lambda: _unsent(bench) == 0, timeout=20)
    found.values.update(stable=stable, grows=grows)
    bench.stop(worker)
    bench.stop(web)
    return found


# 5. Backlog: SMTP down with thousands pending, then back; fresh and urgent ones meanwhile.
def backlog(bench: Bench, plan: Plan, log: Log) -> Figures:
    found = Figures()
    bench.flush_redis()
    bench.fresh_database()
    bench.sink.stop()
    web, url = bench.web()
    worker = bench.worker()
    beat = bench.beat()
    rate = 200.0
    log(f"5. backlog: SMTP down, {plan.backlog} submissions written")
    paced(url + "/f/contact", rate, plan.backlog / rate, submission_body("backlog"))
    time.sleep(plan.down)
    with bench.engine() as engine:
        total, _ = delivery_counts(engine)
        states = _states(engine)
    found.values["while_down"] = states
    log(f"5. backlog: SMTP back; draining {total} deliveries, fresh inquiries arriving")
    stream: list[Sample] = []
    feeder = threading.Thread(
        target=lambda: stream.extend(
            paced(url + "/f/contact", 2, plan.stream, mixed_bodies("fresh", urgent_every=3))
        )
    )
    up = time.time()
    bench.sink.start()
    feeder.start()
    drained = _wait(lambda: _unsent_backlog(bench, total), timeout=300, interval=0.25)
    drain_seconds = time.time() - up
    feeder.join()
    _wait(lambda: _unsent(bench) == 0, timeout=60)
    with bench.engine() as engine:
        index = delivery_index(engine)
        total_all, sent_all = delivery_counts(engine)
    seen = Counter(a.message_id for a in bench.sink.accepted() if a.message_id in index)
    # The drain's pace: from the first backlog delivery accepted after SMTP came back to the
    # last (the retries' scheduled wait before the first one is reported apart).
    backlog_ids = set(list(index)[:total])
    times = sorted(a.at for a in bench.sink.accepted() if a.message_id in backlog_ids)
    if len(times) >= 2:
        found.values["first_after"] = times[0] - up
        found.values["drain_rate"] = len(times) / max(times[-1] - times[0], 1e-6) / 2
    found.values.update(
        deliveries=total,
        drained=drained,
        drain_seconds=drain_seconds,
        duplicates=sum(n - 1 for n in seen.values() if n > 1),
        missing=sum(1 for m in index if seen[m] == 0),
        sent=sent_all,
        total=total_all,
    )
    during = [s for s in stream if s.due < up + drain_seconds]
    latencies, missing = _admissions_latency(bench, during)
    urgent = [s for s in during if s.tag == "urgent"]
    urgent_latencies, _ = _admissions_latency(bench, urgent)
    found.values["fresh"] = {
        "count": len(during),
        "p50": percentile(latencies, 50),
        "max": max(latencies) if latencies else float("nan"),
        "missing": missing,
    }
    found.values["urgent"] = {
        "count": len(urgent),
        "p50": percentile(urgent_latencies, 50),
        "max": max(urgent_latencies) if urgent_latencies else float("nan"),
    }
    bench.stop(beat)
    bench.stop(worker)
    bench.stop(web)
    return found


def _states(engine: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from service.models import deliveries

    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
        ).all()
    return {str(state): int(n) for state, n in rows}


def _unsent_backlog(bench: Bench, backlog_total: int) -> bool:
    """True once the backlog's deliveries (the oldest `backlog_total` rows) are all sent."""
    from sqlalchemy import func, select

    from service.models import SENT, deliveries

    with bench.engine() as engine, engine.connect() as connection:
        oldest = (
            select(deliveries.c.state)
            .order_by(deliveries.c.created_at, deliveries.c.id)
            .limit(backlog_total)
            .subquery()
        )
        unsent = connection.execute(
            select(func.count()).select_from(oldest).where(oldest.c.state != SENT)
        ).scalar_one()
    return int(unsent) == 0


# 6. Sending inside the request (bench/inline_app.py) against ours, SMTP slow or down.
def inline(bench: Bench, plan: Plan, log: Log) -> Figures:
    found = Figures()
    bench.flush_redis()
    bench.fresh_database()
    web, url = bench.web()
    worker = bench.worker()
    alt, alt_url = bench.serve(
        "inline", "bench.inline_app:app", {"BENCH_INLINE_SMTP_PORT": str(bench.sink.port)}
    )
    for condition in ("slow", "down"):
        if condition == "slow":
            bench.sink.start(delay=1.0)
        else:
            bench.sink.stop()
        for name, target in (("inline", alt_url), ("ours", url)):
            log(f"6. SMTP {condition}: {name}, 50 submissions/s for {plan.inline:.0f} s")
            samples = paced(
                target + "/f/contact", 50, plan.inline, submission_body(f"{name}{condition}")
            )
            found.values[f"{name}_{condition}"] = _http(samples)
    bench.sink.start()
    bench.stop(alt)
    bench.stop(worker)
    bench.stop(web)
    return found


__all__ = ["Figures", "Plan", "backlog", "delivery", "ingest", "inline", "steady"]
