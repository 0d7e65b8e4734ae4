"""Prometheus metrics, correct across uvicorn workers and Celery prefork children.

Counters and the histogram live in per-process files under `<var_dir>/metrics/<role>-<pid>/`
(prometheus-client's multiprocess mode, switched on by `prepare_multiprocess`). A scrape merges
every file under `<var_dir>/metrics/`, so on one machine the web's /metrics also shows what the
workers counted. The gauges (failed, quarantined, queue depth) are not per-process values at all:
a collector reads them from the database and the broker at scrape time, so they are right however
many processes there are.

prometheus-client decides once, when it is first imported, whether values go to files; so this
module imports it only inside functions, and `prepare_multiprocess` can run before that.

Labels carry only bounded values we chose (form names from the configuration, codes, kinds),
never anything a client sent, so a hostile client cannot grow the number of series.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from service.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

log = logging.getLogger("intake.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads this when it is imported
METRICS_SUBDIR = "metrics"  # under var_dir: one folder per running web or worker process tree
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from submission to the admissions notification sent: a minute is good, an hour is bad.
ADMISSIONS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


def _file_backed() -> bool:
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics:
    """This process's counters and histogram, in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        # True when values go to files (multiprocess mode); False in a single process (tests,
        # `celery -A workers.main`), where a scrape adds this registry to what the files hold.
        self.file_backed = _file_backed()
        self.submissions = Counter(
            "intake_submissions",
            "Submissions by form and outcome: accepted, quarantined, duplicate, invalid, "
            "refused, unavailable.",
            ["form", "outcome"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "intake_rejections",
            "Refused or invalid submissions by reason code (each distinct code once).",
            ["reason"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "intake_deliveries",
            "Recorded delivery attempts by kind and outcome: sent, retrying, failed.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "intake_delivery_retries",
            "Delivery attempts after the first, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.time_to_admissions = Histogram(
            "intake_time_to_admissions_seconds",
            "Seconds from a submission's arrival to its admissions notification sent.",
            buckets=ADMISSIONS_BUCKETS,
            registry=self.registry,
        )


_process_metrics: dict[int, Metrics] = {}


def process_metrics() -> Metrics:
    """This process's Metrics, built on first use (after a fork, the child builds its own)."""
    pid = os.getpid()
    if pid not in _process_metrics:
        _process_metrics[pid] = Metrics()
    return _process_metrics[pid]


# The counting functions never raise: a metrics fault must not cost a submission or a delivery.


def count_submission(form: str, outcome: str) -> None:
    try:
        process_metrics().submissions.labels(form, outcome).inc()
    except Exception:
        log.exception("metrics: could not count a submission")


def count_refusal(form: str | None, reasons: Iterable[str], outcome: str = "refused") -> None:
    """A submission refused (or invalid) for these reason codes. form None: not a configured
    form, counted as a rejection only, so a client cannot mint form labels."""
    try:
        metrics = process_metrics()
        if form is not None:
            metrics.submissions.labels(form, outcome).inc()
        for reason in sorted(set(reasons)):
            metrics.rejections.labels(reason).inc()
    except Exception:
        log.exception("metrics: could not count a refusal")


def count_delivery(
    kind: str, outcome: str, attempt: int, submitted_at: datetime, now: datetime
) -> None:
    """One recorded delivery attempt; an admissions notification sent also feeds the histogram."""
    try:
        metrics = process_metrics()
        metrics.deliveries.labels(kind, outcome).inc()
        if attempt > 1:
            metrics.retries.labels(kind).inc()
        if kind == "admissions" and outcome == "sent":
            metrics.time_to_admissions.observe(max((now - submitted_at).total_seconds(), 0.0))
    except Exception:
        log.exception("metrics: could not count a delivery")


# Where the files live, and how a process tree claims its folder.


def metrics_root(settings: Settings) -> Path:
    return Path(settings.var_dir) / METRICS_SUBDIR


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reset_metrics(settings: Settings) -> None:
    """Remove every process tree's counters (`intake dev` owns the whole machine)."""
    shutil.rmtree(metrics_root(settings), ignore_errors=True)


def prepare_multiprocess(settings: Settings, role: str) -> Path:
    """Give this process tree a fresh metrics folder and point prometheus-client at it.

    Run before anything imports prometheus_client; children inherit the variable. Folders of
    process trees that are gone are removed (their counters reset, which Prometheus' rate()
    expects after a restart); running ones are kept, so starting a second worker does not wipe
    the first one's counts.
    """
    root = metrics_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        _, _, pid = folder.name.rpartition("-")
        if folder.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / f"{role}-{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    os.environ[MULTIPROC_ENV] = str(mine)
    if "prometheus_client" in sys.modules and not _file_backed():
        # Imported before the variable was set: counts stay in this process. Say so; go on.
        log.warning("metrics: prometheus_client was imported too early; counts are per process")
    return mine


# A scrape: every process's files, this process's own values when they are not in files, and
# the state gauges read fresh.


def _merge(families: Iterable[Metric]) -> Iterator[Metric]:
    """Sum the samples of families with the same name (the files and this process's registry)."""
    from prometheus_client.core import Metric
    from prometheus_client.samples import Sample

    merged: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in families:
        if family.name not in merged:
            merged[family.name] = Metric(family.name, family.documentation, family.type)
            sums[family.name] = {}
        totals = sums[family.name]
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # a creation time is not a count: summing it would be nonsense
            key = (sample.name, tuple(sorted(sample.labels.items())))
            totals[key] = totals.get(key, 0.0) + sample.value
    for name, family in merged.items():
        family.samples = [
            Sample(sample, dict(labels), value) for (sample, labels), value in sums[name].items()
        ]
        yield family


@dataclass(eq=False)  # registries keep collectors in a dict: hashable by identity
class ProcessCollector:
    """Counters and the histogram of every process tree that shares the metrics folder."""

    root: Path
    own: Metrics | None = None

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        families: list[Any] = []
        for attempt in range(3):
            files = [str(path) for path in self.root.glob("*/*.db")]
            try:
                families = list(MultiProcessCollector.merge(files))  # type: ignore[no-untyped-call]
                break
            except FileNotFoundError:
                # A starting process cleared a dead one's folder between glob and read.
                if attempt == 2:
                    raise
        if self.own is not None and not self.own.file_backed:
            families.extend(self.own.registry.collect())
        yield from _merge(families)


@dataclass(eq=False)  # registries keep collectors in a dict: hashable by identity
class StateCollector:
    """Gauges read from the database and the broker at scrape time."""

    engine: Engine
    settings: Settings

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from service import ops

        up = GaugeMetricFamily(
            "intake_state_source_up",
            "1 when the source of the state gauges answered this scrape.",
            labels=["source"],
        )
        try:
            counts = ops.state_counts(self.engine)
        except Exception as exc:
            log.warning("metrics: the database did not answer", extra={"error": type(exc).__name__})
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield GaugeMetricFamily(
                "intake_failed_deliveries",
                "Deliveries that failed for good; `intake failed` lists them.",
                value=counts.failed,
            )
            yield GaugeMetricFamily(
                "intake_quarantined_submissions",
                "Submissions held in quarantine; `intake quarantine list` shows them.",
                value=counts.quarantined,
            )
            by_state = GaugeMetricFamily(
                "intake_deliveries_by_state", "Deliveries by state.", labels=["state"]
            )
            for state, number in sorted(counts.deliveries.items()):
                by_state.add_metric([state], number)
            yield by_state
            yield GaugeMetricFamily(
                "intake_oldest_open_delivery_age_seconds",
                "Age of the oldest delivery not yet sent or failed (0 when there is none).",
                value=counts.oldest_open_seconds or 0.0,
            )
        depths = ops.queue_depths(self.settings)
        depth = GaugeMetricFamily(
            "intake_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        for queue, waiting in depths.items():
            if waiting is not None:
                depth.add_metric([queue], waiting)
        answered = all(number is not None for number in depths.values())
        up.add_metric(["broker"], 1 if answered else 0)
        yield depth
        yield up


def scrape_registry(
    settings: Settings, engine: Engine | None = None, *, own: Metrics | None = None
) -> CollectorRegistry:
    """A registry for one scrape: the counters of every process tree under var_dir, plus the
    state gauges when an engine is given (the web's /metrics; a worker's endpoint has none)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector(metrics_root(settings), own))
    if engine is not None:
        registry.register(StateCollector(engine, settings))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    from prometheus_client import generate_latest

    return bytes(generate_latest(registry))


def start_worker_endpoint(settings: Settings, host: str, port: int) -> None:
    """Serve the worker's counters over HTTP, for workers on hosts (or containers) of their own,
    whose files the web's /metrics cannot see."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=scrape_registry(settings))
    log.info("worker metrics served", extra={"host": host, "port": port})
