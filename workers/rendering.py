"""Email templates: folders of subject.txt, body.txt and body.html sharing a base in _base/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

# Template folders, by the message they make. The auto-reply has one folder per language.
AUTOREPLY_TEMPLATES = {"en": "autoreply_en", "es": "autoreply_es"}
ADMISSIONS_TEMPLATE = "admissions"
TEST_TEMPLATE = "send_test"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailRenderer:
    """Renders a template folder with StrictUndefined; HTML is autoescaped and CSS inlined."""

    def __init__(self, templates_dir: str) -> None:
        root = Path(templates_dir) / "email"
        loader = FileSystemLoader(str(root))
        # Subjects and text bodies are plain text: HTML-escaping them would show "&amp;".
        self._text = Environment(
            loader=loader,
            autoescape=False,  # noqa: S701
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        self._html = Environment(
            loader=loader, autoescape=select_autoescape(default=True), undefined=StrictUndefined
        )
        self._inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)

    def render(self, name: str, context: dict[str, Any]) -> RenderedEmail:
        subject = self._text.get_template(f"{name}/subject.txt").render(context)
        text = self._text.get_template(f"{name}/body.txt").render(context)
        html = self._html.get_template(f"{name}/body.html").render(context)
        return RenderedEmail(
            subject=" ".join(subject.split()),  # one line, whatever the template did
            text=text.strip() + "\n",
            html=self._inliner.inline(html),
        )

    def template_names(self) -> list[str]:
        loader = self._text.loader
        assert loader is not None
        return sorted({name.split("/")[0] for name in loader.list_templates()} - {"_base"})
