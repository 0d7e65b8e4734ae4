"""Turn a submitted form (any body type, already parsed) into a clean intake or field errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from service.config import AppConfig, FormConfig
from service.text import clean_text, defuse_encoded_words
from service.us_states import state_code

# Upper bounds, in characters after normalization.
MAX_LENGTHS = {
    "name": 200,
    "first_name": 100,
    "last_name": 100,
    "email": 254,
    "phone": 40,
    "best_time": 120,
    "insurance": 120,
    "insurance_member_id": 64,
    "message": 5000,
    "_subject": 150,
    "_next": 2000,
}
MAX_EXTRAS = 20  # fields we do not know, kept for admissions
MAX_EXTRA_NAME = 64
MAX_EXTRA_VALUE = 1000
MAX_FIELDS = 100  # anything above is not a person filling a form

FOR_WHOM = {
    "self": "self",
    "myself": "self",
    "me": "self",
    "loved_one": "loved_one",
    "loved one": "loved_one",
    "loved-one": "loved_one",
    "a loved one": "loved_one",
    "family": "loved_one",
    "professional": "professional",
    "i am a professional": "professional",
    "referral": "professional",
}
PREFERRED_CONTACT = {
    "phone": "phone",
    "call": "phone",
    "email": "email",
    "text": "text",
    "sms": "text",
}
TRUE_WORDS = {"on", "yes", "true", "1", "y", "si", "sí", "checked"}
FALSE_WORDS = {"off", "no", "false", "0", "n", ""}
LANGUAGES = ("en", "es")

# Fields whose value may span lines; every other field is one line.
MULTILINE = {"message"}
KNOWN_FIELDS = {
    "name",
    "first_name",
    "last_name",
    "email",
    "_replyto",
    "phone",
    "for_whom",
    "preferred_contact",
    "best_time",
    "voicemail_ok",
    "text_ok",
    "email_ok",
    "state",
    "insurance",
    "insurance_member_id",
    "program",
    "message",
    "consent",
}
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-\[\]]*$")


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass
class Intake:
    """A validated submission: personal fields in `person`, control fields beside them."""

    person: dict[str, Any]
    language: str
    honeypot_filled: list[str] = field(default_factory=list)
    next_url: str = ""
    subject: str = ""
    time_token: str = ""
    captcha_response: str = ""


@dataclass
class Result:
    intake: Intake | None
    errors: list[FieldError]
    values: dict[str, str]  # what was typed, cleaned, for re-filling a form after an error


class FormValidator:
    """Validates one form's submissions against the intake schema and the form's configuration."""

    def __init__(self, config: AppConfig, form: FormConfig, *, check_deliverability: bool) -> None:
        self._config = config
        self._form = form
        self._check_deliverability = check_deliverability

    def validate(self, raw: Mapping[str, str]) -> Result:
        errors: list[FieldError] = []
        values = {key: value for key, value in raw.items() if key not in self._form.honeypot_fields}
        if len(raw) > MAX_FIELDS:
            errors.append(FieldError("_form", "TOO_MANY_FIELDS", "This form has too many fields."))
            return Result(None, errors, {})

        text: dict[str, str] = {}
        for key, value in raw.items():
            cleaned = clean_text(value, multiline=key in MULTILINE)
            limit = MAX_LENGTHS.get(key)
            if limit is not None and len(cleaned) > limit:
                errors.append(
                    FieldError(key, "TOO_LONG", f"Please keep this under {limit} characters.")
                )
                cleaned = cleaned[:limit]
            text[key] = cleaned
        values = {k: v for k, v in text.items() if k not in self._form.honeypot_fields}

        person: dict[str, Any] = {}
        self._name(text, person, errors)
        self._contact(text, person, errors)
        self._choices(text, person, errors)
        self._flags(raw, text, person, errors)
        for key in ("best_time", "insurance", "insurance_member_id", "message"):
            if text.get(key):
                person[key] = text[key]
        extras = self._extras(text, errors)
        if extras:
            person["extras"] = extras

        language = _language(text.get("_language", ""))
        honeypots = [name for name in self._form.honeypot_fields if raw.get(name, "").strip()]
        if errors:
            return Result(None, errors, values)
        intake = Intake(
            person=person,
            language=language,
            honeypot_filled=honeypots,
            next_url=_next_target(text.get("_next", "")),
            subject=text.get("_subject", ""),
            time_token=text.get("_ts", ""),
            captcha_response=_captcha_response(raw),
        )
        return Result(intake, [], values)

    def _name(self, text: dict[str, str], person: dict[str, Any], errors: list[FieldError]) -> None:
        name = text.get("name", "")
        if not name:
            name = " ".join(p for p in (text.get("first_name", ""), text.get("last_name", "")) if p)
            name = defuse_encoded_words(name)  # the halves may join into an encoded word
        if name:
            person["name"] = name
        elif any(k in text for k in ("name", "first_name", "last_name")):
            errors.append(FieldError("name", "REQUIRED_FIELD_EMPTY", "Please tell us your name."))
        else:
            errors.append(FieldError("name", "REQUIRED_FIELD_MISSING", "Please tell us your name."))

    def _contact(
        self, text: dict[str, str], person: dict[str, Any], errors: list[FieldError]
    ) -> None:
        email = text.get("email") or text.get("_replyto", "")
        phone = text.get("phone", "")
        if email:
            try:
                checked = validate_email(email, check_deliverability=self._check_deliverability)
                # The ASCII form (punycode domain) when there is one: every relay can send to it.
                person["email"] = checked.ascii_email or checked.normalized
            except EmailNotValidError:
                field_name = "email" if text.get("email") else "_replyto"
                errors.append(
                    FieldError(
                        field_name,
                        "TYPE_EMAIL",
                        "This email address does not look right. Please check it.",
                    )
                )
        if phone:
            normalized = normalize_phone(phone)
            if normalized:
                person["phone"] = normalized
            else:
                errors.append(
                    FieldError(
                        "phone",
                        "TYPE_PHONE",
                        "This phone number does not look right. Please check it.",
                    )
                )
        if not email and not phone:
            message = "Please give us a phone number or an email address so we can reach you."
            errors.append(FieldError("email", "REQUIRED_FIELD_MISSING", message))
            errors.append(FieldError("phone", "REQUIRED_FIELD_MISSING", message))

    def _choices(
        self, text: dict[str, str], person: dict[str, Any], errors: list[FieldError]
    ) -> None:
        choices: dict[str, dict[str, str]] = {
            "for_whom": FOR_WHOM,
            "preferred_contact": PREFERRED_CONTACT,
            "program": self._program_choices(),
        }
        for key, allowed in choices.items():
            value = text.get(key, "")
            if not value:
                continue
            chosen = allowed.get(value.lower().replace("-", "_")) or allowed.get(value.lower())
            if chosen is None:
                errors.append(
                    FieldError(key, "INVALID_CHOICE", "Please choose one of the options.")
                )
            else:
                person[key] = chosen
        if text.get("state"):
            code = state_code(text["state"])
            if code is None:
                errors.append(FieldError("state", "INVALID_CHOICE", "Please choose a US state."))
            else:
                person["state"] = code

    def _program_choices(self) -> dict[str, str]:
        choices: dict[str, str] = {}
        for code in self._form.programs:
            choices[code.lower()] = code
            choices[self._config.programs[code].lower()] = code
        return choices

    def _flags(
        self,
        raw: Mapping[str, str],
        text: dict[str, str],
        person: dict[str, Any],
        errors: list[FieldError],
    ) -> None:
        for key in ("voicemail_ok", "text_ok", "email_ok", "consent"):
            if key not in raw:
                continue
            flag = parse_bool(text[key])
            if flag is None:
                errors.append(FieldError(key, "TYPE_BOOLEAN", "Please answer yes or no."))
            else:
                person[key] = flag
        person.setdefault("email_ok", True)  # they gave an address: unless they say otherwise
        if not person.get("consent"):
            if "consent" in raw and parse_bool(text["consent"]) is None:
                return
            errors.append(
                FieldError(
                    "consent",
                    "REQUIRED_FIELD_MISSING",
                    "Please tick the box so we may contact you.",
                )
            )

    def _extras(self, text: dict[str, str], errors: list[FieldError]) -> dict[str, str]:
        extras: dict[str, str] = {}
        for key, value in text.items():
            if key in KNOWN_FIELDS or key.startswith("_") or key in self._form.honeypot_fields:
                continue
            if key.endswith("-response") or not value:
                continue
            if len(key) > MAX_EXTRA_NAME or not _EXTRA_NAME.match(key):
                continue  # a field name no form would use: not worth keeping
            if len(value) > MAX_EXTRA_VALUE:
                errors.append(
                    FieldError(
                        key, "TOO_LONG", f"Please keep this under {MAX_EXTRA_VALUE} characters."
                    )
                )
                continue
            extras[key] = value
        if len(extras) > MAX_EXTRAS:
            errors.append(FieldError("_form", "TOO_MANY_FIELDS", "This form has too many fields."))
        return extras


def normalize_phone(value: str) -> str | None:
    """E.164 for a valid number (US by default when no country code), else None."""
    try:
        number = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    return None


def _language(value: str) -> str:
    code = value.strip().lower()[:2]
    return code if code in LANGUAGES else "en"


def _next_target(value: str) -> str:
    """`_next` when it parses as a URL, else '' (the thank-you page): urlsplit raises on
    'https://[x', and a redirect target must never be able to fail the answer."""
    try:
        urlsplit(value)
    except ValueError:
        return ""
    return value


def _captcha_response(raw: Mapping[str, str]) -> str:
    for key in ("cf-turnstile-response", "h-captcha-response", "g-recaptcha-response"):
        if raw.get(key):
            return raw[key][:4096]
    return ""
