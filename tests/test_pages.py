"""The pages people see, over real HTTP: the intake form (both languages), its no-JavaScript
error round trip, the thank-you page, the dev mailbox, and the time-trap tokens the form carries."""

from __future__ import annotations

import smtplib
import time
import tomllib
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from service.config import load_config
from service.consent import CONSENT_TEXT
from service.crypto import PayloadCipher
from service.endpoints.pages import FORM_TEXT, shown_errors
from service.localredis import free_port
from service.models import ACCEPTED, submissions
from service.settings import PROJECT_ROOT, Settings
from service.timetrap import (
    EXPIRED,
    INVALID,
    MISSING,
    TOO_FAST,
    check_form_token,
    check_token,
    issue_token,
)
from service.validation import FieldError
from tests.support.forms import person
from tests.support.stack import LiveServer, count_rows
from workers.mailcatcher import start_mailcatcher

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SECRET = b"test-secret-key"  # tests/conftest.py make_settings' secret_key
FILL_SECONDS = 20  # how long the person in these tests took to fill the form


class Page(HTMLParser):
    """Just enough of a DOM for these tests: every element's attributes and some texts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, str] = {}  # id -> text inside (for textarea, error slots, labels)
        self._open: list[tuple[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if values.get("id") and tag not in {"input", "meta", "link"}:
            self._open.append((tag, values["id"]))
            self.texts.setdefault(values["id"], "")

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index]
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open:
            self.texts[element_id] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]

    def one(self, tag: str, **attrs: str) -> dict[str, str]:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]

    def form_fields(self) -> dict[str, str]:
        """What a browser would post untouched: hidden and text values, checked boxes."""
        fields: dict[str, str] = {}
        for tag, a in self.elements:
            if tag != "input" or "name" not in a:
                continue
            if a.get("type") in {"radio", "checkbox"} and "checked" not in a:
                continue
            fields[a["name"]] = a.get("value", "")
        return fields


@pytest.fixture
def dev_server(settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(settings.with_overrides(dev_mode=True)).start()
    yield live
    live.stop()


# --- the form page -------------------------------------------------------------------------


@SQLITE_ONLY
def test_form_page_is_labelled_and_configured(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = Page(response.text)
    html = response.text
    assert page.one("html")["lang"] == "en"
    assert "* indicates required fields" in html
    # Every visible control has a label; ids are unique.
    ids = [a["id"] for _, a in page.elements if "id" in a]
    assert len(ids) == len(set(ids))
    labelled = {a["for"] for a in page.find("label") if "for" in a}
    for tag in ("input", "select", "textarea"):
        for control in page.find(tag):
            if control.get("type") != "hidden":
                assert control["id"] in labelled, control
    assert page.one("input", name="name")["autocomplete"] == "name"
    assert "required" in page.one("input", name="name")
    assert (
        page.one("input", name="email").items()
        >= {"type": "email", "autocomplete": "email"}.items()
    )
    assert page.one("input", name="phone").items() >= {"type": "tel", "autocomplete": "tel"}.items()
    assert page.one("select", name="state")["autocomplete"] == "address-level1"
    assert len(page.find("option")) >= 56  # every state and territory, plus the programs
    assert {a["value"] for a in page.find("input", name="for_whom")} == {
        "self",
        "loved_one",
        "professional",
    }
    assert "I am a professional referring someone" in html
    assert "checked" in page.one("input", name="email_ok", value="yes")
    assert "Is it safe for us to email you?" in html
    for code, label in load_config().programs.items():
        assert page.find("option", value=code) and label in html
    assert CONSENT_TEXT["en"] in html
    assert "required" in page.one("input", name="consent")
    # The honeypot: a real text input, off-screen, out of the tab order and of the a11y tree.
    trap = page.one("input", name="_gotcha")
    assert trap["type"] == "text" and trap["tabindex"] == "-1" and trap["autocomplete"] == "off"
    assert page.one("div", **{"class": "hp"})["aria-hidden"] == "true"
    fields = page.form_fields()
    assert fields["_language"] == "en" and fields["_page"] == "1"
    assert fields["_next"] == "/thanks"
    assert check_token(SECRET, "contact", fields["_ts"], min_seconds=0, max_age_seconds=60) is None
    assert page.one("form")["action"] == "/f/contact"
    # Works under the CSP: no inline script or style anywhere.
    for script in page.find("script"):
        assert script.get("src") or script.get("type") == "application/json"
    assert not [a for _, a in page.elements if "style" in a]
    assert "<style" not in html
    assert not [name for _, a in page.elements for name in a if name.startswith("on")]
    assert page.find("div", **{"aria-live": "polite"})
    assert page.one("a", hreflang="es")["href"] == "/?lang=es"


@SQLITE_ONLY
def test_spanish_form(client: httpx.Client) -> None:
    response = client.get("/f/contact", params={"lang": "es"})
    assert response.status_code == 200
    page = Page(response.text)
    assert page.one("html")["lang"] == "es"
    assert "* indica los campos obligatorios" in response.text
    assert "¿Es seguro enviarle un correo electrónico?" in response.text
    assert CONSENT_TEXT["es"] in response.text
    assert "Desintoxicación médica" in response.text
    fields = page.form_fields()
    assert fields["_language"] == "es" and fields["_next"] == "/thanks?lang=es"
    assert page.one("a", hreflang="en")["href"] == "/f/contact?lang=en"
    assert "Línea Nacional de Ayuda de SAMHSA" in response.text


def test_both_languages_have_the_same_words() -> None:
    text = tomllib.loads((PROJECT_ROOT / "templates" / FORM_TEXT).read_text("utf-8"))
    english = {k for k, v in text["en"].items() if isinstance(v, str)}
    spanish = {k for k, v in text["es"].items() if isinstance(v, str)}
    assert english == spanish


@SQLITE_ONLY
def test_unknown_form_page_is_404(client: httpx.Client) -> None:
    response = client.get("/f/nope")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]


# --- posting the form without JavaScript ------------------------------------------------------


def _filled(client: httpx.Client, path: str = "/", **changes: str) -> dict[str, str]:
    """The page's own fields, filled in; its time-trap token aged as a person would take."""
    fields = Page(client.get(path).text).form_fields()
    fields.update(person(message="We need help <script>alert(1)</script>"))
    fields["_ts"] = issue_token(SECRET, "contact", now=time.time() - FILL_SECONDS)
    fields.update(changes)
    return fields


