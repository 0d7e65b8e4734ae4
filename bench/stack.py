"""The processes a benchmark runs against, each a real child process on loopback.

Bench owns a run directory (databases, logs, the sink's record), one redis-server, one SMTP
sink, and starts or stops the web process, the Celery worker, the scheduler and the baselines
as each measurement needs them. Every start waits until the process answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import redis
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select

from bench.naive_task import NAIVE_QUEUE
from bench.sink import SinkProcess
from service.db import make_engine
from service.localredis import LocalRedis, free_port
from service.models import SENT, deliveries, submissions
from service.settings import Secret, Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYTHON_M = (sys.executable, "-m")
ADMISSIONS = "admissions@bench.example"
PG_ADMIN_DSN = os.environ.get("INTAKE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
START_TIMEOUT = 60.0  # seconds for a process to answer after it was started
WEB_WORKERS = 2  # uvicorn processes, for ours and every baseline alike
WORKER_CONCURRENCY = 2  # prefork pool size, for ours and the naive reference alike


class Proc:
    """A child process in its own session with its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("ab")
        self.offset = log.stat().st_size
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_bytes()[self.offset :].decode("utf-8", "replace")

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {text!r} in {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def wait_for_http(self, url: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {url} did not answer:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray pool children, if any
        self._log.close()


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


class Bench:
    """Everything one benchmark run starts; `with Bench(run_dir) as bench:` stops it all."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.redis = LocalRedis(run_dir / "redis")
        self.sink = SinkProcess(free_port(), run_dir / "sink.tsv")
        self.key = Fernet.generate_key().decode()
        self.procs: list[Proc] = []
        self.pg_databases: list[str] = []
        self._databases = 0
        self.database_url = ""
        self.settings = self._settings("")

    def __enter__(self) -> Bench:
        self.redis.start()
        self.sink.start()
        return self

    def __exit__(self, *_: object) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        self.sink.stop()
        self.redis.stop()
        for name in self.pg_databases:
            with contextlib.suppress(psycopg.Error):
                _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _settings(self, database_url: str) -> Settings:
        return Settings(
            database_url=database_url or f"sqlite:///{self.run_dir / 'unused.db'}",
            redis_url=self.redis.url,
            var_dir=str(self.run_dir / "var"),
            public_url="http://127.0.0.1",
            smtp_port=self.sink.port,
            smtp_timeout_seconds=5.0,
            mail_from="Care Team <care@bench.example>",
            admissions_email=(ADMISSIONS,),
            fallback_email=("fallback@bench.example",),
            # Every request still takes the limiter's Redis round trip; the limit is set out of
            # reach because all load comes from one address.
            rate_limit="100000000/minute",
            secret_key=Secret("bench-secret-key"),
            encryption_key=Secret(self.key),
            retry_base_seconds=1.0,
            retry_max_seconds=4.0,
            sweep_interval_seconds=1.0,
            requeue_after_seconds=60.0,
            log_format="json",
            log_level="INFO",
        )

    def fresh_database(self, kind: str = "sqlite") -> str:
        """A new empty database (migrated by the web process); its URL becomes current."""
        self._databases += 1
        if kind == "postgresql":
            name = f"intake_bench_{os.getpid()}_{self._databases}"
            _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            _pg_admin(f"CREATE DATABASE {name}")
            self.pg_databases.append(name)
            url = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
        else:
            url = f"sqlite:///{self.run_dir / f'intake-{self._databases}.db'}"
        self.database_url = url
        self.settings = self._settings(url)
        return url

    def flush_redis(self) -> None:
        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        client.close()

    def _start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(
            name, command, {**self.settings.as_env(), **(env or {})}, self.run_dir / f"{name}.log"
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    def web(self) -> tuple[Proc, str]:
        """`intake web --workers 2` on a free port; returns it and its base URL."""
        port = free_port()
        proc = self._start(
            "web",
            [*PYTHON_M, "service.cli", "web", "--port", str(port), "--workers", str(WEB_WORKERS)],
        )
        url = f"http://127.0.0.1:{port}"
        proc.wait_for_http(f"{url}/healthz")
        return proc, url

    def serve(
        self, name: str, app: str, env: dict[str, str] | None = None, *, factory: bool = False
    ) -> tuple[Proc, str]:
        """A baseline app under the same uvicorn settings (bench.serve) on a free port."""
        port = free_port()
        command = [*PYTHON_M, "bench.serve", app, "--port", str(port)]
        command += ["--workers", str(WEB_WORKERS), *(["--factory"] if factory else [])]
        proc = self._start(name, command, env)
        url = f"http://127.0.0.1:{port}"
        proc.wait_for_http(f"{url}/")
        return proc, url

    def worker(self) -> Proc:
        proc = self._start(
            "worker",
            [
                *PYTHON_M,
                "service.cli",
                "worker",
                f"--concurrency={WORKER_CONCURRENCY}",
                f"--name=bench{len(self.procs)}@%h",
            ],
        )
        proc.wait_for_log("ready")
        return proc

    def beat(self) -> Proc:
        proc = self._start("beat", [*PYTHON_M, "service.cli", "beat"])
        proc.wait_for_log("beat: Starting")
        return proc

    def naive_worker(self) -> Proc:
        proc = self._start(
            "naive",
            [
                *PYTHON_M,
                "celery",
                "--app=bench.naive_task",
                "worker",
                "--pool=prefork",
                f"--concurrency={WORKER_CONCURRENCY}",
                f"--queues={NAIVE_QUEUE}",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
            ],
            {"BENCH_NAIVE_BROKER": self.redis.url, "BENCH_NAIVE_SMTP_PORT": str(self.sink.port)},
        )
        proc.wait_for_log("ready")
        return proc

    @contextlib.contextmanager
    def engine(self) -> Iterator[Engine]:
        engine = make_engine(self.database_url)
        try:
            yield engine
        finally:
            engine.dispose()


def _pg_admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(statement)


def count_submissions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(submissions)).scalar_one())


def delivery_counts(engine: Engine) -> tuple[int, int]:
    """(all deliveries, sent deliveries)."""
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(deliveries)).scalar_one()
        sent = connection.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.state == SENT)
        ).scalar_one()
    return int(total), int(sent)


def delivery_index(engine: Engine) -> dict[str, tuple[str, str]]:
    """Message-ID -> (submission id, kind) for every delivery, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries.c.message_id, deliveries.c.submission_id, deliveries.c.kind).order_by(
                deliveries.c.created_at, deliveries.c.id
            )
        ).all()
    return {str(m): (str(s), str(k)) for m, s, k in rows}
