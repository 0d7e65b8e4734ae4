"""What `intake status`, `failed`, `retry`, `rotate-key` and `check-config` do, as plain functions.

Each takes an Engine and Settings, returns data (the CLI only formats it), and shows no personal
data unless asked: ids, kinds, states, counts, codes. SMTP replies can quote the address they
refuse, so reasons are shown with addresses masked unless `personal=True`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from sqlalchemy import Engine, func, select, update

from service.config import AppConfig
from service.crypto import PayloadCipher, PayloadError
from service.db import utcnow
from service.models import (
    ADMISSIONS,
    CANCELLED,
    FAILED,
    OPEN_STATES,
    PENDING,
    QUARANTINED,
    RETRYING,
    SENDING,
    SENT,
    deliveries,
    submissions,
)
from service.routing import QUEUES, queue_for
from service.settings import Settings

DELIVERY_STATES = (PENDING, SENDING, RETRYING, SENT, FAILED, CANCELLED)
LATENCY_WINDOW = timedelta(hours=1)  # `intake status` reports time to admissions over this span
BROKER_TIMEOUT_SECONDS = 2.0  # how long status and retry wait for the broker to answer
ROTATE_BATCH = 500  # payloads re-sealed per transaction
# kombu's Redis transport keeps a queue's messages of priority 3, 6 and 9 in lists of their own.
REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_ADDRESS = re.compile(r"[^\s<>()\[\]@,;:\"']+@[^\s<>()\[\]@,;:\"']+")
# Domains reserved for documentation: mail to them goes nowhere.
_EXAMPLE_DOMAINS = ("example.org", "example.com", "example.net")


class OpsError(Exception):
    """An operation cannot go ahead; the message says why and what to do."""


def mask_addresses(text: str) -> str:
    """Replace email addresses (SMTP replies often quote them) with a placeholder."""
    return _ADDRESS.sub("<address>", text)


# Status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateCounts:
    deliveries: dict[str, int]  # every state, zeros included
    failed: int
    quarantined: int
    oldest_open_seconds: float | None  # None: nothing is waiting


@dataclass(frozen=True)
class Latency:
    """Time from submission to admissions notification sent, over a window."""

    count: int
    p50_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True)
class Status:
    queues: dict[str, int | None]  # None: the broker did not answer
    counts: StateCounts
    admissions: Latency
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "queues": self.queues,
            "deliveries": self.counts.deliveries,
            "failed": self.counts.failed,
            "quarantined": self.counts.quarantined,
            "oldest_pending_seconds": self.counts.oldest_open_seconds,
            "time_to_admissions_last_hour": asdict(self.admissions),
        }


def state_counts(engine: Engine, now: datetime | None = None) -> StateCounts:
    now = now or utcnow()
    with engine.connect() as connection:
        by_state: dict[str, int] = dict(
            connection.execute(
                select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
            ).all()
        )
        oldest = connection.execute(
            select(func.min(deliveries.c.created_at)).where(deliveries.c.state.in_(OPEN_STATES))
        ).scalar_one()
        quarantined = connection.execute(
            select(func.count()).select_from(submissions).where(submissions.c.status == QUARANTINED)
        ).scalar_one()
    counts = {state: int(by_state.get(state, 0)) for state in DELIVERY_STATES}
    counts.update({str(k): int(v) for k, v in by_state.items() if k not in counts})
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)  # func.min bypasses the column's type
    return StateCounts(
        deliveries=counts,
        failed=counts[FAILED],
        quarantined=int(quarantined),
        oldest_open_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else None,
    )


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def admissions_latency(
    engine: Engine, now: datetime | None = None, window: timedelta = LATENCY_WINDOW
) -> Latency:
    """p50 and p95 of (sent_at - submission created_at) for admissions notifications sent in
    the window."""
    now = now or utcnow()
    query = (
        select(deliveries.c.sent_at, submissions.c.created_at)
        .join(submissions, submissions.c.id == deliveries.c.submission_id)
        .where(
            deliveries.c.kind == ADMISSIONS,
            deliveries.c.state == SENT,
            deliveries.c.sent_at >= now - window,
        )
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    waits = sorted(max((sent - created).total_seconds(), 0.0) for sent, created in rows)
    return Latency(len(waits), _percentile(waits, 0.5), _percentile(waits, 0.95))


def queue_depths(settings: Settings) -> dict[str, int | None]:
    """Messages waiting per Celery queue; None for each when the broker does not answer."""
    url = settings.celery_broker_url
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            return _redis_depths(url, settings)
        return _amqp_depths(url)
    except Exception:
        return dict.fromkeys(QUEUES)


def _redis_depths(url: str, settings: Settings) -> dict[str, int | None]:
    import redis

    timeout = max(settings.redis_timeout_seconds, BROKER_TIMEOUT_SECONDS)
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                for suffix in REDIS_PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            lengths = pipe.execute()
    finally:
        client.close()
    per_queue = len(REDIS_PRIORITY_SUFFIXES)
    return {
        queue: int(sum(lengths[i * per_queue : (i + 1) * per_queue]))
        for i, queue in enumerate(QUEUES)
    }


def _amqp_depths(url: str) -> dict[str, int | None]:
    from kombu.connection import Connection
    from kombu.exceptions import ChannelError

    depths: dict[str, int | None] = {}
    with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:  # type: ignore[no-untyped-call]
        connection.ensure_connection(max_retries=1)
        for queue in QUEUES:
            channel = connection.channel()
            try:
                depths[queue] = int(channel.queue_declare(queue, passive=True).message_count)
            except ChannelError:
                depths[queue] = 0  # not declared yet: no worker or publisher has used it
            finally:
                channel.close()
    return depths


def status(engine: Engine, settings: Settings, now: datetime | None = None) -> Status:
    now = now or utcnow()
    return Status(
        queues=queue_depths(settings),
        counts=state_counts(engine, now),
        admissions=admissions_latency(engine, now),
        at=now,
    )


# Failed deliveries and retry ----------------------------------------------------------------


@dataclass(frozen=True)
class FailedDelivery:
    id: str
    submission_id: str
    kind: str
    route: str
    attempts: int
    code: int | None
    reason: str
    failed_at: datetime
    recipients: list[str] = field(default_factory=list)  # only when personal data was asked for

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_at"] = self.failed_at.isoformat()
        return data


def failed_deliveries(
    engine: Engine, *, limit: int = 100, personal: bool = False
) -> list[FailedDelivery]:
    """Failed deliveries, newest first. Reasons have addresses masked unless personal."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries)
            .where(deliveries.c.state == FAILED)
            .order_by(deliveries.c.updated_at.desc())
            .limit(limit)
        ).mappings()
        found = []
        for row in rows:
            reason = row["last_error"] or ""
            found.append(
                FailedDelivery(
                    id=row["id"],
                    submission_id=row["submission_id"],
                    kind=row["kind"],
                    route=row["route"] or "",
                    attempts=int(row["attempts"]),
                    code=row["last_code"],
                    reason=reason if personal else mask_addresses(reason),
                    failed_at=row["updated_at"],
                    recipients=json.loads(row["recipients"]) if personal else [],
                )
            )
    return found


