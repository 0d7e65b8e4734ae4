"""Delivery end to end: the app over HTTP, a real Celery worker on real Redis, a real SMTP server
on loopback, the real database. Exactly one auto-reply and one admissions email per submission."""

from __future__ import annotations

import json
import signal

import httpx
import pytest
import redis
from sqlalchemy import Engine, select

from service.models import ADMISSIONS, AUTOREPLY, FALLBACK, attempts, deliveries
from service.settings import Settings
from tests.conftest import ADMISSIONS as ADMISSIONS_EMAIL
from tests.conftest import FALLBACK as FALLBACK_EMAIL
from tests.conftest import ONCALL
from tests.support.forms import person
from tests.support.smtp import SmtpSink
from tests.support.stack import ServiceProcess, delivery_states, wait_until
from workers.celery_app import DELIVER_TASK, create_celery

pytestmark = pytest.mark.integration
PERSON = "jordan.rivera@example.com"


def delivery_rows(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(deliveries)).mappings()]


def attempt_rows(engine: Engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(select(attempts)).mappings()]


def all_settled(engine: Engine) -> bool:
    states = delivery_states(engine)
    return bool(states) and set(states) <= {"sent", "failed"}


def test_one_autoreply_and_one_admissions_email(
    client: httpx.Client, worker: ServiceProcess, smtp: SmtpSink, engine: Engine
) -> None:
    response = client.post("/f/contact", json=person())
    assert response.status_code == 202
    smtp.wait_for(2)
    wait_until(lambda: all_settled(engine))
    reply = smtp.to(PERSON)
    notice = smtp.to(ADMISSIONS_EMAIL)
    assert len(reply) == 1 and len(notice) == 1 and len(smtp.received) == 2

    rows = {r["kind"]: r for r in delivery_rows(engine)}
    assert rows[AUTOREPLY]["state"] == "sent" and rows[ADMISSIONS]["state"] == "sent"
    auto = reply[0].message
    assert auto["Message-ID"] == rows[AUTOREPLY]["message_id"]
    assert auto["From"].addresses[0].addr_spec == "care@test.example"
    assert auto["Auto-Submitted"] == "auto-replied"
    assert auto.get_body(("plain",)) is not None and auto.get_body(("html",)) is not None
    text = auto.get_body(("plain",)).get_content()
    assert "988" in text and "1-800-662-4357" in text
    for private in ("Jordan", "brother", "Blue Shield", "detox"):
        assert private not in auto.as_string(), private

    admin = notice[0].message
    assert admin["Message-ID"] == rows[ADMISSIONS]["message_id"]
    assert admin["Reply-To"].addresses[0].addr_spec == PERSON
    admin_text = admin.get_body(("plain",)).get_content()
    assert "Jordan Rivera" in admin_text and "brother" in admin_text
    assert "tel:+14155552671" in admin.get_body(("html",)).get_content()
    assert [a["outcome"] for a in attempt_rows(engine)] == ["sent", "sent"]


def test_spanish_autoreply(client: httpx.Client, worker: ServiceProcess, smtp: SmtpSink) -> None:
    client.post("/f/contact", json=person(_language="es"))
    reply = smtp.wait_for(1, address=PERSON)[0].message
    assert "Recibimos" in reply["Subject"] or "recibimos" in reply["Subject"]
    assert "988" in reply.get_body(("plain",)).get_content()


def test_crisis_message_is_urgent_everywhere(
    client: httpx.Client, worker: ServiceProcess, smtp: SmtpSink
) -> None:
    client.post("/f/contact", json=person(message="I can't do this anymore, I want to die"))
    notice = smtp.wait_for(1, address=ADMISSIONS_EMAIL)[0]
    assert ONCALL in notice.recipients
    assert notice.message["Subject"].startswith("URGENT")
    reply = smtp.wait_for(1, address=PERSON)[0].message
    text = reply.get_body(("plain",)).get_content()
    assert text.index("911") < text.index("988") < text.lower().index("received")


