"""Injection attempts sent through the real worker: the emails that reach the SMTP server carry no
injected header, no extra recipient, and every typed value as inert text."""

from __future__ import annotations

import json
from email.message import EmailMessage

import httpx
import pytest

from service.crypto import PayloadCipher
from service.models import submissions
from service.settings import Settings
from tests.badinput.catalogue import CASES, EMAIL_LABELS, EVIL, Case, base
from tests.conftest import ADMISSIONS
from tests.support.smtp import Received, SmtpSink
from tests.support.stack import ServiceProcess

SUBSET = [c for c in CASES if c.id.startswith("json: ") and c.tags & set(EMAIL_LABELS)]
# Headers a message may carry (the worker's own); anything else would have been injected.
OUR_HEADERS = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "auto-submitted",
    "x-auto-response-suppress",
    "importance",
    "x-priority",
    "list-unsubscribe",
}
SENDER = "care@test.example"


def header_block(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def check_envelope_and_headers(received: Received, allowed_recipients: set[str]) -> EmailMessage:
    message = received.message
    assert received.sender == SENDER
    assert len(received.recipients) == 1 and received.recipients[0] in allowed_recipients
    names = [name.lower() for name in message]
    assert set(names) <= OUR_HEADERS, header_block(received.raw)
    for single in ("from", "to", "reply-to", "subject", "message-id"):
        assert names.count(single) <= 1, single
    unfolded = header_block(received.raw).replace("\r\n ", " ").replace("\r\n\t", " ")
    for line in unfolded.split("\r\n"):
        assert not line.lower().startswith(("bcc:", "cc:", "x-injected")), line
    # The attacker's address may survive as quoted display-name text, never as an address.
    for name in ("from", "to", "reply-to"):
        if message[name] is not None:
            assert all(EVIL not in a.addr_spec for a in message[name].addresses), name
    to = message["To"].addresses
    assert [a.addr_spec for a in to] == received.recipients
    subject = str(message["Subject"])
    assert "\n" not in subject and "\r" not in subject
    return message


@pytest.mark.integration
def test_injection_never_reaches_an_email_header_or_recipient(
    client: httpx.Client, settings: Settings, smtp: SmtpSink, worker: ServiceProcess, engine
) -> None:
    assert len(SUBSET) == len(EMAIL_LABELS)
    cases: dict[str, Case] = {}
    for case in [*SUBSET, Case("clean", json.dumps(base("clean")).encode(), "", "accepted")]:
        response = client.post(
            "/f/contact", content=case.body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 202, (case.id, response.text)
        cases[response.json()["id"]] = case

    with engine.connect() as connection:
        rows = connection.execute(submissions.select()).mappings().all()
    people = {row["id"]: PayloadCipher("").open(row["payload"])["person"] for row in rows}
    addresses = {p["email"] for p in people.values()}
    assert len(addresses) == len(cases)

    received = smtp.wait_for(2 * len(cases), timeout=90)
    assert len(received) == 2 * len(cases)
    by_reply_to: dict[str, EmailMessage] = {}
    for item in received:
        message = check_envelope_and_headers(item, {ADMISSIONS} | addresses)
        if item.recipients == [ADMISSIONS]:
            reply_to = message["Reply-To"].addresses
            assert len(reply_to) == 1 and reply_to[0].addr_spec in addresses
            by_reply_to[reply_to[0].addr_spec] = message
        else:
            assert "auto-replied" in str(message["Auto-Submitted"])
            text, _ = parts(message)
            assert "Casey" not in text and "Bcc" not in text  # nothing typed in an auto-reply
    assert set(by_reply_to) == addresses  # one admissions email per submission

    for submission_id, case in cases.items():
        person = people[submission_id]
        text, html = parts(by_reply_to[person["email"]])
        if case.tags & {"name script"}:
            assert "<script>" not in html and "&lt;script&gt;" in html
        if case.tags & {"name jinja"}:
            assert "{{7*7}} {{ config }}" in text
        if case.tags & {"message smtp dot", "message crlf headers"}:
            assert person["message"].split("\n")[0] in text
        if case.tags & {"name crlf bcc", "name encoded word q"}:
            display = by_reply_to[person["email"]]["Reply-To"].addresses[0].display_name
            assert "\n" not in display and "\r" not in display
