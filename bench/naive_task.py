"""The naive reference for delivery throughput: one Celery task per submission, no state.

What many projects ship: the task gets the submission's data in its message, renders the same
two emails from the same templates and context as our workers (Jinja2, CSS inlined with
css_inline), builds them with the standard email package, opens an SMTP connection, sends both
and forgets them: no claim, no outcome recorded, no retry bookkeeping, Celery's defaults
(early acknowledgement, prefetch 4). It cannot say whether a message went out, nor avoid sending
one twice, which is why ours does more work per delivery.

Run by the harness as `celery -A bench.naive_task worker --pool prefork --concurrency 2 -Q naive`
with BENCH_NAIVE_BROKER, BENCH_NAIVE_SMTP_PORT and INTAKE_* set.
"""

from __future__ import annotations

import os
import smtplib
from datetime import datetime
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

import css_inline
from celery import Celery
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service.config import AppConfig, load_config
from workers.content import SubmissionView, admissions_context, autoreply_context

NAIVE_TASK = "naive.send_both"
NAIVE_QUEUE = "naive"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"

app = Celery("naive", broker=os.environ.get("BENCH_NAIVE_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=NAIVE_QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@cache
def _environments() -> tuple[Environment, Environment, AppConfig]:
    loader = FileSystemLoader(str(TEMPLATES))
    text = Environment(loader=loader, undefined=StrictUndefined, keep_trailing_newline=True)
    html = Environment(loader=loader, autoescape=select_autoescape(default=True))
    return text, html, load_config(os.environ.get("INTAKE_CONFIG", ""))


def _message(folder: str, context: dict[str, Any], to: str, message_id: str) -> EmailMessage:
    text, html, _ = _environments()
    message = EmailMessage()
    message["From"] = "Care Team <care@bench.example>"
    message["To"] = to
    message["Subject"] = " ".join(
        text.get_template(f"{folder}/subject.txt").render(context).split()
    )
    message["Message-ID"] = message_id
    message.set_content(text.get_template(f"{folder}/body.txt").render(context))
    body = html.get_template(f"{folder}/body.html").render(context)
    message.add_alternative(css_inline.inline(body), subtype="html")
    return message


@app.task(name=NAIVE_TASK)  # type: ignore[untyped-decorator]
def send_both(submission: dict[str, Any]) -> None:
    _, _, config = _environments()
    view = SubmissionView(
        id=submission["id"],
        form="contact",
        created_at=datetime.fromisoformat(submission["created_at"]),
        language="en",
        urgent=False,
        person=submission["person"],
        subject="",
    )
    reply = _message(
        "autoreply_en",
        autoreply_context(config, view),
        submission["person"]["email"],
        f"<naive-{view.id}-reply@bench.example>",
    )
    notice = _message(
        "admissions",
        admissions_context(config, view, detail="full"),
        "admissions@bench.example",
        f"<naive-{view.id}-admissions@bench.example>",
    )
    port = int(os.environ.get("BENCH_NAIVE_SMTP_PORT", "1025"))
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.send_message(reply)
        smtp.send_message(notice)
