"""Answers to a form post: JSON for scripts, a redirect or a friendly page for browsers."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from service.endpoints.pages import PAGE_MARKER, render_form
from service.negotiation import wants_json
from service.pages import PageRenderer
from service.validation import FieldError

SUCCESS_MESSAGE = "Thank you! Your submission has been received!"
FAILURE_MESSAGE = "Oops! Something went wrong while submitting the form."


def safe_next(target: str, allowed_origins: tuple[str, ...], fallback: str) -> str:
    """`target` when it is a plain relative path or on an allowed origin, else `fallback`."""
    target = target.strip()
    if not target or any(ch in target for ch in "\\\r\n\t\x00") or target != target.strip():
        return fallback
    try:
        parts = urlsplit(target)
        hostname = parts.hostname
    except ValueError:  # e.g. "https://[x": not a URL at all
        return fallback
    if not parts.scheme and not parts.netloc:
        return target if target.startswith("/") and not target.startswith("//") else fallback
    if parts.scheme not in {"http", "https"} or not hostname:
        return fallback
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    allowed = {o.rstrip("/").lower() for o in allowed_origins}
    # An entry given as a bare host name allows both schemes; a full origin only its own,
    # so "https://site" never lets a redirect downgrade to http.
    bare_hosts = {o for o in allowed if "://" not in o}
    if origin in allowed or parts.netloc.lower() in bare_hosts:
        return target
    return fallback


def accepted(request: Request, pages: PageRenderer, submission_id: str, next_url: str) -> Response:
    if wants_json(request):
        return JSONResponse(
            {"ok": True, "id": submission_id, "next": next_url, "message": SUCCESS_MESSAGE},
            status_code=202,
        )
    return RedirectResponse(next_url, status_code=303, headers={"Cache-Control": "no-store"})


def invalid(
    request: Request,
    pages: PageRenderer,
    errors: Sequence[FieldError],
    *,
    form: str,
    language: str,
    values: dict[str, str],
) -> Response:
    if wants_json(request):
        return JSONResponse(
            {
                "ok": False,
                "message": FAILURE_MESSAGE,
                "errors": [error.as_dict() for error in errors],
            },
            status_code=422,
        )
    if values.get(PAGE_MARKER):
        # Posted from our own form page: that form again, values kept, errors beside fields.
        return render_form(
            request.app.state.intake,
            form,
            language=language,
            values=values,
            errors=errors,
            status=422,
        )
    return pages.response(
        "invalid.html",
        status=422,
        form=form,
        language=language,
        errors=list(errors),
        values=values,
        back_url=_same_site_referer(request),
    )


def problem(
    request: Request,
    pages: PageRenderer,
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    language: str = "en",
) -> Response:
    """Any refusal that is not about a field: 400, 404, 413, 415, 429, 503."""
    if wants_json(request):
        return JSONResponse(
            {
                "ok": False,
                "message": FAILURE_MESSAGE,
                "errors": [{"field": "_form", "code": code, "message": message}],
            },
            status_code=status,
            headers=headers,
        )
    response = pages.response(
        "problem.html",
        status=status,
        language=language,
        message=message,
        code=code,
        back_url=_same_site_referer(request),
    )
    response.headers.update(headers or {})
    return response


def _same_site_referer(request: Request) -> str:
    """A link back to the page the form was on, only if it is a plain http(s) URL."""
    referer = request.headers.get("referer", "")
    parts = urlsplit(referer)
    if parts.scheme in {"http", "https"} and parts.netloc and len(referer) < 2000:
        return referer
    return ""
