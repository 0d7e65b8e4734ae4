"""A real SMTP server on loopback (aiosmtpd) whose replies a test can script.

Faults: 421 at connect, any code at MAIL, RCPT (per recipient) or after DATA, a connection
dropped after the final dot (the message was received, the client never hears 250), and a
server that hangs. Every message the server took in is kept, parsed, for the test to check.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from service.localredis import free_port


@dataclass
class Fault:
    stage: str  # connect | mail | rcpt | data | drop | hang (after DATA) | hang_mail
    code: int = 451
    times: int = 1  # how many times it fires; -1 for every time until cleared
    recipients: frozenset[str] = frozenset()  # rcpt faults: only these (empty: all)
    seconds: float = 30.0  # hang duration


@dataclass
class Received:
    sender: str
    recipients: list[str]
    raw: bytes
    dropped: bool = False  # the connection was cut after the final dot

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, stage: str, recipient: str = "") -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.stage != stage or fault.times == 0:
                    continue
                if fault.recipients and recipient.lower() not in fault.recipients:
                    continue
                if fault.times > 0:
                    fault.times -= 1
                return fault
        return None


class _Handler:
    def __init__(self, state: _State, pipelining: bool) -> None:
        self.state = state
        self.pipelining = pipelining

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise PIPELINING, as real servers do: aiosmtpd reads commands line by line, so a
        client's pipelined MAIL, RCPT and DATA are answered in order, each at its own stage."""
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        stall = self.state.take("hang_mail")
        if stall:
            await asyncio.sleep(stall.seconds)
        fault = self.state.take("mail")
        if fault:
            return f"{fault.code} Sender refused by test"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self.state.take("rcpt", address)
        if fault:
            return f"{fault.code} Recipient {'deferred' if fault.code < 500 else 'refused'}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        fault = self.state.take("data")
        if fault:
            return f"{fault.code} Message {'deferred' if fault.code < 500 else 'refused'}"
        hang = self.state.take("hang")
        if hang:
            await asyncio.sleep(hang.seconds)
        drop = self.state.take("drop")
        record = Received(str(envelope.mail_from), list(envelope.rcpt_tos), raw, bool(drop))
        with self.state.lock:
            self.state.received.append(record)
        if drop and server.transport is not None:
            server.transport.abort()
            return "250 OK"
        return "250 OK"


class _FaultySMTP(SMTP):
    def __init__(self, handler: Any, state: _State, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._state = state

    async def _handle_client(self) -> None:
        with self._state.lock:
            self._state.connections += 1
        fault = self._state.take("connect")
        if fault:
            await self.push(f"{fault.code} Service not available, try later")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, state: _State, port: int, pipelining: bool) -> None:
        super().__init__(_Handler(state, pipelining), hostname="127.0.0.1", port=port)
        self._state = state

    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, self._state, **self.SMTP_kwargs)


class SmtpSink:
    """Start it, point INTAKE_SMTP_PORT at `port`, script faults, read what arrived."""

    def __init__(self, port: int | None = None, *, pipelining: bool = True) -> None:
        self.port = port or free_port()
        self.pipelining = pipelining  # offer PIPELINING (as nearly every relay does), or not
        self._state = _State()
        self._controller = _Controller(self._state, self.port, pipelining)
        self._stopped = False

    def start(self) -> SmtpSink:
        """Start, or start again after stop() on the same port (the relay is back)."""
        if self._stopped:
            self._controller = _Controller(self._state, self.port, self.pipelining)
        self._controller.start()
        self._stopped = False
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused, as when the relay is down."""
        if not self._stopped:
            self._controller.stop()
            self._stopped = True

    def fail(
        self,
        stage: str,
        code: int = 451,
        times: int = 1,
        recipients: tuple[str, ...] = (),
        seconds: float = 30.0,
    ) -> None:
        with self._state.lock:
            self._state.faults.append(
                Fault(stage, code, times, frozenset(r.lower() for r in recipients), seconds)
            )

    def armed(self, stage: str) -> int:
        """How many more times faults of this stage will fire (-1: without end)."""
        with self._state.lock:
            counts = [f.times for f in self._state.faults if f.stage == stage]
        return -1 if -1 in counts else sum(counts)

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()

    @property
    def received(self) -> list[Received]:
        with self._state.lock:
            return list(self._state.received)

    @property
    def connections(self) -> int:
        return self._state.connections

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address.lower() in (a.lower() for a in r.recipients)]

    def wait_for(
        self, count: int, timeout: float = 30.0, address: str | None = None
    ) -> list[Received]:
        """Wait until at least `count` messages (to `address`, when given) have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.to(address) if address else self.received
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(found)}")
            time.sleep(0.05)