@dataclass
class RetryResult:
    jobs: list[tuple[str, str]]  # (delivery id, queue) set back to pending, to publish
    skipped: dict[str, str]  # delivery id -> why it was not retried (not found, its state)


def retry_failed(
    engine: Engine, ids: Iterable[str] | None = None, now: datetime | None = None
) -> RetryResult:
    """Set failed deliveries (the given ids, or every failed one) back to pending, attempts kept.

    Recipients that refused are tried again (the cause may be fixed); those that already
    received the message are not. The state guard makes a concurrent second retry a no-op.
    """
    now = now or utcnow()
    wanted = None if ids is None else list(dict.fromkeys(ids))
    where = [deliveries.c.state == FAILED]
    if wanted is not None:
        if not wanted:
            return RetryResult([], {})
        where.append(deliveries.c.id.in_(wanted))
    with engine.begin() as connection:
        rows = connection.execute(
            update(deliveries)
            .where(*where)
            .values(
                state=PENDING,
                refused="[]",
                next_attempt_at=now,
                enqueued_at=now,
                lease_until=None,
                updated_at=now,
            )
            .returning(deliveries.c.id, deliveries.c.priority)
        ).all()
        done = {row.id for row in rows}
        skipped: dict[str, str] = {}
        if wanted is not None:
            others = [i for i in wanted if i not in done]
            states = dict(
                connection.execute(
                    select(deliveries.c.id, deliveries.c.state).where(deliveries.c.id.in_(others))
                ).all()
            )
            skipped = {i: f"is {states[i]}" if i in states else "not found" for i in others}
    jobs = [(row.id, queue_for(row.priority)) for row in sorted(rows, key=lambda r: r.priority)]
    return RetryResult(jobs, skipped)


def hurry_retrying(engine: Engine, now: datetime | None = None) -> list[tuple[str, str]]:
    """Bring every waiting retry forward to now (after an outage is fixed, rather than wait out
    the backoff). Returns (delivery id, queue) pairs to publish; urgent first, the rest on the
    backlog queue behind fresh work."""
    now = now or utcnow()
    with engine.begin() as connection:
        rows = connection.execute(
            update(deliveries)
            .where(deliveries.c.state == RETRYING)
            .values(next_attempt_at=now, enqueued_at=now, updated_at=now)
            .returning(deliveries.c.id, deliveries.c.priority)
        ).all()
    ordered = sorted(rows, key=lambda r: r.priority)
    return [(row.id, queue_for(row.priority, backlog=True)) for row in ordered]


