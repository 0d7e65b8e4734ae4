"""The alternative most websites use: send the emails inside the request, then answer.

POST /f/contact takes the same JSON, renders the same two emails as the naive task, opens an
SMTP connection and sends both before answering (in Starlette's thread pool, as a synchronous
view in Django or Flask would). When the SMTP server is slow the person waits for it; when it is
down the person gets an error and the inquiry is gone. Served by bench.serve under the same
uvicorn settings as ours; BENCH_INLINE_SMTP_PORT names the SMTP server.
"""

from __future__ import annotations

import os
import smtplib
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.naive_task import _environments, _message
from workers.content import SubmissionView, admissions_context, autoreply_context

SMTP_TIMEOUT = 30.0  # seconds; generous, as in most frameworks' defaults (often none at all)


def _send_both(person: dict[str, Any]) -> None:
    _, _, config = _environments()
    now = datetime.now(UTC)
    view = SubmissionView(
        id=f"{now.timestamp():.6f}".replace(".", ""),
        form="contact",
        created_at=now,
        language="en",
        urgent=False,
        person=person,
        subject="",
    )
    reply = _message(
        "autoreply_en", autoreply_context(config, view), person["email"], f"<inline-{view.id}-r@b>"
    )
    notice = _message(
        "admissions",
        admissions_context(config, view, detail="full"),
        "admissions@bench.example",
        f"<inline-{view.id}-a@b>",
    )
    port = int(os.environ.get("BENCH_INLINE_SMTP_PORT", "1025"))
    with smtplib.SMTP("127.0.0.1", port, timeout=SMTP_TIMEOUT) as smtp:
        smtp.send_message(reply)
        smtp.send_message(notice)


async def submit(request: Request) -> Response:
    try:
        person = await request.json()
    except ValueError:
        return JSONResponse({"ok": False, "message": "Malformed JSON."}, status_code=400)
    if not isinstance(person, dict) or not person.get("name") or not person.get("email"):
        return JSONResponse({"ok": False, "message": "Name and email are required."}, 422)
    try:
        await run_in_threadpool(_send_both, person)
    except (OSError, smtplib.SMTPException):
        message = "Sorry, we could not send your message. Please try again later."
        return JSONResponse({"ok": False, "message": message}, status_code=500)
    return JSONResponse({"ok": True, "message": "Thank you! Your message was sent."})


app = Starlette(routes=[Route("/f/contact", submit, methods=["POST"])])
