"""What a worker process holds: built lazily in the process itself (after Celery forks)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from typing import Any

from sqlalchemy import Engine, event

from service.config import AppConfig, load_config
from service.crypto import PayloadCipher
from service.db import make_engine
from service.settings import Settings
from workers.messages import parse_mailbox
from workers.rendering import EmailRenderer
from workers.retry import RetryPolicy
from workers.smtp import SmtpTransport
from workers.webhook import WebhookClient

# publish(delivery id, queue name): how a worker wakes another worker (fallbacks, the sweeper).
Publish = Callable[[str, str], None]


@dataclass
class WorkerContext:
    settings: Settings
    config: AppConfig
    engine: Engine
    # Claims are committed through this one without waiting for the disk (why: delivery.claim);
    # on PostgreSQL it is the same engine and the claim says so per transaction.
    claims: Engine
    cipher: PayloadCipher
    renderer: EmailRenderer
    transport: SmtpTransport
    webhooks: WebhookClient
    policy: RetryPolicy
    sender: Address
    publish: Publish
    pid: int = field(default_factory=os.getpid)
    # When this process last looked for email waiting on the relay (workers.recovery).
    relay_checked_at: float = float("-inf")

    @classmethod
    def build(cls, settings: Settings, publish: Publish) -> WorkerContext:
        engine = make_engine(settings.database_url, pool_size=2)
        return cls(
            settings=settings,
            config=load_config(settings.config),
            engine=engine,
            claims=_claims_engine(settings, engine),
            cipher=PayloadCipher(settings.encryption_key.reveal()),
            renderer=EmailRenderer(settings.templates_dir),
            transport=SmtpTransport(settings),
            webhooks=WebhookClient(timeout=settings.smtp_timeout_seconds),
            policy=RetryPolicy(
                base_seconds=settings.retry_base_seconds,
                max_seconds=settings.retry_max_seconds,
                lifetime_seconds=settings.retry_lifetime_seconds,
            ),
            sender=parse_mailbox(settings.mail_from),
            publish=publish,
        )

    def close(self) -> None:
        self.transport.close()
        self.webhooks.close()
        self.engine.dispose()
        if self.claims is not self.engine:
            self.claims.dispose()


def _claims_engine(settings: Settings, engine: Engine) -> Engine:
    """SQLite sets durability per connection, not per transaction: claims get connections of
    their own whose commits are written to the WAL but not fsynced (synchronous=NORMAL)."""
    if engine.dialect.name != "sqlite":
        return engine
    claims = make_engine(settings.database_url, pool_size=1)
    event.listen(claims, "connect", _unsynced)  # after make_engine's pragmas
    return claims


def _unsynced(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