def publish(engine: Engine, settings: Settings, jobs: Sequence[tuple[str, str]]) -> int:
    """Wake workers for these deliveries; returns how many were published. What the broker did
    not take is marked unpublished, so the next sweep publishes it."""
    if not jobs:
        return 0
    from workers.celery_app import DELIVER_TASK, create_celery

    app = create_celery(settings, include_tasks=False)
    app.conf.broker_connection_timeout = BROKER_TIMEOUT_SECONDS
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for delivery_id, queue in jobs:
                app.send_task(
                    DELIVER_TASK,
                    args=[delivery_id],
                    queue=queue,
                    producer=producer,
                    retry=False,
                    ignore_result=True,
                )
                sent += 1
    except Exception:
        missed = [delivery_id for delivery_id, _ in jobs[sent:]]
        with engine.begin() as connection:
            connection.execute(
                update(deliveries).where(deliveries.c.id.in_(missed)).values(enqueued_at=None)
            )
    finally:
        app.close()
    return sent


# Encryption key rotation ---------------------------------------------------------------------


@dataclass
class RotateResult:
    resealed: int = 0
    unreadable: list[str] = field(default_factory=list)  # submission ids no configured key opens
    changed_meanwhile: int = 0  # rewritten or purged by someone else during the rotation


def rotate_keys(engine: Engine, settings: Settings, *, batch: int = ROTATE_BATCH) -> RotateResult:
    """Re-seal every stored payload under the newest INTAKE_ENCRYPTION_KEY (the first listed);
    plain payloads get sealed. Afterwards the older keys can be removed from the setting."""
    cipher = PayloadCipher(settings.encryption_key.reveal())
    if not cipher.encrypts:
        raise OpsError(
            "INTAKE_ENCRYPTION_KEY is not set: put the new key first, the old ones after it, "
            "comma-separated"
        )
    result = RotateResult()
    after = ""
    while True:
        with engine.begin() as connection:
            rows = connection.execute(
                select(submissions.c.id, submissions.c.payload)
                .where(submissions.c.payload.is_not(None), submissions.c.id > after)
                .order_by(submissions.c.id)
                .limit(batch)
            ).all()
            for submission_id, stored in rows:
                try:
                    sealed = cipher.rotate(stored)
                except (PayloadError, InvalidToken):  # rotate() lets InvalidToken through
                    result.unreadable.append(submission_id)
                    continue
                changed = connection.execute(
                    update(submissions)
                    .where(submissions.c.id == submission_id, submissions.c.payload == stored)
                    .values(payload=sealed)
                )
                if changed.rowcount == 1:
                    result.resealed += 1
                else:
                    result.changed_meanwhile += 1
        if len(rows) < batch:
            return result
        after = rows[-1][0]


# Configuration check -------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteRow:
    order: str  # "1", "2", ... for rules in order; a word for the built-in ones
    name: str
    when: str
    to: list[str]
    webhook: str  # the webhook's scheme and host only (its path may carry a token)


@dataclass
class ConfigReport:
    source: str
    forms: list[str]
    routes: list[RouteRow]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_example(address: str) -> bool:
    domain = address.rpartition("@")[2].lower().rstrip(">").strip()
    return any(domain == d or domain.endswith("." + d) for d in _EXAMPLE_DOMAINS)


def is_fictional_phone(text: str) -> bool:
    """North American numbers kept for fiction: 555-0100 to 555-0199, and area code 555."""
    digits = re.sub(r"\D", "", text)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) == 7:
        return digits.startswith("55501")
    return len(digits) == 10 and (digits[:3] == "555" or digits[3:8] == "55501")


def _webhook_host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}"


def config_report(settings: Settings, config: AppConfig) -> ConfigReport:
    """The effective routing, in the order rules are tried, with what looks unfinished."""
    rows = [
        RouteRow(
            str(index),
            route.name,
            "; ".join(f"{key} in {','.join(v)}" for key, v in route.when.items()) or "always",
            list(route.to),
            _webhook_host(route.webhook.url) if route.webhook else "",
        )
        for index, route in enumerate(config.routes, start=1)
    ]
    rows.append(
        RouteRow("default", "default", "no rule matched", list(settings.admissions_email), "")
    )
    rows.append(
        RouteRow("urgent", "on-call", "crisis words (added)", list(settings.oncall_email), "")
    )
    rows.append(
        RouteRow(
            "fallback", "fallback", "admissions email failed", list(settings.fallback_email), ""
        )
    )
    report = ConfigReport(config.source, sorted(config.forms), rows)
    _check_addresses(settings, config, report)
    _check_settings(settings, config, report)
    return report


