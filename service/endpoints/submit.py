"""POST /f/{form}: validate, store durably with its deliveries, wake the workers, answer."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from service.bodies import BodyError, media_type, parse_body, read_body
from service.consent import consent_hash
from service.db import utcnow
from service.models import ACCEPTED, QUARANTINED
from service.outbox import build_record, new_id
from service.replies import accepted, invalid, problem, safe_next
from service.routing import plan_deliveries, queue_for
from service.state import AppState
from service.triage import is_urgent
from service.validation import Intake

log = logging.getLogger("intake.submit")

DATABASE_RETRY_AFTER = "30"  # seconds a client should wait when the database is down


async def submit(request: Request) -> Response:
    state: AppState = request.app.state.intake
    form_name = request.path_params["form"]
    form = state.config.form(form_name)
    if form is None:
        return problem(request, state.pages, 404, "FORM_NOT_FOUND", "This form does not exist.")

    try:
        mime, params = media_type(request)
        body = await read_body(request, state.settings.max_body_bytes)
        raw = parse_body(mime, params, body)
    except BodyError as exc:
        log.info("submission refused", extra={"form": form_name, "reason": exc.code})
        return problem(request, state.pages, exc.status, exc.code, exc.message)

    result = state.validators[form_name].validate(raw)
    if result.intake is None:
        log.info(
            "submission invalid",
            extra={"form": form_name, "codes": sorted({e.code for e in result.errors})},
        )
        language = raw.get("_language", "en")[:2].lower()
        return invalid(
            request,
            state.pages,
            result.errors,
            form=form_name,
            language=language if language in ("en", "es") else "en",
            values=result.values,
        )

    intake = result.intake
    quarantine_reason = _spam_signal(intake)
    urgent = is_urgent(*_free_text(intake.person), intake.subject)
    if urgent:
        quarantine_reason = None  # a person in crisis is never held back by a spam rule
    try:
        record = await _store(request, state, form_name, intake, urgent, quarantine_reason)
    except SQLAlchemyError:
        return problem(
            request,
            state.pages,
            503,
            "DATABASE_UNAVAILABLE",
            "We could not save your message just now. Please try again in a minute, or call us.",
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )

    if not record.duplicate:
        state.publisher.publish([(d["id"], queue_for(d["priority"])) for d in record.deliveries])
    log.info(
        "submission accepted",
        extra={
            "submission_id": record.answer_id,
            "form": form_name,
            "urgent": urgent,
            "quarantined": quarantine_reason or "",
            "duplicate": record.duplicate,
            "deliveries": 0 if record.duplicate else len(record.deliveries),
        },
    )
    default_next = form.next_url or f"{state.settings.public_url.rstrip('/')}/thanks"
    if intake.language != "en":
        default_next += ("&" if "?" in default_next else "?") + f"lang={intake.language}"
    next_url = safe_next(intake.next_url, state.settings.allowed_origins, default_next)
    return accepted(request, state.pages, record.answer_id, next_url)


def _spam_signal(intake: Intake) -> str | None:
    if intake.honeypot_filled:
        return "honeypot"
    return None


def _free_text(person: dict[str, Any]) -> list[str]:
    texts = [str(person.get(key, "")) for key in ("message", "best_time", "insurance")]
    texts.extend(str(v) for v in person.get("extras", {}).values())
    return texts


async def _store(
    request: Request,
    state: AppState,
    form_name: str,
    intake: Intake,
    urgent: bool,
    quarantine_reason: str | None,
) -> Any:
    now = utcnow()
    person = intake.person
    submission_id = new_id()
    payload = {"person": person, "subject": intake.subject}
    submission = {
        "id": submission_id,
        "form": form_name,
        "created_at": now,
        "status": QUARANTINED if quarantine_reason else ACCEPTED,
        "quarantine_reason": quarantine_reason,
        "language": intake.language,
        "urgent": urgent,
        "program": person.get("program"),
        "state_code": person.get("state"),
        "for_whom": person.get("for_whom"),
        "payload": state.cipher.seal(payload),
        "client_address": state.clients.resolve(request)[:64],
        "consent_hash": consent_hash(intake.language),
        "consent_at": now,
        "fingerprint": state.fingerprint(
            form_name,
            str(person.get("email", "")).lower(),
            str(person.get("phone", "")),
            str(person.get("name", "")).lower(),
            str(person.get("message", "")),
        ),
    }
    plan = (
        []
        if quarantine_reason
        else plan_deliveries(
            state.config, state.settings, form_name, person, intake.language, urgent
        )
    )
    record = build_record(
        submission, plan, now=now, mail_domain=mail_domain(state.settings.mail_from)
    )
    return await state.writer.write(record)


def mail_domain(mail_from: str) -> str:
    address = mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return address.rsplit("@", 1)[-1] if "@" in address else "intake.local"


def duplicate_window(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)