@SQLITE_ONLY
def test_page_token_is_what_the_time_trap_checks(client: httpx.Client, engine: Engine) -> None:
    fields = Page(client.get("/").text).form_fields() | person()
    assert client.post("/f/contact", data=fields).status_code == 303  # the usual answer...
    with engine.connect() as connection:
        row = connection.execute(select(submissions)).mappings().one()
    assert (row["status"], row["quarantine_reason"]) == ("quarantined", "too_fast")  # ...held


@SQLITE_ONLY
def test_page_post_goes_to_thanks_and_is_stored(client: httpx.Client, engine: Engine) -> None:
    response = client.post("/f/contact", data=_filled(client))
    assert response.status_code == 303
    assert response.headers["location"] == "/thanks"
    with engine.connect() as connection:
        row = connection.execute(select(submissions)).mappings().one()
    assert row["status"] == ACCEPTED and row["language"] == "en"
    stored = PayloadCipher("").open(row["payload"])["person"]
    assert stored["name"] == "Jordan Rivera" and stored["email_ok"] is True
    thanks = client.get("/thanks")
    assert "Thank you! Your submission has been received!" in thanks.text


@SQLITE_ONLY
def test_page_post_error_returns_the_form_with_values_and_errors(
    client: httpx.Client, engine: Engine
) -> None:
    fields = _filled(client, phone="12", voicemail_ok="no", program="mat")
    response = client.post("/f/contact", data=fields)
    assert response.status_code == 422
    assert count_rows(engine) == (0, 0)
    page = Page(response.text)
    phone = page.one("input", name="phone")
    assert phone["value"] == "12"
    assert phone["aria-invalid"] == "true"
    assert phone["aria-describedby"] == "f-phone-error"
    assert "hidden" not in page.one("p", id="f-phone-error")
    assert "phone number does not look right" in page.texts["f-phone-error"]
    assert "hidden" in page.one("p", id="f-email-error")
    assert page.one("a", href="#f-phone")  # the summary links to the field
    assert "<title>Error:" in response.text
    # Everything else they typed is still there, escaped.
    assert page.one("input", name="name")["value"] == "Jordan Rivera"
    assert page.texts["f-message"] == "We need help <script>alert(1)</script>"
    assert "<script>alert(1)" not in response.text
    assert "checked" in page.one("input", name="voicemail_ok", value="no")
    assert "checked" in page.one("input", name="for_whom", value="loved_one")
    assert "checked" in page.one("input", name="consent")
    assert "selected" in page.one("option", value="mat")
    assert "selected" in page.one("option", value="CA")
    # The first page's time-trap token is kept, so the fill time still counts from it.
    assert page.form_fields()["_ts"] == fields["_ts"]
    # And it can be fixed and sent.
    fixed = Page(response.text).form_fields() | {"phone": "(415) 555-2671"}
    fixed |= {"name": "Jordan Rivera", "message": "We need help", "program": "mat", "state": "CA"}
    assert client.post("/f/contact", data=fixed).status_code == 303
    assert count_rows(engine)[0] == 1


