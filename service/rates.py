"""Rate strings such as "10/minute": parsed in one place, with no dependencies, so settings can
validate INTAKE_RATE_LIMIT in every process (workers included) without loading the web stack."""

from __future__ import annotations

import re
from dataclasses import dataclass

DISABLED = frozenset({"", "0", "off", "none", "unlimited"})  # values that turn limiting off

_UNITS = {
    "s": 1,
    "second": 1,
    "m": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(
    r"^\s*(\d{1,9})\s*/\s*(\d{0,6})\s*(s|second|m|minute|h|hour|d|day)s?\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class Rate:
    limit: int
    window_seconds: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_seconds}s"


def parse_rate(text: str) -> Rate | None:
    """'10/minute', '100/hour', '5/30s', '3/2h' -> Rate; '' or 'off' -> None (no limit)."""
    if text.strip().lower() in DISABLED:
        return None
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"{text!r}: use a count per unit, like 10/minute, 100/hour or 5/30s")
    count, multiple, unit = match.groups()
    window = int(multiple or 1) * _UNITS[unit.lower()]
    if int(count) < 1 or window < 1:
        raise ValueError(f"{text!r}: the count and the window must be positive")
    return Rate(int(count), window)
