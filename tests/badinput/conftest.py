"""One real stack per database for the whole catalogue: starting one per case would cost more
than every case together. Cases use unique emails and messages, so none is another's duplicate."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine

from service.crypto import PayloadCipher
from service.db import make_engine, migrate
from service.localredis import LocalRedis
from service.settings import Settings
from tests.conftest import IN_CI, make_settings
from tests.support.smtp import SmtpSink
from tests.support.stack import LiveServer, create_pg_database, drop_pg_database

# Generous enough that hundreds of cases from one address are never limited; the limiter still
# runs on every accepted case.
CATALOGUE_RATE_LIMIT = "100000/minute"


@dataclass
class Stack:
    settings: Settings
    server: LiveServer
    http: httpx.Client
    engine: Engine
    smtp: SmtpSink
    cipher: PayloadCipher


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: LocalRedis,
    pg_template: str | None,
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("badinput")
    pg_name = ""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'intake.db'}"
        migrate(url)
    else:
        if pg_template is None:
            if IN_CI:
                pytest.fail("PostgreSQL is required in CI but does not answer on 127.0.0.1:5432")
            pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (set INTAKE_TEST_PG_DSN)")
        pg_name = f"intake_b_{secrets.token_hex(6)}"
        url = create_pg_database(pg_name, template=pg_template)
    if redis_server.process is None:
        redis_server.start()
    smtp = SmtpSink().start()
    settings = make_settings(tmp, url, redis_server.url, smtp.port).with_overrides(
        rate_limit=CATALOGUE_RATE_LIMIT
    )
    server = LiveServer(settings).start()
    engine = make_engine(url)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            yield Stack(settings, server, http, engine, smtp, PayloadCipher(""))
    finally:
        server.stop()
        engine.dispose()
        smtp.stop()
        if pg_name:
            drop_pg_database(pg_name)
