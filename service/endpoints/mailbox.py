"""Dev mode only: the local mail catcher's .eml files as pages, so a newcomer running `make run`
sees the auto-reply and the admissions email as a person would, without any mail account.

Routed only when settings.dev_mode is true (see pages.dev_routes). The HTML part of an email is
served from its own route with a CSP that forbids scripts and every fetch, inside a sandboxed
iframe, so nothing an email carries can act on our pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:  # the state imports the replies, which import these pages
    from service.state import AppState

MAIL_SUBDIR = "mail"  # under settings.var_dir: where `intake dev`'s mail catcher writes
MAX_LISTED = 200  # newest first; older files stay on disk
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.eml$")

# An email's HTML is outside markup: inline styles and data: images only; no scripts, no
# requests, no forms; only our own mailbox page may frame it.
HTML_PART_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'self'; sandbox"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FRAME_SOURCE = "; frame-src 'self'"  # added to the message page's CSP for the HTML part's frame


@dataclass(frozen=True)
class Letter:
    name: str
    subject: str
    sender: str
    to: str
    date: str


def routes() -> list[BaseRoute]:
    return [
        Route("/dev/mailbox", index, methods=["GET"]),
        Route("/dev/mailbox/{name}", message, methods=["GET"]),
        Route("/dev/mailbox/{name}/html", html_part, methods=["GET"]),
    ]


def mail_dir(state: AppState) -> Path:
    return Path(state.settings.var_dir) / MAIL_SUBDIR


async def index(request: Request) -> Response:
    state: AppState = request.app.state.intake
    letters = await run_in_threadpool(list_letters, mail_dir(state))
    return state.pages.response(
        "mailbox.html", language="en", letters=letters, directory=str(mail_dir(state))
    )


async def message(request: Request) -> Response:
    state: AppState = request.app.state.intake
    name = request.path_params["name"]
    parsed = await run_in_threadpool(open_letter, mail_dir(state), name)
    if parsed is None:
        return _not_found(state)
    response = state.pages.response(
        "mailbox_message.html",
        language="en",
        letter=describe(name, parsed),
        text=part_text(parsed, "plain"),
        has_html=bool(part_text(parsed, "html")),
    )
    response.headers["Content-Security-Policy"] += FRAME_SOURCE
    return response


async def html_part(request: Request) -> Response:
    state: AppState = request.app.state.intake
    parsed = await run_in_threadpool(open_letter, mail_dir(state), request.path_params["name"])
    html = part_text(parsed, "html") if parsed is not None else ""
    if not html:
        return _not_found(state)
    return HTMLResponse(html, headers=HTML_PART_HEADERS)


def list_letters(directory: Path) -> list[Letter]:
    """The newest emails first, read from their headers only."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if _FILE_NAME.match(p.name) and p.is_file()]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    letters = []
    parser = BytesParser(policy=policy.default)
    for path in files[:MAX_LISTED]:
        with path.open("rb") as handle:
            headers = parser.parse(handle, headersonly=True)
        letters.append(describe(path.name, headers))
    return letters


def open_letter(directory: Path, name: str) -> EmailMessage | None:
    """The parsed email named `name` in `directory`, or None for any other name."""
    if not _FILE_NAME.match(name):
        return None
    path = directory / name
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        parsed = BytesParser(policy=policy.default).parse(handle)
    return parsed if isinstance(parsed, EmailMessage) else None


def describe(name: str, parsed: Message) -> Letter:
    def header(key: str) -> str:
        try:
            return str(parsed[key] or "")
        except (ValueError, TypeError, IndexError):  # a header the parser cannot read
            return ""

    return Letter(name, header("Subject"), header("From"), header("To"), header("Date"))


def part_text(parsed: EmailMessage | None, subtype: str) -> str:
    """The decoded text of the email's `subtype` part (plain or html), or ''."""
    if parsed is None:
        return ""
    part = parsed.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        return ""
    return content if isinstance(content, str) else ""


def _not_found(state: AppState) -> Response:
    return state.pages.response(
        "problem.html",
        status=404,
        language="en",
        code="NOT_FOUND",
        message="There is no such email in the local mailbox.",
        back_url="",
    )
