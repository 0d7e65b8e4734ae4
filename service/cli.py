"""The `intake` command: run the web process, the workers and the scheduler, and operate them.

The run commands live here; the operating commands (status, failed, retry, ...) in cli_ops.py,
which print a table for people and, with --json, one JSON document for scripts. None of them
shows personal data unless asked (--show-personal): ids, states, counts and codes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from service.cli_ops import register as register_operating_commands
from service.cli_support import emit, json_option, load_settings
from service.config import ConfigError
from service.db import migrate
from service.logs import setup_logging
from service.routing import QUEUES

WEB_DRAIN_SECONDS = 15  # on SIGTERM, the web process finishes requests in flight this long
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
def main() -> None:
    """Intake: website form submissions answered at once and routed to admissions.

    Every command reads the INTAKE_* settings from the environment (see .env.example).
    """


# Running the service ------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=int, help="Web processes.")
def web(host: str, port: int, workers: int) -> None:
    """Run the web process (uvicorn) after bringing the database schema up to date.

    On SIGTERM it stops accepting connections and finishes the requests in flight (up to 15 s).
    """
    import uvicorn

    from service.metrics import prepare_multiprocess

    settings = load_settings()
    prepare_multiprocess(settings, "web")  # before the app (and prometheus-client) is imported
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
        timeout_graceful_shutdown=WEB_DRAIN_SECONDS,
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
@click.option(
    "--metrics-port",
    default=0,
    show_default=True,
    type=int,
    help="Serve this worker's counters for Prometheus on this port (0: off). For workers whose "
    "var/ the web process cannot see (other hosts, containers).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port."
)
def worker(
    concurrency: int, pool: str, queues: str, name: str, metrics_port: int, metrics_host: str
) -> None:
    """Run a Celery worker that sends the emails and webhooks.

    Send SIGTERM to the main process only: it finishes the tasks in hand (warm shutdown) and
    exits; a second SIGTERM or SIGQUIT stops at once (the sweeper then recovers the work).
    """
    from service.metrics import prepare_multiprocess, start_worker_endpoint

    settings = load_settings()
    prepare_multiprocess(settings, "worker")  # before the tasks (and prometheus-client) load
    migrate(settings.database_url)
    _celery_logging()
    if metrics_port:
        start_worker_endpoint(settings, metrics_host, metrics_port)

    from workers.celery_app import create_celery

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
@json_option
def migrate_command(as_json: bool) -> None:
    """Bring the database schema up to date (safe to run any number of times)."""
    settings = load_settings()
    migrate(settings.database_url)
    emit(as_json, {"ok": True}, lambda: click.echo("database schema is up to date"))


@main.command()
@click.option("--port", default=8000, show_default=True, type=int, help="Web port.")
def dev(port: int) -> None:
    """Everything on one machine: Redis, web, worker, scheduler and a local mail catcher."""
    from service.devrunner import run_dev
    from service.metrics import reset_metrics

    settings = load_settings()
    reset_metrics(settings)  # this machine's counters start from zero with the service
    try:
        sys.exit(run_dev(settings, port))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


register_operating_commands(main)

if __name__ == "__main__":
    main()
