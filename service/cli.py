"""The `intake` command: run the web process, the workers and the scheduler, and operate them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from service.config import ConfigError
from service.db import migrate
from service.logs import setup_logging
from service.routing import QUEUES
from service.settings import Settings, SettingsError


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Intake: website form submissions answered at once and routed to admissions."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=int, help="Web processes.")
def web(host: str, port: int, workers: int) -> None:
    """Run the web process (uvicorn) after bringing the database schema up to date."""
    import uvicorn

    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    migrate(settings.database_url)
    uvicorn.run(
        "service.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # client addresses come from INTAKE_TRUSTED_PROXIES only
        server_header=False,
        timeout_graceful_shutdown=15,
    )


def _celery_logging() -> None:
    from celery.signals import setup_logging as celery_setup_logging

    @celery_setup_logging.connect(weak=False)
    def _use_ours(**_: Any) -> None:
        settings = load_settings()
        setup_logging(settings.log_format, settings.log_level)


@main.command()
@click.option("--concurrency", default=2, show_default=True, type=int, help="Worker processes.")
@click.option("--pool", default="prefork", show_default=True, help="Celery pool.")
@click.option("--queues", default=",".join(QUEUES), show_default=True, help="Queues, in order.")
@click.option("--name", default="intake@%h", show_default=True, help="Worker node name.")
def worker(concurrency: int, pool: str, queues: str, name: str) -> None:
    """Run a Celery worker that sends the emails and webhooks."""
    from workers.celery_app import create_celery

    settings = load_settings()
    migrate(settings.database_url)
    _celery_logging()
    app = create_celery(settings)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--queues={queues}",
            f"--hostname={name}",
            f"--loglevel={settings.log_level}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


@main.command()
def beat() -> None:
    """Run the scheduler (exactly one per deployment): the sweeper and the retention purge."""
    from workers.celery_app import create_celery

    settings = load_settings()
    _celery_logging()
    Path(settings.var_dir).mkdir(parents=True, exist_ok=True)
    app = create_celery(settings)
    app.Beat(loglevel=settings.log_level).run()


@main.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date."""
    settings = load_settings()
    migrate(settings.database_url)
    click.echo("database schema is up to date")


@main.command()
@click.option("--port", default=8000, show_default=True, type=int, help="Web port.")
def dev(port: int) -> None:
    """Everything on one machine: Redis, web, worker, scheduler and a local mail catcher."""
    from service.devrunner import run_dev

    try:
        sys.exit(run_dev(load_settings(), port))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


if __name__ == "__main__":
    main()
