"""The SQLite engine's change history (issue 24): ``sql_journal.SqlJournal`` on the
store's connection; the tables (``sqlite._MIGRATIONS`` 3, described in
``storage/sql_journal.py``) and a clone copy's carry-over are SQLite's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from .sql_journal import SqlJournal


#: The tables, as ``sqlite._MIGRATIONS`` 3 creates them (given the table options).
def schema(options: str, without_rowid: str) -> list[str]:
    return [
        "CREATE TABLE history(seq INTEGER PRIMARY KEY, time INTEGER NOT NULL,"
        " user TEXT NOT NULL, path TEXT NOT NULL, dirs TEXT NOT NULL,"
        " entry BLOB NOT NULL)" + options,
        "CREATE TABLE history_dirs(dir INTEGER NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY(dir, seq))" + without_rowid,
        "CREATE TABLE history_size(id INTEGER PRIMARY KEY, bytes INTEGER NOT NULL)" + options,
        "INSERT INTO history_size VALUES (0, 0)",
    ]


class SqliteJournal(SqlJournal):
    """The journal in the domain's SQLite file, on the store's connection."""

    def __init__(self, conn_of: Callable[[], sqlite3.Connection],
                 idle_of: Callable[[], sqlite3.Connection]) -> None:
        super().__init__()
        self._conn_of = conn_of
        #: the connection with no transaction open (``SqliteStore._idle``: the source's
        #: held read ended), for a transaction of the journal's own
        self._idle_of = idle_of

    @property
    def conn(self) -> sqlite3.Connection:
        """The store's connection (a new one after a copy is swapped in)."""
        return self._conn_of()

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, args).fetchall()

    def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, args)

    def _run_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    def _in_transaction(self, fn: Callable[[], object]) -> None:
        c = self._idle_of()
        c.execute("BEGIN IMMEDIATE")
        try:
            fn()
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise


def carry_over(conn: sqlite3.Connection, copy_path: str) -> None:
    """Copy the journal on *conn* into the finished copy at *copy_path* (a clone's copy,
    spec §9.5: a promoted clone keeps its history), in one transaction of the copy."""
    conn.execute("ATTACH DATABASE ? AS cp", (copy_path,))
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("history", "history_dirs"):
                conn.execute(f"INSERT OR REPLACE INTO cp.{table} SELECT * FROM main.{table}")
            conn.execute("UPDATE cp.history_size SET bytes ="
                         " (SELECT bytes FROM main.history_size)")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # into the copy's own file before it is renamed (its WAL would stay behind)
        conn.execute("PRAGMA cp.wal_checkpoint(TRUNCATE)")
    finally:
        conn.execute("DETACH DATABASE cp")


__all__ = ["SqliteJournal", "carry_over", "schema"]
