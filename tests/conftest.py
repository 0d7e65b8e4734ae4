"""Fixtures for the real stack: Redis, SMTP on loopback, SQLite and PostgreSQL, the app over
HTTP, Celery worker and beat processes. Nothing here is a fake of those components."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine

from service.db import make_engine, migrate
from service.localredis import LocalRedis
from service.settings import Secret, Settings
from tests.support.smtp import SmtpSink
from tests.support.stack import (
    LiveServer,
    ServiceProcess,
    create_pg_database,
    drop_pg_database,
    postgres_available,
)

IN_CI = os.environ.get("CI", "").lower() == "true"
ADMISSIONS = "admissions@test.example"
FALLBACK = "fallback@test.example"
ONCALL = "oncall@test.example"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-full", action="store_true", help="run every chaos scenario in full")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """Our own redis-server on a free port, so tests may flush, stop and restart it freely."""
    server = LocalRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    if redis_server.process is None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A migrated PostgreSQL database that each test clones (fast), or None without PostgreSQL."""
    if not postgres_available():
        yield None
        return
    name = f"intake_tpl_{os.getpid()}"
    drop_pg_database(name)
    url = create_pg_database(name)
    migrate(url)
    yield name
    drop_pg_database(name)


@contextmanager
def fresh_database(
    kind: str, tmp_path: Path, pg_template: str | None, prefix: str = "intake_t"
) -> Iterator[str]:
    """A migrated SQLite file, or a fresh PostgreSQL database cloned from the template."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'intake.db'}"
        migrate(url)
        yield url
        return
    if pg_template is None:
        if IN_CI:
            pytest.fail("PostgreSQL is required in CI but does not answer on 127.0.0.1:5432")
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (set INTAKE_TEST_PG_DSN)")
    name = f"{prefix}_{secrets.token_hex(6)}"
    url = create_pg_database(name, template=pg_template)
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_template: str | None
) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, pg_template) as url:
        yield url


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def make_settings(tmp_path: Path, database_url: str, redis_url: str, smtp_port: int) -> Settings:
    """Production code paths with test-sized timings."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        var_dir=str(tmp_path / "var"),
        public_url="http://testserver.example",
        smtp_port=smtp_port,
        smtp_timeout_seconds=3.0,
        mail_from="Care Team <care@test.example>",
        admissions_email=(ADMISSIONS,),
        fallback_email=(FALLBACK,),
        oncall_email=(ONCALL,),
        allowed_origins=("https://www.example.org",),
        secret_key=Secret("test-secret-key"),
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        retry_lifetime_seconds=120.0,
        sweep_interval_seconds=0.5,
        lease_seconds=10.0,
        requeue_after_seconds=3.0,
        task_time_limit_seconds=8.0,
        redis_timeout_seconds=0.5,
        log_format="json",
        rate_limit="1000/minute",
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str, smtp: SmtpSink) -> Settings:
    return make_settings(tmp_path, database_url, redis_url, smtp.port)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(settings).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=15) as http:
        yield http


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        settings,
        ["worker", "--concurrency", "2", "--name", f"w{secrets.token_hex(3)}@%h"],
        tmp_path / "worker.log",
    ).start()
    yield process
    process.stop()


@pytest.fixture
def beat(settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(settings, ["beat"], tmp_path / "beat.log").start(
        ready="beat: Starting"
    )
    yield process
    process.stop()
