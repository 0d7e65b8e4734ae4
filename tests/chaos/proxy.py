"""A TCP proxy on loopback that the chaos tests put between a client and a real server (Redis,
PostgreSQL, SMTP) to make the network misbehave: slow, silent, or cut.

Modes, switched at any time from the test's thread:
- `restore()`: bytes flow as they arrive.
- `delay(seconds)`: every chunk waits that long in each direction (a slow link or server).
- `pause()`: a blackhole. Connections stay open and new ones are accepted, but no byte moves
  until the mode changes; what was held is then delivered (packets lost to a partition that
  TCP retransmits once it heals).
- `cut()`: every open connection is aborted, and new ones are closed as soon as they arrive
  (the server is gone, or a firewall resets everything).

It runs an asyncio loop in a daemon thread: no new service, no privileges needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from service.localredis import free_port

CHUNK = 65536  # bytes read per step; Redis and PostgreSQL replies fit many times over
RESTORE, DELAY, PAUSE, CUT = "restore", "delay", "pause", "cut"


@dataclass(eq=False)  # identity: links live in a set
class _Link:
    """One client connection and its upstream twin, with the two pumps between them."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()

    def abort(self) -> None:
        for pump in self.pumps:
            pump.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    """Listens on a free loopback port and forwards to `upstream_port`, faults permitting."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.mode = RESTORE
        self.accepted = 0  # connections accepted since start
        self.aborted = 0  # connections we cut
        self._delay = 0.0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._serve())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def restore(self) -> None:
        self._set(RESTORE, 0.0)

    def delay(self, seconds: float) -> None:
        self._set(DELAY, seconds)

    def pause(self) -> None:
        self._set(PAUSE, 0.0)

    def cut(self) -> None:
        self._set(CUT, 0.0)

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # Everything below runs on the proxy's own loop.

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    def _set(self, mode: str, seconds: float) -> None:
        async def switch() -> None:
            assert self._flowing is not None
            self.mode, self._delay = mode, seconds
            if mode == PAUSE:
                self._flowing.clear()
            else:
                self._flowing.set()
            if mode == CUT:
                for link in list(self._links):
                    self.aborted += 1
                    link.abort()
                self._links.clear()

        self._call(switch())

    async def _serve(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _shutdown(self) -> None:
        assert self._flowing is not None
        if self._server is not None:
            self._server.close()
        self._closing = True
        self._flowing.set()  # let held handlers see that we are closing
        for link in list(self._links):
            link.abort()
        self._links.clear()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == CUT or self._closing:
            self.aborted += 1
            writer.transport.abort()
            return
        handler = asyncio.current_task()
        assert handler is not None and self._flowing is not None
        self._handlers.add(handler)
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a paused proxy reaches nobody upstream
            if link in self._links and not self._closing:
                await self._forward(reader, link)
        finally:
            if link in self._links:  # ended by the peers: flush what is buffered, then close
                self._links.discard(link)
                link.close()
            else:  # cut, or the proxy is closing
                link.abort()
            self._handlers.discard(handler)

    async def _forward(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            up_reader, link.upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            return
        if link not in self._links:  # cut while we were connecting upstream
            return
        link.pumps = [
            asyncio.create_task(self._pump(reader, link.upstream)),
            asyncio.create_task(self._pump(up_reader, link.client)),
        ]
        await asyncio.gather(*link.pumps, return_exceptions=True)

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await source.read(CHUNK)
                await self._flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                    await self._flowing.wait()
                if not data:
                    with contextlib.suppress(OSError, RuntimeError):
                        target.write_eof()
                    return
                target.write(data)
                await target.drain()
        except (OSError, RuntimeError):
            target.transport.abort()
