"""The SMTP transport against real aiosmtpd servers: STARTTLS, implicit TLS and authentication
with a certificate made here, connection reuse, and classification of every kind of reply."""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.localredis import free_port
from service.settings import Secret, Settings
from tests.support.smtp import SmtpSink
from workers.retry import PermanentFailure, RelayUnreachable, TemporaryFailure
from workers.smtp import SmtpTransport

SENDER = "care@test.example"


def message(to: str = "a@test.example") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = "Hello"
    msg["Message-ID"] = "<fixed@test.example>"
    msg.set_content("body")
    return msg


@pytest.fixture(params=["pipelining", "one command at a time"])
def sink(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    """Every test runs against a server that offers PIPELINING (the envelope goes out in one
    write) and one that does not."""
    server = SmtpSink(pipelining=request.param == "pipelining").start()
    yield server
    server.stop()


def transport_for(port: int, **overrides: object) -> SmtpTransport:
    return SmtpTransport(
        Settings(smtp_port=port, smtp_timeout_seconds=2.0).with_overrides(**overrides)
    )


def test_reuses_one_connection(sink: SmtpSink) -> None:
    before = sink.connections  # the controller's own readiness probe counts as one
    transport = transport_for(sink.port)
    for _ in range(5):
        report = transport.send(message(), SENDER, ["a@test.example"])
        assert report.accepted == ["a@test.example"]
    transport.close()
    assert len(sink.received) == 5 and sink.connections - before == 1


def test_pipelining_sends_the_envelope_in_one_write(
    sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    send = smtplib.SMTP.send

    def spy(self: smtplib.SMTP, data: str | bytes) -> None:
        writes.append(data if isinstance(data, bytes) else data.encode())
        send(self, data)

    transport = transport_for(sink.port)
    transport.send(message(), SENDER, ["a@test.example"])  # connect (EHLO) first
    monkeypatch.setattr(smtplib.SMTP, "send", spy)
    report = transport.send(message(), SENDER, ["a@test.example", "b@test.example"])
    transport.close()
    assert report.accepted == ["a@test.example", "b@test.example"]
    assert sink.received[-1].recipients == ["a@test.example", "b@test.example"]
    commands = [w for w in writes if not w.lower().startswith(b"quit")]
    if sink.pipelining:
        assert commands[0] == (
            b"MAIL FROM:<care@test.example>\r\nRCPT TO:<a@test.example>\r\n"
            b"RCPT TO:<b@test.example>\r\nDATA\r\n"
        )
        assert len(commands) == 2  # the envelope, then the message
    else:
        assert len(commands) == 5  # MAIL, RCPT, RCPT, DATA, the message


def test_a_message_line_starting_with_a_dot_arrives_intact(sink: SmtpSink) -> None:
    raw = b"Message-ID: <dots@test.example>\r\nSubject: dots\r\n\r\n.first\r\n..second\r\n."
    transport = transport_for(sink.port)
    assert transport.send(raw, SENDER, ["a@test.example"]).accepted
    transport.close()
    assert sink.received[0].raw.replace(b"\r\n", b"\n").endswith(b"\n.first\n..second\n.\n")


@pytest.mark.parametrize(
    ("stage", "code", "error"),
    [
        ("connect", 421, TemporaryFailure),
        ("mail", 451, TemporaryFailure),
        ("mail", 550, PermanentFailure),
        ("rcpt", 452, TemporaryFailure),
        ("rcpt", 550, PermanentFailure),
        ("data", 451, TemporaryFailure),
        ("data", 554, PermanentFailure),
    ],
)
def test_replies_are_classified(sink: SmtpSink, stage: str, code: int, error: type) -> None:
    sink.fail(stage, code)
    transport = transport_for(sink.port)
    with pytest.raises(error) as raised:
        transport.send(message(), SENDER, ["a@test.example"])
    assert raised.value.code == code
    # The next message goes through on a healthy (possibly fresh) connection.
    assert transport.send(message(), SENDER, ["a@test.example"]).accepted
    transport.close()


def test_partial_recipients(sink: SmtpSink) -> None:
    sink.fail("rcpt", 550, recipients=("gone@test.example",))
    sink.fail("rcpt", 452, recipients=("full@test.example",))
    report = transport_for(sink.port).send(
        message(), SENDER, ["ok@test.example", "gone@test.example", "full@test.example"]
    )
    assert report.accepted == ["ok@test.example"]
    assert list(report.refused) == ["gone@test.example"]
    assert list(report.deferred) == ["full@test.example"]
    assert sink.received[0].recipients == ["ok@test.example"]


def test_drop_after_final_dot_is_temporary_and_may_have_delivered(sink: SmtpSink) -> None:
    sink.fail("drop")
    with pytest.raises(TemporaryFailure, match="may have been delivered"):
        transport_for(sink.port).send(message(), SENDER, ["a@test.example"])
    assert len(sink.received) == 1 and sink.received[0].dropped


def test_hanging_server_times_out(sink: SmtpSink) -> None:
    sink.fail("hang", seconds=5)
    with pytest.raises(TemporaryFailure):
        transport_for(sink.port, smtp_timeout_seconds=0.5).send(
            message(), SENDER, ["a@test.example"]
        )


def test_nothing_listening_is_temporary() -> None:
    with pytest.raises(RelayUnreachable, match="connection failed"):
        transport_for(free_port()).send(message(), SENDER, ["a@test.example"])


def test_the_transport_knows_when_its_connection_was_opened(sink: SmtpSink) -> None:
    """An email accepted on a connection shows the relay took a session at connected_at (what
    workers.recovery releases waiting email by)."""
    transport = transport_for(sink.port)
    assert transport.connected_at is None
    transport.send(message(), SENDER, ["a@test.example"])
    opened = transport.connected_at
    assert opened is not None
    transport.send(message(), SENDER, ["a@test.example"])
    assert transport.connected_at == opened  # the same connection, reused
    transport.close()
    transport.send(message(), SENDER, ["a@test.example"])
    assert transport.connected_at is not None and transport.connected_at > opened
    transport.close()


def test_server_closing_an_idle_connection_is_retried_at_once(sink: SmtpSink) -> None:
    before = sink.connections
    transport = transport_for(sink.port)
    transport.send(message(), SENDER, ["a@test.example"])
    assert transport._connection is not None
    # The connection dies under us, as when a server drops an idle client.
    transport._connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    assert transport.send(message(), SENDER, ["a@test.example"]).accepted
    assert sink.connections - before == 2


class LaxServer(socketserver.ThreadingTCPServer):
    """A server that answers 354 to DATA even when it refused MAIL or every RCPT (aiosmtpd
    will not): what some relays do under pipelining. It records each message body it read."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mail_code: int, rcpt_code: int) -> None:
        self.mail_code, self.rcpt_code = mail_code, rcpt_code
        self.bodies: list[bytes] = []
        self.commands: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _LaxHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _LaxHandler(socketserver.StreamRequestHandler):
    server: LaxServer

    def handle(self) -> None:
        self.wfile.write(b"220 lax ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line.split(b":")[0].split(b" ")[0].upper().strip()
            self.server.commands.append(verb)
            if verb == b"EHLO":
                self.wfile.write(b"250-lax\r\n250 PIPELINING\r\n")
            elif verb == b"MAIL":
                self.wfile.write(f"{self.server.mail_code} mail\r\n".encode())
            elif verb == b"RCPT":
                self.wfile.write(f"{self.server.rcpt_code} rcpt\r\n".encode())
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk
                self.server.bodies.append(body)
                self.wfile.write(b"554 no valid recipients\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.mark.parametrize(
    ("mail_code", "rcpt_code", "error", "code"),
    [
        (250, 550, PermanentFailure, 550),
        (250, 451, TemporaryFailure, 451),
        (451, 250, TemporaryFailure, 451),
    ],
)
def test_a_server_that_takes_data_after_refusing_the_envelope_gets_no_message(
    mail_code: int, rcpt_code: int, error: type, code: int
) -> None:
    """Pipelined, MAIL, RCPT and DATA are sent before any reply is read. A server that refused
    MAIL or every RCPT but still answered 354 is sent an empty message at once, never ours,
    and the refusal is reported as it would be without pipelining."""
    server = LaxServer(mail_code, rcpt_code)
    transport = transport_for(server.port)
    try:
        for _ in range(2):  # and the connection is still usable afterwards
            with pytest.raises(error) as raised:
                transport.send(message(), SENDER, ["a@test.example"])
            assert raised.value.code == code
    finally:
        transport.close()
        server.shutdown()
        server.server_close()
    assert server.bodies == [b"", b""]
    assert server.commands.count(b"EHLO") == 1


# --- TLS and authentication, with a certificate authority made for the test ---------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Collector:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(envelope.original_content)  # type: ignore[attr-defined]
        return "250 OK"


def authenticator(
    server: object, session: object, envelope: object, mechanism: str, auth_data: object
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"intake"
        and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_and_authentication(tmp_path: Path, mode: str) -> None:
    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    collector = Collector()
    port = free_port()
    # aiosmtpd cannot tell that an implicit-TLS session is encrypted, so it only offers AUTH
    # there when not told to require TLS; the session is TLS from the first byte either way.
    options: dict = {"authenticator": authenticator, "auth_require_tls": mode == "starttls"}
    if mode == "starttls":
        controller = Controller(
            collector,
            hostname="localhost",
            port=port,
            tls_context=context,
            require_starttls=True,
            **options,
        )
    else:
        controller = Controller(
            collector, hostname="localhost", port=port, ssl_context=context, **options
        )
    controller.start()
    try:
        good = transport_for(
            port,
            smtp_host="localhost",
            smtp_security=mode,
            smtp_ca_file=str(cert),
            smtp_username="intake",
            smtp_password=Secret("s3cret"),
        )
        assert good.send(message(), SENDER, ["a@test.example"]).accepted
        good.close()
        wrong = transport_for(
            port,
            smtp_host="localhost",
            smtp_security=mode,
            smtp_ca_file=str(cert),
            smtp_username="intake",
            smtp_password=Secret("nope"),
        )
        with pytest.raises(TemporaryFailure, match="login refused"):
            wrong.send(message(), SENDER, ["a@test.example"])
        untrusted = transport_for(port, smtp_host="localhost", smtp_security=mode)
        with pytest.raises(TemporaryFailure):  # our certificate is not in the system store
            untrusted.send(message(), SENDER, ["a@test.example"])
    finally:
        controller.stop()
    assert len(collector.messages) == 1