@SQLITE_ONLY
def test_missing_contact_is_said_once_beside_the_group(client: httpx.Client) -> None:
    fields = _filled(client, email="", phone="")
    response = client.post("/f/contact", data=fields)
    assert response.status_code == 422
    page = Page(response.text)
    assert "phone number or an email address" in page.texts["f-contact-error"]
    assert "hidden" in page.one("p", id="f-phone-error")
    assert "hidden" in page.one("p", id="f-email-error")
    for name in ("phone", "email"):
        control = page.one("input", name=name)
        assert control["aria-describedby"] == "f-contact-error"
        assert control["aria-invalid"] == "true"


@SQLITE_ONLY
def test_spanish_page_errors_are_in_spanish(client: httpx.Client) -> None:
    fields = _filled(client, "/?lang=es", name="", consent="")
    del fields["consent"]
    response = client.post("/f/contact", data=fields)
    assert response.status_code == 422
    page = Page(response.text)
    assert page.one("html")["lang"] == "es"
    assert "Por favor, díganos su nombre." in page.texts["f-name-error"]
    assert "marque la casilla" in page.texts["f-consent-error"]
    assert page.form_fields()["_language"] == "es"


def test_error_order_and_aliases() -> None:
    errors = [
        FieldError("consent", "REQUIRED_FIELD_MISSING", "tick"),
        FieldError("_replyto", "TYPE_EMAIL", "bad email"),
        FieldError("color", "TOO_LONG", "too long"),
    ]
    shown = shown_errors(errors, {})
    assert [(e.slot, e.anchor) for e in shown] == [
        ("email", "f-email"),
        ("consent", "f-consent"),
        ("", ""),
    ]


# --- thank-you page ------------------------------------------------------------------------


@SQLITE_ONLY
def test_thanks_page_says_what_happens_next_with_crisis_lines(client: httpx.Client) -> None:
    english = client.get("/thanks").text
    assert "Thank you! Your submission has been received!" in english
    assert "What happens next" in english
    for line in ('href="tel:911"', 'href="tel:988"', "1-800-662-4357", 'href="tel:5550100100"'):
        assert line in english
    spanish = client.get("/thanks", params={"lang": "es"}).text
    assert "¡Gracias! Recibimos su mensaje." in spanish and "Qué pasa ahora" in spanish
    assert 'lang="es"' in spanish and "1-800-662-4357" in spanish


# --- dev mode: the local mailbox and the embed demo ------------------------------------------


@SQLITE_ONLY
def test_dev_pages_do_not_exist_outside_dev_mode(client: httpx.Client) -> None:
    for path in ("/dev/mailbox", "/dev/mailbox/x.eml", "/dev/webflow-demo"):
        assert client.get(path).status_code == 404, path


