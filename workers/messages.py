"""Build the email objects. Every header that carries outside data goes through the email
library's header API (Address objects, the policy's folding), so no input can add a header."""

from __future__ import annotations

import binascii
import secrets
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from html import escape

from service.text import defuse_encoded_words
from workers.rendering import RenderedEmail


def parse_mailbox(text: str) -> Address:
    """'Care Team <care@example.org>' -> Address; the address part must be plain."""
    display, address = parseaddr(text)
    if "@" not in address:
        raise ValueError(f"not an email address: {text!r}")
    local, _, domain = address.rpartition("@")
    return Address(display_name=display, username=local, domain=domain)


def email_bytes(
    rendered: RenderedEmail,
    *,
    sender: Address,
    to: list[str],
    message_id: str,
    date: datetime,
    reply_to: str = "",
    reply_to_name: str = "",
    auto_reply: bool = False,
    urgent: bool = False,
) -> bytes:
    """The message as SMTP bytes, in half the time EmailMessage parts take to flatten.

    The headers still go through the email library (Address objects, the policy's checks and
    folding), which is now most of the cost; only the two bodies, our own rendered templates,
    are framed as multipart/alternative by hand and quoted-printable encoded by binascii. The
    library's MIME parts (headers parsed and re-folded per part, a pure-Python encoder) made
    building and flattening a message about a quarter of a delivery's CPU.
    """
    boundary = f"=_{secrets.token_hex(16)}"  # "=" is always encoded in quoted-printable bodies
    head = EmailMessage(policy=SMTP_POLICY)
    _set_headers(head, sender, to, message_id, date, reply_to, reply_to_name, auto_reply, urgent)
    head["Subject"] = rendered.subject
    head["MIME-Version"] = "1.0"
    head["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    # The headers exactly as the generator writes them, without generating a (bodiless) body.
    out = [SMTP_POLICY.fold_binary(name, value) for name, value in head.raw_items()]
    out.append(b"\r\n")
    for subtype, content in (("plain", rendered.text), ("html", rendered.html)):
        text = content.replace("\r\n", "\n").replace("\r", "\n")
        text += "" if text.endswith("\n") else "\n"  # as the email library's set_content does
        out.append(
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
        )
        encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
        out.append(encoded.replace(b"\n", b"\r\n") + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


def _set_headers(
    message: EmailMessage,
    sender: Address,
    to: list[str],
    message_id: str,
    date: datetime,
    reply_to: str,
    reply_to_name: str,
    auto_reply: bool,
    urgent: bool,
) -> None:
    message["From"] = sender
    message["To"] = [_address(a) for a in to]
    if reply_to:
        message["Reply-To"] = _address(reply_to, reply_to_name)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if auto_reply:
        # RFC 3834: tells vacation responders and other robots not to answer this.
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
    if urgent:
        message["Importance"] = "high"
        message["X-Priority"] = "1"


def _address(address: str, display_name: str = "") -> Address:
    local, _, domain = address.rpartition("@")
    # Address() refuses CR/LF and other characters that could start a header; display names
    # are encoded by the policy, never pasted raw.
    # Encoded words are defused too: the email package would decode "=?utf-8?q?...?=" into
    # whatever it hides (CR/LF included) when it writes the header.
    name = defuse_encoded_words(" ".join(display_name.split()))[:120]
    return Address(display_name=name, username=local, domain=domain)


def fallback_notice(submission_id: str, reason: str, organization: str) -> RenderedEmail:
    """A bare notice for the fallback mailbox that needs no template to render."""
    text = (
        f"An inquiry reached {organization}'s website form, but the admissions notification "
        f"could not be delivered.\n\nReason: {reason}\nSubmission: {submission_id}\n\n"
        "Please check the admissions mailbox and run `intake failed` to see what failed.\n"
    )
    return RenderedEmail(
        subject=f"[FALLBACK] New inquiry {submission_id[-8:].upper()}: notification failed",
        text=text,
        html=f"<pre>{escape(text)}</pre>",
    )
