"""What `intake check-config` and `intake send-test` do: the effective routing, what looks
unfinished, and a test email through the configured SMTP server."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.config import AppConfig
from service.db import utcnow
from service.settings import Settings

# Domains reserved for documentation: mail to them goes nowhere.
_EXAMPLE_DOMAINS = ("example.org", "example.com", "example.net")


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
    from workers.messages import email_bytes, parse_mailbox
    from workers.rendering import TEST_TEMPLATE, EmailRenderer
    from workers.smtp import SmtpTransport

    now = now or utcnow()
    sender = parse_mailbox(settings.mail_from)
    local = now.astimezone(config.organization.zone)
    rendered = EmailRenderer(settings.templates_dir).render(
        TEST_TEMPLATE, {"org": org_context(config), "sent_at": local.strftime("%Y-%m-%d %H:%M %Z")}
    )
    message_id = make_msgid("intake-test", domain=sender.domain)
    message = email_bytes(rendered, sender=sender, to=list(to), message_id=message_id, date=now)
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
