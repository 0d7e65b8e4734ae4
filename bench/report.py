"""The results table (printed and written to BENCHMARKS.md) and the machine it was measured on."""

from __future__ import annotations

import math
import os
import platform
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.loadgen import WrkResult
from bench.measure import Figures, Plan

PACKAGES = ("uvicorn", "uvloop", "httptools", "starlette", "celery", "kombu", "redis", "sqlalchemy")


@dataclass(frozen=True)
class Row:
    measurement: str
    ours: str
    reference: str
    ratio: str
    goal: str
    met: str


def _ok(condition: bool) -> str:
    return "yes" if condition else "**no**"


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN: not measured


def rows(results: dict[str, Figures]) -> list[Row]:
    out: list[Row] = []
    if "ingest" in results:
        out += _ingest_rows(results["ingest"].values)
    steady = results.get("steady")
    if steady is not None:
        h = steady.values["http_50"]
        out.append(
            Row(
                "2. Ingest latency at a steady 50/s (paced client, whole stack running)",
                f"p50 {_num(h['p50'], 1)} ms, p99 {_num(h['p99'], 1)} ms, "
                f"{h['errors']} errors / {h['count']}",
                "",
                "",
                "",
                "",
            )
        )
    tp = results.get("delivery")
    if tp is not None:
        ours, naive = tp.values["ours"], tp.values["naive"]
        ratio = ours / naive if naive else float("nan")
        out.append(
            Row(
                "3. Delivery throughput (submissions fully processed/s, prefork concurrency 2)",
                f"{_num(ours, 1)}/s ({tp.values['deliveries']} deliveries, state recorded)",
                f"naive task {_num(naive, 1)}/s (rounds: "
                + ", ".join(
                    f"{_num(o, 1)} vs {_num(n, 1)}"
                    for o, n in zip(tp.values["ours_runs"], tp.values["naive_runs"], strict=True)
                )
                + ")",
                f"{_num(ratio, 2)}x",
                ">= 1.2x",
                _ok(ratio >= 1.2),
            )
        )
    if steady is not None:
        for rate, limit in ((50, 50.0), (100, 100.0)):
            e = steady.values[f"e2e_{rate}"]
            out.append(
                Row(
                    f"4. POST to admissions SMTP 250 at {rate}/s",
                    f"p50 {_num(e['p50'], 1)} ms, p99 {_num(e['p99'], 1)} ms"
                    + (f", {e['missing']} not arrived" if e["missing"] else ""),
                    "",
                    "",
                    f"p99 < {limit:.0f} ms",
                    _ok(e["p99"] < limit and not e["missing"]),
                )
            )
        stable, grows = steady.values["stable"], steady.values["grows"]
        out.append(
            Row(
                "4. Rate where the queue starts to grow (one worker, concurrency 2)",
                f"grows at {_num(grows)}/s, stable at {_num(stable)}/s"
                if grows
                else f"no growth up to {_num(stable)}/s",
                f"delivery throughput {_num(tp.values['ours'], 1)}/s" if tp else "",
                "",
                "",
                "",
            )
        )
    if "backlog" in results:
        out += _backlog_rows(results["backlog"].values, tp.values["ours"] if tp else math.nan)
    if "inline" in results:
        out += _inline_rows(results["inline"].values)
    return out


def _ingest_rows(v: dict[str, Any]) -> list[Row]:
    base: list[WrkResult] = v["baseline"]
    rps = sum(b.ok_per_second for b in base) / len(base)
    p99 = sum(b.p99_ms for b in base) / len(base)
    p50 = sum(b.p50_ms for b in base) / len(base)
    out = [
        Row(
            "1. Bare Starlette GET, 64 connections (mean of before and after)",
            f"{_num(rps)} req/s, p50 {_num(p50, 1)} ms, p99 {_num(p99, 1)} ms",
            " / ".join(f"{_num(b.ok_per_second)}" for b in base) + " req/s",
            "",
            "",
            "",
        )
    ]
    if "validate_only" in v:
        only: WrkResult = v["validate_only"]
        out.append(
            Row(
                "1. Reference: validation only (same parsing and validator, nothing stored)",
                f"{_num(only.ok_per_second)}/s, p50 {_num(only.p50_ms, 1)} ms, "
                f"p99 {_num(only.p99_ms, 1)} ms",
                f"bare GET {_num(rps)}/s",
                f"{only.ok_per_second / rps:.1%}; p99 {only.p99_ms / p99:.1f}x",
                "",
                "",
            )
        )
    if "floor" in v:
        floor: WrkResult = v["floor"]
        out.append(
            Row(
                "1. Reference: the floor of our design (validation, group commit, publish; "
                "no limiter, encryption, triage, logs or middleware)",
                f"{_num(floor.ok_per_second)}/s, p50 {_num(floor.p50_ms, 1)} ms, "
                f"p99 {_num(floor.p99_ms, 1)} ms",
                f"bare GET {_num(rps)}/s",
                f"{floor.ok_per_second / rps:.1%}; p99 {floor.p99_ms / p99:.1f}x",
                "",
                "",
            )
        )
    labels = {
        "json_sqlite": "JSON, SQLite",
        "form_sqlite": "form-encoded, SQLite",
        "json_postgresql": "JSON, PostgreSQL",
    }
    for key, label in labels.items():
        if key not in v:
            continue
        r: WrkResult = v[key]
        share = r.ok_per_second / rps
        out.append(
            Row(
                f"1. Ingest, {label}, 64 connections: accepted/s",
                f"{_num(r.ok_per_second)}/s ({r.errors} errors)",
                f"bare GET {_num(rps)}/s",
                f"{share:.1%}",
                ">= 20%",
                _ok(share >= 0.2 and not r.errors),
            )
        )
        out.append(
            Row(
                f"1. Ingest, {label}: latency",
                f"p50 {_num(r.p50_ms, 1)} ms, p99 {_num(r.p99_ms, 1)} ms",
                f"bare p99 {_num(p99, 1)} ms",
                f"p99 {r.p99_ms / p99:.1f}x",
                "p99 <= 5x",
                _ok(r.p99_ms <= 5 * p99),
            )
        )
    return out


