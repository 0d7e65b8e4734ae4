"""Personal fields at rest: JSON, Fernet-encrypted when a key is configured, with key rotation."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PLAIN = "json:"
SEALED = "fernet:"


class PayloadError(ValueError):
    """A stored payload cannot be read with the configured keys."""


class PayloadCipher:
    """Seals and opens submission payloads. Keys: newest first; older ones still open old rows."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        self._fernet = MultiFernet([Fernet(k.encode()) for k in parts]) if parts else None

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    def seal(self, payload: dict[str, Any]) -> str:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        if self._fernet is None:
            return PLAIN + data
        return SEALED + self._fernet.encrypt(data.encode()).decode()

    def open(self, stored: str) -> dict[str, Any]:
        if stored.startswith(PLAIN):
            result: dict[str, Any] = json.loads(stored[len(PLAIN) :])
            return result
        if not stored.startswith(SEALED):
            raise PayloadError("unknown payload format")
        if self._fernet is None:
            raise PayloadError("payload is encrypted but INTAKE_ENCRYPTION_KEY is not set")
        try:
            opened: dict[str, Any] = json.loads(
                self._fernet.decrypt(stored[len(SEALED) :].encode())
            )
        except InvalidToken as exc:
            raise PayloadError("no configured key opens this payload") from exc
        return opened

    def rotate(self, stored: str) -> str:
        """Re-seal under the newest key (and seal plain payloads once a key exists)."""
        if self._fernet is None:
            return stored
        if stored.startswith(SEALED):
            try:
                return SEALED + self._fernet.rotate(stored[len(SEALED) :].encode()).decode()
            except InvalidToken as exc:
                raise PayloadError("no configured key opens this payload") from exc
        return self.seal(self.open(stored))


def new_key() -> str:
    return Fernet.generate_key().decode()
