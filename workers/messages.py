"""Build the email objects. Every header that carries outside data goes through the email
library's header API (Address objects, the policy's folding), so no input can add a header."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from html import escape

from workers.rendering import RenderedEmail


def parse_mailbox(text: str) -> Address:
    """'Care Team <care@example.org>' -> Address; the address part must be plain."""
    display, address = parseaddr(text)
    if "@" not in address:
        raise ValueError(f"not an email address: {text!r}")
    local, _, domain = address.rpartition("@")
    return Address(display_name=display, username=local, domain=domain)


def build_email(
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
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = [_address(a) for a in to]
    if reply_to:
        message["Reply-To"] = _address(reply_to, reply_to_name)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if auto_reply:
        # RFC 3834: tells vacation responders and other robots not to answer this.
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
    if urgent:
        message["Importance"] = "high"
        message["X-Priority"] = "1"
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return message


def _address(address: str, display_name: str = "") -> Address:
    local, _, domain = address.rpartition("@")
    # Address() refuses CR/LF and other characters that could start a header; display names
    # are encoded by the policy, never pasted raw.
    return Address(display_name=" ".join(display_name.split())[:120], username=local, domain=domain)


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
