"""Pages a person sees: the intake form and the thank-you page; in dev mode, the local mailbox
and a Webflow-style page that shows the embeddable script at work.

The form is rendered from the form's configuration, in English or Spanish. The same template
answers a failed post from our own form (see `render_form`, used by service/replies.py), so a
person without JavaScript gets their values back with each error beside its field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.config import AppConfig
from service.consent import consent_text
from service.endpoints import mailbox
from service.settings import Settings
from service.timetrap import TOO_FAST, check_form_token, issue_token
from service.us_states import STATES, state_code
from service.validation import FOR_WHOM, PREFERRED_CONTACT, FieldError, parse_bool

if TYPE_CHECKING:  # the state imports the replies, which import these pages
    from service.state import AppState

LANGUAGES = ("en", "es")
DEFAULT_FORM = "contact"  # what GET / shows, when the configuration defines it
FORM_TEXT = Path("pages") / "form_text.toml"  # the form's words, under the templates directory
BUILT_IN_TITLE = "Contact us"  # FormConfig's default title, which the page translates
PAGE_MARKER = "_page"  # hidden field our form sends: its failed posts get the form back

# The id of the control each field's error points to, in the order the form shows them.
ERROR_ANCHORS = {
    "for_whom": "f-for_whom-self",
    "name": "f-name",
    "contact": "f-phone",
    "phone": "f-phone",
    "email": "f-email",
    "preferred_contact": "f-preferred_contact-phone",
    "best_time": "f-best_time",
    "voicemail_ok": "f-voicemail_ok-yes",
    "text_ok": "f-text_ok-yes",
    "email_ok": "f-email_ok-yes",
    "state": "f-state",
    "insurance": "f-insurance",
    "program": "f-program",
    "message": "f-message",
    "consent": "f-consent",
}
# Fields shown together: when each has the same error, it is said once, beside the group.
GROUPS = {"contact": ("phone", "email")}
FIELD_ALIASES = {"_replyto": "email"}  # error fields that our form shows under another name


@dataclass(frozen=True)
class ShownError:
    slot: str  # the field or group it is shown beside; "" when only in the summary
    anchor: str  # id of the control the summary links to; "" for none
    message: str


def page_language(request: Request) -> str:
    lang = request.query_params.get("lang", "")[:2].lower()
    return lang if lang in LANGUAGES else "en"


def default_form_name(config: AppConfig) -> str:
    return DEFAULT_FORM if DEFAULT_FORM in config.forms else next(iter(config.forms))


@lru_cache(maxsize=4)
def form_text(templates_dir: str) -> dict[str, dict[str, Any]]:
    """The form's words per language, read once per templates directory."""
    with (Path(templates_dir) / FORM_TEXT).open("rb") as handle:
        return tomllib.load(handle)


async def form_page(request: Request) -> Response:
    state: AppState = request.app.state.intake
    language = page_language(request)
    name = request.path_params.get("form") or default_form_name(state.config)
    if state.config.form(name) is None:
        return state.pages.response(
            "problem.html",
            status=404,
            language=language,
            code="FORM_NOT_FOUND",
            message="This form does not exist.",
            back_url="",
        )
    return render_form(state, name, language=language, path=request.url.path)


