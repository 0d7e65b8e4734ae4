"""The ASGI entry point uvicorn imports: settings from the environment, then the factory."""

from __future__ import annotations

from starlette.applications import Starlette

from service.app import create_app
from service.logs import setup_logging
from service.settings import Settings


def create() -> Starlette:
    settings = Settings.from_env()
    setup_logging(settings.log_format, settings.log_level)
    return create_app(settings)
