"""The references for ingest, served under the same uvicorn settings as `intake web`.

- `GET /`: the ceiling, a bare Starlette route answering a small JSON, nothing else.
- `POST /f/contact`: validation only: the same body reading, parsing and FormValidator as ours,
  answered 202 with nothing stored and nothing queued. It shows how much of the gap to the
  bare GET the request's own work takes before durability and queueing add theirs.

Served by `python -m bench.serve bench.baseline_app:app` in the same run, so the ingest figures
are ratios to it.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.bodies import BodyError, media_type, parse_body, read_body
from service.config import load_config
from service.validation import FormValidator

MAX_BODY = 65536  # bytes, as the service's default

_config = load_config(os.environ.get("INTAKE_CONFIG", ""))
_validator = FormValidator(_config, _config.forms["contact"], check_deliverability=False)


async def hello(request: Request) -> Response:
    return JSONResponse({"ok": True, "message": "hello"})


async def validate_only(request: Request) -> Response:
    try:
        mime, params = media_type(request)
        fields = parse_body(mime, params, await read_body(request, MAX_BODY))
    except BodyError as exc:
        return JSONResponse({"ok": False, "code": exc.code}, status_code=exc.status)
    if _validator.validate(fields).intake is None:
        return JSONResponse({"ok": False}, status_code=422)
    return JSONResponse({"ok": True, "id": "0" * 32}, status_code=202)


app = Starlette(
    routes=[
        Route("/", hello, methods=["GET"]),
        Route("/f/contact", validate_only, methods=["POST"]),
    ]
)
