"""The real stack for tests: the app served over HTTP by uvicorn, Celery workers and beat as
child processes, and databases (a SQLite file, or a fresh PostgreSQL database per test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from sqlalchemy import Engine, func, select

from service.app import create_app
from service.config import AppConfig
from service.db import make_engine
from service.localredis import free_port
from service.models import deliveries, submissions
from service.settings import Settings

PG_ADMIN_DSN = os.environ.get("INTAKE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def create_pg_database(name: str, template: str | None = None) -> str:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        clause = f" TEMPLATE {template}" if template else ""
        connection.execute(f"CREATE DATABASE {name}{clause}")  # type: ignore[arg-type]
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


class LiveServer:
    """The real app on a free loopback port, served by uvicorn in a thread."""

    def __init__(self, settings: Settings, config: AppConfig | None = None) -> None:
        self.port = free_port()
        self.app = create_app(settings, config)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    @property
    def state(self) -> Any:
        return self.app.state.intake


class ServiceProcess:
    """`intake worker` or `intake beat` as a real child process with the test's settings."""

    def __init__(self, settings: Settings, args: list[str], log_path: Path) -> None:
        self.settings = settings
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: str | None = "ready", timeout: float = 60.0) -> ServiceProcess:
        env = {**os.environ, **self.settings.as_env(), "PYTHONUNBUFFERED": "1"}
        self._log = self.log_path.open("ab")
        self._offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *self.args],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if ready:
            self.wait_for_log(ready, timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_bytes()[self._offset :].decode("utf-8", "replace")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited early:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.args[0]} not {text!r} in {timeout}s:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        """Signal the main process only, as an init system does: Celery's parent then shuts
        its pool children down itself (a warm shutdown on SIGTERM)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the parent and every pool child at once: nothing gets to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        self._log.close()
        self.process = None

    def kill(self) -> None:
        self.kill_group()
        self._log.close()
        self.process = None


def count_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        subs = connection.execute(select(func.count()).select_from(submissions)).scalar_one()
        dels = connection.execute(select(func.count()).select_from(deliveries)).scalar_one()
    return int(subs), int(dels)


def delivery_states(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
        ).all()
    return {state: int(n) for state, n in rows}


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last value {value!r})")
        time.sleep(interval)


def engine_for(settings: Settings) -> Engine:
    return make_engine(settings.database_url)
