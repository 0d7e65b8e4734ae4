"""The time trap: a signed, expiring token that our form pages carry in the hidden `_ts` field.

A person takes seconds to minutes to fill a form; a bot posts at once, or replays a page it fetched
days ago. The page embeds `issue_token(secret, form)`; on submission, `check_token` (or
`check_form_token`, which reads the form's limits) says what is wrong with it, or None when the
token is good:

    reason = check_form_token(state.secret, form, intake.time_token)
    if reason is not None and (form.require_time_token or reason != MISSING):
        ...  # quarantine the submission with `reason`; never drop it, never tell the client

Reasons: MISSING (no token: posts from other sites have none; only a form that requires one
should hold that against the post), INVALID (forged, damaged, for another form, or from the
future), TOO_FAST (sent sooner than a person could fill the form), EXPIRED (the page is older
than the form allows).

The token is `t1.<issue time in ms>.<HMAC-SHA256 over the form name and issue time>`: stateless,
so any web process sharing AppState.secret can check it. It is not a nonce: a replayed token is
still valid until it expires (duplicates and floods are the rate limit's job).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from service.config import FormConfig

VERSION = "t1"  # bump when the format or what is signed changes
CLOCK_SKEW_SECONDS = 5.0  # web processes on different hosts may disagree this much
_MAX_TIME_DIGITS = 15  # milliseconds since 1970 fit in 13 digits until the year 2286

MISSING = "missing"
INVALID = "invalid"
TOO_FAST = "too_fast"
EXPIRED = "expired"


def issue_token(secret: bytes, form: str, *, now: float | None = None) -> str:
    """A token for `form` issued at `now` (seconds since the epoch; the clock by default)."""
    issued = int((time.time() if now is None else now) * 1000)
    return f"{VERSION}.{issued}.{_sign(secret, form, str(issued))}"


def check_token(
    secret: bytes,
    form: str,
    token: str,
    *,
    min_seconds: float,
    max_age_seconds: float,
    now: float | None = None,
) -> str | None:
    """None for a good token, else why not: MISSING, INVALID, TOO_FAST or EXPIRED."""
    token = token.strip()
    if not token:
        return MISSING
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        return INVALID
    issued_text, signature = parts[1], parts[2]
    if not (issued_text.isascii() and issued_text.isdigit()) or len(issued_text) > _MAX_TIME_DIGITS:
        return INVALID
    if not hmac.compare_digest(_sign(secret, form, issued_text), signature):
        return INVALID
    age = (time.time() if now is None else now) - int(issued_text) / 1000
    if age < -CLOCK_SKEW_SECONDS:
        return INVALID  # signed by us, yet issued in the future: a clock or a key is wrong
    if age < min_seconds:
        return TOO_FAST
    if age > max_age_seconds:
        return EXPIRED
    return None


def check_form_token(
    secret: bytes, form: FormConfig, token: str, *, now: float | None = None
) -> str | None:
    """`check_token` with the form's own limits (min_fill_seconds, max_token_age_seconds)."""
    return check_token(
        secret,
        form.name,
        token,
        min_seconds=form.min_fill_seconds,
        max_age_seconds=form.max_token_age_seconds,
        now=now,
    )


def _sign(secret: bytes, form: str, issued: str) -> str:
    message = f"intake-timetrap\x1f{form}\x1f{issued}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
