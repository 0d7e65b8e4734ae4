"""Field validation: every field of the default form, its normalization and its error codes."""

from __future__ import annotations

import pytest

from service.config import load_config
from service.validation import FormValidator, Result, normalize_phone, parse_bool


@pytest.fixture(scope="module")
def validator() -> FormValidator:
    config = load_config()
    return FormValidator(config, config.forms["contact"], check_deliverability=False)


BASE = {"name": "Ana Lopez", "phone": "415-555-2671", "consent": "yes"}


def run(validator: FormValidator, **fields: str) -> Result:
    return validator.validate({**BASE, **fields})


def codes(result: Result) -> set[tuple[str, str]]:
    return {(e.field, e.code) for e in result.errors}


def test_minimal_valid_submission(validator: FormValidator) -> None:
    result = run(validator)
    assert result.errors == []
    assert result.intake is not None
    assert result.intake.person == {
        "name": "Ana Lopez",
        "phone": "+14155552671",
        "consent": True,
        "email_ok": True,
    }
    assert result.intake.language == "en"


def test_first_and_last_name_combine(validator: FormValidator) -> None:
    result = validator.validate(
        {"first_name": " Ana ", "last_name": "López", "email": "a@example.com", "consent": "on"}
    )
    assert result.intake is not None and result.intake.person["name"] == "Ana López"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": None}, ("name", "REQUIRED_FIELD_MISSING")),
        ({"name": "   "}, ("name", "REQUIRED_FIELD_EMPTY")),
        ({"consent": None}, ("consent", "REQUIRED_FIELD_MISSING")),
        ({"consent": "no"}, ("consent", "REQUIRED_FIELD_MISSING")),
        ({"consent": "maybe"}, ("consent", "TYPE_BOOLEAN")),
        ({"phone": None}, ("phone", "REQUIRED_FIELD_MISSING")),
        ({"phone": "12"}, ("phone", "TYPE_PHONE")),
        ({"phone": "call me"}, ("phone", "TYPE_PHONE")),
        ({"email": "nope"}, ("email", "TYPE_EMAIL")),
        ({"email": "a@b"}, ("email", "TYPE_EMAIL")),
        ({"_replyto": "bad@@x.org"}, ("_replyto", "TYPE_EMAIL")),
        ({"for_whom": "neighbor"}, ("for_whom", "INVALID_CHOICE")),
        ({"preferred_contact": "pigeon"}, ("preferred_contact", "INVALID_CHOICE")),
        ({"program": "spa"}, ("program", "INVALID_CHOICE")),
        ({"state": "Atlantis"}, ("state", "INVALID_CHOICE")),
        ({"voicemail_ok": "perhaps"}, ("voicemail_ok", "TYPE_BOOLEAN")),
        ({"name": "x" * 201}, ("name", "TOO_LONG")),
        ({"message": "x" * 5001}, ("message", "TOO_LONG")),
        ({"best_time": "x" * 121}, ("best_time", "TOO_LONG")),
        ({"insurance": "x" * 121}, ("insurance", "TOO_LONG")),
        ({"favorite_color": "x" * 1001}, ("favorite_color", "TOO_LONG")),
    ],
)
def test_field_errors(validator: FormValidator, fields: dict, expected: tuple[str, str]) -> None:
    data = {**BASE, **{k: v for k, v in fields.items() if v is not None}}
    for key, value in fields.items():
        if value is None:
            data.pop(key, None)
    result = validator.validate(data)
    assert result.intake is None
    assert expected in codes(result)


def test_email_is_normalized_and_replyto_alias_works(validator: FormValidator) -> None:
    result = run(validator, phone="", _replyto="Ana.Lopez@EXAMPLE.com")
    assert result.intake is not None
    assert result.intake.person["email"] == "Ana.Lopez@example.com"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(415) 555-2671", "+14155552671"),
        ("+1 202 555 0143", "+12025550143"),
        ("2025550143", "+12025550143"),
        ("+44 20 7946 0958", "+442079460958"),
        ("555-0100", None),
        ("", None),
    ],
)
def test_phone_normalization(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("word", ["on", "yes", "true", "1", "Y", "sí", "TRUE"])
def test_true_spellings(word: str) -> None:
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["off", "no", "false", "0", ""])
def test_false_spellings(word: str) -> None:
    assert parse_bool(word) is False


def test_choices_accept_labels_and_synonyms(validator: FormValidator) -> None:
    result = run(
        validator,
        for_whom="A loved one",
        preferred_contact="SMS",
        program="Medical detox",
        state="new york",
    )
    assert result.intake is not None
    person = result.intake.person
    assert person["for_whom"] == "loved_one"
    assert person["preferred_contact"] == "text"
    assert person["program"] == "detox"
    assert person["state"] == "NY"


def test_text_is_normalized(validator: FormValidator) -> None:
    result = run(
        validator,
        name="Ana\r\nBcc: evil@example.com",
        best_time="after\u202e6pm\x00",
        message="line one\r\n\r\n\r\n\r\nline\ttwo \x07",
        insurance="Cafe\u0301",
    )
    assert result.intake is not None
    person = result.intake.person
    assert person["name"] == "Ana Bcc: evil@example.com"  # one line: no header can start
    assert person["best_time"] == "after6pm"
    assert person["message"] == "line one\n\nline two"
    assert person["insurance"] == "Café"  # NFC


def test_extras_are_kept_bounded(validator: FormValidator) -> None:
    result = run(validator, referral_source="Google", **{"weird key!": "dropped"})
    assert result.intake is not None
    assert result.intake.person["extras"] == {"referral_source": "Google"}
    many = {f"extra_{n}": "v" for n in range(25)}
    too_many = run(validator, **many)
    assert ("_form", "TOO_MANY_FIELDS") in codes(too_many)


def test_forged_internal_fields_are_ignored(validator: FormValidator) -> None:
    result = run(validator, _id="x", _status="sent", _urgent="true", _deliveries="[]")
    assert result.intake is not None
    assert "extras" not in result.intake.person


def test_language_and_honeypot(validator: FormValidator) -> None:
    result = run(validator, _language="es-MX", _gotcha="filled by a bot")
    assert result.intake is not None
    assert result.intake.language == "es"
    assert result.intake.honeypot_filled == ["_gotcha"]
    assert run(validator, _language="klingon").intake.language == "en"  # type: ignore[union-attr]


def test_email_not_safe_is_kept(validator: FormValidator) -> None:
    result = run(validator, email="a@example.com", email_ok="no")
    assert result.intake is not None and result.intake.person["email_ok"] is False


def test_values_are_kept_for_refilling_a_form(validator: FormValidator) -> None:
    result = run(validator, phone="12", message="keep me", _gotcha="")
    assert result.intake is None
    assert result.values["message"] == "keep me"
    assert "_gotcha" not in result.values
