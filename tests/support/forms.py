"""Sample submissions."""

from __future__ import annotations

from typing import Any


def person(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Jordan Rivera",
        "email": "jordan.rivera@example.com",
        "phone": "(415) 555-2671",
        "for_whom": "loved_one",
        "preferred_contact": "phone",
        "best_time": "Evenings after 6",
        "voicemail_ok": "yes",
        "state": "CA",
        "insurance": "Blue Shield",
        "program": "detox",
        "message": "My brother needs help and we do not know where to start.",
        "consent": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
