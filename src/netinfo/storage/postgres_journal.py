"""The PostgreSQL engine's change history (issue 24): ``sql_journal.SqlJournal`` on the
writer's connection, in the domain's schema. Only the SQL is PostgreSQL's: the tables
(``postgres._MIGRATIONS`` 2, from :func:`schema`), the upserts, ``%s`` for ``?``, and a
transaction of psycopg's. The entries are written by ``PostgresStore.commit`` inside the
batch's transaction, so an entry and its write are committed together or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .sql_journal import SqlJournal

if TYPE_CHECKING:
    import psycopg


def schema() -> list[str]:
    """The tables, as ``postgres._MIGRATIONS`` 2 creates them."""
    return [
        'CREATE TABLE history(seq bigint PRIMARY KEY, time bigint NOT NULL,'
        ' "user" text NOT NULL, path text NOT NULL, dirs text NOT NULL,'
        ' entry bytea NOT NULL)',
        "CREATE TABLE history_dirs(dir bigint NOT NULL, seq bigint NOT NULL,"
        " PRIMARY KEY(dir, seq))",
        "CREATE TABLE history_size(id integer PRIMARY KEY, bytes bigint NOT NULL)",
        "INSERT INTO history_size VALUES (0, 0)",
    ]


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresJournal(SqlJournal):
    """The journal in the domain's schema, on the store's connection (autocommit outside
    the store's transactions)."""

    def __init__(self, conn: psycopg.Connection[Any],
                 lock: threading.RLock | None = None) -> None:
        super().__init__()
        self._conn = conn
        #: the store's writer lock: held by a commit's whole transaction (which may run
        #: in a commit thread, server/storeio.py), so that a history query or trim made
        #: meanwhile on the same connection waits for it instead of landing inside it
        self._lock = lock or threading.RLock()
        self._sql: dict[str, str] = {}
        self._there = False

    def _q(self, sql: str) -> str:
        got = self._sql.get(sql)
        if got is None:
            got = self._sql[sql] = _pg(sql)
        return got

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(self._q(sql), args).fetchall()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        with self._lock:
            self._conn.execute(self._q(sql), args)

    def _run_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            with self._lock:
                self._conn.cursor().executemany(self._q(sql), rows)

    def last_seq(self) -> int:
        # a store opened to read, never claimed, may have an older schema (no history)
        if not self._there:
            self._there = bool(self._one("SELECT to_regclass('history') IS NOT NULL"))
            if not self._there:
                return 0
        return super().last_seq()

    def _insert(self, entries: list[tuple[Any, ...]], dirs: list[tuple[int, int]]) -> None:
        # a batch's rows in one statement per table (one round trip, not one a row),
        # sent in binary (the entries' bytes as they are, not escaped as text)
        with self._lock:
            self._insert_locked(entries, dirs)

    def _insert_locked(self, entries: list[tuple[Any, ...]],
                       dirs: list[tuple[int, int]]) -> None:
        c = self._conn
        if entries:
            c.execute(
                'INSERT INTO history SELECT * FROM unnest(%b::bigint[], %b::bigint[],'
                ' %b::text[], %b::text[], %b::text[], %b::bytea[]) ON CONFLICT (seq) DO'
                ' UPDATE SET time = EXCLUDED.time, "user" = EXCLUDED."user",'
                ' path = EXCLUDED.path, dirs = EXCLUDED.dirs, entry = EXCLUDED.entry',
                [list(col) for col in zip(*entries, strict=True)])
        if dirs:
            c.execute("INSERT INTO history_dirs SELECT * FROM unnest(%b::bigint[],"
                      " %b::bigint[]) ON CONFLICT DO NOTHING",
                      [list(col) for col in zip(*dirs, strict=True)])

    def _in_transaction(self, fn: Callable[[], object]) -> None:
        with self._lock, self._conn.transaction():
            fn()


__all__ = ["PostgresJournal", "schema"]
