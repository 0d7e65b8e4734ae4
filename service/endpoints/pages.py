"""Pages a person sees: the thank-you page (the form page arrives with the website issue)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.state import AppState


def page_language(request: Request) -> str:
    lang = request.query_params.get("lang", "")[:2].lower()
    return lang if lang in ("en", "es") else "en"


async def thanks(request: Request) -> Response:
    state: AppState = request.app.state.intake
    return state.pages.response("thanks.html", language=page_language(request))