def _backlog_rows(v: dict[str, Any], throughput: float) -> list[Row]:
    rate = v.get("drain_rate", math.nan)
    fresh, urgent = v["fresh"], v["urgent"]
    return [
        Row(
            f"5. Backlog of {v['deliveries']} deliveries after SMTP was down: drain",
            f"all sent {_num(v['drain_seconds'], 1)} s after SMTP was back (first retry after "
            f"{_num(v.get('first_after', math.nan), 1)} s); {_num(rate, 1)} submissions/s"
            + ("" if v["drained"] else ", NOT drained"),
            f"delivery throughput {_num(throughput, 1)}/s",
            f"{_num(rate / throughput, 2)}x" if throughput == throughput else "",
            "about 1x",
            _ok(v["drained"] and rate >= 0.8 * throughput),
        ),
        Row(
            "5. Exactly once after the drain",
            f"{v['duplicates']} duplicates, {v['missing']} missing, {v['sent']}/{v['total']} sent",
            "",
            "",
            "0 duplicates, 0 missing",
            _ok(v["duplicates"] == 0 and v["missing"] == 0),
        ),
        Row(
            "5. Fresh inquiries during the drain: POST to admissions",
            f"p50 {_num(fresh['p50'], 2)} s, max {_num(fresh['max'], 2)} s "
            f"({fresh['count']} sent, {fresh['missing']} not arrived)",
            "",
            "",
            "within seconds",
            _ok(fresh["max"] < 5 and not fresh["missing"]),
        ),
        Row(
            "5. Urgent inquiries during the drain: POST to admissions",
            f"p50 {_num(urgent['p50'], 2)} s, max {_num(urgent['max'], 2)} s "
            f"({urgent['count']} sent)",
            "",
            "",
            "within seconds",
            _ok(urgent["max"] < 5),
        ),
    ]


def _inline_rows(v: dict[str, Any]) -> list[Row]:
    out = []
    for condition, label in (("slow", "slow (1 s per message)"), ("down", "down")):
        a, o = v[f"inline_{condition}"], v[f"ours_{condition}"]
        out.append(
            Row(
                f"6. SMTP {label}, 50 submissions/s: answer time and errors",
                f"ours: p50 {_num(o['p50'], 1)} ms, p99 {_num(o['p99'], 1)} ms, "
                f"{o['errors']}/{o['count']} errors",
                f"send in request: p50 {_num(a['p50'], 1)} ms, p99 {_num(a['p99'], 1)} ms, "
                f"{a['errors']}/{a['count']} errors",
                "",
                "",
                "",
            )
        )
    return out


def table(found: list[Row]) -> str:
    head = "| Measurement | Ours | Reference (same run) | Ratio | Goal | Met |\n"
    head += "|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| {r.measurement} | {r.ours} | {r.reference} | {r.ratio} | {r.goal} | {r.met} |\n"
        for r in found
    )


def _first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> list[str]:
    cpu = "?"
    with Path("/proc/cpuinfo").open() as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with Path("/proc/meminfo").open() as info:
        for line in info:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    system = "?"
    release = Path("/etc/os-release")
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.split("=", 1)[1].strip('"')
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in PACKAGES)
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores, {memory} RAM; {system}, "
        f"Linux {platform.release()}",
        f"- Python {platform.python_version()}; {versions}; SQLite {sqlite3.sqlite_version}",
        f"- {_first_line(['redis-server', '--version'])}",
        f"- {_first_line(['wrk', '--version'])}",
        f"- PostgreSQL: {_first_line(['psql', '--version'])}",
    ]


