"""Privacy through the real stack: canary values in every field never reach a log line (web or
worker), are encrypted at rest, survive key rotation, are really erased by retention, and stay
out of a minimal admissions email."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text, update

from service.crypto import PayloadCipher, PayloadError, new_key
from service.db import make_engine, migrate, utcnow
from service.logs import JsonFormatter
from service.models import SENT, deliveries, submissions
from service.settings import Secret, Settings
from tests.conftest import ADMISSIONS
from tests.support.smtp import Received, SmtpSink
from tests.support.stack import LiveServer, ServiceProcess, wait_until
from workers.retention import purge

OLD_KEY = new_key()  # the key the web process seals with
NEW_KEY = new_key()  # the key rotated in first; the worker holds both, newest first

# One canary per field a person can type; each token is unusual enough to appear nowhere else.
CANARY = {
    "first_name": "Zelphinecanary",
    "last_name": "Quarringtoncanary",
    "email": "zq.canarymail7731@example.com",
    "phone": "(415) 555-3817",
    "best_time": "after canarydusk",
    "insurance": "Canaryshield Mutual",
    "insurance_member_id": "CNRYMEMBER99117",
    "message": "My cousin canarycousin needs canaryhelp with canaryopioids.",
    "_subject": "canarysubject",
    "referral_note": "canaryextra from canaryclinic",
}
# What must never show up: each distinctive word, and the phone in the shapes code could print.
TOKENS = (
    "zelphinecanary",
    "quarringtoncanary",
    "canarymail7731",
    "555-3817",
    "5553817",
    "canarydusk",
    "canaryshield",
    "cnrymember99117",
    "canarycousin",
    "canaryhelp",
    "canaryopioids",
    "canarysubject",
    "canaryextra",
    "canaryclinic",
)


def canary(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        **CANARY,
        "for_whom": "loved_one",
        "state": "CA",
        "program": "detox",
        "voicemail_ok": "yes",
        "consent": "on",
    }
    data.update(overrides)
    return data


def leaks(text_: str) -> list[str]:
    lowered = text_.lower()
    return [token for token in TOKENS if token in lowered]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite, so the test can read the database file itself as well as its rows."""
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    migrate(url)
    return url


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The worker's settings: both keys (newest first) and every log line it can write."""
    return settings.with_overrides(encryption_key=Secret(f"{NEW_KEY},{OLD_KEY}"), log_level="DEBUG")


# Loggers of the test's own machinery in this process (the SMTP sink plays the mail server and
# logs what it receives, as a real mail server would); everything else is the web process.
TEST_LOGGERS = ("mail.log",)


