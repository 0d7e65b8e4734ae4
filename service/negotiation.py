"""Whether a client wants JSON or a page: the rules Formspree-style forms already rely on."""

from __future__ import annotations

from starlette.requests import Request

from service.bodies import is_json_type, media_type

HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_ACCEPT = ("application/json", "text/json", "text/javascript", "application/javascript")


def _accept_order(header: str) -> list[str]:
    """Media types from Accept, highest quality first, keeping the sender's order among equals."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        quality = 1.0
        for param in parts[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, parts[0].lower()))
    return [mime for _, _, mime in sorted(ranked)]


def _first_preference(accept: str) -> str | None:
    """'json' or 'html', whichever Accept names first; None when it names neither."""
    for mime in _accept_order(accept):
        if mime in JSON_ACCEPT or (mime.startswith("application/") and mime.endswith("+json")):
            return "json"
        if mime in HTML_TYPES:
            return "html"
    return None


def wants_json(request: Request) -> bool:
    """JSON for XHR, for Accept naming JSON before HTML, or for a JSON body not asking HTML."""
    if request.headers.get("x-requested-with", "").lower() == "xmlhttprequest":
        return True
    preference = _first_preference(request.headers.get("accept", ""))
    if preference is not None:
        return preference == "json"
    mime, _ = media_type(request)
    return is_json_type(mime)
