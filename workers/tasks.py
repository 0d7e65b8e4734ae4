"""Celery tasks: thin wrappers that pass ids to plain functions. Safe to run more than once."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, shared_task
from celery.signals import worker_process_shutdown

from service.settings import Settings
from workers import delivery, retention, sweeper
from workers.celery_app import DELIVER_TASK, PURGE_TASK, SWEEP_TASK
from workers.context import WorkerContext

# One context per worker process, built on first use after the fork (engines and SMTP
# connections must never be shared across processes).
_contexts: dict[tuple[int, int], WorkerContext] = {}


def context_for(app: Celery) -> WorkerContext:
    key = (os.getpid(), id(app))
    if key not in _contexts:
        settings: Settings = app.conf.intake_settings

        def publish(delivery_id: str, queue: str) -> None:
            app.send_task(DELIVER_TASK, args=[delivery_id], queue=queue, ignore_result=True)

        _contexts[key] = WorkerContext.build(settings, publish)
    return _contexts[key]


@worker_process_shutdown.connect
def _close_contexts(**_: Any) -> None:
    for key in [k for k in _contexts if k[0] == os.getpid()]:
        _contexts.pop(key).close()


@shared_task(name=DELIVER_TASK, bind=True)
def deliver(self: Any, delivery_id: str) -> str:
    """Send the delivery, and its submission's other due deliveries, if it is due and unclaimed;
    a duplicate message does nothing."""
    outcomes = delivery.process(context_for(self.app), delivery_id)
    return ",".join(outcome.state for outcome in outcomes) or "skipped"


@shared_task(name=SWEEP_TASK, bind=True)
def sweep(self: Any) -> int:
    return sweeper.sweep(context_for(self.app))


@shared_task(name=PURGE_TASK, bind=True)
def purge(self: Any) -> int:
    return retention.purge(context_for(self.app).engine, context_for(self.app).settings)
