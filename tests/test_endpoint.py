"""The intake endpoint over real HTTP, with the real database (SQLite and PostgreSQL) and Redis."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import redis
from sqlalchemy import Engine, select

from service.crypto import PayloadCipher
from service.models import ACCEPTED, ADMISSIONS, AUTOREPLY, PENDING, deliveries, submissions
from service.settings import Settings
from tests.conftest import ADMISSIONS as ADMISSIONS_EMAIL
from tests.conftest import ONCALL
from tests.support.forms import person
from tests.support.stack import LiveServer, count_rows

XHR = {"X-Requested-With": "XMLHttpRequest"}


def rows(engine: Engine, submission_id: str) -> tuple[dict, list[dict]]:
    with engine.connect() as connection:
        sub = (
            connection.execute(select(submissions).where(submissions.c.id == submission_id))
            .mappings()
            .one()
        )
        dels = (
            connection.execute(
                select(deliveries).where(deliveries.c.submission_id == submission_id)
            )
            .mappings()
            .all()
        )
    return dict(sub), [dict(d) for d in dels]


def test_json_submission_is_stored_with_its_deliveries(
    client: httpx.Client, engine: Engine, settings: Settings
) -> None:
    response = client.post("/f/contact", json=person())
    assert response.status_code == 202
    body = response.json()
    assert body["ok"] is True
    assert body["message"] == "Thank you! Your submission has been received!"
    assert body["next"] == "http://testserver.example/thanks"
    sub, dels = rows(engine, body["id"])
    assert sub["status"] == ACCEPTED
    assert sub["program"] == "detox" and sub["state_code"] == "CA"
    assert sub["for_whom"] == "loved_one"
    payload = PayloadCipher("").open(sub["payload"])["person"]
    assert payload["phone"] == "+14155552671"
    assert payload["email"] == "jordan.rivera@example.com"
    assert payload["voicemail_ok"] is True and payload["consent"] is True
    assert sorted(d["kind"] for d in dels) == [ADMISSIONS, AUTOREPLY]
    assert all(d["state"] == PENDING for d in dels)
    admissions = next(d for d in dels if d["kind"] == ADMISSIONS)
    assert json.loads(admissions["recipients"]) == [ADMISSIONS_EMAIL]
    assert admissions["message_id"].startswith("<") and "@test.example>" in admissions["message_id"]
    assert sub["consent_hash"] and len(sub["consent_hash"]) == 64
    assert sub["client_address"] == "127.0.0.1"


def test_one_message_per_submission_is_published_with_ids_only(
    client: httpx.Client, settings: Settings, engine: Engine
) -> None:
    """The admissions notification's id, on its queue; the worker takes the auto-reply along."""
    response = client.post("/f/contact", json=person())
    assert response.status_code == 202
    broker = redis.Redis.from_url(settings.redis_url)
    messages: list[bytes] = []
    deadline = time.monotonic() + 5
    while not messages and time.monotonic() < deadline:
        messages = broker.lrange("admissions", 0, -1)
        time.sleep(0.05)
    time.sleep(0.2)  # anything else published would have arrived by now
    assert len(messages) == 1 and broker.llen("autoreply") == 0
    text = messages[0].decode()
    assert "Jordan" not in text and "example.com" not in text and "brother" not in text
    envelope = json.loads(text)
    assert envelope["headers"]["task"] == "intake.deliver"
    with engine.connect() as connection:
        admissions_id = connection.execute(
            select(deliveries.c.id).where(deliveries.c.kind == ADMISSIONS)
        ).scalar_one()
    assert envelope["headers"]["argsrepr"] == repr([admissions_id])


def test_form_encoded_browser_post_redirects_to_thanks(
    client: httpx.Client, engine: Engine
) -> None:
    response = client.post("/f/contact", data=person())
    assert response.status_code == 303
    assert response.headers["location"] == "http://testserver.example/thanks"
    assert count_rows(engine) == (1, 2)