def test_temporary_failures_retry_then_succeed_once(
    client: httpx.Client,
    worker: ServiceProcess,
    beat: ServiceProcess,
    smtp: SmtpSink,
    engine: Engine,
) -> None:
    smtp.fail("data", 451, times=2)  # first two messages deferred after DATA
    smtp.fail("connect", 421, times=1)
    client.post("/f/contact", json=person())
    wait_until(lambda: all_settled(engine), timeout=60)
    assert len(smtp.to(PERSON)) == 1 and len(smtp.to(ADMISSIONS_EMAIL)) == 1
    rows = delivery_rows(engine)
    assert all(r["state"] == "sent" for r in rows)
    outcomes = sorted(a["outcome"] for a in attempt_rows(engine))
    assert outcomes.count("temporary") == 3 and outcomes.count("sent") == 2
    assert sum(r["attempts"] for r in rows) == 5


def test_permanent_refusal_goes_to_fallback(
    client: httpx.Client,
    worker: ServiceProcess,
    beat: ServiceProcess,
    smtp: SmtpSink,
    engine: Engine,
) -> None:
    smtp.fail("rcpt", 550, times=-1, recipients=(ADMISSIONS_EMAIL,))
    client.post("/f/contact", json=person())
    fallback = smtp.wait_for(1, address=FALLBACK_EMAIL)[0].message
    assert fallback["Subject"].startswith("[FALLBACK]")
    assert "550" in fallback.get_body(("plain",)).get_content()
    wait_until(lambda: all_settled(engine))
    rows = {r["kind"]: r for r in delivery_rows(engine)}
    assert rows[ADMISSIONS]["state"] == "failed" and rows[ADMISSIONS]["last_code"] == 550
    assert json.loads(rows[ADMISSIONS]["refused"]) == [ADMISSIONS_EMAIL]
    assert rows[FALLBACK]["state"] == "sent"
    assert len(smtp.to(PERSON)) == 1  # the auto-reply is not held back by the failure


def test_partial_refusal_delivers_to_the_rest(
    client: httpx.Client, worker: ServiceProcess, smtp: SmtpSink, engine: Engine
) -> None:
    smtp.fail("rcpt", 550, times=-1, recipients=(ONCALL,))
    client.post("/f/contact", json=person(message="there was an overdose last night"))
    smtp.wait_for(1, address=ADMISSIONS_EMAIL)
    wait_until(lambda: all_settled(engine))
    rows = {r["kind"]: r for r in delivery_rows(engine)}
    assert rows[ADMISSIONS]["state"] == "sent"
    assert json.loads(rows[ADMISSIONS]["delivered_to"]) == [ADMISSIONS_EMAIL]
    assert json.loads(rows[ADMISSIONS]["refused"]) == [ONCALL]
    assert FALLBACK not in rows


def test_duplicate_task_messages_send_once(
    client: httpx.Client,
    settings: Settings,
    worker: ServiceProcess,
    smtp: SmtpSink,
    engine: Engine,
) -> None:
    client.post("/f/contact", json=person(email=None))
    smtp.wait_for(1)
    admissions_id = delivery_rows(engine)[0]["id"]
    app = create_celery(settings, include_tasks=False)
    for _ in range(20):
        app.send_task(DELIVER_TASK, args=[admissions_id], queue="admissions")
    fresh = client.post("/f/contact", json=person(email=None, name="Second Person"))
    assert fresh.status_code == 202
    smtp.wait_for(2)  # the queue drained past the duplicates
    wait_until(lambda: all_settled(engine))
    assert len(smtp.to(ADMISSIONS_EMAIL)) == 2
    assert len({r.message_id for r in smtp.received}) == 2


