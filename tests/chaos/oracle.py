"""The oracle every chaos scenario ends with, judged from the database and the SMTP mailbox.

Every submission answered 2xx got exactly one auto-reply (when it gave an email) and exactly one
admissions notification, with distinct Message-IDs, or was recorded as failed with the fallback
notified (an auto-reply refused for good is recorded as failed); nothing is left open; nothing
answered 503 was stored, and no stored submission lacks its deliveries; and a Message-ID reaches
a recipient twice only inside the after-DATA window the scenario declared, at most once more.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from service.crypto import PayloadCipher
from service.models import (
    ADMISSIONS,
    AUTOREPLY,
    FAILED,
    FALLBACK,
    QUARANTINED,
    SENT,
    attempts,
    deliveries,
    submissions,
)
from tests.chaos.report import ScenarioResult
from tests.conftest import FALLBACK as FALLBACK_EMAIL
from tests.support.smtp import Received
from workers.delivery import FALLBACK_ROUTE_PREFIX


@dataclass
class Answer:
    """What one applicant's submission was answered."""

    n: int
    status: int
    submission_id: str
    name: str
    email: str | None
    retry_after: str | None = None
    seconds: float = 0.0  # how long the answer took

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def judge(
    result: ScenarioResult,
    *,
    engine: Engine,
    received: list[Received],
    answers: list[Answer],
    cipher: PayloadCipher,
    window_allowance: int,
    permanent_faults: bool,
) -> None:
    """Fill in `result` from the database and the mailbox; every breach becomes a problem."""
    problems = result.problems
    with engine.connect() as connection:
        subs = {r["id"]: dict(r) for r in connection.execute(select(submissions)).mappings()}
        rows = [dict(r) for r in connection.execute(select(deliveries)).mappings()]
        tries = [dict(r) for r in connection.execute(select(attempts)).mappings()]
    result.attempts = len(tries)
    result.failed_attempts = sum(1 for t in tries if t["outcome"] not in ("sent", "partial"))
    by_submission: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_submission[row["submission_id"]].append(row)
    by_message = {row["message_id"]: row for row in rows}
    if len(by_message) != len(rows):
        problems.append("two deliveries share a Message-ID")

    copies: Counter[tuple[str, str]] = Counter()
    for message in received:
        meant = by_message.get(message.message_id)
        if meant is None:
            problems.append(f"the server got a message we never planned: {message.message_id}")
            continue
        allowed = {a.lower() for a in json.loads(meant["recipients"])}
        if not {r.lower() for r in message.recipients} <= allowed:
            problems.append(f"{message.message_id} went to an address it was not meant for")
        for recipient in message.recipients:
            copies[(message.message_id, recipient.lower())] += 1

    answered = [a for a in answers if a.ok]
    refused = [a for a in answers if a.status == 503]
    strange = sorted({a.status for a in answers if not a.ok and a.status != 503})
    if strange:
        problems.append(f"answers other than 2xx and 503: {strange}")
    result.submissions, result.refused = len(answered), len(refused)
    for answer in refused:
        if answer.retry_after is None:
            problems.append(f"503 for applicant {answer.n} without Retry-After")

    for answer in answered:
        mine = by_submission.get(answer.submission_id, [])
        owed = [ADMISSIONS] + ([AUTOREPLY] if answer.email else [])
        result.emails += len(owed)
        if answer.submission_id not in subs:
            result.lost += len(owed)
            problems.append(f"applicant {answer.n} was answered {answer.status} but not stored")
            continue
        for kind in owed:
            planned = [row for row in mine if row["kind"] == kind]
            if len(planned) != 1:
                result.lost += 1
                problems.append(f"applicant {answer.n}: {len(planned)} {kind} deliveries")
                continue
            _account(planned[0], mine, copies, result, permanent_faults)
        if not answer.email and any(row["kind"] == AUTOREPLY for row in mine):
            problems.append(f"applicant {answer.n} gave no email but has an auto-reply")

    _check_stored(subs, by_submission, refused, cipher, problems)
    _count_duplicates(copies, by_message, window_allowance, result)


def _account(
    row: dict[str, Any],
    siblings: list[dict[str, Any]],
    copies: Counter[tuple[str, str]],
    result: ScenarioResult,
    permanent_faults: bool,
) -> None:
    label = f"{row['kind']} {row['id']}"
    if row["state"] == SENT:
        delivered = json.loads(row["delivered_to"])
        missing = [a for a in delivered if not copies[(row["message_id"], a.lower())]]
        if missing or not delivered:
            result.lost += 1
            result.problems.append(f"{label} is recorded sent but the server never got it")
        else:
            result.sent += 1
        return
    if row["state"] != FAILED:
        result.lost += 1
        result.problems.append(f"{label} is still {row['state']} after the bound")
        return
    if not permanent_faults:
        result.problems.append(f"{label} failed ({row['last_error']}) with no permanent fault")
    if row["kind"] == AUTOREPLY:
        result.failed_recorded += 1
        return
    fallbacks = [
        s
        for s in siblings
        if s["kind"] == FALLBACK and s["route"] == f"{FALLBACK_ROUTE_PREFIX}{row['id']}"
    ]
    if (
        len(fallbacks) == 1
        and fallbacks[0]["state"] == SENT
        and copies[(fallbacks[0]["message_id"], FALLBACK_EMAIL)]
    ):
        result.failed_with_fallback += 1
    else:
        result.lost += 1
        result.problems.append(f"{label} failed and the fallback was not notified")


def _check_stored(
    subs: dict[str, dict[str, Any]],
    by_submission: dict[str, list[dict[str, Any]]],
    refused: list[Answer],
    cipher: PayloadCipher,
    problems: list[str],
) -> None:
    """Nothing half-written: every stored submission has its deliveries, and nothing
    answered 503 was stored."""
    refused_names = {a.name for a in refused}
    for submission_id, sub in subs.items():
        if sub["status"] == QUARANTINED:  # held for review: no deliveries by design
            continue
        payload = cipher.open(sub["payload"])
        who = payload.get("person", {})
        kinds = Counter(row["kind"] for row in by_submission.get(submission_id, []))
        if kinds[ADMISSIONS] != 1 or kinds[AUTOREPLY] != (1 if who.get("email") else 0):
            problems.append(f"submission {submission_id} is half-written: {dict(kinds)}")
        if who.get("name") in refused_names:
            problems.append(f"{who.get('name')} was answered 503 yet stored")


def _count_duplicates(
    copies: Counter[tuple[str, str]],
    by_message: dict[str, dict[str, Any]],
    window_allowance: int,
    result: ScenarioResult,
) -> None:
    duplicated: dict[str, int] = {}
    for (message_id, _recipient), count in copies.items():
        if count > 1:
            duplicated[message_id] = max(duplicated.get(message_id, 0), count - 1)
    for message_id, extra in sorted(duplicated.items()):
        row = by_message.get(message_id)
        if extra > 1:
            result.problems.append(f"{message_id} reached a recipient {extra + 1} times")
        if row is not None and row["attempts"] < 2:
            result.problems.append(f"{message_id} arrived twice from a single attempt")
    total = sum(duplicated.values())
    result.window_duplicates = min(total, window_allowance)
    result.other_duplicates = total - result.window_duplicates
    if result.other_duplicates:
        result.problems.append(
            f"{total} duplicate(s), {window_allowance} allowed by the after-DATA window"
        )
