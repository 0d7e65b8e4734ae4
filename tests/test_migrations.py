"""The migrations build exactly the schema the code declares (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from service.models import metadata


def test_migrated_database_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        migrated = MigrationContext.configure(connection, opts={"compare_server_default": True})
        differences = compare_metadata(migrated, metadata)
    assert differences == []
