"""What the `intake` commands share: settings and database for one command, and output helpers
(a table for people, one JSON document with --json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.config import AppConfig, ConfigError, load_config
from service.db import make_engine
from service.settings import Settings, SettingsError


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def load_app_config(settings: Settings) -> AppConfig:
    try:
        return load_config(settings.config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


@contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """An engine for one command; a database that does not answer is a clear message."""
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        yield engine
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
        raise click.ClickException(
            f"the database did not answer ({detail}); is INTAKE_DATABASE_URL right, and has "
            "`intake migrate` run?"
        ) from exc
    finally:
        engine.dispose()


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        human()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> None:
    """Columns padded to their widest cell; None shows as '-'."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    heading = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo((indent + heading).rstrip())
    for row in cells:
        click.echo(
            indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        )
    if not rows:
        click.echo(indent + "(none)")


def pairs(rows: Sequence[tuple[str, Any]], indent: str = "  ") -> None:
    """Label: value lines, the values aligned."""
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        click.echo(f"{indent}{(label + ':').ljust(width)} {value}")


def duration(seconds: float | None) -> str:
    """4s, 3m 12s, 2h 05m, 3d 4h: how long, at a glance."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
