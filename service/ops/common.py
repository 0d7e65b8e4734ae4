"""What the operating functions share: their error, and masking of addresses in server replies."""

from __future__ import annotations

import re

BROKER_TIMEOUT_SECONDS = 2.0  # how long status and retry wait for the broker to answer
_ADDRESS = re.compile(r"[^\s<>()\[\]@,;:\"']+@[^\s<>()\[\]@,;:\"']+")


class OpsError(Exception):
    """An operation cannot go ahead; the message says why and what to do."""


def mask_addresses(text: str) -> str:
    """Replace email addresses (SMTP replies often quote them) with a placeholder."""
    return _ADDRESS.sub("<address>", text)
