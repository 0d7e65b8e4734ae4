"""One chaos scenario's world: the real stack (web over HTTP, Celery workers and beat as child
processes, Redis, an SMTP server, the database), the traffic, the faults, and the oracle.

The oracle is the same for every scenario. After the fault clears and the stack drains, the
database and the SMTP server's mailbox must agree that every submission answered 2xx got
exactly one auto-reply (when it had an email) and exactly one admissions notification, with
distinct Message-IDs, or was recorded as failed with the fallback notified; nothing may be
left open; and a Message-ID may reach a recipient twice only in the after-DATA window the
scenario declares (the server has the whole message, the worker could not record it).
"""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from sqlalchemy import Engine, event, func, make_url, select

from service.crypto import PayloadCipher
from service.db import make_engine
from service.localredis import LocalRedis
from service.models import (
    OPEN_STATES,
    deliveries,
)
from service.routing import QUEUES
from service.settings import Settings
from tests.chaos.oracle import Answer, judge
from tests.chaos.proxy import TcpProxy
from tests.chaos.report import Report, ScenarioResult
from tests.conftest import make_settings
from tests.support.forms import person
from tests.support.smtp import SmtpSink
from tests.support.stack import LiveServer, ServiceProcess

NO_EMAIL_EVERY = 4  # every fourth applicant leaves no email: no auto-reply is owed
STOP_GRACE_SECONDS = 20.0  # a warm shutdown finishes its task well within this
READY = {"worker": "ready", "beat": "beat: Starting"}  # the log line each process is up at


def chaos_settings(tmp_path: Path, database_url: str, redis_url: str, smtp_port: int) -> Settings:
    """The test timings, tightened so a killed worker's delivery is taken over in seconds.

    The lease (6 s) exceeds the task time limit (5 s, soft limit 4 s) as production requires;
    a published delivery nobody claimed is published again after 2 s.
    """
    return make_settings(tmp_path, database_url, redis_url, smtp_port).with_overrides(
        smtp_timeout_seconds=2.0,
        task_time_limit_seconds=5.0,
        lease_seconds=6.0,
        requeue_after_seconds=2.0,
    )


@dataclass(frozen=True)
class Scale:
    """How hard the scenarios push: short inside `make test`, full for `make chaos`."""

    full: bool
    burst: int  # submissions in a burst
    outage: float  # seconds a broker or database outage lasts
    copies: int  # duplicate task messages per delivery


SHORT = Scale(full=False, burst=12, outage=2.0, copies=50)
FULL = Scale(full=True, burst=60, outage=6.0, copies=50)


def variants(*, short: tuple[str, ...], full: tuple[str, ...]) -> Callable[[Any], Any]:
    """Parametrize a scenario's `variant` argument: fewer variants in short mode."""

    def mark(function: Any) -> Any:
        function.chaos_variants = {"short": short, "full": full}
        return function

    return mark


def applicant(n: int) -> dict[str, Any]:
    """A distinct person per n (no two are duplicates of each other); some give no email."""
    with_email = n % NO_EMAIL_EVERY != NO_EMAIL_EVERY - 1
    return person(
        name=f"Chaos Applicant {n}",
        email=f"applicant.{n}@example.com" if with_email else None,
        message=f"Looking for help for my family, note {n}.",
    )