def render_form(
    state: AppState,
    form_name: str,
    *,
    language: str,
    values: Mapping[str, str] | None = None,
    errors: Sequence[FieldError] = (),
    status: int = 200,
    path: str = "",
) -> Response:
    """The form page, filled with `values` and showing `errors` beside their fields."""
    form = state.config.forms[form_name]
    values = dict(values or {})
    language = language if language in LANGUAGES else "en"
    text = form_text(state.settings.templates_dir)[language]
    token = values.get("_ts", "")
    if check_form_token(state.secret, form, token) not in (None, TOO_FAST):
        token = issue_token(state.secret, form.name)  # keep the first page's time when we can
    shown = shown_errors(errors, text.get("errors", {}))
    slots = {e.slot: e.message for e in shown if e.slot}
    other = "es" if language == "en" else "en"
    path = path or f"/f/{form.name}"
    program_labels = text.get("programs", {})
    return state.pages.response(
        "form.html",
        status=status,
        language=language,
        t=text,
        # The built-in title is translated; a title from the configuration is shown as it is.
        title=text["title"] if form.title == BUILT_IN_TITLE else form.title,
        action=f"/f/{form.name}",
        next_url="" if form.next_url else "/thanks" + ("?lang=es" if language == "es" else ""),
        switch_url=f"{path}?lang={other}",
        other_language=other,
        honeypots=form.honeypot_fields,
        token=token,
        consent=consent_text(language),
        states=sorted(STATES.items(), key=lambda item: item[1]),
        programs=[(c, program_labels.get(c, state.config.programs[c])) for c in form.programs],
        values=values,
        selected=selected_choices(values),
        error_list=shown,
        errors=slots,
        described=_error_ids(slots),
        messages=text.get("errors", {}),
    )


def shown_errors(errors: Sequence[FieldError], messages: Mapping[str, str]) -> list[ShownError]:
    """Field errors as the form shows them: in form order, translated, groups said once."""
    by_field: dict[str, FieldError] = {}
    for error in errors:
        by_field.setdefault(FIELD_ALIASES.get(error.field, error.field), error)
    for group, members in GROUPS.items():
        found = [by_field[m] for m in members if m in by_field]
        if len(found) == len(members) and len({(e.code, e.message) for e in found}) == 1:
            for member in members:
                del by_field[member]
            by_field[group] = FieldError(group, found[0].code, found[0].message)
    order = list(ERROR_ANCHORS)
    ranked = sorted(by_field.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    shown = []
    for field, error in ranked:
        message = messages.get(f"{field}:{error.code}") or messages.get(error.code) or error.message
        anchor = ERROR_ANCHORS.get(field, "")
        shown.append(ShownError(field if anchor else "", anchor, message))
    return shown


def selected_choices(values: Mapping[str, str]) -> dict[str, str]:
    """Which radio, option or box to show chosen, from what was posted (any spelling)."""
    chosen: dict[str, str] = {}
    for key, table in (("for_whom", FOR_WHOM), ("preferred_contact", PREFERRED_CONTACT)):
        raw = values.get(key, "").lower()
        chosen[key] = table.get(raw.replace("-", "_")) or table.get(raw) or ""
    for key in ("voicemail_ok", "text_ok", "email_ok", "consent"):
        flag = parse_bool(values[key]) if values.get(key) else None
        chosen[key] = "" if flag is None else "yes" if flag else "no"
    chosen["email_ok"] = chosen["email_ok"] or "yes"  # safe to email unless they say otherwise
    chosen["state"] = state_code(values.get("state", "")) or ""
    chosen["program"] = values.get("program", "")
    return chosen


def _error_ids(slots: Mapping[str, str]) -> dict[str, str]:
    """For each field: the ids of the error messages that describe its control."""
    ids = {field: f"f-{field}-error" for field in slots}
    for group, members in GROUPS.items():
        if group in slots:
            for member in members:
                ids[member] = f"f-{group}-error"
    return ids


async def thanks(request: Request) -> Response:
    state: AppState = request.app.state.intake
    return state.pages.response("thanks.html", language=page_language(request))


async def webflow_demo(request: Request) -> Response:
    """A page shaped like a Webflow export whose form is taken over by /static/embed.js."""
    state: AppState = request.app.state.intake
    return state.pages.response("webflow_demo.html", language="en")


def dev_routes(settings: Settings) -> list[BaseRoute]:
    """Pages for a developer's own machine; not routed at all unless dev mode is on."""
    if not settings.dev_mode:
        return []
    return [
        *mailbox.routes(),
        Route("/dev/webflow-demo", webflow_demo, methods=["GET"]),
    ]