def test_multipart_without_files_is_accepted(client: httpx.Client, engine: Engine) -> None:
    response = client.post(
        "/f/contact", files={k: (None, v) for k, v in person().items()}, headers=XHR
    )
    assert response.status_code == 202, response.text
    assert count_rows(engine) == (1, 2)


def test_multipart_file_part_is_refused(client: httpx.Client, engine: Engine) -> None:
    files = {k: (None, v) for k, v in person().items()}
    files["upload"] = ("id.png", b"\x89PNG....", "image/png")
    response = client.post("/f/contact", files=files, headers=XHR)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "FILE_NOT_ACCEPTED"
    assert count_rows(engine) == (0, 0)


def test_next_redirect_only_to_allowed_origins(client: httpx.Client) -> None:
    ok = client.post("/f/contact", data=person(_next="https://www.example.org/thank-you"))
    assert ok.headers["location"] == "https://www.example.org/thank-you"
    relative = client.post("/f/contact", data=person(_next="/merci", message="other text"))
    assert relative.headers["location"] == "/merci"
    for evil in (
        "https://evil.example/x",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ):
        response = client.post("/f/contact", data=person(_next=evil, message=f"try {evil}"))
        assert response.headers["location"] == "http://testserver.example/thanks", evil


def test_unknown_form_is_404(client: httpx.Client) -> None:
    response = client.post("/f/nope", json=person())
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "FORM_NOT_FOUND"
    page = client.post("/f/nope", data=person())
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]


def test_unsupported_media_type_is_415(client: httpx.Client) -> None:
    response = client.post(
        "/f/contact", content=b"name=x", headers={"Content-Type": "text/plain", **XHR}
    )
    assert response.status_code == 415
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_oversize_body_is_413_even_when_content_length_lies(
    client: httpx.Client, settings: Settings, engine: Engine
) -> None:
    big = {"message": "x" * (settings.max_body_bytes + 10), **person(message=None)}
    response = client.post("/f/contact", json=big)
    assert response.status_code == 413

    def chunks():  # no Content-Length at all: chunked transfer
        yield b'{"name": "a", "message": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}'

    chunked = client.post(
        "/f/contact", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    assert count_rows(engine) == (0, 0)


def test_lying_content_length_is_caught(server: LiveServer) -> None:
    import socket

    body = b'{"name":"' + b"z" * 70000 + b'"}'
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /f/contact HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Accept: application/json\r\nContent-Length: 20\r\n\r\n" + body
        )
        reply = sock.recv(4096)
    # The server reads exactly the declared 20 bytes: a truncated, malformed JSON body.
    assert reply.startswith(b"HTTP/1.1 400")


def test_malformed_bodies_are_400(client: httpx.Client) -> None:
    bad = [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"name": NaN}', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"name=%FF%FE", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
    ]
    for content, ctype in bad:
        response = client.post(
            "/f/contact", content=content, headers={"Content-Type": ctype, **XHR}
        )
        assert response.status_code == 400, (content, response.status_code, response.text)


def test_validation_errors_are_422_with_codes(client: httpx.Client, engine: Engine) -> None:
    response = client.post(
        "/f/contact",
        json={
            "name": "",
            "email": "not-an-email",
            "phone": "12",
            "consent": "no",
            "state": "Atlantis",
        },
    )
    assert response.status_code == 422
    body = response.json()
    assert body["ok"] is False
    assert body["message"] == "Oops! Something went wrong while submitting the form."
    codes = {(e["field"], e["code"]) for e in body["errors"]}
    assert ("name", "REQUIRED_FIELD_EMPTY") in codes
    assert ("email", "TYPE_EMAIL") in codes
    assert ("phone", "TYPE_PHONE") in codes
    assert ("consent", "REQUIRED_FIELD_MISSING") in codes
    assert ("state", "INVALID_CHOICE") in codes
    assert count_rows(engine) == (0, 0)


