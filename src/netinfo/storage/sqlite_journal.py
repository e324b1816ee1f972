"""The SQLite engine's change history (issue 24; ``journal.Journal``).

Tables (``sqlite._MIGRATIONS`` 3):

``history(seq, time, user, path, dirs, entry)``
    one row per write: its sequence number, time (µs since the epoch), user, the path of
    the written directory at the time, the numbers of the directories it touched (text,
    for trimming) and the entry's XDR bytes (``wire.history.encode_entry``), which is
    what the history program sends.
``history_dirs(dir, seq)``
    which entries touched a directory (``nihistory --at``, a revert's check for later
    changes): one seek per directory.
``history_size(id, bytes)``
    the bytes of all entries, kept in step, so that retention by size never sums them.

Rows are written by :meth:`SqliteStore.commit` in the write's own transaction (a SIGKILL
leaves both or neither).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from ..model import Proplist
from ..wire.history import NO_DIR, Query
from ..wire.proplist import decode_proplist
from .journal import Journal, Row

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


class SqliteJournal(Journal):
    """The journal in the domain's SQLite file, on the store's connection."""

    def __init__(self, conn_of: Callable[[], sqlite3.Connection]) -> None:
        super().__init__()
        self._conn_of = conn_of

    @property
    def conn(self) -> sqlite3.Connection:
        """The store's connection (a new one after a copy is swapped in)."""
        return self._conn_of()

    def lookup(self, oid: int) -> tuple[int, Proplist] | None:
        """A stored directory's parent and proplist (before the batch's ops)."""
        row = self.conn.execute("SELECT parent, props FROM dirs WHERE id = ?",
                                (oid,)).fetchone()
        return None if row is None else (row[0], decode_proplist(row[1]))

    def _append(self, rows: list[Row]) -> None:
        c = self.conn
        c.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?)",
                      [(r.seq, r.time, r.user, r.path, " ".join(map(str, r.dirs)), r.blob)
                       for r in rows])
        c.executemany("INSERT OR IGNORE INTO history_dirs VALUES (?, ?)",
                      [(d, r.seq) for r in rows for d in r.dirs])
        c.execute("UPDATE history_size SET bytes = bytes + ?",
                  (sum(len(r.blob) for r in rows),))

    def _trim(self, most: int, cutoff: int | None, max_bytes: int | None) -> int:
        c = self.conn
        total = c.execute("SELECT bytes FROM history_size").fetchone()[0]
        if max_bytes is None or total <= max_bytes:
            if cutoff is None:
                return 0
            oldest = c.execute("SELECT time FROM history ORDER BY seq LIMIT 1").fetchone()
            if oldest is None or oldest[0] >= cutoff:
                return 0   # the common case: one seek, nothing to trim
        gone: list[tuple[int, str, int]] = []
        for seq, when, dirs, size in c.execute(
                "SELECT seq, time, dirs, length(entry) FROM history ORDER BY seq LIMIT ?",
                (most,)).fetchall():
            if not ((cutoff is not None and when < cutoff)
                    or (max_bytes is not None and total > max_bytes)):
                break
            gone.append((seq, dirs, size))
            total -= size
        if not gone:
            return 0
        c.execute("DELETE FROM history WHERE seq <= ?", (gone[-1][0],))
        c.executemany("DELETE FROM history_dirs WHERE dir = ? AND seq = ?",
                      [(int(d), seq) for seq, dirs, _ in gone for d in dirs.split()])
        c.execute("UPDATE history_size SET bytes = ?", (total,))
        return len(gone)

    def _in_transaction(self, fn: Callable[[], object]) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            fn()
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def stored(self, seq: int) -> bytes | None:
        row = self.conn.execute("SELECT entry FROM history WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def last_seq(self) -> int:
        return self.conn.execute("SELECT max(seq) FROM history").fetchone()[0] or 0

    def _scan(self, q: Query, after: int) -> Iterable[Row]:
        where: list[str] = []
        args: list[Any] = []
        if after:
            where.append("seq > ?" if q.oldest_first else "seq < ?")
            args.append(after)
        for cond, value in (("time >= ?", q.since), ("time < ?", q.until),
                            ("seq >= ?", q.min_seq), ("seq <= ?", q.max_seq),
                            ("user = ?", q.user)):
            if value:
                where.append(cond)
                args.append(value)
        if q.path and q.path != "/":
            where.append("(path = ? OR substr(path, 1, ?) = ?)")
            args += [q.path, len(q.path) + 1, q.path + "/"]
        if q.dir != NO_DIR:
            where.append("seq IN (SELECT seq FROM history_dirs WHERE dir = ?)")
            args.append(q.dir)
        sql = ("SELECT seq, time, user, path, entry FROM history"
               + (" WHERE " + " AND ".join(where) if where else "")
               + (" ORDER BY seq" if q.oldest_first else " ORDER BY seq DESC"))
        for seq, when, user, path, blob in self.conn.execute(sql, args):
            yield Row(seq, when, user, path, (), blob)

    def size(self) -> tuple[int, int]:
        n = self.conn.execute("SELECT count(*) FROM history").fetchone()[0]
        return n, self.conn.execute("SELECT bytes FROM history_size").fetchone()[0]


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
