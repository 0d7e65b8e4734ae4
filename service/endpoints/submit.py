"""POST /f/{form}: validate, store durably with its deliveries, wake the workers, answer."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from service import screening
from service.bodies import BodyError, media_type, parse_body, read_body
from service.consent import consent_hash
from service.db import utcnow
from service.metrics import count_refusal, count_submission
from service.models import ACCEPTED, QUARANTINED
from service.outbox import build_record, new_id
from service.ratelimit import subjects, too_many
from service.replies import accepted, invalid, problem, safe_next
from service.routing import plan_deliveries, wake_up
from service.security import refuse_foreign_origin
from service.state import AppState
from service.triage import free_text, is_urgent
from service.validation import Intake

log = logging.getLogger("intake.submit")

DATABASE_RETRY_AFTER = "30"  # seconds a client should wait when the database is down


async def submit(request: Request) -> Response:
    state: AppState = request.app.state.intake
    form_name = request.path_params["form"]
    form = state.config.form(form_name)
    if form is None:
        count_refusal(None, ["FORM_NOT_FOUND"])
        return problem(request, state.pages, 404, "FORM_NOT_FOUND", "This form does not exist.")
    refusal = refuse_foreign_origin(request, state, form)
    if refusal is not None:
        log.info("submission refused", extra={"form": form_name, "reason": "ORIGIN_NOT_ALLOWED"})
        count_refusal(form_name, ["ORIGIN_NOT_ALLOWED"])
        return refusal

    try:
        mime, params = media_type(request)
        body = await read_body(request, state.settings.max_body_bytes)
        raw = parse_body(mime, params, body)
    except BodyError as exc:
        log.info("submission refused", extra={"form": form_name, "reason": exc.code})
        count_refusal(form_name, [exc.code])
        return problem(request, state.pages, exc.status, exc.code, exc.message)

    result = state.validators[form_name].validate(raw)
    if result.intake is None:
        log.info(
            "submission invalid",
            extra={"form": form_name, "codes": sorted({e.code for e in result.errors})},
        )
        count_refusal(form_name, [e.code for e in result.errors], outcome="invalid")
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
    client_address = state.clients.resolve(request)
    if state.limiter is not None:
        limit = await state.limiter.hit(form_name, subjects(client_address, intake.person))
        if not limit.allowed:
            log.info("submission refused", extra={"form": form_name, "reason": "RATE_LIMITED"})
            count_refusal(form_name, ["RATE_LIMITED"])
            phone = state.config.organization.phone
            return too_many(request, state.pages, limit, phone, intake.language)
    urgent = is_urgent(*free_text(intake.person, intake.subject))
    # A person in crisis is never held back by a spam rule: urgent messages are not screened.
    quarantine_reason = (
        None if urgent else await screening.quarantine_reason(state, form, intake, client_address)
    )
    try:
        record = await _store(state, form_name, intake, client_address, urgent, quarantine_reason)
    except SQLAlchemyError:
        count_refusal(form_name, ["DATABASE_UNAVAILABLE"], outcome="unavailable")
        return problem(
            request,
            state.pages,
            503,
            "DATABASE_UNAVAILABLE",
            "We could not save your message just now. Please try again in a minute, or call us.",
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )

    if not record.duplicate:
        state.publisher.publish(wake_up(record.deliveries))
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
    kept = "quarantined" if quarantine_reason else "accepted"
    count_submission(form_name, "duplicate" if record.duplicate else kept)
    default_next = form.next_url or f"{state.settings.public_url.rstrip('/')}/thanks"
    if intake.language != "en":
        default_next += ("&" if "?" in default_next else "?") + f"lang={intake.language}"
    next_url = safe_next(intake.next_url, state.settings.allowed_origins, default_next)
    return accepted(request, state.pages, record.answer_id, next_url)


async def _store(
    state: AppState,
    form_name: str,
    intake: Intake,
    client_address: str,
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
        "client_address": client_address[:64],
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
