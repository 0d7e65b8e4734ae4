"""SMTP transport: one reused connection per worker process, each reply classified.

Each step of the dialogue is sent by hand (MAIL, RCPT per recipient, DATA, then the message)
so that we know exactly how far a message got: a failure before the message is sent is safe to
retry at once on a fresh connection; a connection lost after the final dot may have delivered,
and is retried later with the same Message-ID (the one duplicate window this design cannot
close). When the server offers PIPELINING, MAIL, the RCPTs and DATA go out in one write and
their replies are read in order; the message itself still waits for the 354.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

from service.db import utcnow
from service.settings import Settings
from workers.retry import (
    DeliveryError,
    PermanentFailure,
    RelayUnreachable,
    TemporaryFailure,
    smtp_failure,
)

IDLE_SECONDS = 30.0  # a connection idle longer than this is closed rather than trusted
MAX_MESSAGES_PER_CONNECTION = 200  # servers throttle long sessions; start afresh now and then

_CONNECTION_ERRORS = (OSError, smtplib.SMTPException, ssl.SSLError)


@dataclass
class SendReport:
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)  # permanent, per recipient
    deferred: dict[str, tuple[int, str]] = field(default_factory=dict)  # temporary, per recipient


_ADDRESS = re.compile(r"[^\s<>\"']+@[^\s<>\"']+")


def _text(reply: bytes | str) -> str:
    """An SMTP reply, fit for logs and the database: servers echo the recipient's address
    ("550 5.1.1 <someone@example.com> unknown"), which may be the person's."""
    raw = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return _ADDRESS.sub("<address>", " ".join(raw.split()))[:160]


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connection: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._sent_on_connection = 0
        # When the open connection was made: an email accepted on it shows that the relay took
        # a new session at that time (workers.recovery).
        self.connected_at: datetime | None = None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        self.connected_at = None
        if connection is not None:
            try:
                connection.quit()
            except _CONNECTION_ERRORS:
                connection.close()

    def abort(self) -> None:
        """Drop the connection without QUIT: a server that stopped answering would not answer
        QUIT either, and waiting for it would outlast the task's hard time limit."""
        self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self.connected_at = None
        if connection is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                connection.close()

    def _tls_context(self) -> ssl.SSLContext:
        """Certificates are always verified; a private relay's CA can be named in settings."""
        return ssl.create_default_context(cafile=self._settings.smtp_ca_file or None)

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        try:
            connection: smtplib.SMTP
            if s.smtp_security == "tls":
                connection = smtplib.SMTP_SSL(
                    s.smtp_host,
                    s.smtp_port,
                    timeout=s.smtp_timeout_seconds,
                    context=self._tls_context(),
                )
            else:
                connection = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
            connection.ehlo()
            if s.smtp_security == "starttls":
                connection.starttls(context=self._tls_context())
                connection.ehlo()
            if s.smtp_username:
                connection.login(s.smtp_username, s.smtp_password.reveal())
        # A reply (a 421 greeting, a refused login) keeps the retry's backoff: relays throttle
        # with them. No reply at all (refused, reset, timed out, TLS failed) is RelayUnreachable.
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(f"SMTP login refused: {exc.smtp_code}", exc.smtp_code) from exc
        except smtplib.SMTPConnectError as exc:
            raise TemporaryFailure(
                f"SMTP refused the connection: {exc.smtp_code}", exc.smtp_code
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise TemporaryFailure(f"SMTP greeting {exc.smtp_code}", exc.smtp_code) from exc
        except TimeoutError as exc:
            raise RelayUnreachable("SMTP connect timed out") from exc
        except _CONNECTION_ERRORS as exc:
            raise RelayUnreachable(f"SMTP connection failed: {type(exc).__name__}") from exc
        self._sent_on_connection = 0
        self.connected_at = utcnow()
        return connection

    def _fresh_enough(self) -> bool:
        return (
            self._connection is not None
            and time.monotonic() - self._last_used < IDLE_SECONDS
            and self._sent_on_connection < MAX_MESSAGES_PER_CONNECTION
        )

    def send(self, message: EmailMessage | bytes, sender: str, recipients: list[str]) -> SendReport:
        """Send to recipients; report per-recipient outcomes, or raise when nothing went out."""
        if not self._fresh_enough():
            self.close()
        reused = self._connection is not None
        if self._connection is None:
            self._connection = self._connect()
        try:
            return self._transaction(self._connection, message, sender, recipients)
        except _StaleConnection:
            # The server had dropped our idle connection before MAIL: nothing was sent.
            self._drop()
            if not reused:
                raise RelayUnreachable("SMTP connection closed before MAIL") from None
            self._connection = self._connect()
            try:
                return self._transaction(self._connection, message, sender, recipients)
            except _StaleConnection:
                self._drop()
                raise RelayUnreachable("SMTP connection closed before MAIL") from None
        finally:
            self._last_used = time.monotonic()

    def _transaction(
        self,
        connection: smtplib.SMTP,
        message: EmailMessage | bytes,
        sender: str,
        recipients: list[str],
    ) -> SendReport:
        options: list[str] = []
        if not all(address.isascii() for address in [sender, *recipients]):
            if not connection.has_extn("smtputf8"):
                raise PermanentFailure("the address needs SMTPUTF8, which the server lacks")
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        if connection.has_extn("pipelining"):
            report = self._pipelined_envelope(connection, sender, recipients, options)
        else:
            report = self._envelope(connection, sender, recipients, options)
        data = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP_POLICY)
        try:
            connection.send(_data_block(data))
            code, reply = connection.getreply()
        except TimeoutError as exc:
            self._drop()
            raise TemporaryFailure("SMTP timed out during DATA; may have been delivered") from exc
        except _CONNECTION_ERRORS as exc:
            self._drop()
            raise TemporaryFailure(
                f"SMTP connection lost during DATA ({type(exc).__name__}); may have been delivered"
            ) from exc
        if code != 250:
            self._reset(connection)
            raise smtp_failure(code, f"message refused after DATA: {code} {_text(reply)}")
        self._sent_on_connection += 1
        return report

    def _envelope(
        self, connection: smtplib.SMTP, sender: str, recipients: list[str], options: list[str]
    ) -> SendReport:
        """MAIL, RCPT per recipient and DATA, one reply at a time, up to the server's 354."""
        report = SendReport()
        try:
            code, reply = connection.mail(sender, options)
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise TemporaryFailure(f"SMTP MAIL failed: {exc.smtp_code}", exc.smtp_code) from exc
        except _CONNECTION_ERRORS as exc:
            # Closed, reset or timed out before MAIL was answered: nothing was sent.
            raise _StaleConnection from exc
        if code != 250:
            self._reset(connection)
            raise smtp_failure(code, f"MAIL FROM refused: {code} {_text(reply)}")
        try:
            for recipient in recipients:
                _classify(report, recipient, *connection.rcpt(recipient))
        except _CONNECTION_ERRORS as exc:
            self._drop()
            raise TemporaryFailure(f"SMTP RCPT failed: {type(exc).__name__}") from exc
        if not report.accepted:
            self._reset(connection)
            raise _no_recipient_failure(report)
        try:
            code, reply = connection.docmd("DATA")
        except _CONNECTION_ERRORS as exc:
            self._drop()
            raise TemporaryFailure(f"SMTP DATA failed: {type(exc).__name__}") from exc
        if code != 354:
            self._reset(connection)
            raise smtp_failure(code, f"DATA refused: {code}")
        return report

    def _pipelined_envelope(
        self, connection: smtplib.SMTP, sender: str, recipients: list[str], options: list[str]
    ) -> SendReport:
        """The same up to the 354, but MAIL, every RCPT and DATA go out in one write and their
        replies are read in order (RFC 2920, offered by nearly every relay): one round trip
        instead of two plus one per recipient. Nothing of the message is sent before the 354,
        so every failure up to here is as safe to retry as without pipelining."""
        extra = "".join(f" {option}" for option in options)
        lines = [f"MAIL FROM:{smtplib.quoteaddr(sender)}{extra}"]
        lines += [f"RCPT TO:{smtplib.quoteaddr(recipient)}" for recipient in recipients]
        lines.append("DATA")
        if any("\r" in line or "\n" in line for line in lines):
            raise PermanentFailure("an address contains a line break")
        commands = "".join(f"{line}\r\n" for line in lines)
        try:
            connection.send(commands.encode("utf-8" if options else "ascii"))
            mail_code, mail_reply = connection.getreply()
        except _CONNECTION_ERRORS as exc:
            # Closed, reset or timed out before MAIL was answered: nothing was sent.
            raise _StaleConnection from exc
        report = SendReport()
        try:
            for recipient in recipients:
                _classify(report, recipient, *connection.getreply())
            code = connection.getreply()[0]
        except _CONNECTION_ERRORS as exc:
            self._drop()
            if mail_code != 250:
                raise smtp_failure(mail_code, f"MAIL FROM refused: {mail_code}") from exc
            raise TemporaryFailure(f"SMTP RCPT failed: {type(exc).__name__}") from exc
        if code == 354 and (mail_code != 250 or not report.accepted):
            # A server that should have refused DATA took it: end the empty message at once.
            try:
                connection.send(b".\r\n")
                connection.getreply()
            except _CONNECTION_ERRORS:
                self._drop()
        if mail_code != 250:
            self._reset(connection)
            raise smtp_failure(mail_code, f"MAIL FROM refused: {mail_code} {_text(mail_reply)}")
        if not report.accepted:
            self._reset(connection)
            raise _no_recipient_failure(report)
        if code != 354:
            self._reset(connection)
            raise smtp_failure(code, f"DATA refused: {code}")
        return report

    def _reset(self, connection: smtplib.SMTP) -> None:
        try:
            connection.rset()
        except _CONNECTION_ERRORS:
            self._drop()


def _classify(report: SendReport, recipient: str, code: int, reply: bytes) -> None:
    if code in (250, 251):
        report.accepted.append(recipient)
    elif 400 <= code < 500:
        report.deferred[recipient] = (code, _text(reply))
    else:
        report.refused[recipient] = (code, _text(reply))


_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def _data_block(data: bytes) -> bytes:
    """The message as sent after the 354: dot-stuffed and ended by a lone dot (as smtplib)."""
    stuffed = _LEADING_DOT.sub(b"..", data) if data.startswith(b".") or b"\n." in data else data
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


class _StaleConnection(Exception):
    """The reused connection was closed by the server before anything was sent."""


def _no_recipient_failure(report: SendReport) -> DeliveryError:
    failure: DeliveryError
    if report.deferred:
        code, reply = next(iter(report.deferred.values()))
        failure = TemporaryFailure(f"every recipient deferred: {code} {reply}", code)
    else:
        code, reply = next(iter(report.refused.values()))
        failure = PermanentFailure(f"every recipient refused: {code} {reply}", code)
    failure.refused = list(report.refused)
    return failure
