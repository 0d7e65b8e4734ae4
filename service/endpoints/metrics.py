"""GET /metrics for Prometheus.

Access: with INTAKE_METRICS_TOKEN set, only a request carrying `Authorization: Bearer <token>`
(from anywhere: the scraper may live on another host). Without a token, only a direct request from
loopback: a request that came through a proxy (X-Forwarded-For, Forwarded or X-Real-IP present,
or a peer listed in INTAKE_TRUSTED_PROXIES) is refused, because a reverse proxy on the same
machine would otherwise make every visitor look local.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import metrics
from service.state import AppState

PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listed(host: str, networks: tuple[str, ...]) -> bool:
    address = ipaddress.ip_address(host)
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def _refusal(status: int, code: str, message: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"ok": False, "code": code, "message": message}, status, headers)


def allowed(request: Request, token: str, trusted_proxies: tuple[str, ...]) -> Response | None:
    """None when the request may read the metrics, else the refusal to send."""
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
        return _refusal(401, "UNAUTHORIZED", "A valid bearer token is required.")
    peer = request.client.host if request.client else ""
    proxied = any(name in request.headers for name in PROXY_HEADERS)
    if proxied or not _is_loopback(peer) or _listed(peer, trusted_proxies):
        return _refusal(
            403,
            "FORBIDDEN",
            "Metrics are served to loopback only; set INTAKE_METRICS_TOKEN to scrape remotely.",
        )
    return None


async def metrics_endpoint(request: Request) -> Response:
    state: AppState = request.app.state.intake
    settings = state.settings
    refusal = allowed(request, settings.metrics_token.reveal(), settings.trusted_proxies)
    if refusal is not None:
        return refusal
    registry = metrics.scrape_registry(settings, state.engine, own=metrics.process_metrics())
    # The state gauges query the database and the broker: keep that off the event loop.
    body = await run_in_threadpool(metrics.render, registry)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