@contextmanager
def database_write_lock(database_url: str) -> Iterator[None]:
    """Hold the database's write lock from another connection, as a long migration, VACUUM or
    bulk job would: readers go on, every writer waits."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(url.database), isolation_level=None, timeout=30)
        connection.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as pg:
        pg.execute("LOCK TABLE submissions, deliveries IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


def shorten_sqlite_busy_timeout(engine: Engine, milliseconds: int) -> None:
    """A test-specific setting: service/db.py waits 30 s for a SQLite lock before giving up.
    The web process's engine is given a shorter wait, so a lock held longer than that (the
    outage) turns into the same OperationalError a real one would, in a second, not 30."""

    def pragma(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(milliseconds)}")

    event.listen(engine, "connect", pragma)
    engine.dispose()


class Chaos:
    """The stack, the traffic and the oracle for one scenario run."""

    def __init__(
        self,
        *,
        scenario: str,
        variant: str,
        settings: Settings,
        smtp: SmtpSink,
        redis: LocalRedis,
        tmp_path: Path,
        report: Report,
        scale: Scale,
    ) -> None:
        self.scenario = scenario
        self.variant = variant
        self.settings = settings
        self.smtp = smtp
        self.redis = redis
        self.tmp_path = tmp_path
        self.report = report
        self.scale = scale
        self.engine = make_engine(settings.database_url)  # the oracle's own, never proxied
        self.answers: list[Answer] = []
        self.faults: list[str] = []
        self.window_allowance = 0
        self.cleared_at: float | None = None
        self.drain_seconds: float | None = None
        self.bound_seconds = 0.0
        self.processes: list[ServiceProcess] = []
        self.servers: list[LiveServer] = []
        self.proxies: list[TcpProxy] = []
        self.unplanned: list[str] = []  # processes that died on their own, and were restarted
        self._expected_exits: set[int] = set()  # ids of processes the scenario stops or kills
        self._next = 0
        self._lock = threading.Lock()
        self._recorded = False
        self._supervising = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervising.set()
        self._supervisor.start()

    # The stack.

    @property
    def is_sqlite(self) -> bool:
        return self.settings.is_sqlite

    def configure(self, **changes: Any) -> Settings:
        """Change the scenario's settings before anything is started with them."""
        self.settings = self.settings.with_overrides(**changes)
        return self.settings

    def serve(self, settings: Settings | None = None) -> LiveServer:
        server = LiveServer(settings or self.settings).start()
        self.servers.append(server)
        return server

    def worker(
        self, settings: Settings | None = None, *, concurrency: int = 2, label: str = "w"
    ) -> ServiceProcess:
        name = f"{label}-{secrets.token_hex(3)}@%h"
        process = ServiceProcess(
            settings or self.settings,
            ["worker", "--concurrency", str(concurrency), "--name", name],
            self.tmp_path / f"{label}.log",
        )
        return self._start(process)

    def beat(self, settings: Settings | None = None, *, label: str = "beat") -> ServiceProcess:
        process = ServiceProcess(
            settings or self.settings, ["beat"], self.tmp_path / f"{label}.log"
        )
        return self._start(process)

    def _start(self, process: ServiceProcess) -> ServiceProcess:
        with self._lock:
            self.processes.append(process)
        return process.start(ready=READY[process.args[0]])

    def kill(self, process: ServiceProcess) -> None:
        """SIGKILL the process and its pool: nothing gets to clean up."""
        self._expected_exits.add(id(process))
        process.kill()

    def terminate(self, process: ServiceProcess) -> None:
        """SIGTERM the main process only, as an init system does: a warm shutdown."""
        self._expected_exits.add(id(process))
        process.signal(signal.SIGTERM)

    def _supervise(self) -> None:
        """Restart a process that exits on its own, as the deployment's `restart:
        unless-stopped` does, and note it: the report shows every unplanned exit."""
        while self._supervising.is_set():
            time.sleep(0.2)
            with self._lock:
                dead = [
                    p
                    for p in self.processes
                    if p.process is not None
                    and p.process.poll() is not None
                    and id(p) not in self._expected_exits
                ]
                for process in dead:
                    self._expected_exits.add(id(process))
            for process in dead:
                if not self._supervising.is_set():
                    return
                assert process.process is not None
                crash = next(
                    (
                        str(json.loads(line).get("event", ""))[:160]
                        for line in process.log().splitlines()
                        if line.startswith("{") and "Unrecoverable error" in line
                    ),
                    "no reason logged",
                )
                self.unplanned.append(
                    f"unplanned: {process.args[0]} exited with code "
                    f"{process.process.returncode} ({crash}); restarted"
                )
                try:
                    self._start(ServiceProcess(process.settings, process.args, process.log_path))
                except RuntimeError as exc:
                    self.unplanned.append(f"unplanned: the restart failed too ({exc})"[:200])

    def proxy(self, upstream_port: int) -> TcpProxy:
        proxy = TcpProxy(upstream_port).start()
        self.proxies.append(proxy)
        return proxy

    def redis_through_proxy(self) -> tuple[TcpProxy, Settings]:
        proxy = self.proxy(self.redis.port)
        return proxy, self.settings.with_overrides(redis_url=f"redis://127.0.0.1:{proxy.port}/0")

    def database_through_proxy(self) -> tuple[TcpProxy, Settings]:
        url = make_url(self.settings.database_url)
        assert url.port is not None, "only a networked database can sit behind a proxy"
        proxy = self.proxy(url.port)
        proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
        return proxy, self.settings.with_overrides(database_url=proxied)

    def stop_all(self) -> None:
        """Warm-stop every process at once (SIGTERM to each, then wait for each)."""
        self._supervising.clear()
        self._supervisor.join(60)
        running = [p for p in self.processes if p.process is not None]
        for process in running:
            process.signal(signal.SIGTERM)
        for process in running:
            process.stop(STOP_GRACE_SECONDS)

    def close(self) -> None:
        self.stop_all()
        for server in self.servers:
            server.stop()
        for proxy in self.proxies:
            proxy.stop()
        self.engine.dispose()

    # Faults.

    def fault(self, description: str) -> None:
        self.faults.append(description)

    def allow_window_duplicates(self, count: int) -> None:
        """The fault just injected may have left up to `count` messages in the after-DATA
        window: the server has them, the worker never recorded it, a retry resends them."""
        self.window_allowance += count

    def cleared(self) -> None:
        """The fault is over: drain time is measured from now."""
        self.cleared_at = time.monotonic()

    # Traffic.

    def submit(
        self, server: LiveServer, count: int, *, threads: int = 6, pace: float = 0.0
    ) -> list[Answer]:
        """Post `count` distinct applicants from `threads` clients at once; keep every answer."""
        with self._lock:
            numbers = list(range(self._next, self._next + count))
            self._next += count
        local = threading.local()

        def post(n: int) -> Answer:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=server.url, timeout=60)
                clients.append(local.client)
            data = applicant(n)
            started = time.monotonic()
            response = local.client.post("/f/contact", json=data)
            elapsed = time.monotonic() - started
            if pace:
                time.sleep(pace)
            try:
                body = response.json()
            except ValueError:
                body = {}
            answer = Answer(
                n,
                response.status_code,
                str(body.get("id", "")),
                data["name"],
                data.get("email"),
                response.headers.get("retry-after"),
                elapsed,
            )
            with self._lock:
                self.answers.append(answer)
            return answer

        clients: list[httpx.Client] = []
        try:
            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(post, numbers))
        finally:
            for client in clients:
                client.close()

    def submit_in_background(
        self, server: LiveServer, count: int, *, threads: int = 4, pace: float = 0.0
    ) -> Future[list[Answer]]:
        runner = ThreadPoolExecutor(1)
        future = runner.submit(self.submit, server, count, threads=threads, pace=pace)
        runner.shutdown(wait=False)
        return future

    # Observations.

    def slowest_answer(self, answers: list[Answer]) -> str:
        """For the report: publishing happens off the request, so a broker fault must not show."""
        return f"answers all 2xx, slowest {max(a.seconds for a in answers):.2f} s"

    def states(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
            ).all()
        return {state: int(n) for state, n in rows}

    def redis_queue_length(self) -> int:
        """Task messages waiting in Redis, every queue (kombu keeps one list per queue)."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            return sum(int(client.llen(name)) for name in QUEUES)
        finally:
            client.close()

    def open_deliveries(self) -> int:
        return sum(n for state, n in self.states().items() if state in OPEN_STATES)

    def settle(self, bound: float) -> bool:
        """Wait, up to `bound` seconds after the fault cleared, for nothing to be open."""
        start = self.cleared_at if self.cleared_at is not None else time.monotonic()
        self.bound_seconds = bound
        while True:
            states = self.states()
            if states and not any(state in OPEN_STATES for state in states):
                self.drain_seconds = time.monotonic() - start
                return True
            if time.monotonic() > start + bound:
                return False
            time.sleep(0.1)

    # The oracle.

    def verify(self, *, permanent_faults: bool = False) -> ScenarioResult:
        """Stop the stack (no straggler can send after we count), check, record, assert."""
        self.stop_all()
        result = ScenarioResult(self.scenario, self.variant, self.faults + self.unplanned)
        result.drain_seconds = self.drain_seconds
        result.bound_seconds = self.bound_seconds
        try:
            judge(
                result,
                engine=self.engine,
                received=self.smtp.received,
                answers=self.answers,
                cipher=PayloadCipher(self.settings.encryption_key.reveal()),
                window_allowance=self.window_allowance,
                permanent_faults=permanent_faults,
            )
        finally:
            self.report.add(result)
            self._recorded = True
        assert result.passed, "\n".join(result.problems)
        return result

    def record_unfinished(self, reason: str) -> None:
        """A scenario that failed before its oracle ran still appears in the report."""
        if self._recorded:
            return
        result = ScenarioResult(self.scenario, self.variant, self.faults + self.unplanned)
        result.problems.append(reason)
        self.report.add(result)
        self._recorded = True
