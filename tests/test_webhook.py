"""The CRM webhook channel: signed (Standard Webhooks style), retried, with a real HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from service.models import WEBHOOK, deliveries
from service.settings import Settings
from tests.support.forms import person
from tests.support.smtp import SmtpSink
from tests.support.stack import LiveServer, ServiceProcess, engine_for, wait_until
from workers.webhook import sign, verify

pytestmark = pytest.mark.integration
SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3ODkw"


class Receiver:
    """A loopback HTTP server that records requests and answers with scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/intake"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    hook.thread.start()
    yield hook
    hook.server.shutdown()


def test_signature_roundtrip() -> None:
    import time

    body = b'{"a":1}'
    now = int(time.time())
    headers = {
        "webhook-id": "d1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(SECRET, "d1", now, body),
    }
    assert verify(SECRET, headers, body)
    assert not verify(SECRET, headers, body + b" ")
    assert not verify("whsec_b3RoZXI=", headers, body)
    stale = {**headers, "webhook-timestamp": str(now - 3600)}
    assert not verify(SECRET, stale, body)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_webhook_is_signed_retried_and_sent_once(
    settings: Settings, smtp: SmtpSink, receiver: Receiver, tmp_path: Path
) -> None:
    config = Path(__file__).resolve().parents[1] / "service" / "default_config.toml"
    text = config.read_text() + (
        '\n[[routes]]\nname = "crm"\nwhen = { form = "contact" }\n'
        'to = ["crm-team@test.example"]\n'
        f'webhook = {{ url = "{receiver.url}", secret = "{SECRET}" }}\n'
    )
    path = tmp_path / "intake.toml"
    path.write_text(text)
    settings = settings.with_overrides(config=str(path))
    receiver.statuses = [503, 429]  # two temporary refusals, then 204
    live = LiveServer(settings).start()
    worker = ServiceProcess(settings, ["worker", "--concurrency", "2"], tmp_path / "w.log").start()
    beat = ServiceProcess(settings, ["beat"], tmp_path / "b.log").start(ready="beat: Starting")
    engine = engine_for(settings)
    try:
        with httpx.Client(base_url=live.url) as http:
            submission_id = http.post("/f/contact", json=person()).json()["id"]
        smtp.wait_for(1, address="crm-team@test.example")
        wait_until(lambda: len(receiver.requests) >= 3, timeout=60)

        def webhook_row() -> dict:
            with engine.connect() as c:
                return dict(
                    c.execute(select(deliveries).where(deliveries.c.kind == WEBHOOK))
                    .mappings()
                    .one()
                )

        row = wait_until(lambda: (r := webhook_row())["state"] == "sent" and r)
    finally:
        beat.stop()
        worker.stop()
        live.stop()
        engine.dispose()
    assert len(receiver.requests) == 3
    assert row["attempts"] == 3
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == {row["id"]}  # the same idempotency key on every retry
    for headers, body in receiver.requests:
        assert verify(SECRET, headers, body)
        assert headers["idempotency-key"] == row["id"]
    payload = json.loads(receiver.requests[-1][1])
    assert payload["type"] == "inquiry.created"
    assert payload["submission_id"] == submission_id
    assert payload["person"]["phone"] == "+14155552671"
