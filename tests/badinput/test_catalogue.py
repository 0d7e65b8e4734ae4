"""Every catalogue case over real HTTP against the real stack (SQLite and PostgreSQL), plus the
transport-level cases a client library will not send (lying Content-Length, broken framing)."""

from __future__ import annotations

import logging
import re
import socket
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from service.consent import consent_hash
from service.models import ACCEPTED, submissions
from tests.badinput.catalogue import CASES, FORGED_ID, Case
from tests.badinput.conftest import Stack
from tests.support.stack import count_rows, wait_until

# Characters no stored value may hold: they hide text, reorder it, or start a new line.
INVISIBLE = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200e\u200f\ufeff")
EMAIL = re.compile(r"^[^\s,;<>\"()\\\[\]]+@[^\s,;<>\"()\\\[\]@]+$")
ENCODED_WORD = re.compile(r"=\?.*\?=")  # RFC 2047: decoded by some mail libraries, even in names
PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
SAFE_ORIGINS = {("https", "www.example.org"), ("http", "testserver.example")}


def strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k, "key")
            yield from strings(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, key)


def assert_inert(stored: dict[str, Any]) -> None:
    """No control, surrogate, private or invisible character; one line unless a message."""
    person = stored["person"]
    for key, value in [*strings(person), ("_subject", stored.get("subject", ""))]:
        for ch in value:
            allowed_newline = ch == "\n" and key == "message"
            assert allowed_newline or unicodedata.category(ch) not in {"Cc", "Cs", "Co", "Cn"}, (
                key,
                value,
            )
            assert ch not in INVISIBLE, (key, value)
        if key != "message":
            assert "\n" not in value and "\r" not in value, (key, value)
            assert not ENCODED_WORD.search(value), (key, value)
        assert unicodedata.is_normalized("NFC", value), (key, value)
    if "email" in person:
        assert EMAIL.match(person["email"]), person["email"]
    if "phone" in person:
        assert PHONE.match(person["phone"]), person["phone"]


def assert_safe_location(location: str) -> None:
    assert "\r" not in location and "\n" not in location and "\\" not in location
    if location.startswith("/"):
        assert not location.startswith("//"), location
        return
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc.lower()) in SAFE_ORIGINS, location


def stored(stack: Stack, submission_id: str) -> dict[str, Any]:
    with stack.engine.connect() as connection:
        row = (
            connection.execute(select(submissions).where(submissions.c.id == submission_id))
            .mappings()
            .one()
        )
    return dict(row)


def test_the_catalogue_is_large_and_varied() -> None:
    assert len(CASES) >= 100
    assert len({case.id for case in CASES}) == len(CASES)
    kinds = {case.content_type.split(";")[0] if case.content_type else None for case in CASES}
    assert {"application/json", "application/x-www-form-urlencoded", "multipart/form-data"} <= kinds
    assert {case.outcome for case in CASES} == {"accepted", "invalid", "refused", "redirect"}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(stack: Stack, case: Case) -> None:
    headers = dict(case.headers)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    before = count_rows(stack.engine)[0]
    response = stack.http.post("/f/contact", content=case.body, headers=headers)
    after = count_rows(stack.engine)[0]
    assert response.status_code < 500, response.text

    if case.outcome == "accepted":
        assert response.status_code == 202, response.text
        body = response.json()
        assert_safe_location(body["next"])
        row = stored(stack, body["id"])
        assert after == before + 1
        assert row["status"] == ACCEPTED and row["quarantine_reason"] is None
        assert_inert(stack.cipher.open(row["payload"]))
        if case.forged:
            assert row["id"] == body["id"] != FORGED_ID
            assert row["urgent"] is False
            assert row["client_address"] == "127.0.0.1"
            assert row["consent_hash"] == consent_hash("en")
            assert row["created_at"].year >= datetime.now(UTC).year - 1
            assert row["fingerprint"] != "forged"
    elif case.outcome == "redirect":
        assert response.status_code == 303, response.text
        assert_safe_location(response.headers["location"])
        assert after == before + 1
    elif case.outcome == "invalid":
        assert response.status_code == 422, response.text
        assert case.code in {e["code"] for e in response.json()["errors"]}
        assert after == before
    else:
        assert 400 <= response.status_code < 500 and response.status_code != 422
        assert response.json()["errors"][0]["code"] == case.code
        assert after == before


