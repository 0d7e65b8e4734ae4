"""The functions behind `intake status`, `failed`, `retry`, `rotate-key`, `check-config` and
`send-test`, against the real database (SQLite and PostgreSQL), real Redis and real SMTP."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from service import ops
from service.config import AppConfig, load_config, parse_config
from service.crypto import PayloadCipher, new_key
from service.db import utcnow
from service.localredis import free_port
from service.models import (
    ACCEPTED,
    ADMISSIONS,
    AUTOREPLY,
    FAILED,
    PENDING,
    QUARANTINED,
    SENT,
    deliveries,
    submissions,
)
from service.outbox import new_id
from service.settings import Secret, Settings
from tests.support.smtp import SmtpSink
from workers.celery_app import DELIVER_TASK, create_celery
from workers.retry import TemporaryFailure

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=utcnow().tzinfo)


def add_submission(
    engine: Engine,
    *,
    created_at: datetime = T0,
    status: str = ACCEPTED,
    payload: str | None = 'json:{"person":{"name":"Zelda Canary"}}',
    reason: str | None = None,
) -> str:
    submission_id = new_id()
    with engine.begin() as connection:
        connection.execute(
            insert(submissions).values(
                id=submission_id,
                form="contact",
                created_at=created_at,
                status=status,
                quarantine_reason=reason,
                language="en",
                urgent=False,
                payload=payload,
            )
        )
    return submission_id


def add_delivery(
    engine: Engine,
    submission_id: str,
    *,
    kind: str = ADMISSIONS,
    state: str = PENDING,
    created_at: datetime = T0,
    **values: Any,
) -> str:
    delivery_id = new_id()
    row: dict[str, Any] = {
        "id": delivery_id,
        "submission_id": submission_id,
        "kind": kind,
        "channel": "email",
        "route": "default",
        "recipients": json.dumps(["admissions@test.example"]),
        "delivered_to": "[]",
        "refused": "[]",
        "state": state,
        "priority": 1,
        "attempts": 0,
        "message_id": f"<{delivery_id}@test.example>",
        "created_at": created_at,
        "updated_at": created_at,
        "next_attempt_at": created_at,
    }
    row.update(values)
    with engine.begin() as connection:
        connection.execute(insert(deliveries).values(**row))
    return delivery_id


def delivery(engine: Engine, delivery_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(deliveries).where(deliveries.c.id == delivery_id))
        return dict(row.mappings().one())


def test_state_counts_and_time_to_admissions(engine: Engine) -> None:
    now = T0 + timedelta(minutes=30)
    for seconds in (10, 20, 30, 40, 600):
        sid = add_submission(engine)
        add_delivery(engine, sid, state=SENT, sent_at=T0 + timedelta(seconds=seconds))
        add_delivery(engine, sid, kind=AUTOREPLY, state=SENT, sent_at=T0 + timedelta(seconds=1))
    old = add_submission(engine, created_at=T0 - timedelta(hours=3))
    add_delivery(engine, old, state=SENT, sent_at=T0 - timedelta(hours=2))  # outside the hour
    add_delivery(engine, old, state=FAILED, kind=AUTOREPLY)
    waiting = add_submission(engine)
    add_delivery(engine, waiting, state=PENDING, created_at=T0 + timedelta(minutes=25))
    add_delivery(engine, waiting, state="retrying", created_at=T0 + timedelta(minutes=5))
    add_submission(engine, status=QUARANTINED, reason="honeypot")

    counts = ops.state_counts(engine, now)
    assert counts.deliveries["sent"] == 11 and counts.deliveries["pending"] == 1
    assert counts.deliveries["retrying"] == 1 and counts.deliveries["cancelled"] == 0
    assert counts.failed == 1 and counts.quarantined == 1
    assert counts.oldest_open_seconds == 25 * 60

    latency = ops.admissions_latency(engine, now)
    assert (latency.count, latency.p50_seconds, latency.p95_seconds) == (5, 30.0, 600.0)
    assert ops.admissions_latency(engine, T0 + timedelta(days=1)).count == 0


def test_queue_depths_count_every_priority_list(settings: Settings) -> None:
    app = create_celery(settings, include_tasks=False)
    for _ in range(3):
        app.send_task(DELIVER_TASK, args=["x"], queue="admissions")
    app.send_task(DELIVER_TASK, args=["y"], queue="admissions", priority=6)
    app.send_task(DELIVER_TASK, args=["z"], queue="urgent")
    app.close()
    depths = ops.queue_depths(settings)
    assert depths == {"urgent": 1, "admissions": 4, "autoreply": 0, "backlog": 0}
    nobody = settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert ops.queue_depths(nobody) == dict.fromkeys(depths)


def test_failed_deliveries_hide_personal_data_unless_asked(engine: Engine) -> None:
    sid = add_submission(engine)
    refusal = "every recipient refused: 550 5.1.1 <jordan.rivera@example.com>: User unknown"
    failed_id = add_delivery(
        engine,
        sid,
        kind=AUTOREPLY,
        state=FAILED,
        attempts=1,
        last_code=550,
        last_error=refusal,
        recipients=json.dumps(["jordan.rivera@example.com"]),
    )
    add_delivery(engine, sid, state=SENT)
    [shown] = ops.failed_deliveries(engine)
    assert shown.id == failed_id and shown.code == 550 and shown.kind == AUTOREPLY
    assert "jordan" not in json.dumps(shown.as_dict())
    assert shown.reason == "every recipient refused: 550 5.1.1 <<address>>: User unknown"
    [full] = ops.failed_deliveries(engine, personal=True)
    assert full.reason == refusal and full.recipients == ["jordan.rivera@example.com"]


def test_retry_sets_failed_back_to_pending_once(engine: Engine) -> None:
    sid = add_submission(engine)
    failed_id = add_delivery(
        engine,
        sid,
        state=FAILED,
        attempts=3,
        priority=0,
        recipients=json.dumps(["a@test.example", "b@test.example"]),
        delivered_to=json.dumps(["a@test.example"]),
        refused=json.dumps(["b@test.example"]),
        last_error="gave up",
    )
    sent_id = add_delivery(engine, sid, kind=AUTOREPLY, state=SENT)
    now = T0 + timedelta(hours=1)
    result = ops.retry_failed(engine, [failed_id, sent_id, "nope"], now=now)
    assert result.jobs == [(failed_id, "urgent")]
    assert result.skipped == {sent_id: "is sent", "nope": "not found"}
    row = delivery(engine, failed_id)
    assert row["state"] == PENDING and row["attempts"] == 3
    assert json.loads(row["refused"]) == []  # the refusing recipient is tried again
    assert json.loads(row["delivered_to"]) == ["a@test.example"]  # the other is not
    assert row["next_attempt_at"] == now and row["enqueued_at"] == now
    assert ops.retry_failed(engine, [failed_id]).skipped == {failed_id: "is pending"}


def test_retry_all_failed(engine: Engine) -> None:
    sid = add_submission(engine)
    ids = {add_delivery(engine, sid, state=FAILED) for _ in range(3)}
    add_delivery(engine, sid, state=SENT)
    result = ops.retry_failed(engine)
    assert {delivery_id for delivery_id, _ in result.jobs} == ids and not result.skipped
    assert ops.retry_failed(engine).jobs == []


def test_hurry_retrying_brings_waiting_retries_forward(engine: Engine) -> None:
    sid = add_submission(engine)
    later = T0 + timedelta(hours=3)
    waiting = add_delivery(engine, sid, state="retrying", next_attempt_at=later, priority=1)
    urgent = add_delivery(engine, sid, state="retrying", next_attempt_at=later, priority=0)
    add_delivery(engine, sid, state=FAILED, next_attempt_at=later)
    add_delivery(engine, sid, state=PENDING, next_attempt_at=later)
    now = T0 + timedelta(minutes=5)
    assert ops.hurry_retrying(engine, now) == [(urgent, "urgent"), (waiting, "backlog")]
    assert delivery(engine, waiting)["next_attempt_at"] == now
    assert delivery(engine, waiting)["enqueued_at"] == now


def test_publish_without_a_broker_leaves_the_work_to_the_sweeper(
    engine: Engine, settings: Settings
) -> None:
    sid = add_submission(engine)
    delivery_id = add_delivery(engine, sid, state=PENDING, enqueued_at=T0)
    nobody = settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert ops.publish(engine, nobody, [(delivery_id, "admissions")]) == 0
    assert delivery(engine, delivery_id)["enqueued_at"] is None  # the next sweep publishes it
    assert ops.publish(engine, settings, [(delivery_id, "admissions")]) == 1
    assert ops.queue_depths(settings)["admissions"] == 1


def test_rotate_keys_reseals_every_payload(engine: Engine, settings: Settings) -> None:
    old, new = new_key(), new_key()
    payload = {"person": {"name": "Zelda Canary"}}
    sealed = [add_submission(engine, payload=PayloadCipher(old).seal(payload)) for _ in range(5)]
    plain = add_submission(engine, payload=PayloadCipher("").seal(payload))
    lost = add_submission(engine, payload=PayloadCipher(new_key()).seal(payload))
    add_submission(engine, payload=None)  # purged: nothing to do
    both = settings.with_overrides(encryption_key=Secret(f"{new},{old}"))
    result = ops.rotate_keys(engine, both, batch=2)
    assert result.resealed == 6 and result.unreadable == [lost]
    with engine.connect() as connection:
        stored = dict(connection.execute(select(submissions.c.id, submissions.c.payload)).all())
    for submission_id in [*sealed, plain]:
        assert PayloadCipher(new).open(stored[submission_id]) == payload
    with pytest.raises(ops.OpsError, match="INTAKE_ENCRYPTION_KEY"):
        ops.rotate_keys(engine, settings)


@pytest.mark.parametrize(
    ("phone", "fictional"),
    [
        ("(555) 010-0100", True),
        ("555-0123", True),
        ("+1 (415) 555-0199", True),
        ("(415) 555-2671", False),
        ("1-800-662-4357", False),
        ("", False),
    ],
)
def test_fictional_phone_numbers(phone: str, fictional: bool) -> None:
    assert ops.is_fictional_phone(phone) is fictional


def test_config_report_flags_placeholders() -> None:
    report = ops.config_report(Settings(), load_config(""))
    text = "\n".join(report.warnings)
    assert "555-01xx" in text and "admissions@example.org" in text
    assert "INTAKE_ENCRYPTION_KEY" in text and not report.errors
    assert [r.order for r in report.routes] == ["default", "urgent", "fallback"]


def _config(routes: list[dict[str, Any]]) -> AppConfig:
    return parse_config(
        {
            "organization": {"name": "Harbor House", "phone": "(415) 555-2671"},
            "forms": {"contact": {}},
            "routes": routes,
        }
    )


def test_config_report_prints_routes_in_order_without_secrets(settings: Settings) -> None:
    config = _config(
        [
            {"name": "spanish", "when": {"language": "es"}, "to": ["admisiones@harbor.test"]},
            {
                "name": "crm",
                "when": {"program": ["detox", "mat"]},
                "to": ["intake@harbor.test"],
                "webhook": {"url": "https://crm.harbor.test/hook/t0ken", "secret": "whsec_x"},
            },
        ]
    )
    ready = settings.with_overrides(encryption_key=Secret(new_key()), metrics_token=Secret("t"))
    report = ops.config_report(ready, config)
    assert [(r.order, r.name) for r in report.routes][:3] == [
        ("1", "spanish"),
        ("2", "crm"),
        ("default", "default"),
    ]
    crm = report.routes[1]
    assert crm.when == "program in detox,mat" and crm.webhook == "https://crm.harbor.test"
    assert "whsec" not in json.dumps(report.as_dict()) and "t0ken" not in json.dumps(
        report.as_dict()
    )
    assert not report.errors and not any("555" in w for w in report.warnings)


def test_config_report_errors(settings: Settings, tmp_path: Path) -> None:
    config = _config([{"name": "bad", "to": ["not an address"]}])
    broken = settings.with_overrides(templates_dir=str(tmp_path))
    errors = ops.config_report(broken, config).errors
    assert any("route 'bad'" in e for e in errors)
    assert any("INTAKE_TEMPLATES_DIR" in e for e in errors)


def test_send_test_email(settings: Settings, smtp: SmtpSink) -> None:
    config = load_config("")
    sent = ops.send_test_email(settings, config, ["ops@test.example"])
    [received] = smtp.wait_for(1)
    message = received.message
    assert sent.accepted == ["ops@test.example"] and received.message_id == sent.message_id
    assert message["Subject"] == f"Test message from Intake – {config.organization.name}"
    assert "SMTP settings work" in message.get_body(("plain",)).get_content()
    assert message.get_body(("html",)) is not None

    smtp.fail("rcpt", 550, times=1, recipients=("gone@test.example",))
    partly = ops.send_test_email(settings, config, ["gone@test.example", "ops@test.example"])
    assert partly.accepted == ["ops@test.example"] and "550" in partly.refused["gone@test.example"]

    smtp.fail("connect", 421, times=1)
    with pytest.raises(TemporaryFailure, match="421"):
        ops.send_test_email(settings, config, ["ops@test.example"])
