"""A person gets through the intake form in a real browser (Debian's chromium): with and
without JavaScript, by keyboard alone, in Spanish, and through a Webflow-style page connected
by the embeddable script. Each submission is checked in the database; axe-core finds no serious
accessibility problem; screenshots at phone and desktop widths go to test-artifacts/browser/."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect
from sqlalchemy import Engine

from tests.browser.conftest import DESKTOP, PHONE, serious_violations, stored

pytestmark = pytest.mark.browser

SUCCESS = "Thank you! Your submission has been received!"
FAILURE = "Oops! Something went wrong while submitting the form."


def fill_form(page: Page, *, phone: str = "(415) 555-2671") -> None:
    page.locator("#f-for_whom-loved_one").check()
    page.get_by_label("Your name").fill("Jordan Rivera")
    page.get_by_label("Phone number").fill(phone)
    page.get_by_label("Email address").fill("jordan.rivera@example.com")
    page.locator("#f-preferred_contact-phone").check()
    page.get_by_label("Best time to reach you").fill("Evenings after 6")
    page.locator("#f-voicemail_ok-no").check()
    page.get_by_label("State").select_option("CA")
    page.get_by_label("Insurance carrier").fill("Blue Shield")
    page.get_by_label("Which program are you interested in?").select_option("detox")
    page.get_by_label("How can we help?").fill("My brother needs help.")
    page.locator("#f-consent").check()


def test_with_javascript_errors_network_failure_and_success(
    open_tab: Any, engine: Engine, axe_source: str
) -> None:
    tab = open_tab(DESKTOP)
    page = tab.goto("/")
    assert serious_violations(page, axe_source) == []
    tab.screenshot("form-desktop-en")
    fill_form(page, phone="12")

    # A server-side error, shown in place beside its field, focus taken there.
    page.get_by_role("button", name="Send message").click()
    expect(page.locator(".w-form-fail")).to_be_visible()
    expect(page.locator(".w-form-fail")).to_contain_text(FAILURE)
    phone = page.get_by_label("Phone number")
    expect(page.locator("#f-phone-error")).to_contain_text("phone number does not look right")
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(phone).to_have_attribute("aria-describedby", "f-phone-error")
    expect(phone).to_be_focused()
    assert serious_violations(page, axe_source) == []
    tab.screenshot("form-desktop-error")

    # The network fails: the failure block says so, and everything typed is still there.
    phone.fill("(415) 555-2671")
    page.route("**/f/contact", lambda route: route.abort("internetdisconnected"))
    page.get_by_role("button", name="Send message").click()
    expect(page.locator("[data-fail-detail]")).to_contain_text("could not reach our server")
    expect(page.get_by_role("button", name="Send message")).to_be_enabled()
    expect(page.locator("#f-phone-error")).to_be_hidden()
    expect(page.get_by_label("Your name")).to_have_value("Jordan Rivera")
    expect(page.get_by_label("How can we help?")).to_have_value("My brother needs help.")
    expect(page.locator("#f-consent")).to_be_checked()
    assert stored(engine) == []

    # Back online: the button is disabled while sending, then the success block shows.
    page.unroute("**/f/contact")
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/f/contact", hold)
    page.get_by_role("button", name="Send message").click()
    button = page.locator("#intake-form button[type=submit]")
    expect(button).to_be_disabled()
    expect(button).to_have_text("Sending…")
    for _ in range(500):  # Playwright hands over the held request while it waits
        if held:
            break
        page.wait_for_timeout(20)
    held[0].continue_()
    expect(page.get_by_text(SUCCESS)).to_be_visible()
    expect(page.locator("#intake-form")).to_be_hidden()
    expect(page.locator(".w-form-done")).to_be_focused()
    assert serious_violations(page, axe_source) == []
    assert tab.errors == [], tab.errors

    [row] = stored(engine)
    assert row["status"] == "accepted" and row["language"] == "en"
    assert row["for_whom"] == "loved_one" and row["program"] == "detox"
    assert row["state_code"] == "CA"
    person = row["person"]
    assert person["phone"] == "+14155552671" and person["voicemail_ok"] is False
    assert person["email_ok"] is True and person["consent"] is True
    assert person["best_time"] == "Evenings after 6" and person["insurance"] == "Blue Shield"


def test_without_javascript_error_then_thanks(
    open_tab: Any, engine: Engine, axe_source: str
) -> None:
    tab = open_tab(PHONE, javascript=False)
    page = tab.goto("/")
    fill_form(page, phone="12")
    page.get_by_role("button", name="Send message").click()

    # The server answers with the form again: values kept, the error beside its field.
    expect(page.locator("h2#error-summary-title")).to_have_text(FAILURE)
    expect(page.locator("#f-phone-error")).to_contain_text("phone number does not look right")
    expect(page.get_by_label("Phone number")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Your name")).to_have_value("Jordan Rivera")
    expect(page.get_by_label("How can we help?")).to_have_value("My brother needs help.")
    expect(page.locator("#f-voicemail_ok-no")).to_be_checked()
    expect(page.locator("#f-consent")).to_be_checked()
    tab.screenshot("form-phone-error-nojs")
    assert stored(engine) == []

    page.locator(".error-summary a").first.click()
    expect(page.get_by_label("Phone number")).to_be_focused()
    page.get_by_label("Phone number").fill("415-555-2671")
    page.get_by_role("button", name="Send message").click()
    expect(page).to_have_url(f"{tab.base_url}/thanks")
    expect(page.get_by_role("heading", level=1)).to_have_text(SUCCESS)
    expect(page.get_by_text("What happens next")).to_be_visible()
    expect(page.locator('a[href="tel:988"]')).to_be_visible()
    tab.screenshot("thanks-phone")
    [row] = stored(engine)
    assert row["status"] == "accepted" and row["person"]["name"] == "Jordan Rivera"

    # axe needs JavaScript: the same pages in a scripted tab (form.submit() skips form.js).
    checker = open_tab(DESKTOP)
    assert serious_violations(checker.goto("/thanks"), axe_source) == []
    page = checker.goto("/")
    page.get_by_label("Phone number").fill("12")
    page.evaluate("document.querySelector('#intake-form').submit()")
    expect(page.locator("#error-summary-title")).to_be_visible()
    assert serious_violations(page, axe_source) == []


def test_keyboard_only(open_tab: Any, engine: Engine) -> None:
    tab = open_tab(PHONE)
    page = tab.goto("/")
    keys = page.keyboard
    visited: list[str] = []

    def tab_to(element_id: str) -> None:
        for _ in range(6):
            keys.press("Tab")
            current = page.evaluate("document.activeElement.id || document.activeElement.tagName")
            visited.append(current)
            if current == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}; went {visited}")

    tab_to("f-for_whom-self")
    keys.press("Space")
    tab_to("f-name")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    keys.type("Sam Lee")
    tab_to("f-phone")
    keys.type("(415) 555-2671")
    tab_to("f-email")
    tab_to("f-preferred_contact-phone")
    keys.press("Space")
    tab_to("f-best_time")
    tab_to("f-voicemail_ok-yes")
    keys.press("Space")
    tab_to("f-text_ok-yes")
    tab_to("f-email_ok-yes")  # the checked radio of a group takes the focus
    tab_to("f-state")
    tab_to("f-insurance")
    tab_to("f-program")
    tab_to("f-message")
    keys.type("I would like to talk about options.")
    tab_to("f-consent")
    keys.press("Space")
    keys.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    keys.press("Enter")
    expect(page.get_by_text(SUCCESS)).to_be_visible()
    assert not [v for v in visited if v.startswith("f-hp")]  # the honeypot is never reached
    tab.screenshot("form-phone-success")
    assert tab.errors == [], tab.errors
    [row] = stored(engine)
    assert row["status"] == "accepted" and row["for_whom"] == "self"
    assert row["person"]["name"] == "Sam Lee" and row["person"]["voicemail_ok"] is True


def test_spanish_form(open_tab: Any, engine: Engine, axe_source: str) -> None:
    tab = open_tab(PHONE)
    page = tab.goto("/")
    page.get_by_role("link", name="Español").click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    assert serious_violations(page, axe_source) == []
    tab.screenshot("form-phone-es")
    page.get_by_label("Su nombre").fill("Ana Gómez")
    page.get_by_label("Número de teléfono").fill("(415) 555-2671")
    page.locator("#f-email_ok-no").check()
    page.get_by_role("button", name="Enviar mensaje").click()
    # Consent missing: said in Spanish, beside the box.
    expect(page.locator("#f-consent-error")).to_contain_text("marque la casilla")
    expect(page.locator(".w-form-fail")).to_contain_text("Algo salió mal")
    page.get_by_label("Acepto que me contacten", exact=False).check()
    page.get_by_role("button", name="Enviar mensaje").click()
    expect(page.get_by_text("¡Gracias! Recibimos su mensaje.")).to_be_visible()
    assert tab.errors == [], tab.errors
    [row] = stored(engine)
    assert row["language"] == "es" and row["person"]["email_ok"] is False


def test_webflow_style_page_with_the_embed_script(
    open_tab: Any, engine: Engine, axe_source: str
) -> None:
    tab = open_tab(DESKTOP)
    page = tab.goto("/dev/webflow-demo")
    expect(page.locator("html[data-wf-page]")).to_have_count(1)
    page.wait_for_function("() => !!window.IntakeForms")
    # webflow.js handles forms with its own submit handlers; they must never run.
    page.evaluate(
        """() => {
            window.webflowSaw = 0;
            const count = () => { window.webflowSaw += 1; };
            document.addEventListener('submit', count);
            document.querySelector('#wf-form-Contact').addEventListener('submit', count);
        }"""
    )
    page.get_by_label("Name").fill("Riley Park")
    page.get_by_label("Email Address").fill("riley@example.com")
    page.get_by_label("Phone").fill("12")  # type=tel: only the server can tell
    page.get_by_label("Message").fill("Looking for outpatient options.")
    page.get_by_text("I agree to be contacted").click()
    page.get_by_role("button", name="Submit").click()
    expect(page.locator(".w-form-fail")).to_be_visible()
    phone = page.get_by_label("Phone")
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(phone).to_be_focused()
    error_id = phone.get_attribute("aria-describedby")
    assert error_id
    expect(page.locator(f"#{error_id}")).to_contain_text("phone number does not look right")
    tab.screenshot("webflow-demo-error")

    phone.fill("+1 415 555 2671")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator(".w-form-done")).to_be_visible()
    expect(page.locator(".w-form-done")).to_contain_text(SUCCESS)
    expect(page.locator("#wf-form-Contact")).to_be_hidden()
    expect(page.locator(".w-form-fail")).to_be_hidden()
    assert page.evaluate("window.webflowSaw") == 0
    assert serious_violations(page, axe_source) == []
    tab.screenshot("webflow-demo-done")
    assert tab.errors == [], tab.errors
    [row] = stored(engine)
    assert row["person"]["name"] == "Riley Park"
    assert row["person"]["email"] == "riley@example.com" and row["person"]["consent"] is True
    assert row["person"]["phone"] == "+14155552671"
    assert row["person"]["message"] == "Looking for outpatient options."