# --- transport cases: raw sockets, because no client library will send these -------------------

HEAD = (
    b"POST /f/contact HTTP/1.1\r\nHost: test\r\nAccept: application/json\r\n"
    b"Content-Type: application/json\r\n"
)
BODY = b'{"name": "Casey", "phone": "(415) 555-2671", "consent": "on"}'
RAW: list[tuple[str, bytes, bool, set[int | None]]] = [
    # (id, bytes sent, half-close after sending, acceptable statuses; None: closed unanswered)
    ("content length smaller", HEAD + b"Content-Length: 20\r\n\r\n" + BODY, False, {400}),
    (
        "content length larger then eof",
        HEAD + b"Content-Length: 500\r\n\r\n" + BODY,
        True,
        {400, None},
    ),
    ("content length huge, no body", HEAD + b"Content-Length: 99999999999\r\n\r\n", False, {413}),
    ("content length negative", HEAD + b"Content-Length: -1\r\n\r\n" + BODY, False, {400, None}),
    (
        "content length not a number",
        HEAD + b"Content-Length: ten\r\n\r\n" + BODY,
        False,
        {400, None},
    ),
    (
        "two content lengths",
        HEAD + b"Content-Length: 5\r\nContent-Length: 61\r\n\r\n" + BODY,
        False,
        {400, None},
    ),
    (
        "length and chunked",
        HEAD
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(BODY)
        + BODY
        + b"\r\n0\r\n\r\n",
        False,
        {202, 400, 422, None},
    ),
    (
        "chunked oversize",
        HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"4000\r\n" + b"a" * 0x4000 + b"\r\n" for _ in range(6))
        + b"0\r\n\r\n",
        False,
        {413},
    ),
    (
        "chunked bad size",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        False,
        {400, None},
    ),
    (
        "chunked then eof",
        HEAD + b'Transfer-Encoding: chunked\r\n\r\n10\r\n{"name": ',
        True,
        {400, None},
    ),
    # uvicorn's parser takes a 200 KB header; the body {} is then simply invalid (422).
    (
        "huge header",
        HEAD + b"X-Big: " + b"h" * 200_000 + b"\r\nContent-Length: 2\r\n\r\n{}",
        False,
        {400, 413, 422, 431, None},
    ),
    ("garbage request line", b"GARBAGE\x00\xff /f/contact HTTP/9.9\r\n\r\n", False, {400, None}),
    (
        "header without colon",
        HEAD + b"NoColonHere\r\nContent-Length: 2\r\n\r\n{}",
        False,
        {400, None},
    ),
]


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def exchange(port: int, data: bytes, half_close: bool) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close on us mid-send (a huge header): that is its answer
        reply = b""
        try:
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if not reply.startswith(b"HTTP/1.1 "):
        return None
    return int(reply[9:12])


@pytest.mark.parametrize(
    ("data", "half_close", "allowed"),
    [pytest.param(d, h, a, id=i) for i, d, h, a in RAW],
)
def test_transport_case(
    stack: Stack, data: bytes, half_close: bool, allowed: set[int | None]
) -> None:
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)
    try:
        before = count_rows(stack.engine)[0]
        status = exchange(stack.server.port, data, half_close)
        # The server may still be handling a request the client gave up on: let it finish, so
        # any error it logs is seen here.
        wait_until(lambda: not stack.server._server.server_state.tasks, 10)
        after = count_rows(stack.engine)[0]
    finally:
        logging.getLogger().removeHandler(errors)
    assert status in allowed
    assert [r.getMessage() for r in errors.records] == []  # no server error, not even unlogged
    if status != 202:
        assert after == before
