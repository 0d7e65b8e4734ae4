"""HTML pages for people: thank-you, errors, the form. Jinja with autoescape for pages only.

(Email templates are rendered by the workers; the web process never loads them.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

# Our pages load nothing from elsewhere; they may not be framed (clickjacking of a consent box).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self' {form_action}; connect-src 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class PageRenderer:
    def __init__(self, templates_dir: str, globals_: dict[str, Any]) -> None:
        self._env = Environment(
            loader=FileSystemLoader(str(Path(templates_dir) / "pages")),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            auto_reload=False,
        )
        self._env.globals.update(globals_)

    def render(self, name: str, **context: Any) -> str:
        return self._env.get_template(name).render(**context)

    def response(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        headers = dict(PAGE_HEADERS)
        headers["Content-Security-Policy"] = headers["Content-Security-Policy"].format(
            form_action=context.pop("form_action", "")
        )
        return HTMLResponse(self.render(name, **context), status_code=status, headers=headers)
