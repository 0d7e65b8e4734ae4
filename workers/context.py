"""What a worker process holds: built lazily in the process itself (after Celery forks)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address

from sqlalchemy import Engine

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
    cipher: PayloadCipher
    renderer: EmailRenderer
    transport: SmtpTransport
    webhooks: WebhookClient
    policy: RetryPolicy
    sender: Address
    publish: Publish
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def build(cls, settings: Settings, publish: Publish) -> WorkerContext:
        return cls(
            settings=settings,
            config=load_config(settings.config),
            engine=make_engine(settings.database_url, pool_size=2),
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
