"""`python -m bench` (`make bench`): run the measurements, print the table, write BENCHMARKS.md.

Options: `--only 1,3` runs some of them; `--quick` runs each for a second (a check that the
harness works, not a measurement); `--no-postgres`; `--output PATH` instead of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import measure
from bench.loadgen import wrk_available
from bench.report import markdown, rows, table
from bench.stack import PROJECT_ROOT, Bench

ALL = "1,2,3,4,5,6"


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=ALL, help="measurements to run, e.g. 1,3")
    parser.add_argument("--quick", action="store_true", help="a second each: harness check")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL ingest")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = parser.parse_args(argv)
    if not wrk_available():
        print("wrk is not installed: run `make bench` (it installs it) or apt-get install wrk")
        return 2
    wanted = {part.strip() for part in args.only.split(",")}
    plan = measure.Plan.quick() if args.quick else measure.Plan()
    if args.no_postgres:
        plan = measure.Plan(**{**plan.__dict__, "postgres": False})

    started = datetime.now(UTC)
    clock = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="intake-bench-"))
    results: dict[str, measure.Figures] = {}
    with Bench(run_dir) as bench:
        if "1" in wanted:
            results["ingest"] = measure.ingest(bench, plan, log)
        if wanted & {"3", "4", "5"}:
            results["delivery"] = measure.delivery(bench, plan, log)
        if wanted & {"2", "4"}:
            hint = results["delivery"].values["ours"] if "delivery" in results else float("nan")
            results["steady"] = measure.steady(bench, plan, log, hint)
        if "5" in wanted:
            results["backlog"] = measure.backlog(bench, plan, log)
        if "6" in wanted:
            results["inline"] = measure.inline(bench, plan, log)
    seconds = time.monotonic() - clock

    print()
    print(table(rows(results)))
    args.output.write_text(markdown(results, plan, started, seconds), encoding="utf-8")
    (run_dir / "results.json").write_text(json.dumps(_plain(results), indent=1, default=str))
    log(f"wrote {args.output} in {seconds / 60:.1f} minutes; raw figures and logs in {run_dir}")
    if not args.keep:
        for path in run_dir.glob("*.db*"):
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
