"""Payload encryption at rest, with key rotation."""

from __future__ import annotations

import pytest

from service.crypto import PayloadCipher, PayloadError, new_key

PAYLOAD = {"person": {"name": "Zelda Canary", "message": "help"}}


def test_plain_without_key_sealed_with_key() -> None:
    assert PayloadCipher("").seal(PAYLOAD).startswith("json:")
    key = new_key()
    sealed = PayloadCipher(key).seal(PAYLOAD)
    assert sealed.startswith("fernet:") and "Zelda" not in sealed
    assert PayloadCipher(key).open(sealed) == PAYLOAD


def test_rotation_keeps_old_rows_readable() -> None:
    old, new = new_key(), new_key()
    sealed_old = PayloadCipher(old).seal(PAYLOAD)
    both = PayloadCipher(f"{new},{old}")
    assert both.open(sealed_old) == PAYLOAD
    rotated = both.rotate(sealed_old)
    assert PayloadCipher(new).open(rotated) == PAYLOAD
    with pytest.raises(PayloadError):
        PayloadCipher(old).open(rotated)
    assert both.rotate(PayloadCipher("").seal(PAYLOAD)).startswith("fernet:")


def test_encrypted_payload_needs_a_key() -> None:
    sealed = PayloadCipher(new_key()).seal(PAYLOAD)
    with pytest.raises(PayloadError, match="not set"):
        PayloadCipher("").open(sealed)
    with pytest.raises(PayloadError, match="no configured key"):
        PayloadCipher(new_key()).open(sealed)
