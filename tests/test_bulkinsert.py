"""BulkInsert stores exactly what SQLAlchemy's own INSERT stores, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, Table, insert, select, text

from service.bulkinsert import BulkInsert
from service.db import make_engine, utcnow
from service.models import deliveries, submissions


def _submission(submission_id: str, **overrides: Any) -> dict[str, Any]:
    now = utcnow()
    row = {
        "id": submission_id,
        "form": "contact",
        "created_at": now,
        "status": "accepted",
        "language": "es",
        "urgent": True,
        "program": "detox",
        "payload": "sealed",
        "consent_at": now - timedelta(microseconds=1),
        "fingerprint": "f" * 64,
    }
    return {**row, **overrides}


def _delivery(delivery_id: str, submission_id: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": delivery_id,
        "submission_id": submission_id,
        "kind": "admissions",
        "channel": "email",
        "route": "default",
        "recipients": '["admissions@example.org"]',
        "state": "pending",
        "message_id": f"<{delivery_id}@example.org>",
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "enqueued_at": now,
    }  # delivered_to, refused, priority, attempts: column defaults; the rest NULL


def _stored(engine: Engine, table: Table, row_id: str) -> dict[str, Any]:
    """The row as the database holds it (raw driver values), without its id."""
    with engine.connect() as connection:
        found = connection.execute(
            text(f"SELECT * FROM {table.name} WHERE id = :id"), {"id": row_id}
        ).mappings()
        return {k: v for k, v in dict(found.one()).items() if k != "id"}


def test_rows_match_sqlalchemys_insert_in_every_column(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(insert(submissions), [_submission("a" * 32)])
            BulkInsert(submissions)(connection, [_submission("b" * 32)])
            connection.execute(insert(deliveries), [_delivery("c" * 32, "a" * 32)])
            BulkInsert(deliveries)(connection, [_delivery("d" * 32, "b" * 32)])
        ours, theirs = (
            _stored(engine, submissions, "b" * 32),
            _stored(engine, submissions, "a" * 32),
        )
        assert ours.keys() == theirs.keys()
        for column in ours:  # same types and formats (timestamps differ by when they were made)
            assert type(ours[column]) is type(theirs[column]), column
            if isinstance(ours[column], str):  # SQLite's text timestamps: one format
                assert len(ours[column]) == len(theirs[column]), column
        assert ours["urgent"] == theirs["urgent"] and ours["purged_at"] is None
        ours_d = _stored(engine, deliveries, "d" * 32)
        theirs_d = _stored(engine, deliveries, "c" * 32)
        assert {k: type(v) for k, v in ours_d.items()} == {k: type(v) for k, v in theirs_d.items()}
        assert (ours_d["delivered_to"], ours_d["refused"], ours_d["priority"]) == ("[]", "[]", 5)
        assert ours_d["attempts"] == 0 and ours_d["lease_until"] is None
        # And the ORM-level view reads both back alike, aware UTC included.
        with engine.connect() as connection:
            read = {
                r.id: r
                for r in connection.execute(select(deliveries.c.id, deliveries.c.created_at))
            }
        assert read["d" * 32].created_at.utcoffset() == timedelta(0)
    finally:
        engine.dispose()


def test_one_timestamp_shared_by_many_columns_is_stored_the_same_in_each(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            BulkInsert(submissions)(connection, [_submission("e" * 32)])
            rows = [_delivery(f"{i:032d}", "e" * 32) for i in range(3)]
            BulkInsert(deliveries)(connection, rows)
        with engine.connect() as connection:
            found = connection.execute(
                select(deliveries).where(deliveries.c.submission_id == "e" * 32)
            ).all()
        assert len(found) == 3
        for stored, row in zip(sorted(found, key=lambda r: r.id), rows, strict=True):
            assert stored.created_at == stored.updated_at == stored.next_attempt_at
            assert stored.created_at == row["created_at"]
    finally:
        engine.dispose()
