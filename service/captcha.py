"""Optional CAPTCHA verification per form: Cloudflare Turnstile, hCaptcha or reCAPTCHA.

All three verifiers take the same form post (secret, response, remoteip) and answer JSON with
`success` and `error-codes`. What we do with the answer is the product decision:

- A failed or missing CAPTCHA does not refuse the post (no 422): the submission is stored in
  quarantine with the reason "captcha", the sender sees the ordinary success, no email goes out,
  and ops can release it. Real people fail CAPTCHAs every day: the widget is blocked by a privacy
  extension, JavaScript is off, a token expired while someone wrote a long message at night. A
  422 they cannot act on would lose exactly the person this service exists for; a bot, on the
  other hand, learns nothing from an answer that looks like success.
- When the verifier cannot be asked (timeout, 5xx, an answer we cannot read, or our own secret
  refused), we cannot tell person from bot: the submission is held for review with the reason
  "captcha_unavailable" (never lost, never silently sent on), and the outage is logged.
- Urgent messages are never verified at all: nothing holds back a person in crisis.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from service.config import CaptchaConfig

log = logging.getLogger("intake.captcha")

FAILED = "captcha"  # quarantine reason: the verifier said no, or there was no token
UNAVAILABLE = "captcha_unavailable"  # quarantine reason: the verifier could not be asked
# Error codes meaning our configuration is wrong, not the person's token.
CONFIG_ERRORS = {"missing-input-secret", "invalid-input-secret", "sitekey-secret-mismatch"}
MAX_RESPONSE_CHARS = 4096  # Turnstile tokens are up to 2048; anything longer is not a token


class CaptchaVerifier:
    """Asks the form's verifier about a token; `verify` returns None or a quarantine reason."""

    def __init__(self, timeout_seconds: float, client: httpx.AsyncClient | None = None) -> None:
        self._timeout = timeout_seconds
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "intake-captcha/1"},
        )

    async def verify(self, captcha: CaptchaConfig, response: str, remote_ip: str) -> str | None:
        if not response or len(response) > MAX_RESPONSE_CHARS:
            return FAILED
        data = {"secret": captcha.secret, "response": response}
        if remote_ip:
            data["remoteip"] = remote_ip
        try:
            # wait_for bounds the whole exchange; httpx's timeout bounds each phase of it.
            answer = await asyncio.wait_for(
                self._client.post(captcha.verify_url, data=data), self._timeout
            )
            body = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, ValueError) as exc:
            log.warning(
                "captcha verifier unavailable",
                extra={"provider": captcha.provider, "error": type(exc).__name__},
            )
            return UNAVAILABLE
        if not isinstance(body, dict):
            log.warning(
                "captcha verifier answered badly",
                extra={"provider": captcha.provider, "status": answer.status_code},
            )
            return UNAVAILABLE
        if body.get("success") is True:
            return None
        raw_codes = body.get("error-codes")
        codes = [str(c)[:40] for c in raw_codes[:5]] if isinstance(raw_codes, list) else []
        if CONFIG_ERRORS.intersection(codes):
            log.error(
                "captcha secret refused by the verifier: check the form's captcha.secret",
                extra={"provider": captcha.provider, "codes": codes},
            )
            return UNAVAILABLE
        log.info("captcha failed", extra={"provider": captcha.provider, "codes": codes})
        return FAILED

    async def aclose(self) -> None:
        await self._client.aclose()
