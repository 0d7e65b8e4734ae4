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
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service.models import PENDING, deliveries, submissions
from service.routing import PlannedDelivery

log = logging.getLogger("intake.outbox")

MAX_BATCH = 256  # rows of submissions per transaction; bounds a transaction's length


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


def write_records(
    engine: Engine, records: list[SubmissionRecord], duplicate_window: timedelta
) -> None:
    """Commit the records in one transaction; a duplicate in the window is answered, not stored."""
    with engine.begin() as connection:
        batch_fingerprints: dict[str, str] = {}
        for record in records:
            fingerprint = record.row.get("fingerprint")
            earlier = None
            if fingerprint:
                earlier = batch_fingerprints.get(fingerprint) or _recent_duplicate(
                    connection, fingerprint, record.row["created_at"] - duplicate_window
                )
            if earlier:
                record.answer_id = earlier
                record.duplicate = True
                continue
            connection.execute(insert(submissions), [record.row])
            if record.deliveries:
                connection.execute(insert(deliveries), record.deliveries)
            record.answer_id = record.id
            if fingerprint:
                batch_fingerprints[fingerprint] = record.id


def _recent_duplicate(connection: Connection, fingerprint: str, since: datetime) -> str | None:
    found = connection.execute(
        select(submissions.c.id)
        .where(submissions.c.fingerprint == fingerprint, submissions.c.created_at >= since)
        .order_by(submissions.c.created_at)
        .limit(1)
    ).scalar_one_or_none()
    return found


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
