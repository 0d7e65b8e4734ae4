"""Browser-facing security: CORS for the form endpoint, origin checks, headers on every answer.

CORS here is deliberately narrower than a general-purpose middleware: only POST to /f/...,
only from INTAKE_ALLOWED_ORIGINS, never with credentials. A preflight from any other origin (or
for another method or header) is answered 403 with no Access-Control-Allow-* header at all, so a
browser refuses the request and nothing about our policy leaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import FormConfig
from service.pages import PAGE_HEADERS
from service.replies import problem
from service.state import AppState

FORM_PATH_PREFIX = "/f/"  # the only paths a cross-origin page may post to
# Request headers a cross-origin form script may send (beyond the CORS-safelisted ones).
ALLOWED_REQUEST_HEADERS = frozenset(
    {"accept", "accept-language", "content-language", "content-type", "x-requested-with"}
)
EXPOSED_HEADERS = "Retry-After"  # a script must see it to wait after a 429
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may cache an allowed preflight
# Sec-Fetch-Site values of a post made from our own pages or a sibling subdomain.
SAME_SITE = frozenset({"same-origin", "same-site", "none"})

# Sent on every answer: JSON must not be sniffed as HTML, and no answer leaks where it came from.
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# Added to any HTML answer that does not already carry a policy (framework error pages).
HTML_HEADERS = {
    "Content-Security-Policy": PAGE_HEADERS["Content-Security-Policy"].format(form_action=""),
    "X-Frame-Options": "DENY",
}


def normalize_origin(value: str) -> str:
    """'https://WWW.Example.org/' -> 'https://www.example.org'; '' for anything else."""
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_set(origins: Iterable[str]) -> frozenset[str]:
    return frozenset(o for o in (normalize_origin(v) for v in origins) if o)


class CorsMiddleware:
    """CORS for POST /f/{form} from the allowed origins only; other paths get no CORS at all."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed = origin_set(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(FORM_PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS" and origin is not None:
            await self._preflight(origin, headers)(scope, receive, send)
            return
        allowed = (
            scope["method"] == "POST"
            and origin is not None
            and normalize_origin(origin) in self.allowed
        )

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = message["headers"] = list(message.get("headers", ()))
                add_vary_origin(raw)
                if allowed and origin is not None:
                    raw.append((b"access-control-allow-origin", origin.encode("latin-1")))
                    raw.append((b"access-control-expose-headers", EXPOSED_HEADERS.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, origin: str, headers: Headers) -> Response:
        vary = {"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
        method = headers.get("access-control-request-method", "")
        requested = {
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        }
        if (
            normalize_origin(origin) not in self.allowed
            or method != "POST"
            or not requested <= ALLOWED_REQUEST_HEADERS
            or "access-control-request-private-network" in headers
        ):
            return PlainTextResponse("CORS request refused.", status_code=403, headers=vary)
        return Response(
            status_code=204,
            headers={
                **vary,
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": ", ".join(sorted(ALLOWED_REQUEST_HEADERS)),
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            },
        )


class SecurityHeadersMiddleware:
    """nosniff and Referrer-Policy on every answer; a strict CSP on any HTML that lacks one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", ()))
                add_security_headers(message["headers"])
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Response headers are edited as ASGI's raw list of (lower-case name, value) byte pairs: a
# MutableHeaders per answer and per middleware cost more than the rest of a middleware.
RawHeaders = list[tuple[bytes, bytes]]
_COMMON_RAW = [(k.lower().encode(), v.encode()) for k, v in COMMON_HEADERS.items()]
_HTML_RAW = [(k.lower().encode(), v.encode()) for k, v in HTML_HEADERS.items()]


def add_security_headers(raw: RawHeaders) -> None:
    """COMMON_HEADERS on every answer, HTML_HEADERS on HTML; never over a value already set."""
    present = {name.lower() for name, _ in raw}
    html = any(n.lower() == b"content-type" and v.startswith(b"text/html") for n, v in raw)
    for name, value in (*_COMMON_RAW, *_HTML_RAW) if html else _COMMON_RAW:
        if name not in present:
            raw.append((name, value))


def add_vary_origin(raw: RawHeaders) -> None:
    """Vary: Origin, added to a Vary header already there or as a new one."""
    for index, (name, value) in enumerate(raw):
        if name.lower() == b"vary":
            raw[index] = (name, value + b", Origin")
            return
    raw.append((b"vary", b"Origin"))


def foreign_post(headers: Headers, allowed: frozenset[str]) -> bool:
    """A browser post from a page that is not ours. Clients that are not browsers send neither
    Origin nor Sec-Fetch-Site and are not judged here (that is the rate limit's job)."""
    origin = headers.get("origin")
    if origin is not None:
        return normalize_origin(origin) not in allowed  # "null" (sandboxed, file:) is foreign
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.strip().lower() not in SAME_SITE
    return False


def refuse_foreign_origin(request: Request, state: AppState, form: FormConfig) -> Response | None:
    """403 when the form requires posts from our own or allowed pages and this one is not.

    A refusal, not a quarantine: a mismatch is almost always a site whose address changed (www
    or not, a new domain) and the owner must see it at once; every person who meets it is
    shown our phone number and the crisis lines, not a success that hides the problem.
    """
    if not form.require_origin:
        return None
    allowed = origin_set((*state.settings.allowed_origins, state.settings.public_url))
    if not foreign_post(request.headers, allowed):
        return None
    phone = state.config.organization.phone
    return problem(
        request,
        state.pages,
        403,
        "ORIGIN_NOT_ALLOWED",
        "This form cannot be sent from this website."
        + (f" Please call us at {phone}." if phone else ""),
    )
