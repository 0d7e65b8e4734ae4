"""Liveness and readiness: /healthz says the process runs, /readyz says submissions are accepted."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.state import AppState

CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> Response:
    """200 while the database answers. Redis down is 'degraded', not unready: work is stored."""
    state: AppState = request.app.state.intake
    database, broker = await asyncio.gather(_database(state), _redis(state))
    ready = database == "ok"
    body = {
        "ok": ready,
        "status": ("ok" if broker == "ok" else "degraded") if ready else "unavailable",
        "components": {"database": database, "redis": broker},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def _database(state: AppState) -> str:
    def ping() -> None:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(run_in_threadpool(ping), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return "unavailable"
    return "ok"


async def _redis(state: AppState) -> str:
    client = aioredis.Redis.from_url(
        state.settings.redis_url,
        socket_timeout=state.settings.redis_timeout_seconds,
        socket_connect_timeout=state.settings.redis_timeout_seconds,
    )
    try:
        await asyncio.wait_for(client.ping(), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return "unavailable"
    finally:
        await client.aclose()
    return "ok"