@SQLITE_ONLY
def test_mailbox_lists_and_shows_caught_mail(dev_server: LiveServer, settings: Settings) -> None:
    mail_dir = Path(settings.var_dir) / "mail"
    port = free_port()
    catcher = start_mailcatcher(mail_dir, "127.0.0.1", port)
    try:
        for number, subject in enumerate(("First reply", "Second <b>reply</b>")):
            message = EmailMessage()
            message["From"] = "Care Team <care@test.example>"
            message["To"] = f"person{number}@example.com"
            message["Subject"] = subject
            message["Message-ID"] = f"<m{number}@test.example>"
            message.set_content(f"Plain text {number}")
            message.add_alternative(
                f"<p style='color:#123'>Hello {number}</p><script>alert(1)</script>",
                subtype="html",
            )
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.send_message(message)
    finally:
        catcher.stop()
    with httpx.Client(base_url=dev_server.url, timeout=10) as http:
        listing = http.get("/dev/mailbox")
        assert listing.status_code == 200
        assert listing.text.index("Second &lt;b&gt;reply") < listing.text.index("First reply")
        assert "person1@example.com" in listing.text
        names = [a["href"] for a in Page(listing.text).find("a") if "/dev/mailbox/" in a["href"]]
        assert len(names) == 2
        shown = http.get(names[1])
        assert shown.status_code == 200
        assert "Plain text 0" in shown.text
        frame = Page(shown.text).one("iframe")
        assert frame["sandbox"] == "" and frame["src"] == f"{names[1]}/html"
        assert "frame-src 'self'" in shown.headers["content-security-policy"]
        part = http.get(frame["src"])
        assert part.status_code == 200 and "Hello 0" in part.text
        policy = part.headers["content-security-policy"]
        assert "sandbox" in policy and "script-src" not in policy and "default-src 'none'" in policy
        for bad in ("/dev/mailbox/..%2Fsecret.key", "/dev/mailbox/nope.eml", "/dev/mailbox/.x.eml"):
            assert http.get(bad).status_code == 404, bad
        assert http.get("/dev/webflow-demo").status_code == 200


# --- the time trap ---------------------------------------------------------------------------


def test_time_trap_token_round_trip() -> None:
    now = 1_700_000_000.0
    token = issue_token(SECRET, "contact", now=now)
    limits = {"min_seconds": 3.0, "max_age_seconds": 3600.0}
    assert check_token(SECRET, "contact", token, now=now + 10, **limits) is None
    assert check_token(SECRET, "contact", token, now=now + 1, **limits) == TOO_FAST
    assert check_token(SECRET, "contact", token, now=now + 3601, **limits) == EXPIRED
    assert check_token(SECRET, "other", token, now=now + 10, **limits) == INVALID
    assert check_token(b"another key", "contact", token, now=now + 10, **limits) == INVALID
    assert check_token(SECRET, "contact", "", now=now + 10, **limits) == MISSING
    assert check_token(SECRET, "contact", token, now=now - 60, **limits) == INVALID  # future
    prefix, issued, signature = token.split(".")
    forged = [
        f"{prefix}.{int(issued) - 60_000}.{signature}",  # an older time with the same signature
        f"{prefix}.{issued}.{signature[:-2]}",
        f"t0.{issued}.{signature}",
        "not a token",
        "t1.1e9.x",
        "t1.." + signature,
        "t1.١٢٣." + signature,  # non-ASCII digits
        "t1." + "9" * 40 + "." + signature,
    ]
    for bad in forged:
        assert check_token(SECRET, "contact", bad, now=now + 10, **limits) == INVALID, bad


def test_time_trap_uses_the_forms_limits() -> None:
    form = load_config().forms["contact"]
    now = 1_700_000_000.0
    token = issue_token(SECRET, "contact", now=now)
    assert check_form_token(SECRET, form, token, now=now + form.min_fill_seconds + 1) is None
    assert check_form_token(SECRET, form, token, now=now) == TOO_FAST
    late = now + form.max_token_age_seconds + 1
    assert check_form_token(SECRET, form, token, now=late) == EXPIRED
