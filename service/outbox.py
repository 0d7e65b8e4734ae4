"""The transactional outbox: a submission and its pending deliveries, committed together.

Requests that arrive together share one transaction and one fsync (group commit): the writer
takes whatever is waiting, commits it in a worker thread, and wakes every request in the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service.bulkinsert import BulkInsert
from service.models import PENDING, deliveries, submissions
from service.routing import PlannedDelivery

log = logging.getLogger("intake.outbox")

MAX_BATCH = 256  # rows of submissions per transaction; bounds a transaction's length
SQLITE_LOCK_POLL_SECONDS = 0.0005  # how often a writer retries SQLite's write lock


def new_id() -> str:
    """32 hex characters, time-ordered (milliseconds first) so indexes stay append-mostly."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


@dataclass
class SubmissionRecord:
    """Everything one accepted submission writes."""

    row: dict[str, Any]
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Set by the writer: the id the person is answered with (an earlier one for a duplicate).
    answer_id: str = ""
    duplicate: bool = False

    @property
    def id(self) -> str:
        return str(self.row["id"])


def build_record(
    submission: dict[str, Any],
    plan: list[PlannedDelivery],
    *,
    now: datetime,
    mail_domain: str,
) -> SubmissionRecord:
    """The submission row plus one pending delivery row per planned message."""
    rows = []
    for planned in plan:
        delivery_id = new_id()
        rows.append(
            {
                "id": delivery_id,
                "submission_id": submission["id"],
                "kind": planned.kind,
                "channel": planned.channel,
                "route": planned.route,
                "recipients": json.dumps(list(planned.recipients)),
                "delivered_to": "[]",
                "refused": "[]",
                "state": PENDING,
                "priority": planned.priority,
                "attempts": 0,
                # Fixed before the first attempt: a retry is the same email, never a new one.
                "message_id": f"<{delivery_id}@{mail_domain}>",
                "created_at": now,
                "updated_at": now,
                "next_attempt_at": now,
                "enqueued_at": now,
            }
        )
    return SubmissionRecord(row=submission, deliveries=rows)


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, except that on SQLite the write lock is taken first, in short polls.

    SQLite's busy handler sleeps in growing steps (up to 100 ms) while another process holds
    the write lock, so two web processes and the workers handing it around spent most of their
    time asleep (p99 of a group commit: 50-350 ms). BEGIN IMMEDIATE retried every
    SQLITE_LOCK_POLL_SECONDS takes the lock within a poll of its release; after that nothing in
    the transaction waits (WAL readers never block a writer).
    """
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "sqlite":
            _begin_immediate(connection)
        yield connection


def _begin_immediate(connection: Connection) -> None:
    """BEGIN IMMEDIATE within the connection's busy_timeout, polling instead of sleeping long.

    The polls go to the driver directly (a statement through SQLAlchemy costs more than the
    rest of a claim); the last try goes through SQLAlchemy, so a failure raises its error.
    """
    raw: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]
    busy_ms = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + busy_ms / 1000
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    break
            time.sleep(SQLITE_LOCK_POLL_SECONDS)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout = {busy_ms}")


def write_records(
    engine: Engine, records: list[SubmissionRecord], duplicate_window: timedelta
) -> None:
    """Commit the records in one transaction; a duplicate in the window is answered, not stored.

    A batch costs three statements whatever its size (one duplicate lookup, one multi-row insert
    per table): per-statement overhead, not SQLite, was most of a request's database time.
    """
    with write_transaction(engine) as connection:
        earlier = _recent_duplicates(connection, records, duplicate_window)
        rows: list[dict[str, Any]] = []
        delivery_rows: list[dict[str, Any]] = []
        for record in records:
            fingerprint = record.row.get("fingerprint")
            since = record.row["created_at"] - duplicate_window
            first = next(
                (found for at, found in earlier.get(fingerprint or "", []) if at >= since), None
            )
            if first:
                record.answer_id = first
                record.duplicate = True
                continue
            rows.append(record.row)
            delivery_rows.extend(record.deliveries)
            record.answer_id = record.id
            if fingerprint:
                earlier.setdefault(fingerprint, []).append((record.row["created_at"], record.id))
        _INSERT_SUBMISSIONS(connection, rows)
        _INSERT_DELIVERIES(connection, delivery_rows)


def _recent_duplicates(
    connection: Connection, records: list[SubmissionRecord], window: timedelta
) -> dict[str, list[tuple[datetime, str]]]:
    """Fingerprint -> [(created_at, id)], oldest first, of stored submissions in the window."""
    fingerprints = {str(r.row["fingerprint"]) for r in records if r.row.get("fingerprint")}
    if not fingerprints:
        return {}
    since = min(r.row["created_at"] for r in records) - window
    found: dict[str, list[tuple[datetime, str]]] = {}
    for fingerprint, created_at, submission_id in connection.execute(
        _RECENT, {"fingerprints": sorted(fingerprints), "since": since}
    ):
        found.setdefault(fingerprint, []).append((created_at, submission_id))
    return found


# Built once: building a statement costs more than running it for a small batch.
_INSERT_SUBMISSIONS = BulkInsert(submissions)
_INSERT_DELIVERIES = BulkInsert(deliveries)
_RECENT = (
    select(submissions.c.fingerprint, submissions.c.created_at, submissions.c.id)
    .where(
        submissions.c.fingerprint.in_(bindparam("fingerprints", expanding=True)),
        submissions.c.created_at >= bindparam("since"),
    )
    .order_by(submissions.c.created_at)
)


class OutboxWriter:
    """Group commit for the web process: `await write(record)` returns once it is durable."""

    def __init__(self, engine: Engine, duplicate_window: timedelta) -> None:
        self._engine = engine
        self._window = duplicate_window
        self._queue: asyncio.Queue[tuple[SubmissionRecord, asyncio.Future[None]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="outbox-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def write(self, record: SubmissionRecord) -> SubmissionRecord:
        if self._queue is None:
            raise RuntimeError("OutboxWriter.start() was not awaited")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((record, done))
        await done
        return record

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[SubmissionRecord, asyncio.Future[None]]]) -> None:
        records = [record for record, _ in batch]
        try:
            await run_in_threadpool(write_records, self._engine, records, self._window)
        except SQLAlchemyError as exc:
            if len(batch) > 1 and not _is_unavailable(exc):
                # One bad row must not fail its neighbours: retry them one by one.
                for item in batch:
                    await self._commit([item])
                return
            log.error(
                "outbox write failed", extra={"error": type(exc).__name__, "rows": len(batch)}
            )
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)


def _is_unavailable(exc: SQLAlchemyError) -> bool:
    from sqlalchemy.exc import OperationalError, TimeoutError

    return isinstance(exc, OperationalError | TimeoutError)
