"""Many-row INSERTs through the driver's executemany, with SQLAlchemy's own value conversions.

`connection.execute(insert(table), rows)` ran every value of every row through SQLAlchemy's
generic parameter machinery: about half of a group commit's CPU time, more than SQLite itself.
Here the statement is compiled once per dialect, each column's bind processor is looked up once,
and a value seen before in the same batch (the one timestamp a submission's rows share) is
converted once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.sql.schema import ScalarElementColumnDefault

Converter = tuple[int, str, Callable[[Any], Any]]


class BulkInsert:
    """`BulkInsert(table)(connection, rows)`: insert dict rows keyed by column name.

    A column missing from a row gets its scalar default, else NULL, as SQLAlchemy would.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._compiled: dict[str, tuple[str, list[str], bool, list[Converter]]] = {}
        self._defaults = {
            column.key: column.default.arg
            for column in table.columns
            if isinstance(column.default, ScalarElementColumnDefault)
        }

    def __call__(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        sql, keys, positional, converters = self._prepare(connection.dialect)
        defaults = self._defaults
        seen: dict[tuple[str, Any], Any] = {}  # (type, value) -> bound value, for this batch
        values = []
        for row in rows:
            bound = [row.get(key, defaults.get(key)) for key in keys]
            for index, kind, processor in converters:
                value = bound[index]
                if value is not None:
                    memo = (kind, value)
                    if memo not in seen:
                        seen[memo] = processor(value)
                    bound[index] = seen[memo]
            values.append(tuple(bound) if positional else dict(zip(keys, bound, strict=True)))
        connection.exec_driver_sql(sql, values)

    def _prepare(self, dialect: Dialect) -> tuple[str, list[str], bool, list[Converter]]:
        """The SQL, its parameter names in order, and (index, type, processor) per column that
        converts its values (datetimes, booleans) for this dialect."""
        if dialect.name not in self._compiled:
            compiled = self.table.insert().compile(
                dialect=dialect, column_keys=[c.key for c in self.table.columns]
            )
            positional = bool(compiled.positional)
            keys = list(compiled.positiontup or []) if positional else list(compiled.binds)
            columns = {column.key: column for column in self.table.columns}
            converters: list[Converter] = []
            for index, key in enumerate(keys):
                column_type = columns[key].type
                processor = column_type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    converters.append((index, repr(column_type), processor))
            self._compiled[dialect.name] = (compiled.string, keys, positional, converters)
        return self._compiled[dialect.name]
