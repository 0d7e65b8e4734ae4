"""What the web app holds while it runs, built once at start-up from settings and config."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from service.captcha import CaptchaVerifier
from service.clients import ClientAddressResolver
from service.config import AppConfig
from service.crypto import PayloadCipher
from service.outbox import OutboxWriter
from service.pages import PageRenderer
from service.publisher import TaskPublisher
from service.ratelimit import RateLimiter
from service.settings import Settings
from service.validation import FormValidator

log = logging.getLogger("intake.state")


@dataclass
class AppState:
    settings: Settings
    config: AppConfig
    engine: Engine
    writer: OutboxWriter
    publisher: TaskPublisher
    cipher: PayloadCipher
    pages: PageRenderer
    clients: ClientAddressResolver
    secret: bytes
    validators: dict[str, FormValidator] = field(default_factory=dict)
    limiter: RateLimiter | None = None  # None: no limits (set in build_state)
    captcha: CaptchaVerifier | None = None  # None: no form asks for a CAPTCHA

    def fingerprint(self, *parts: str) -> str:
        """A keyed hash of the parts: equal inputs match, and nothing can be read back."""
        message = "\x1f".join(parts).encode("utf-8")
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def resolve_secret(settings: Settings) -> bytes:
    """INTAKE_SECRET_KEY, or a random key kept under var/ so every local process shares it."""
    if settings.secret_key:
        return settings.secret_key.reveal().encode("utf-8")
    path = Path(settings.var_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        temporary.write_text(secrets.token_urlsafe(48))
        temporary.chmod(0o600)
        try:
            os.link(temporary, path)  # atomic: the first process to get here wins
            log.warning("INTAKE_SECRET_KEY is not set; generated one", extra={"path": str(path)})
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip().encode("utf-8")