def test_browser_validation_error_is_a_friendly_page(client: httpx.Client) -> None:
    response = client.post(
        "/f/contact",
        data={"name": "Sam", "consent": "on"},
        headers={"Referer": "https://www.example.org/contact"},
    )
    assert response.status_code == 422
    assert "text/html" in response.headers["content-type"]
    assert "Oops! Something went wrong while submitting the form." in response.text
    assert "phone number or an email address" in response.text
    assert "https://www.example.org/contact" in response.text
    assert "988" in response.text


def test_urgent_message_routes_to_oncall_too(client: httpx.Client, engine: Engine) -> None:
    response = client.post(
        "/f/contact", json=person(message="He took too much, I think it is an overdose")
    )
    sub, dels = rows(engine, response.json()["id"])
    assert sub["urgent"] is True
    admissions = next(d for d in dels if d["kind"] == ADMISSIONS)
    assert json.loads(admissions["recipients"]) == [ADMISSIONS_EMAIL, ONCALL]
    assert admissions["priority"] == 0


def test_honeypot_is_quarantined_not_delivered(client: httpx.Client, engine: Engine) -> None:
    response = client.post("/f/contact", json=person(_gotcha="http://spam.example"))
    assert response.status_code == 202
    sub, dels = rows(engine, response.json()["id"])
    assert sub["status"] == "quarantined" and sub["quarantine_reason"] == "honeypot"
    assert dels == []


def test_honeypot_never_holds_back_a_crisis(client: httpx.Client, engine: Engine) -> None:
    response = client.post(
        "/f/contact", json=person(_gotcha="autofilled", message="I want to end my life")
    )
    sub, dels = rows(engine, response.json()["id"])
    assert sub["status"] == ACCEPTED and sub["urgent"] is True
    assert len(dels) == 2


def test_email_not_safe_means_no_autoreply(client: httpx.Client, engine: Engine) -> None:
    response = client.post("/f/contact", json=person(email_ok="no"))
    _, dels = rows(engine, response.json()["id"])
    assert [d["kind"] for d in dels] == [ADMISSIONS]


def test_phone_only_has_no_autoreply(client: httpx.Client, engine: Engine) -> None:
    response = client.post("/f/contact", json=person(email=None))
    assert response.status_code == 202
    _, dels = rows(engine, response.json()["id"])
    assert [d["kind"] for d in dels] == [ADMISSIONS]


def test_same_submission_twice_gets_same_answer_and_no_new_work(
    client: httpx.Client, engine: Engine
) -> None:
    first = client.post("/f/contact", json=person())
    second = client.post("/f/contact", json=person())
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert count_rows(engine) == (1, 2)


def test_redis_down_still_answers_and_stores(
    settings: Settings, redis_server, engine: Engine
) -> None:
    redis_server.stop()
    try:
        live = LiveServer(settings).start()
        try:
            with httpx.Client(base_url=live.url, timeout=10) as http:
                response = http.post("/f/contact", json=person())
                ready = http.get("/readyz")
        finally:
            live.stop()
    finally:
        redis_server.start()
    assert response.status_code == 202
    assert count_rows(engine) == (1, 2)
    assert ready.status_code == 200
    assert ready.json()["components"] == {"database": "ok", "redis": "unavailable"}
    assert ready.json()["status"] == "degraded"


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ok": True,
        "status": "ok",
        "components": {"database": "ok", "redis": "ok"},
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_database_down_is_503(settings: Settings) -> None:
    from service.localredis import free_port

    # A PostgreSQL URL where nothing listens: every connection is refused.
    unreachable = settings.with_overrides(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    )
    live = LiveServer(unreachable).start()
    try:
        with httpx.Client(base_url=live.url, timeout=20) as http:
            response = http.post("/f/contact", json=person())
            page = http.post("/f/contact", data=person())
            ready = http.get("/readyz")
    finally:
        live.stop()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["errors"][0]["code"] == "DATABASE_UNAVAILABLE"
    assert page.status_code == 503 and "call us" in page.text
    assert ready.status_code == 503
    assert ready.json()["components"]["database"] == "unavailable"
