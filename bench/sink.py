"""A fast SMTP sink for the benchmarks: accepts everything, writes one line per message.

aiosmtpd (the test suite's sink) spends more CPU per message than the workers we measure, and on
a two-core machine the sink's CPU is taken from them. This sink speaks just enough SMTP for
smtplib (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and logs `time<TAB>Message-ID<TAB>first rcpt`
with the wall-clock time it answered 250 to the final dot, which is when a message counts as
accepted. `--delay` holds that answer back (a slow server); a stopped sink is a down server.

Run as `python -m bench.sink --port P --log FILE [--delay SECONDS]`; SinkProcess drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from service.localredis import stop_process

GREETING = b"220 bench-sink ESMTP\r\n"
EHLO_REPLY = b"250-bench-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n"
START_TIMEOUT = 10.0  # seconds to wait for the sink to listen


class _Session:
    def __init__(self, log: IO[str], delay: float) -> None:
        self.log = log
        self.delay = delay

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rcpt = ""
        writer.write(GREETING)
        # CancelledError: the sink is stopping with this client connected (a slow sink).
        with contextlib.suppress(
            ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError
        ):
            while True:
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(EHLO_REPLY if verb == b"EHLO" else b"250 bench-sink\r\n")
                elif verb == b"MAIL":
                    rcpt = ""
                    writer.write(b"250 OK\r\n")
                elif verb == b"RCPT":
                    if not rcpt:
                        rcpt = line[8:].strip().decode("ascii", "replace").strip("<>")
                    writer.write(b"250 OK\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    message_id = await self._read_message(reader)
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    self.log.write(f"{time.time():.6f}\t{message_id}\t{rcpt}\n")
                    self.log.flush()
                    writer.write(b"250 OK queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 Bye\r\n")
                    await writer.drain()
                    break
                else:  # RSET, NOOP and anything else
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        writer.close()

    @staticmethod
    async def _read_message(reader: asyncio.StreamReader) -> str:
        message_id = ""
        in_headers = True
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("connection closed during DATA")
            if line == b".\r\n":
                return message_id
            if in_headers:
                if line in (b"\r\n", b"\n"):
                    in_headers = False
                elif line[:11].lower() == b"message-id:":
                    message_id = line[11:].strip().decode("ascii", "replace")


async def _serve(port: int, log_path: Path, delay: float) -> None:
    with log_path.open("a", encoding="utf-8") as log:
        session = _Session(log, delay)
        server = await asyncio.start_server(session.serve, "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with server:
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each 250")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop comes with uvicorn[standard]; the plain loop works too
        pass
    asyncio.run(_serve(args.port, args.log, args.delay))


@dataclass(frozen=True)
class Accepted:
    at: float  # wall-clock time of the 250 after DATA
    message_id: str
    recipient: str


class SinkProcess:
    """The sink as a child process: start (optionally slow), stop (down), read what arrived."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, delay: float = 0.0) -> SinkProcess:
        self.stop()
        self.log_path.touch()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sink",
                "--port",
                str(self.port),
                "--log",
                str(self.log_path),
                "--delay",
                str(delay),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SMTP sink did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def accepted(self) -> list[Accepted]:
        found = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                found.append(Accepted(float(parts[0]), parts[1], parts[2]))
        return found

    def count(self) -> int:
        with self.log_path.open("rb") as log:
            return sum(1 for _ in log)

    def duplicates(self) -> int:
        """Messages accepted more than once under the same Message-ID."""
        counts = Counter(a.message_id for a in self.accepted() if a.message_id)
        return sum(n - 1 for n in counts.values() if n > 1)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    main()
