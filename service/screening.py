"""Spam signals on a valid submission: the honeypot, the time trap and the CAPTCHA.

A signal never drops a submission: it is stored in quarantine with the reason, the sender sees
the ordinary success, and ops can release it (browser autofill fills honeypots; people fail
CAPTCHAs). The caller never screens an urgent message: nothing holds back a person in crisis.
"""

from __future__ import annotations

from service import timetrap
from service.config import FormConfig
from service.state import AppState
from service.validation import Intake

HONEYPOT = "honeypot"  # quarantine reason: a hidden field was filled
# Quarantine reasons for what the time trap found wrong with the `_ts` token.
TIME_TRAP_REASONS = {
    timetrap.TOO_FAST: "too_fast",
    timetrap.EXPIRED: "token_expired",
    timetrap.INVALID: "token_invalid",
    timetrap.MISSING: "token_missing",
}


async def quarantine_reason(
    state: AppState, form: FormConfig, intake: Intake, client_address: str
) -> str | None:
    """Why this submission should wait for review, or None to deliver it. Cheapest check first."""
    if intake.honeypot_filled:
        return HONEYPOT
    found = timetrap.check_form_token(state.secret, form, intake.time_token)
    # Posts from forms on other sites carry no token: only a form that requires one minds.
    if found is not None and (found != timetrap.MISSING or form.require_time_token):
        return TIME_TRAP_REASONS.get(found, "token_invalid")
    if form.captcha is not None and state.captcha is not None:
        return await state.captcha.verify(form.captcha, intake.captcha_response, client_address)
    return None
