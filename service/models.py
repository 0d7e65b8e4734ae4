"""Database tables. The database is the source of truth; the queue only wakes workers up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC in every database, returned as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)  # type: ignore[no-any-return]

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


# Submission.status values.
ACCEPTED = "accepted"
QUARANTINED = "quarantined"
RELEASED = "released"

# Delivery.state values: pending -> sending -> sent | retrying -> ... | failed.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
RETRYING = "retrying"
FAILED = "failed"
CANCELLED = "cancelled"
OPEN_STATES = (PENDING, SENDING, RETRYING)

# Delivery.kind values.
AUTOREPLY = "autoreply"
ADMISSIONS = "admissions"
FALLBACK = "fallback"
WEBHOOK = "webhook"

submissions = Table(
    "submissions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("form", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("quarantine_reason", String(64)),
    Column("language", String(8), nullable=False),
    Column("urgent", Boolean, nullable=False, default=False),
    # Routing facts (no personal data): program code, state code, for_whom.
    Column("program", String(32)),
    Column("state_code", String(4)),
    Column("for_whom", String(16)),
    # Personal fields as JSON, Fernet-encrypted when INTAKE_ENCRYPTION_KEY is set. NULL once purged.
    Column("payload", Text),
    Column("client_address", String(64)),
    Column("consent_hash", String(64)),
    Column("consent_at", UTCDateTime()),
    # HMAC of who + what was sent, for duplicate suppression; never reversible to the content.
    Column("fingerprint", String(64)),
    Column("purged_at", UTCDateTime()),
    Index("ix_submissions_created_at", "created_at"),
    Index("ix_submissions_status", "status"),
    Index("ix_submissions_fingerprint", "fingerprint"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "submission_id",
        String(32),
        ForeignKey("submissions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(16), nullable=False),
    Column("channel", String(16), nullable=False),  # email | webhook
    Column("route", String(64)),
    Column("recipients", Text, nullable=False),  # JSON list (addresses or a webhook URL)
    Column("delivered_to", Text, nullable=False, default="[]"),  # JSON list
    Column("refused", Text, nullable=False, default="[]"),  # JSON list
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=5),  # 0 urgent ... 9 background
    Column("attempts", Integer, nullable=False, default=0),
    Column("message_id", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime()),
    Column("enqueued_at", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    Column("last_code", Integer),
    Column("last_error", String(200)),
    # The last attempt could not reach the mail relay (nothing was sent): released as soon as
    # the relay takes email again (workers.recovery), not at its backoff.
    Column("waits_for_relay", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_deliveries_due", "state", "next_attempt_at"),
    Index("ix_deliveries_submission", "submission_id"),
)

attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        String(32),
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("number", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=False),
    Column("outcome", String(16), nullable=False),  # sent | temporary | permanent | partial
    Column("code", Integer),
    Column("error", String(200)),
    Index("ix_attempts_delivery", "delivery_id"),
)
