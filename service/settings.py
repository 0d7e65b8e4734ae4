"""One typed settings object, built from the environment, shared by web and workers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Where the repository lives: templates, built-in config and var/ are found relative to it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Names map to INTAKE_<NAME> environment variables."""

    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'intake.db'}"
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""  # empty: the Celery broker is redis_url
    config: str = ""  # path to the TOML configuration; empty: the built-in default
    templates_dir: str = str(PROJECT_ROOT / "templates")
    var_dir: str = str(PROJECT_ROOT / "var")
    public_url: str = "http://127.0.0.1:8000"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: Secret = field(default_factory=lambda: Secret(""))
    smtp_security: str = "none"  # none | starttls | tls
    smtp_timeout_seconds: float = 30.0
    smtp_ca_file: str = ""  # CA bundle for a relay with a private certificate; empty: system CAs
    mail_from: str = "Care Team <care@example.org>"
    admissions_email: tuple[str, ...] = ("admissions@example.org",)
    fallback_email: tuple[str, ...] = ("admissions-fallback@example.org",)
    oncall_email: tuple[str, ...] = ()
    admissions_detail: str = "full"  # full | minimal
    check_deliverability: bool = False

    allowed_origins: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ("*",)
    trusted_proxies: tuple[str, ...] = ()
    rate_limit: str = "10/minute"  # per client address, email and phone; "off" disables
    captcha_timeout_seconds: float = 5.0  # a CAPTCHA verifier slower than this: held for review
    max_body_bytes: int = 65536
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    encryption_key: Secret = field(default_factory=lambda: Secret(""))
    metrics_token: Secret = field(default_factory=lambda: Secret(""))
    dev_mode: bool = False

    redis_timeout_seconds: float = 0.5
    retry_base_seconds: float = 120.0
    retry_max_seconds: float = 4 * 3600.0
    retry_lifetime_seconds: float = 5 * 24 * 3600.0
    sweep_interval_seconds: float = 30.0
    lease_seconds: float = 120.0
    requeue_after_seconds: float = 300.0  # a published delivery unclaimed this long is re-published
    task_time_limit_seconds: float = 90.0
    retention_days: int = 30
    quarantine_days: int = 14
    duplicate_window_seconds: int = 600
    log_format: str = "json"  # json | human
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read INTAKE_* variables; anything absent keeps its default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = f"INTAKE_{spec.name.upper()}"
            if name not in env:
                continue
            raw = env[name]
            default = getattr(cls(), spec.name)
            values[spec.name] = _coerce(name, raw, default)
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values changed (tests and the dev runner use this)."""
        return replace(self, **changes)

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def as_env(self) -> dict[str, str]:
        """The settings as INTAKE_* variables, for child processes."""
        env: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, Secret):
                text = value.reveal()
            elif isinstance(value, tuple):
                text = ",".join(value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"INTAKE_{spec.name.upper()}"] = text
        return env

    def validate(self) -> None:
        if self.smtp_security not in {"none", "starttls", "tls"}:
            raise SettingsError("INTAKE_SMTP_SECURITY must be none, starttls or tls")
        if self.admissions_detail not in {"full", "minimal"}:
            raise SettingsError("INTAKE_ADMISSIONS_DETAIL must be full or minimal")
        if self.log_format not in {"json", "human"}:
            raise SettingsError("INTAKE_LOG_FORMAT must be json or human")
        if not self.admissions_email:
            raise SettingsError("INTAKE_ADMISSIONS_EMAIL needs at least one address")
        if self.lease_seconds <= self.task_time_limit_seconds:
            raise SettingsError(
                "INTAKE_LEASE_SECONDS must exceed INTAKE_TASK_TIME_LIMIT_SECONDS, "
                "or a slow send could be claimed twice"
            )
        from service.rates import parse_rate

        try:
            parse_rate(self.rate_limit)
        except ValueError as exc:
            raise SettingsError(f"INTAKE_RATE_LIMIT: {exc}") from exc
        for name in (
            "retry_base_seconds",
            "sweep_interval_seconds",
            "requeue_after_seconds",
            "smtp_timeout_seconds",
            "captcha_timeout_seconds",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"INTAKE_{name.upper()} must be positive")


def _coerce(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, Secret):
            return Secret(raw)
        if isinstance(default, bool):
            return _bool(name, raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return _split(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from exc
    return raw