def test_one_message_sends_every_due_delivery_of_its_submission(
    client: httpx.Client, settings: Settings, smtp: SmtpSink, engine: Engine, tmp_path
) -> None:
    """The web may publish only the most urgent delivery: its worker claims the others too and
    sends them on the same connection, admissions first, whichever delivery the message named."""
    assert client.post("/f/contact", json=person()).status_code == 202
    broker = redis.Redis.from_url(settings.redis_url)
    wait_until(lambda: broker.llen("admissions") + broker.llen("autoreply") > 0)
    broker.flushall()  # drop what the web published: only ours below wakes a worker
    broker.close()
    rows = {r["kind"]: r for r in delivery_rows(engine)}
    app = create_celery(settings, include_tasks=False)
    app.send_task(DELIVER_TASK, args=[rows[AUTOREPLY]["id"]], queue="autoreply")
    connections = smtp.connections
    worker = ServiceProcess(settings, ["worker", "--concurrency", "1"], tmp_path / "w.log").start()
    try:
        smtp.wait_for(2)
        wait_until(lambda: all_settled(engine))
    finally:
        worker.stop()
    assert [r.message_id for r in smtp.received] == [
        rows[ADMISSIONS]["message_id"],
        rows[AUTOREPLY]["message_id"],
    ]
    assert smtp.connections - connections == 1
    assert {r["state"] for r in delivery_rows(engine)} == {"sent"}
    assert sorted(a["outcome"] for a in attempt_rows(engine)) == ["sent", "sent"]


def test_killed_worker_is_recovered_by_the_sweeper(
    client: httpx.Client,
    settings: Settings,
    worker: ServiceProcess,
    beat: ServiceProcess,
    smtp: SmtpSink,
    engine: Engine,
    tmp_path,
) -> None:
    smtp.fail("hang_mail", times=1, seconds=30)
    client.post("/f/contact", json=person(email=None))
    wait_until(lambda: delivery_states(engine).get("sending") == 1)
    wait_until(lambda: smtp.armed("hang_mail") == 0)  # the worker is stuck waiting on MAIL
    worker.kill()  # SIGKILL the whole worker: the message is unacked, the row says "sending"
    replacement = ServiceProcess(
        settings,
        ["worker", "--concurrency", "1", "--name", "replacement@%h"],
        tmp_path / "worker2.log",
    ).start()
    try:
        notice = smtp.wait_for(1, address=ADMISSIONS_EMAIL, timeout=60)
        wait_until(lambda: all_settled(engine))
    finally:
        replacement.stop()
    assert len(notice) == 1
    row = delivery_rows(engine)[0]
    assert row["state"] == "sent" and row["attempts"] == 2


def test_redis_losing_its_data_loses_no_submission(
    client: httpx.Client,
    settings: Settings,
    redis_server,
    smtp: SmtpSink,
    engine: Engine,
    tmp_path,
) -> None:
    for n in range(3):
        assert client.post("/f/contact", json=person(name=f"Person {n}")).status_code == 202
    redis_server.restart()  # no persistence: every queued message is gone
    worker = ServiceProcess(settings, ["worker", "--concurrency", "2"], tmp_path / "w.log").start()
    beat = ServiceProcess(settings, ["beat"], tmp_path / "b.log").start(ready="beat: Starting")
    try:
        smtp.wait_for(6, timeout=60)
        wait_until(lambda: all_settled(engine))
    finally:
        beat.stop()
        worker.stop()
    assert len(smtp.to(ADMISSIONS_EMAIL)) == 3 and len(smtp.to(PERSON)) == 3
    assert len({r.message_id for r in smtp.received}) == 6


def test_sigterm_finishes_the_current_task(
    client: httpx.Client, worker: ServiceProcess, smtp: SmtpSink, engine: Engine
) -> None:
    smtp.fail("hang", times=1, seconds=2)  # the send takes two seconds after DATA
    client.post("/f/contact", json=person(email=None))
    wait_until(lambda: delivery_states(engine).get("sending") == 1)
    worker.signal(signal.SIGTERM)  # warm shutdown: finish the task, then exit
    assert worker.process is not None
    worker.process.wait(30)
    assert delivery_states(engine) == {"sent": 1}
    assert len(smtp.received) == 1
