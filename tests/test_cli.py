"""The `intake` operating commands against the real stack: the app over HTTP, a real Celery
worker on real Redis (and RabbitMQ, when it answers), a real SMTP server on loopback and the
real database."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from service.cli import main
from service.crypto import PayloadCipher, new_key
from service.db import utcnow
from service.localredis import free_port
from service.models import deliveries, submissions
from service.settings import Settings
from tests.conftest import ADMISSIONS as ADMISSIONS_EMAIL
from tests.conftest import FALLBACK as FALLBACK_EMAIL
from tests.support.forms import person
from tests.support.smtp import SmtpSink
from tests.support.stack import LiveServer, ServiceProcess, delivery_states, wait_until
from tests.test_ops import add_delivery, add_submission

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def intake(settings: Settings, *args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**settings.as_env(), **env})


def intake_json(settings: Settings, *args: str, code: int = 0, **env: str) -> Any:
    result = intake(settings, *args, "--json", **env)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def settled(engine: Engine) -> bool:
    states = delivery_states(engine)
    return bool(states) and set(states) <= {"sent", "failed"}


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(deliveries)).mappings()]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


RUNNING = {"web", "worker", "beat", "dev", "quarantine"}  # long-running, or a group


def test_every_command_has_help_and_json() -> None:
    commands = _commands(main)
    assert {("status",), ("failed",), ("retry",), ("quarantine", "release")} <= set(commands)
    assert {("send-test",), ("check-config",), ("rotate-key",), ("purge",)} <= set(commands)
    for path in commands:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path
        if path[-1] not in RUNNING:
            assert "--json" in result.output, path


@SQLITE
@pytest.mark.integration
def test_failed_then_retry_sends_once(
    client: httpx.Client,
    worker: ServiceProcess,
    smtp: SmtpSink,
    engine: Engine,
    settings: Settings,
) -> None:
    smtp.fail("rcpt", 550, times=-1, recipients=(ADMISSIONS_EMAIL,))
    assert client.post("/f/contact", json=person()).status_code == 202
    smtp.wait_for(1, address=FALLBACK_EMAIL)
    wait_until(lambda: settled(engine))

    [failed] = intake_json(settings, "failed")
    assert failed["kind"] == "admissions" and failed["code"] == 550 and failed["attempts"] == 1
    assert "550" in failed["reason"] and failed["recipients"] == []
    human = intake(settings, "failed")
    assert failed["id"] in human.output and "REASON" in human.output
    assert "jordan" not in human.output.lower() + json.dumps(failed).lower()
    assert intake_json(settings, "status")["failed"] == 1

    smtp.clear_faults()  # the admissions mailbox is fixed
    retried = intake_json(settings, "retry", "--all-failed")
    assert retried == {"retried": [failed["id"]], "published": 1, "skipped": {}}
    [notice] = smtp.wait_for(1, address=ADMISSIONS_EMAIL)
    wait_until(lambda: settled(engine))
    row = next(r for r in rows(engine) if r["id"] == failed["id"])
    assert row["state"] == "sent" and row["attempts"] == 2
    assert notice.message_id == row["message_id"]  # the same email, not a new one
    assert len(smtp.to(ADMISSIONS_EMAIL)) == 1

    status = intake_json(settings, "status")
    assert status["failed"] == 0 and status["time_to_admissions_last_hour"]["count"] == 1
    again = intake(settings, "retry", failed["id"])
    assert again.exit_code == 1 and "is sent" in again.output
    assert intake(settings, "retry").exit_code == 2  # neither ids nor --all-failed


@SQLITE
@pytest.mark.integration
def test_retry_all_retrying_sends_without_waiting(
    client: httpx.Client,
    worker: ServiceProcess,
    smtp: SmtpSink,
    engine: Engine,
    settings: Settings,
) -> None:
    """No beat runs here: only the command wakes the worker for the waiting retry."""
    smtp.fail("rcpt", 451, times=-1, recipients=(ADMISSIONS_EMAIL,))
    assert client.post("/f/contact", json=person(email=None)).status_code == 202
    wait_until(lambda: delivery_states(engine) == {"retrying": 1})
    smtp.clear_faults()  # the outage is over
    hurried = intake_json(settings, "retry", "--all-retrying")
    assert len(hurried["retried"]) == 1 and hurried["published"] == 1
    smtp.wait_for(1, address=ADMISSIONS_EMAIL)
    wait_until(lambda: delivery_states(engine) == {"sent": 1})


@SQLITE
def test_status_counts_waiting_messages(
    client: httpx.Client, settings: Settings, engine: Engine
) -> None:
    assert client.post("/f/contact", json=person()).status_code == 202

    def queued() -> Any:
        status = intake_json(settings, "status")
        return status if status["queues"]["admissions"] == 1 else None

    status = wait_until(queued)  # no worker runs: the messages wait
    # One message per submission, for its most urgent delivery (the worker takes the rest).
    assert status["queues"] == {"urgent": 0, "admissions": 1, "autoreply": 0, "backlog": 0}
    assert status["deliveries"]["pending"] == 2 and status["oldest_pending_seconds"] >= 0
    human = intake(settings, "status")
    assert human.exit_code == 0 and "admissions  1" in human.output
    assert "oldest pending" in human.output

    down = intake(settings, "status", INTAKE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert down.exit_code == 0 and "BROKER NOT ANSWERING" in down.output


@SQLITE
@pytest.mark.integration
def test_quarantine_list_and_release(
    client: httpx.Client,
    worker: ServiceProcess,
    smtp: SmtpSink,
    engine: Engine,
    settings: Settings,
) -> None:
    answer = client.post("/f/contact", json=person(_gotcha="http://spam.example"))
    assert answer.status_code == 202
    [held] = intake_json(settings, "quarantine", "list")
    assert held["id"] == answer.json()["id"] and held["reason"] == "honeypot"
    listing = intake(settings, "quarantine")
    assert held["id"] in listing.output and "honeypot" in listing.output
    assert "jordan" not in listing.output.lower()

    released = intake_json(settings, "quarantine", "release", held["id"])
    assert len(released["released"][held["id"]]) == 2
    smtp.wait_for(2)
    wait_until(lambda: delivery_states(engine) == {"sent": 2})
    assert intake_json(settings, "quarantine", "list") == []
    again = intake(settings, "quarantine", "release", held["id"])
    assert again.exit_code == 1 and "not quarantined" in again.output


def test_purge(engine: Engine, settings: Settings) -> None:
    old = add_submission(engine, created_at=utcnow() - timedelta(days=settings.retention_days + 1))
    add_delivery(engine, old, state="sent")
    fresh = add_submission(engine, created_at=utcnow())
    assert intake_json(settings, "purge") == {"purged": 1}
    with engine.connect() as connection:
        payloads = dict(connection.execute(select(submissions.c.id, submissions.c.payload)).all())
    assert payloads[old] is None and payloads[fresh] is not None
    assert "0 submission(s)" in intake(settings, "purge").output


@SQLITE
def test_send_test(settings: Settings, smtp: SmtpSink) -> None:
    sent = intake_json(settings, "send-test", "--to", "ops@test.example")
    assert sent["ok"] and sent["accepted"] == ["ops@test.example"]
    [received] = smtp.wait_for(1)
    assert received.message_id == sent["message_id"]
    assert received.message["Subject"].startswith("Test message from Intake")

    default = intake(settings, "send-test")
    assert default.exit_code == 0 and ADMISSIONS_EMAIL in default.output
    smtp.fail("rcpt", 550, times=-1)
    refused = intake(settings, "send-test", "--to", "ops@test.example")
    assert refused.exit_code == 1 and "550" in refused.output
    smtp.clear_faults()
    smtp.fail("connect", 421, times=1)
    failed = intake_json(settings, "send-test", code=1)
    assert failed == {"ok": False, "code": 421, "reason": failed["reason"]}


@SQLITE
def test_check_config(settings: Settings, tmp_path: Path) -> None:
    result = intake(settings, "check-config")
    assert result.exit_code == 0, result.output
    assert "555-01xx" in result.output and "admissions@test.example" in result.output
    assert "configuration is valid" in result.output
    assert intake(settings, "check-config", "--strict").exit_code == 1

    config = tmp_path / "intake.toml"
    config.write_text(
        '[organization]\nname = "Harbor House"\nphone = "(415) 555-2671"\n'
        "[forms.contact]\n"
        '[[routes]]\nname = "spanish"\nwhen = { language = "es" }\nto = ["es@harbor.test"]\n'
    )
    report = intake_json(settings, "check-config", INTAKE_CONFIG=str(config))
    assert report["source"] == str(config)
    assert [r["name"] for r in report["routes"]] == ["spanish", "default", "on-call", "fallback"]
    assert not any("555" in w for w in report["warnings"])

    config.write_text("[forms.contact\n")
    broken = intake(settings, "check-config", INTAKE_CONFIG=str(config))
    assert broken.exit_code == 1 and "error:" in broken.output
    bad_setting = intake(settings, "check-config", INTAKE_SMTP_SECURITY="ssl3")
    assert bad_setting.exit_code == 1 and "INTAKE_SMTP_SECURITY" in bad_setting.output


@SQLITE
def test_rotate_key(engine: Engine, settings: Settings) -> None:
    old = new_key()
    payload = {"person": {"name": "Zelda Canary"}}
    ids = [add_submission(engine, payload=PayloadCipher(old).seal(payload)) for _ in range(3)]
    generated = intake_json(settings, "rotate-key", "--generate")["key"]
    done = intake_json(settings, "rotate-key", INTAKE_ENCRYPTION_KEY=f"{generated},{old}")
    assert done == {"resealed": 3, "unreadable": [], "changed_meanwhile": 0}
    with engine.connect() as connection:
        stored = dict(connection.execute(select(submissions.c.id, submissions.c.payload)).all())
    assert all(PayloadCipher(generated).open(stored[i]) == payload for i in ids)
    missing = intake(settings, "rotate-key")
    assert missing.exit_code == 1 and "INTAKE_ENCRYPTION_KEY" in missing.output


@SQLITE
def test_a_database_without_schema_is_a_clear_message(settings: Settings, tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    for command in ("status", "failed", "purge"):
        result = intake(settings, command, INTAKE_DATABASE_URL=empty)
        assert result.exit_code == 1 and "intake migrate" in result.output, command
        assert "Traceback" not in result.output


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@SQLITE
@pytest.mark.integration
def test_worker_on_rabbitmq_delivers(
    settings: Settings, smtp: SmtpSink, engine: Engine, tmp_path: Path
) -> None:
    """RabbitMQ is the alternative broker: the same worker and publisher, over AMQP."""
    if not rabbitmq_answers():
        pytest.skip("RabbitMQ does not answer on 127.0.0.1:5672 (it is optional)")
    rabbit = settings.with_overrides(broker_url=RABBITMQ_URL)
    worker = ServiceProcess(
        rabbit,
        ["worker", "--concurrency", "1", "--name", f"rabbit{free_port()}@%h"],
        tmp_path / "w.log",
    ).start()
    live = LiveServer(rabbit).start()
    try:
        answer = httpx.post(f"{live.url}/f/contact", json=person(), timeout=15)
        assert answer.status_code == 202
        smtp.wait_for(2)
        wait_until(lambda: delivery_states(engine) == {"sent": 2})
        depths = intake_json(rabbit, "status")["queues"]
    finally:
        live.stop()
        worker.stop()
    assert all(isinstance(depth, int) for depth in depths.values()), depths
    assert len(smtp.received) == 2
