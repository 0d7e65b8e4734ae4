"""Wake the workers: publish delivery ids to Celery off the event loop, never blocking an answer.

The database already holds the work when we publish, so a lost publish (Redis down, slow, or
this process killed) only delays a delivery until the sweeper finds it; it never loses one.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import Any

from workers.celery_app import DELIVER_TASK

log = logging.getLogger("intake.publisher")

MAX_WAITING = 10_000  # publishes held while Redis is slow; beyond this the sweeper takes over
_STOP = ("", "")
BACKOFF_SECONDS = 1.0  # pause after the broker failed, before trying the next publish


class TaskPublisher:
    """A daemon thread that sends `intake.deliver(delivery_id)` messages in arrival order."""

    def __init__(self, celery_app: Any) -> None:
        self._app = celery_app
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
            with self._app.producer_or_acquire() as producer:
                for index, (delivery_id, queue_name) in enumerate(jobs):
                    try:
                        self._app.send_task(
                            DELIVER_TASK,
                            args=[delivery_id],
                            queue=queue_name,
                            producer=producer,
                            retry=False,
                            ignore_result=True,
                        )
                    except Exception:
                        self.failed += len(jobs) - index
                        raise
                    self.published += 1
        except Exception as exc:  # broker down or slow: the sweeper re-queues from the database
            log.warning(
                "publish failed; the sweeper will re-queue",
                extra={"jobs": len(jobs), "error": type(exc).__name__},
            )
            return False
        return True

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
