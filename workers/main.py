"""The module-level Celery app for the `celery` command line: `celery -A workers.main ...`."""

from __future__ import annotations

from service.settings import Settings
from workers.celery_app import create_celery

app = create_celery(Settings.from_env())