METHOD = """\
## How it was measured

Everything runs on loopback on the machine above, started by `python -m bench` (`make bench`):
its own `redis-server`, a fresh database for each measurement (SQLite WAL with
`synchronous=FULL`; PostgreSQL with `synchronous_commit=on` in a fresh database), the service as
`intake web --workers 2` (uvicorn with uvloop and httptools), `intake worker` (Celery prefork,
concurrency 2), `intake beat` where the sweeper matters (5), and an SMTP sink (`bench/sink.py`,
a minimal asyncio server that records when it answered 250 to each message). The load shares the
two cores with what it measures, as do the baselines, which is why every figure that has a goal
is a ratio to a baseline measured in the same run.

1. **Ingest**: `wrk -t2 -c64 -d{measure}s --timeout 5s -s bench/lua/submit.lua URL -- json|form RUN`
   after {warmup} s of warm-up. Every body is unique (run id, thread, counter), so duplicate
   suppression never answers from memory; `json` posts what a website script sends (answered
   202 with JSON), `form` what a browser form sends (answered 303). Accepted/s counts 2xx/3xx
   answers only; the harness also checks that the database holds every accepted submission.
   The rate limiter stays on (its Redis round trip is in every request) with a limit out of
   reach, since all load comes from one address. No Celery worker runs during 1: the bare GET
   has no background work either. The baseline (`bench/baseline_app.py`, a Starlette route
   returning a small JSON) is served by `bench/serve.py` with exactly the uvicorn options of
   `intake web`, before and after ours; its figure is the mean of both runs. Two references
   under the same settings show where the gap to it goes: validation only (the POST route of
   `bench/baseline_app.py`: our body parsing and validator, nothing stored) and the floor of
   the design (`bench/floor_app.py`: validation, then our group commit and our publisher on a
   fresh SQLite database; no limiter, encryption, triage, logs or security middleware).
2. and 4. **Steady rates**: wrk has no rate option, so these use `bench/loadgen.py:paced`, an
   open-loop asyncio client (request i is sent at start + i/rate whatever happened before, over
   keep-alive connections, a new one whenever none is idle); latency counts from when a request
   was due. With the web process and one worker running, {steady} s at 50/s then at 100/s.
   POST to admissions is from the moment the POST was due to the sink's 250 for that
   submission's admissions notification (matched by Message-ID through the database). The
   queue-growth ramp then runs {step} s steps around the throughput of 3 and reports the first
   rate after which more than a second of deliveries was still waiting.
3. **Delivery throughput**: {preload} submissions written with no worker running, then one
   worker started; submissions/s over the middle 80% of the accepted messages. Ours and the
   naive reference alternate, {rounds} rounds each; the figures are the means. The naive
   reference (`bench/naive_task.py`) gets the same number of tasks on an empty Redis and is
   measured the same way: it renders the same two emails from the same templates and context
   (Jinja2, CSS inlined), builds them with the email package, opens an SMTP connection per task,
   sends both, keeps no state, and runs with Celery's defaults (early ack, prefetch 4).
4. See 2.
5. **Backlog**: the sink is stopped (connection refused), {backlog} submissions are written and
   attempted (each attempt fails and is scheduled for retry: bench settings retry after 1 s,
   at most 4 s, sweeper every 1 s), {down} s later the sink comes back. The drain's time runs
   until every backlog delivery is sent; its pace (the ratio) counts from the first backlog
   message the sink accepted to the last, since the retries first wait for their scheduled
   time. Meanwhile the paced client sends 2 fresh inquiries/s for
   {stream} s, every third one urgent (it mentions suicide); their POST-to-admissions latency is
   reported for those sent before the drain ended. Exactly once: every delivery's Message-ID was
   accepted by the sink exactly once.
6. **Sending inside the request** (`bench/inline_app.py`): the same JSON, the same two emails
   rendered and sent over SMTP before the answer (in Starlette's thread pool, as a synchronous
   Django or Flask view would), served with the same uvicorn settings; 50/s for {inline} s with
   the sink answering each message after 1 s, then with the sink down. Ours runs beside it under
   the same conditions (its worker keeps retrying in the background).
"""


def markdown(results: dict[str, Figures], plan: Plan, started: datetime, seconds: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        *(
            ["**Quick run (`--quick`): a check of the harness, not a measurement.**", ""]
            if plan.measure < Plan().measure
            else []
        ),
        f"Measured {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC by `make bench` "
        f"(`python -m bench`) in {seconds / 60:.1f} minutes. Absolute numbers drift up to 40% "
        "between runs on these shared machines; the ratios to baselines of the same run are the "
        "figures to compare.",
        "",
        *machine(),
        "",
        "## Results",
        "",
        table(rows(results)),
    ]
    notes = [note for figures in results.values() for note in figures.notes]
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    lines += ["", METHOD.format(**plan.__dict__)]
    return "\n".join(lines).rstrip() + "\n"
