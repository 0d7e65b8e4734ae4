"""The floor of our design: validation, then our group commit and our publisher, nothing else.

`POST /f/contact` parses and validates like the service, stores the submission and its planned
deliveries through the same `OutboxWriter` (one transaction and one fsync per batch of requests)
and wakes the workers through the same `TaskPublisher`, then answers 202. It leaves out what the
service adds on top: the rate limiter's Redis round trip, encryption of the personal fields,
crisis triage, spam screening, duplicate fingerprints, logging, metrics and the security
middleware. Its req/s is therefore the most the service could reach on this machine with
durability and queueing as designed, whatever else were made free.

Served by `python -m bench.serve bench.floor_app:create_floor_app --factory` with the
service's environment, on a database the harness has migrated.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.bodies import BodyError, media_type, parse_body, read_body
from service.config import load_config
from service.db import make_engine, utcnow
from service.endpoints.submit import mail_domain
from service.models import ACCEPTED
from service.outbox import OutboxWriter, build_record, new_id
from service.publisher import TaskPublisher
from service.routing import plan_deliveries, wake_up
from service.settings import Settings
from service.validation import FormValidator
from workers.celery_app import create_celery

FORM = "contact"


def create_floor_app() -> Starlette:
    settings = Settings.from_env()
    config = load_config(settings.config)
    validator = FormValidator(config, config.forms[FORM], check_deliverability=False)
    engine = make_engine(settings.database_url)
    writer = OutboxWriter(engine, timedelta(seconds=settings.duplicate_window_seconds))
    publisher = TaskPublisher(create_celery(settings, include_tasks=False))
    domain = mail_domain(settings.mail_from)

    async def hello(request: Request) -> Response:
        return JSONResponse({"ok": True, "message": "hello"})

    async def submit(request: Request) -> Response:
        try:
            mime, params = media_type(request)
            fields = parse_body(mime, params, await read_body(request, settings.max_body_bytes))
        except BodyError as exc:
            return JSONResponse({"ok": False, "code": exc.code}, status_code=exc.status)
        intake = validator.validate(fields).intake
        if intake is None:
            return JSONResponse({"ok": False}, status_code=422)
        now = utcnow()
        submission = {
            "id": new_id(),
            "form": FORM,
            "created_at": now,
            "status": ACCEPTED,
            "language": intake.language,
            "urgent": False,
            "payload": json.dumps({"person": intake.person}),
            "client_address": "",
            "consent_at": now,
        }
        plan = plan_deliveries(config, settings, FORM, intake.person, intake.language, False)
        record = await writer.write(build_record(submission, plan, now=now, mail_domain=domain))
        publisher.publish(wake_up(record.deliveries))
        return JSONResponse({"ok": True, "id": record.answer_id}, status_code=202)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await writer.start()
        publisher.start()
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await writer.stop()
            publisher.stop()
            engine.dispose()

    routes = [Route("/", hello, methods=["GET"]), Route(f"/f/{FORM}", submit, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)
