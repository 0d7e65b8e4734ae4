"""Load: wrk (C, closed loop) for maximum throughput, and a paced open-loop client for rates.

Plain wrk has no rate option, so steady rates come from `paced()`: an asyncio client that sends
request i at start + i/rate whatever happened to earlier ones (open loop: a slow answer never
delays the next request, so queueing shows up in the latencies instead of hiding). Latency is
measured from the moment a request was due, not from when it went out. It speaks HTTP/1.1 with
keep-alive over raw streams, opening another connection whenever none is idle.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_REPORT = re.compile(r"^BENCH (\{.*\})$", re.MULTILINE)
_ID = re.compile(rb'"id"\s*:\s*"([0-9a-f]+)"')
MAX_CONNECTIONS = 512  # paced client: beyond this many requests in flight, requests wait
IDLE_SECONDS = 2.0  # paced client: a keep-alive connection idle this long is not reused


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # non-2xx/3xx answers, socket errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.errors) / self.seconds


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    url: str,
    script: str,
    *,
    seconds: float,
    connections: int = 64,
    threads: int = 2,
    script_args: Sequence[str] = (),
) -> WrkResult:
    """Run wrk with one of bench/lua's scripts; returns the parsed report line."""
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    if script_args:
        command += ["--", *script_args]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT, timeout=seconds + 60
    )
    found = _REPORT.search(done.stdout)
    if found is None:
        raise RuntimeError(f"wrk printed no report:\n{done.stdout}\n{done.stderr}")
    r = json.loads(found.group(1))
    errors = (
        r["connect_errors"]
        + r["read_errors"]
        + r["write_errors"]
        + r["status_errors"]
        + r["timeouts"]
    )
    return WrkResult(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        errors=errors,
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
    )


@dataclass(frozen=True)
class Sample:
    due: float  # wall-clock time the request was due (comparable with the SMTP sink's times)
    latency: float  # seconds from due to the whole answer read
    status: int  # 0: no answer (connection refused, reset, timeout)
    submission_id: str  # from a JSON answer; "" otherwise
    tag: str = ""  # what the body factory said about this request (e.g. "urgent")


@dataclass(frozen=True)
class Request:
    body: bytes
    content_type: str = "application/json"
    tag: str = ""


BodyFactory = Callable[[int], Request]


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
        elif name == b"transfer-encoding":
            keep_alive = False  # not expected from these apps; read to the end instead
            return status, await reader.read(), False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep_alive


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Pool:
    """Keep-alive connections; one idle past IDLE_SECONDS is closed rather than reused, since
    uvicorn closes idle connections after 5 s and a POST on a closed one would count as an error
    of the server's."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[tuple[float, Connection]] = []  # (last used, connection)
        self.open = 0
        self.available = asyncio.Condition()

    async def take(self) -> Connection:
        async with self.available:
            while True:
                now = asyncio.get_running_loop().time()
                while self.idle:
                    used, connection = self.idle.pop()
                    if now - used < IDLE_SECONDS and not connection[0].at_eof():
                        return connection
                    connection[1].close()
                    self.open -= 1
                if self.open < MAX_CONNECTIONS:
                    break
                await self.available.wait()
            self.open += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError:
            await self.discard()
            raise

    async def give(self, connection: Connection) -> None:
        async with self.available:
            self.idle.append((asyncio.get_running_loop().time(), connection))
            self.available.notify()

    async def discard(self) -> None:
        async with self.available:
            self.open -= 1
            self.available.notify()

    def close(self) -> None:
        for _, (_, writer) in self.idle:
            writer.close()
        self.idle.clear()


async def _paced(
    host: str,
    port: int,
    path: str,
    rate: float,
    seconds: float,
    make: BodyFactory,
    timeout: float,
) -> list[Sample]:
    loop = asyncio.get_running_loop()
    pool = _Pool(host, port)
    samples: list[Sample] = []
    start = loop.time() + 0.05
    wall_offset = time.time() - loop.time()
    count = int(rate * seconds)

    async def one(index: int, due: float) -> None:
        request = make(index)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
            f"Content-Type: {request.content_type}\r\nContent-Length: {len(request.body)}\r\n\r\n"
        ).encode()
        status, body, reusable = 0, b"", False
        connection = None
        try:
            connection = await pool.take()
            reader, writer = connection
            writer.write(head + request.body)
            status, body, reusable = await asyncio.wait_for(_read_answer(reader), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status = 0
        finished = loop.time()
        if connection is not None:
            if reusable:
                await pool.give(connection)
            else:
                connection[1].close()
                await pool.discard()
        found = _ID.search(body) if 200 <= status < 300 else None
        samples.append(
            Sample(
                due=due + wall_offset,
                latency=finished - due,
                status=status,
                submission_id=found.group(1).decode() if found else "",
                tag=request.tag,
            )
        )

    tasks = []
    for index in range(count):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    pool.close()
    return samples


def paced(
    url: str,
    rate: float,
    seconds: float,
    make: BodyFactory,
    *,
    timeout: float = 30.0,
) -> list[Sample]:
    """POST make(i) to url at `rate` per second for `seconds`; one Sample per request."""
    match = re.match(r"http://([^:/]+):(\d+)(/.*)$", url)
    if match is None:
        raise ValueError(f"paced() takes http://host:port/path, not {url!r}")
    host, port, path = match.group(1), int(match.group(2)), match.group(3)
    try:
        import uvloop

        runner: Callable[..., list[Sample]] = uvloop.run
    except ImportError:
        runner = asyncio.run
    # In a thread of its own: the caller's thread may already run an event loop (a test
    # session with Playwright's sync API does), and asyncio allows one loop per thread.
    result: list[list[Sample]] = []
    worker = threading.Thread(
        target=lambda: result.append(runner(_paced(host, port, path, rate, seconds, make, timeout)))
    )
    worker.start()
    worker.join()
    if not result:
        raise RuntimeError("the paced load generator failed; see the thread's traceback")
    return result[0]


_run_ids = itertools.count()


def submission_body(run: str, *, urgent: bool = False) -> BodyFactory:
    """A factory of unique JSON submissions (unique, so duplicate suppression never answers)."""
    prefix = f"{run}-{next(_run_ids)}"

    def make(index: int) -> Request:
        message = (
            "I am thinking about suicide and need help tonight."
            if urgent
            else "My brother needs help and we do not know where to start."
        )
        body = {
            "name": "Jordan Rivera",
            "email": f"bench-{prefix}-{index}@example.com",
            "phone": "(415) 555-2671",
            "for_whom": "loved_one",
            "preferred_contact": "phone",
            "best_time": "Evenings after 6",
            "voicemail_ok": True,
            "state": "CA",
            "program": "detox",
            "message": f"{message} {prefix}-{index}",
            "consent": True,
        }
        return Request(json.dumps(body).encode(), tag="urgent" if urgent else "")

    return make


def mixed_bodies(run: str, urgent_every: int) -> BodyFactory:
    """Fresh inquiries with every `urgent_every`-th one urgent."""
    plain, urgent = submission_body(run), submission_body(run, urgent=True)
    return lambda index: urgent(index) if index % urgent_every == 0 else plain(index)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]
