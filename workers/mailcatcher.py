"""A local SMTP server that keeps every message as an .eml file: email without an account.

For `make run` / `intake dev` only: it accepts everything on loopback and delivers nowhere.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EmlWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        match = re.search(rb"^Message-ID:\s*<([^>]+)>", content, re.MULTILINE | re.IGNORECASE)
        message_id = match.group(1).decode("ascii", "replace") if match else "no-id"
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{_SAFE.sub('_', message_id)[:80]}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(content)
        temporary.replace(self.directory / name)
        return "250 Message accepted for delivery"


def start_mailcatcher(directory: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    controller = Controller(EmlWriter(directory), hostname=host, port=port)
    controller.start()
    return controller
