"""The organization's TOML configuration: who we are, which forms exist, where inquiries go."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.settings import PROJECT_ROOT

# The configuration used when INTAKE_CONFIG names no file.
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "service" / "default_config.toml"

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Keys a routing rule may test, and the submission fields they read.
ROUTE_CONDITIONS = ("form", "program", "state", "for_whom", "language", "urgent")


class ConfigError(ValueError):
    """The TOML configuration is invalid; the message says where."""


@dataclass(frozen=True)
class Organization:
    name: str
    phone: str
    website: str
    address: str
    timezone: str
    # weekday -> (opening minute, closing minute) of the admissions team's staffed hours.
    hours: dict[str, tuple[int, int]]
    hours_text: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class CaptchaConfig:
    provider: str  # turnstile | hcaptcha | recaptcha
    secret: str
    site_key: str
    verify_url: str


@dataclass(frozen=True)
class FormConfig:
    name: str
    title: str
    honeypot_fields: tuple[str, ...] = ("_gotcha",)
    require_time_token: bool = False
    min_fill_seconds: float = 3.0
    max_token_age_seconds: float = 24 * 3600.0
    require_origin: bool = False
    rate_limit: str = ""
    next_url: str = ""
    programs: tuple[str, ...] = ()
    captcha: CaptchaConfig | None = None


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str


@dataclass(frozen=True)
class Route:
    name: str
    when: dict[str, tuple[str, ...]]
    to: tuple[str, ...]
    webhook: WebhookConfig | None = None

    def matches(self, facts: dict[str, str]) -> bool:
        return all(facts.get(key, "") in allowed for key, allowed in self.when.items())


@dataclass(frozen=True)
class AppConfig:
    organization: Organization
    forms: dict[str, FormConfig]
    routes: tuple[Route, ...] = ()
    programs: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def form(self, name: str) -> FormConfig | None:
        return self.forms.get(name)


def load_config(path: str | Path | None = None) -> AppConfig:
    """Read and check the TOML file at path (the built-in default when empty)."""
    source = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {source}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return parse_config(raw, source=str(source))


def parse_config(raw: dict[str, Any], source: str = "<memory>") -> AppConfig:
    programs = {str(k): str(v) for k, v in raw.get("programs", {}).items()}
    organization = _organization(raw.get("organization", {}))
    forms = {name: _form(name, spec, programs) for name, spec in raw.get("forms", {}).items()}
    if not forms:
        raise ConfigError(f"{source}: at least one [forms.<name>] table is needed")
    routes = tuple(_route(i, spec) for i, spec in enumerate(raw.get("routes", [])))
    return AppConfig(organization, forms, routes, programs, source)


def _organization(spec: dict[str, Any]) -> Organization:
    timezone = str(spec.get("timezone", "America/New_York"))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"organization.timezone: unknown time zone {timezone!r}") from exc
    hours: dict[str, tuple[int, int]] = {}
    for day, span in dict(spec.get("hours", {})).items():
        if day not in WEEKDAYS:
            raise ConfigError(f"organization.hours: {day!r} is not a weekday name")
        hours[day] = _span(day, str(span))
    return Organization(
        name=str(spec.get("name", "Our admissions team")),
        phone=str(spec.get("phone", "")),
        website=str(spec.get("website", "")),
        address=str(spec.get("address", "")),
        timezone=timezone,
        hours=hours,
        hours_text=str(spec.get("hours_text", "")),
    )


def _span(day: str, text: str) -> tuple[int, int]:
    try:
        start, end = (part.strip() for part in text.split("-"))
        opening = _minutes(start)
        closing = _minutes(end)
    except ValueError as exc:
        raise ConfigError(f"organization.hours.{day}: use HH:MM-HH:MM, not {text!r}") from exc
    if closing <= opening:
        raise ConfigError(f"organization.hours.{day}: closing must come after opening")
    return opening, closing


def _minutes(text: str) -> int:
    hour, minute = text.split(":")
    value = int(hour) * 60 + int(minute)
    if not 0 <= value <= 24 * 60:
        raise ValueError(text)
    return value


def _form(name: str, spec: dict[str, Any], programs: dict[str, str]) -> FormConfig:
    captcha = None
    if "captcha" in spec:
        c = spec["captcha"]
        provider = str(c.get("provider", ""))
        if provider not in CAPTCHA_VERIFY_URLS:
            raise ConfigError(f"forms.{name}.captcha.provider must be one of {CAPTCHA_NAMES}")
        captcha = CaptchaConfig(
            provider=provider,
            secret=str(c.get("secret", "")),
            site_key=str(c.get("site_key", "")),
            verify_url=str(c.get("verify_url", CAPTCHA_VERIFY_URLS[provider])),
        )
    form_programs = tuple(str(p) for p in spec.get("programs", programs.keys()))
    unknown = [p for p in form_programs if p not in programs]
    if unknown:
        raise ConfigError(f"forms.{name}.programs: {unknown} not in [programs]")
    return FormConfig(
        name=name,
        title=str(spec.get("title", "Contact us")),
        honeypot_fields=tuple(str(f) for f in spec.get("honeypot_fields", ("_gotcha",))),
        require_time_token=bool(spec.get("require_time_token", False)),
        min_fill_seconds=float(spec.get("min_fill_seconds", 3.0)),
        max_token_age_seconds=float(spec.get("max_token_age_seconds", 24 * 3600.0)),
        require_origin=bool(spec.get("require_origin", False)),
        rate_limit=str(spec.get("rate_limit", "")),
        next_url=str(spec.get("next", "")),
        programs=form_programs,
        captcha=captcha,
    )


def _route(index: int, spec: dict[str, Any]) -> Route:
    name = str(spec.get("name", f"route-{index}"))
    when: dict[str, tuple[str, ...]] = {}
    for key, value in dict(spec.get("when", {})).items():
        if key not in ROUTE_CONDITIONS:
            raise ConfigError(f"routes[{index}].when: unknown condition {key!r}")
        values = value if isinstance(value, list) else [value]
        when[key] = tuple(_fact(v) for v in values)
    to = tuple(str(a) for a in spec.get("to", []))
    webhook = None
    if "webhook" in spec:
        hook = spec["webhook"]
        if not str(hook.get("url", "")).startswith(("http://", "https://")):
            raise ConfigError(f"routes[{index}].webhook.url must be an http(s) URL")
        webhook = WebhookConfig(url=str(hook["url"]), secret=str(hook.get("secret", "")))
    if not to and webhook is None:
        raise ConfigError(f"routes[{index}] needs 'to' addresses or a webhook")
    return Route(name=name, when=when, to=to, webhook=webhook)


def _fact(value: object) -> str:
    """Route conditions compare as strings; booleans as 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


CAPTCHA_VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
    "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
}
CAPTCHA_NAMES = ", ".join(CAPTCHA_VERIFY_URLS)
