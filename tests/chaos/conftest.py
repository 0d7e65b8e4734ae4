"""Fixtures for the chaos scenarios, their short/full scale, and the report at the end.

Short mode (inside `make test`): SQLite only, small bursts, short outages. Full mode
(`make chaos`, `--chaos-full`): SQLite and PostgreSQL, every variant, larger bursts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.localredis import LocalRedis
from tests.chaos.harness import FULL, SHORT, Chaos, Scale, chaos_settings
from tests.chaos.report import Report
from tests.conftest import fresh_database
from tests.support.smtp import SmtpSink

REPORT = pytest.StashKey[Report]()
DATABASES = {"short": ("sqlite",), "full": ("sqlite", "postgresql")}


def _full(config: pytest.Config) -> bool:
    return bool(config.getoption("--chaos-full"))


def _report(config: pytest.Config) -> Report:
    if REPORT not in config.stash:
        config.stash[REPORT] = Report(full=_full(config))
    return config.stash[REPORT]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mode = "full" if _full(metafunc.config) else "short"
    if "chaos_database" in metafunc.fixturenames:
        metafunc.parametrize("chaos_database", DATABASES[mode], indirect=True)
    chosen = getattr(metafunc.function, "chaos_variants", None)
    if chosen is not None and "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", chosen[mode])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    report = config.stash.get(REPORT, None)
    if report is None or not report.results:
        return
    path = report.write(config.rootpath)
    terminalreporter.section("chaos report")
    terminalreporter.write(report.markdown())
    terminalreporter.write_line(f"written to {path.relative_to(config.rootpath)}")


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    return FULL if _full(pytestconfig) else SHORT


@pytest.fixture
def chaos_database(
    request: pytest.FixtureRequest, tmp_path: Path, pg_template: str | None
) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, pg_template, prefix="intake_c") as url:
        yield url


@pytest.fixture
def chaos(
    request: pytest.FixtureRequest,
    chaos_database: str,
    redis_url: str,
    redis_server: LocalRedis,
    tmp_path: Path,
    scale: Scale,
) -> Iterator[Chaos]:
    """The scenario's stack; named after the test's docstring, reported at the end."""
    sink = SmtpSink().start()
    doc = " ".join((request.node.function.__doc__ or request.node.name).split("\n\n")[0].split())
    callspec = getattr(request.node, "callspec", None)
    stack = Chaos(
        scenario=doc.rstrip("."),
        variant=callspec.id if callspec is not None else "",
        settings=chaos_settings(tmp_path, chaos_database, redis_url, sink.port),
        smtp=sink,
        redis=redis_server,
        tmp_path=tmp_path,
        report=_report(request.config),
        scale=scale,
    )
    try:
        yield stack
    finally:
        stack.record_unfinished("the scenario stopped before its oracle ran (see the failure)")
        stack.close()
        sink.stop()
        if redis_server.process is None:
            redis_server.start()