def _check_addresses(settings: Settings, config: AppConfig, report: ConfigReport) -> None:
    named = {
        "INTAKE_MAIL_FROM": [settings.mail_from],
        "INTAKE_ADMISSIONS_EMAIL": list(settings.admissions_email),
        "INTAKE_FALLBACK_EMAIL": list(settings.fallback_email),
        "INTAKE_ONCALL_EMAIL": list(settings.oncall_email),
    }
    for route in config.routes:
        named[f"route {route.name!r}"] = list(route.to)
    for where, addresses in named.items():
        for address in addresses:
            plain = parseaddr(address)[1]
            if "@" not in plain:
                report.errors.append(f"{where}: {address!r} is not an email address")
            elif _is_example(plain):
                report.warnings.append(
                    f"{where}: {plain} is a documentation address (example.*): "
                    "mail to it goes nowhere"
                )
    org = config.organization
    if is_fictional_phone(org.phone):
        report.warnings.append(
            f"organization.phone {org.phone!r} is a fictional 555-01xx number: people in need "
            "are told to call it"
        )
    if not org.phone:
        report.warnings.append("organization.phone is empty: emails show no number to call")
    if any(d in org.website for d in _EXAMPLE_DOMAINS):
        report.warnings.append(f"organization.website {org.website!r} is a placeholder")


def _check_settings(settings: Settings, config: AppConfig, report: ConfigReport) -> None:
    templates = Path(settings.templates_dir) / "email" / "admissions"
    if not templates.is_dir():
        report.errors.append(f"INTAKE_TEMPLATES_DIR: no email templates under {templates.parent}")
    if not settings.oncall_email:
        report.warnings.append(
            "INTAKE_ONCALL_EMAIL is empty: urgent inquiries reach only the usual recipients"
        )
    if not settings.encryption_key:
        report.warnings.append("INTAKE_ENCRYPTION_KEY is not set: personal fields are unencrypted")
    if not settings.secret_key:
        report.warnings.append(
            "INTAKE_SECRET_KEY is not set: each machine generates its own under var/, so "
            "duplicate checks and form tokens differ between machines"
        )
    loopback = settings.smtp_host in ("127.0.0.1", "localhost", "::1")
    if settings.smtp_security == "none" and not loopback:
        report.warnings.append(
            f"INTAKE_SMTP_SECURITY is none for {settings.smtp_host}: mail (and any password) "
            "crosses the network unencrypted"
        )
    if settings.dev_mode:
        report.warnings.append("INTAKE_DEV_MODE is on: the local mailbox pages are served")
    if settings.rate_limit.strip().lower() == "off":
        report.warnings.append("INTAKE_RATE_LIMIT is off: nothing slows a flood of submissions")
    if not settings.metrics_token:
        report.warnings.append(
            "INTAKE_METRICS_TOKEN is not set: /metrics answers only direct loopback requests"
        )
    for form in config.forms.values():
        if form.captcha is not None and not form.captcha.secret:
            report.errors.append(f"forms.{form.name}.captcha has no secret")


# Test email ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentTestEmail:
    message_id: str
    accepted: list[str]
    refused: dict[str, str]  # recipient -> "code reply", refused for good
    deferred: dict[str, str]  # recipient -> "code reply", refused for now


def send_test_email(
    settings: Settings, config: AppConfig, to: Sequence[str], now: datetime | None = None
) -> SentTestEmail:
    """Send templates/email/send_test through the configured SMTP server, the way a worker
    sends (same transport, TLS and login). Raises workers.retry.DeliveryError when nothing
    went out; the reason carries the server's code."""
    from email.utils import make_msgid

    from workers.content import org_context
    from workers.messages import build_email, parse_mailbox
    from workers.rendering import TEST_TEMPLATE, EmailRenderer
    from workers.smtp import SmtpTransport

    now = now or utcnow()
    sender = parse_mailbox(settings.mail_from)
    local = now.astimezone(config.organization.zone)
    rendered = EmailRenderer(settings.templates_dir).render(
        TEST_TEMPLATE, {"org": org_context(config), "sent_at": local.strftime("%Y-%m-%d %H:%M %Z")}
    )
    message_id = make_msgid("intake-test", domain=sender.domain)
    message = build_email(rendered, sender=sender, to=list(to), message_id=message_id, date=now)
    transport = SmtpTransport(settings)
    try:
        report = transport.send(message, sender.addr_spec, list(to))
    finally:
        transport.close()
    return SentTestEmail(
        message_id=message_id,
        accepted=report.accepted,
        refused={r: f"{code} {text}" for r, (code, text) in report.refused.items()},
        deferred={r: f"{code} {text}" for r, (code, text) in report.deferred.items()},
    )
