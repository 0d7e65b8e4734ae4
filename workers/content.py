"""What the email templates are given: plain data built from a submission and the configuration.

The template context contract (every template may use exactly these names):

- org: name, phone, phone_tel, website, address, hours_text
- language: "en" | "es"
- urgent: bool (the message mentions a crisis)
- for_whom: "self" | "loved_one" | "professional" | ""
- reach_out: "within_hour" | "this_morning" | "today" | "tomorrow_morning" | "weekday_morning"
  | "soon" (no staffed hours configured)
- reach_out_day: weekday name in the email's language, when reach_out is "weekday_morning"
- ref: a short reference people and staff can quote (no personal data)
- received_at: local date and time of the submission, formatted, with the time zone
- person (admissions emails only): name, email, phone, phone_display, phone_tel, best_time,
  voicemail_ok, text_ok, email_ok (True/False/None), preferred_contact, for_whom_label,
  program_label, state, state_name, insurance, insurance_member_id, message, subject, extras
  (list of (label, value)), language_label
- detail: "full" | "minimal" (admissions only; minimal leaves out message and health details)
- crisis_phrases: list of matched phrases (admissions only, when urgent)
- fallback_reason: why this is the fallback copy (fallback emails only), else ""
- submission_id: the full id (admissions only)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import phonenumbers

from service.config import WEEKDAYS, AppConfig
from service.triage import crisis_phrases, free_text
from service.us_states import STATES

# How close to closing time an inquiry still gets a same-day answer promise.
SAME_DAY_MARGIN = timedelta(minutes=60)

WEEKDAY_NAMES = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
}
FOR_WHOM_LABELS = {
    "self": "For themselves",
    "loved_one": "For a loved one",
    "professional": "Professional referral",
}
CONTACT_LABELS = {"phone": "Phone call", "email": "Email", "text": "Text message"}
LANGUAGE_LABELS = {"en": "English", "es": "Spanish"}


@dataclass(frozen=True)
class SubmissionView:
    """The parts of a stored submission the emails need, already decrypted."""

    id: str
    form: str
    created_at: datetime
    language: str
    urgent: bool
    person: dict[str, Any]
    subject: str


def short_ref(submission_id: str) -> str:
    """Eight characters from the random part of the id, grouped for reading aloud on a call."""
    tail = submission_id[-8:].upper()
    return f"{tail[:4]}-{tail[4:]}"


def reach_out(config: AppConfig, received: datetime) -> tuple[str, int | None]:
    """When admissions will reply, from the staffed hours: (promise, weekday index or None)."""
    org = config.organization
    local = received.astimezone(org.zone)
    minute = local.hour * 60 + local.minute
    today = WEEKDAYS[local.weekday()]
    if today in org.hours:
        opening, closing = org.hours[today]
        if opening <= minute <= closing - SAME_DAY_MARGIN.total_seconds() // 60:
            return "within_hour", None
        if minute < opening:
            return "this_morning" if opening < 12 * 60 else "today", None
    for ahead in range(1, 8):
        day_index = (local.weekday() + ahead) % 7
        if WEEKDAYS[day_index] in org.hours:
            return ("tomorrow_morning", None) if ahead == 1 else ("weekday_morning", day_index)
    return "soon", None


def _phone(e164: str) -> tuple[str, str]:
    if not e164:
        return "", ""
    try:
        number = phonenumbers.parse(e164, "US")
        fmt = (
            phonenumbers.PhoneNumberFormat.NATIONAL
            if number.country_code == 1
            else phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
        return str(phonenumbers.format_number(number, fmt)), e164
    except phonenumbers.NumberParseException:
        return e164, e164


def org_context(config: AppConfig) -> dict[str, str]:
    org = config.organization
    display, tel = _org_phone(org.phone)
    return {
        "name": org.name,
        "phone": org.phone or display,
        "phone_tel": tel or org.phone,
        "website": org.website,
        "address": org.address,
        "hours_text": org.hours_text,
    }


@functools.lru_cache(maxsize=16)
def _org_phone(phone: str) -> tuple[str, str]:
    """The organization's number, formatted once: parsing it was half of a context's cost."""
    return _phone(_e164(phone))


def _e164(text: str) -> str:
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return ""
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def common_context(config: AppConfig, view: SubmissionView) -> dict[str, Any]:
    promise, day = reach_out(config, view.created_at)
    local = view.created_at.astimezone(config.organization.zone)
    language = view.language if view.language in WEEKDAY_NAMES else "en"
    return {
        "org": org_context(config),
        "language": language,
        "urgent": view.urgent,
        "for_whom": str(view.person.get("for_whom", "")),
        "reach_out": promise,
        "reach_out_day": WEEKDAY_NAMES[language][day] if day is not None else "",
        "ref": short_ref(view.id),
        "received_at": local.strftime("%a %b %d, %Y %I:%M %p %Z").replace(" 0", " "),
    }


def autoreply_context(config: AppConfig, view: SubmissionView) -> dict[str, Any]:
    """Nothing the person typed reaches the auto-reply: someone else may read their inbox."""
    return common_context(config, view)


def admissions_context(
    config: AppConfig,
    view: SubmissionView,
    *,
    detail: str,
    fallback_reason: str = "",
) -> dict[str, Any]:
    person = view.person
    display, tel = _phone(str(person.get("phone", "")))
    program = str(person.get("program", ""))
    state = str(person.get("state", ""))
    context = common_context(config, view)
    context.update(
        {
            "detail": detail,
            "fallback_reason": fallback_reason,
            "submission_id": view.id,
            "crisis_phrases": (
                crisis_phrases(*free_text(person, view.subject)) if view.urgent else []
            ),
            "person": {
                "name": str(person.get("name", "")),
                "email": str(person.get("email", "")),
                "phone": str(person.get("phone", "")),
                "phone_display": display,
                "phone_tel": tel,
                "best_time": str(person.get("best_time", "")),
                "voicemail_ok": person.get("voicemail_ok"),
                "text_ok": person.get("text_ok"),
                "email_ok": person.get("email_ok"),
                "preferred_contact": CONTACT_LABELS.get(
                    str(person.get("preferred_contact", "")), ""
                ),
                "for_whom_label": FOR_WHOM_LABELS.get(str(person.get("for_whom", "")), ""),
                "program_label": config.programs.get(program, program),
                "state": state,
                "state_name": STATES.get(state, state),
                "insurance": str(person.get("insurance", "")),
                "insurance_member_id": str(person.get("insurance_member_id", "")),
                "message": str(person.get("message", "")),
                "subject": view.subject,
                "extras": [
                    (key.replace("_", " ").capitalize(), str(value))
                    for key, value in dict(person.get("extras", {})).items()
                ],
                "language_label": LANGUAGE_LABELS.get(view.language, view.language),
            },
        }
    )
    return context
