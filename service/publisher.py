"""Wake the workers: publish delivery ids to Celery off the event loop, never blocking an answer.

The database already holds the work when we publish, so a lost publish (Redis down, slow, or
this process killed) only delays a delivery until the sweeper finds it; it never loses one.

On a Redis broker the messages are written directly: each is the Celery protocol 2 message
`intake.deliver(delivery_id)` in kombu's Redis envelope, and everything waiting goes out in one
pipelined round trip. Celery's `send_task` built the same message in about 350 microseconds of
Python per delivery, the largest single cost of accepting a submission; this takes about 20.
Other brokers go through `send_task`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import redis

from workers.celery_app import DELIVER_TASK

log = logging.getLogger("intake.publisher")

MAX_WAITING = 10_000  # publishes held while Redis is slow; beyond this the sweeper takes over
_STOP = ("", "")
BACKOFF_SECONDS = 1.0  # pause after the broker failed, before trying the next publish
# After the first job arrives, wait this long for more, so that under load one wake-up of this
# thread and one Redis round trip carry the jobs of many requests (+10% ingest measured).
LINGER_SECONDS = 0.002


class TaskPublisher:
    """A daemon thread that sends `intake.deliver(delivery_id)` messages in arrival order."""

    def __init__(self, celery_app: Any) -> None:
        self._app = celery_app
        self._redis = _direct_client(celery_app)
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(MAX_WAITING)
        self._thread: threading.Thread | None = None
        self.published = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="task-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what is waiting (bounded by timeout), then stop."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None
        if self._redis is not None:
            self._redis.close()

    def publish(self, jobs: list[tuple[str, str]]) -> None:
        """Queue (delivery id, queue name) pairs for publishing; never blocks."""
        for job in jobs:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.dropped += 1

    def _run(self) -> None:
        while True:
            jobs = [self._queue.get()]
            time.sleep(LINGER_SECONDS)
            while len(jobs) < 100 and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            stop = _STOP in jobs
            jobs = [job for job in jobs if job != _STOP]
            if jobs and not self._send_all(jobs):
                # The broker is not answering: drop what waits rather than stall on each one.
                # Every dropped job is a pending row the sweeper will publish again.
                self._drain_waiting()
                time.sleep(BACKOFF_SECONDS)
            if stop:
                return

    def _send_all(self, jobs: list[tuple[str, str]]) -> bool:
        try:
            if self._redis is not None:
                self._push(jobs)
            else:
                self._send_with_celery(jobs)
        except Exception as exc:  # broker down or slow: the sweeper re-queues from the database
            self.failed += len(jobs)
            log.warning(
                "publish failed; the sweeper will re-queue",
                extra={"jobs": len(jobs), "error": type(exc).__name__},
            )
            return False
        self.published += len(jobs)
        return True

    def _push(self, jobs: list[tuple[str, str]]) -> None:
        """One LPUSH per queue, all in one round trip; BRPOP takes them in arrival order."""
        assert self._redis is not None
        by_queue: dict[str, list[str]] = defaultdict(list)
        for delivery_id, queue_name in jobs:
            by_queue[queue_name].append(task_message(delivery_id, queue_name, self._origin))
        with self._redis.pipeline(transaction=False) as pipe:
            for queue_name, messages in by_queue.items():
                pipe.lpush(queue_name, *messages)
            pipe.execute()

    def _send_with_celery(self, jobs: list[tuple[str, str]]) -> None:
        with self._app.producer_or_acquire() as producer:
            for delivery_id, queue_name in jobs:
                self._app.send_task(
                    DELIVER_TASK,
                    args=[delivery_id],
                    queue=queue_name,
                    producer=producer,
                    retry=False,
                    ignore_result=True,
                )

    def _drain_waiting(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job == _STOP:
                self._queue.put_nowait(job)
                return
            self.dropped += 1


def _direct_client(celery_app: Any) -> redis.Redis | None:
    """A client for the broker when it is Redis, with the broker's timeouts; else None."""
    url = str(celery_app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://")):
        return None
    options = celery_app.conf.broker_transport_options or {}
    return redis.Redis.from_url(
        url,
        socket_timeout=options.get("socket_timeout"),
        socket_connect_timeout=options.get("socket_connect_timeout"),
        retry=None,  # no retries: a replayed pipeline could push twice
    )


def task_message(delivery_id: str, queue_name: str, origin: str) -> str:
    """`intake.deliver(delivery_id)` as Celery's `send_task` would put it on a Redis list: a
    protocol 2 message (headers, JSON body [args, kwargs, embed]) in kombu's Redis envelope.

    Filled into a template made once from `_envelope` (a JSON dump of the whole envelope per
    message was most of the publisher's time)."""
    body = _BODY.format(json.dumps(delivery_id)).encode()
    return _TEMPLATE.format(
        body=json.dumps(base64.b64encode(body).decode()),
        id=json.dumps(str(uuid.uuid4())),
        argsrepr=json.dumps(repr([delivery_id])),
        origin=json.dumps(origin),
        queue=json.dumps(queue_name),
        tag=json.dumps(str(uuid.uuid4())),
    )


def _envelope(
    body: str, task_id: str, argsrepr: str, origin: str, queue_name: str, tag: str
) -> dict[str, Any]:
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": DELIVER_TASK,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": argsrepr,
            "kwargsrepr": "{}",
            "origin": origin,
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue_name},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": tag,
        },
    }


def _template() -> str:
    """_envelope as a str.format template: each field a placeholder for a JSON value."""
    fields = ("body", "id", "argsrepr", "origin", "queue", "tag")
    text = json.dumps(_envelope(*(f"@{name}@" for name in fields)))
    text = text.replace("{", "{{").replace("}", "}}")
    for name in fields:
        text = text.replace(f'"@{name}@"', "{" + name + "}")
    return text


# The task's body: [args, kwargs, embed], with the delivery id as the only argument.
_BODY = '[[{}], {{}}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]'
_TEMPLATE = _template()