class Captured(logging.Handler):
    """Every record of the web process, formatted as production formats it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(TEST_LOGGERS):
            self.lines.append(self.format(record))


@pytest.fixture
def web_logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def dump(engine: Engine, table: str) -> str:
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT * FROM {table}")).all()
    return "\n".join(json.dumps([str(v) for v in row]) for row in rows)


@pytest.mark.integration
def test_canaries_never_reach_a_log_line_and_are_sealed_at_rest(
    settings: Settings, engine: Engine, smtp: SmtpSink, worker: ServiceProcess, web_logs: Captured
) -> None:
    web = settings.with_overrides(encryption_key=Secret(OLD_KEY))
    live = LiveServer(web).start()
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            answers = [
                http.post("/f/contact", json=canary()),
                http.post("/f/contact", data=canary(message=CANARY["message"] + " (form)")),
                http.post(
                    "/f/contact",
                    files={k: (None, v) for k, v in canary(message="multipart canaryhelp").items()},
                    headers={"Accept": "application/json"},
                ),
                http.post("/f/contact", json=canary(message="canaryhelp: he overdosed")),
                http.post("/f/contact", json=canary(message="canaryhelp bot", _gotcha="x")),
                http.post("/f/contact", json=canary(email="canarymail7731@", phone="12")),
                http.post("/f/contact", data=canary(state="canarystate")),
                http.post(
                    "/f/contact",
                    content=b'{"name": "Zelphinecanary", "message": "canaryhelp',
                    headers={"Content-Type": "application/json"},
                ),
            ]
    finally:
        live.stop()
    assert [a.status_code for a in answers] == [202, 303, 202, 202, 202, 422, 422, 400]

    # Four deliverable submissions, each with an admissions email and an auto-reply.
    arrived = smtp.wait_for(8, timeout=60)
    admissions = [r for r in arrived if ADMISSIONS in r.recipients]
    assert len(admissions) == 4
    # The worker opened rows sealed with the old key through MultiFernet (new key first), and the
    # canaries are findable where they belong: the check below can see them when they are there.
    assert all("zelphinecanary" in leaks(r.raw.decode("utf-8", "replace")) for r in admissions)

    web_lines = web_logs.lines
    assert any('"submission accepted"' in line for line in web_lines)
    worker_lines = worker.log().splitlines()
    assert any("intake.deliver" in line for line in worker_lines)
    for line in web_lines + worker_lines:
        assert leaks(line) == [], line

    with engine.connect() as connection:
        payloads = [r.payload for r in connection.execute(select(submissions.c.payload)).all()]
    assert len(payloads) == 5
    assert all(p.startswith("fernet:") for p in payloads)
    assert leaks(dump(engine, "submissions")) == []
    assert leaks(dump(engine, "delivery_attempts")) == []
    assert all(PayloadCipher(f"{NEW_KEY},{OLD_KEY}").open(p)["person"] for p in payloads)


def test_key_rotation_reseals_old_rows_under_the_new_key(
    engine: Engine, settings: Settings
) -> None:
    web = settings.with_overrides(encryption_key=Secret(OLD_KEY))
    live = LiveServer(web).start()
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            assert http.post("/f/contact", json=canary()).status_code == 202
    finally:
        live.stop()
    both = PayloadCipher(f"{NEW_KEY},{OLD_KEY}")
    only_new = PayloadCipher(NEW_KEY)
    with engine.begin() as connection:
        sealed = connection.execute(select(submissions.c.id, submissions.c.payload)).one()
        with pytest.raises(PayloadError):
            only_new.open(sealed.payload)
        assert both.open(sealed.payload)["person"]["name"] == "Zelphinecanary Quarringtoncanary"
        connection.execute(
            update(submissions)
            .where(submissions.c.id == sealed.id)
            .values(payload=both.rotate(sealed.payload))
        )
    with engine.connect() as connection:
        rotated = connection.execute(select(submissions.c.payload)).scalar_one()
    assert rotated != sealed.payload and leaks(rotated) == []
    assert only_new.open(rotated)["person"]["phone"] == "+14155553817"
    with pytest.raises(PayloadError):
        PayloadCipher(OLD_KEY).open(rotated)


def _submit_and_finish(settings: Settings, engine: Engine) -> str:
    """One stored submission whose deliveries are done (as if the worker had sent them)."""
    live = LiveServer(settings).start()
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            submission_id = str(http.post("/f/contact", json=canary()).json()["id"])
    finally:
        live.stop()
    return submission_id


def test_retention_erases_personal_fields_and_keeps_metadata(
    settings: Settings, engine: Engine
) -> None:
    plain = settings.with_overrides(encryption_key=Secret(""))
    submission_id = _submit_and_finish(plain, engine)
    later = utcnow() + timedelta(days=plain.retention_days + 1)

    assert purge(engine, plain, now=later) == 0  # deliveries still open: nothing is erased yet
    with engine.begin() as connection:
        connection.execute(update(deliveries).values(state=SENT, sent_at=utcnow()))
    assert purge(engine, plain, now=utcnow()) == 0  # not old enough
    assert purge(engine, plain, now=later) == 1
    assert purge(engine, plain, now=later) == 0  # idempotent

    with engine.connect() as connection:
        row = (
            connection.execute(select(submissions).where(submissions.c.id == submission_id))
            .mappings()
            .one()
        )
    assert row["payload"] is None and row["client_address"] is None
    assert row["fingerprint"] is None and row["purged_at"] is not None
    assert (row["form"], row["status"], row["program"], row["for_whom"]) == (
        "contact",
        "accepted",
        "detox",
        "loved_one",
    )
    assert row["consent_hash"] and row["consent_at"] and row["created_at"]
    assert leaks(dump(engine, "submissions")) == []


def test_retention_leaves_no_personal_data_anywhere(settings: Settings, engine: Engine) -> None:
    plain = settings.with_overrides(encryption_key=Secret(""))
    _submit_and_finish(plain, engine)
    with engine.begin() as connection:
        connection.execute(update(deliveries).values(state=SENT, sent_at=utcnow()))
    assert purge(engine, plain, now=utcnow() + timedelta(days=plain.retention_days + 1)) == 1
    for table in ("submissions", "deliveries", "delivery_attempts"):
        assert leaks(dump(engine, table)) == [], table


def _admissions(smtp: SmtpSink, count: int) -> list[Received]:
    return wait_until(lambda: len(smtp.to(ADMISSIONS)) >= count and smtp.to(ADMISSIONS), 60)


@pytest.mark.integration
def test_minimal_admissions_email_has_callback_essentials_only(
    settings: Settings, smtp: SmtpSink, tmp_path: Path
) -> None:
    minimal = settings.with_overrides(admissions_detail="minimal")
    worker = ServiceProcess(minimal, ["worker", "--concurrency", "1"], tmp_path / "min.log")
    worker.start()
    live = LiveServer(minimal).start()
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            calm = http.post("/f/contact", json=canary())
            urgent = http.post("/f/contact", json=canary(message="canaryhelp: he overdosed"))
        assert calm.status_code == urgent.status_code == 202
        received = _admissions(smtp, 2)
    finally:
        live.stop()
        worker.stop()
    for message in received:
        email = message.message
        body = email.get_body(("plain",))
        html = email.get_body(("html",))
        assert body is not None and html is not None
        for part in (body.get_content(), html.get_content()):
            assert "Zelphinecanary" in part and "(415) 555-3817" in part  # who to call back
            assert "canarydusk" in part  # when to call
            assert re.search(r"Ref [0-9A-F]{4}-[0-9A-F]{4}", part.replace("<strong>", ""))
            for detail in (
                "canaryhelp",
                "canaryopioids",
                "canaryshield",
                "cnrymember99117",
                "canarysubject",
                "canaryextra",
                "Medical detox",
                "overdose",
            ):
                assert detail.lower() not in part.lower(), detail
    subjects = sorted(str(m.message["Subject"]) for m in received)
    assert sum(s.startswith("URGENT") for s in subjects) == 1
    assert all("canary" not in s.lower() for s in subjects)


def _file_bytes(database_url: str) -> str:
    """The database file and its WAL, after a checkpoint that empties the WAL into the file."""
    checkpoint = make_engine(database_url)
    with checkpoint.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint.dispose()
    path = Path(database_url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")).decode("latin-1")


def test_purge_erases_the_bytes_in_the_sqlite_file(settings: Settings, engine: Engine) -> None:
    """Not only the row's value: SQLite keeps old cell contents unless told to overwrite them."""
    plain = settings.with_overrides(encryption_key=Secret(""))
    _submit_and_finish(plain, engine)
    with engine.begin() as connection:
        connection.execute(update(deliveries).values(state=SENT, sent_at=utcnow()))
    engine.dispose()
    assert "canaryhelp" in leaks(_file_bytes(plain.database_url))  # there before the purge
    assert purge(engine, plain, now=utcnow() + timedelta(days=plain.retention_days + 1)) == 1
    engine.dispose()
    assert leaks(_file_bytes(plain.database_url)) == []
