"""The Celery app, built from the same settings as the web app."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from service.routing import QUEUES
from service.settings import Settings

DELIVER_TASK = "intake.deliver"
SWEEP_TASK = "intake.sweep"
PURGE_TASK = "intake.purge"
PURGE_INTERVAL_SECONDS = 3600.0  # retention purge runs hourly; it is cheap when nothing is due


def _queue(name: str) -> Queue:
    """A queue with its own direct exchange, so publishing to it lands in its own Redis list."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]


def create_celery(settings: Settings, *, include_tasks: bool = True) -> Celery:
    """A Celery app configured for at-least-once delivery with ids-only JSON messages."""
    app = Celery("intake", include=["workers.tasks"] if include_tasks else [])
    time_limit = settings.task_time_limit_seconds
    socket_timeout = max(settings.redis_timeout_seconds, 0.1)
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=max(socket_timeout, 2.0),
        broker_transport_options={
            "socket_timeout": max(socket_timeout, 5.0),
            "socket_connect_timeout": max(socket_timeout, 2.0),
            "queue_order_strategy": "priority",
            "retry_on_timeout": False,
            # kombu keeps no copy in Redis of a message whose task is running (its "ack
            # emulation": an unacked hash and index, two Redis round trips per task during which
            # the pool process sat idle, a fifth of its time). That copy came back only after a
            # visibility timeout; the sweeper republishes what a dead worker held, from the
            # database, long before. A pool process that dies still has its message requeued
            # by the worker (task_reject_on_worker_lost), and acks_late with prefetch 1 still
            # keeps each process to one message at a time, so priorities stay strict.
            "ack_emulation": False,
        },
        broker_pool_limit=4,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # A send in progress when Redis drops should finish and record its outcome: the claim
        # makes the redelivered message a no-op, while cancelling mid-SMTP risks a duplicate.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_time_limit=time_limit,
        task_soft_time_limit=max(time_limit - 10, time_limit * 0.8),
        task_queues=[_queue(name) for name in QUEUES],
        task_default_queue="admissions",
        worker_hijack_root_logger=False,
        # Task events cost the worker parent 42% of its CPU (measured); Flower turns them on
        # remotely when it runs.
        worker_send_task_events=False,
        task_send_sent_event=False,
        beat_schedule={
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
                "options": {"queue": "urgent", "expires": settings.sweep_interval_seconds * 2},
            },
            "purge": {
                "task": PURGE_TASK,
                "schedule": PURGE_INTERVAL_SECONDS,
                "options": {"queue": "backlog", "expires": PURGE_INTERVAL_SECONDS},
            },
        },
        beat_schedule_filename=f"{settings.var_dir}/celerybeat-schedule",
        enable_utc=True,
    )
    app.conf.intake_settings = settings
    return app
