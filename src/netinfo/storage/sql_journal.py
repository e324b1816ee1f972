"""The change history kept in SQL tables (issue 24): what the SQLite and PostgreSQL
engines share (``journal.Journal`` over three tables). An engine module gives only its
connection and the SQL that differs (an upsert's spelling, its placeholder: every
statement here is written with ``?``, which an engine whose driver wants ``%s`` turns
into that; no statement holds a literal ``?`` or ``%``).

Tables (the engine's own migrations create them; the column types are the engine's):

``history(seq, time, "user", path, dirs, entry)``
    one row per write: its sequence number, time (µs since the epoch), user, the path of
    the written directory at the time, the numbers of the directories it touched (text,
    space-separated, for trimming) and the entry's XDR bytes
    (``wire.history.encode_entry``), which is what the history program sends.
``history_dirs(dir, seq)``
    which entries touched a directory (``nihistory --at``, a revert's check for later
    changes): one seek per directory.
``history_size(id, bytes)``
    the bytes of all entries, kept in step, so that retention by size never sums them.

Rows are written by the engine's ``Store.commit`` in the write's own transaction (a
SIGKILL leaves both or neither). Reads go a chunk of :data:`CHUNK` rows at a time by
sequence number (keyset), so a query holds at most a chunk in memory whatever the
journal's size, on a driver that fetches a statement's rows all at once too.

Pure: no I/O of its own (the engine's connection does it).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from ..model import Proplist
from ..wire.history import NO_DIR, Query
from ..wire.proplist import decode_proplist
from .journal import Journal, Row

#: Rows one read of the history table fetches.
CHUNK = 256


class SqlJournal(Journal):
    """A journal in the engine's SQL tables (see the module docstring). Engines give
    :meth:`_fetch`, :meth:`_run`, :meth:`_run_many`, :meth:`_in_transaction` and the two
    inserts that differ by dialect."""

    #: a history row, replacing one of the same seq (six ``?``: the table's columns)
    INSERT_ENTRY = "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?)"
    #: a history_dirs row, none if there (two ``?``)
    INSERT_DIR = "INSERT OR IGNORE INTO history_dirs VALUES (?, ?)"

    # -- the engine's connection --------------------------------------------------------

    @abstractmethod
    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query."""

    @abstractmethod
    def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        """One statement."""

    @abstractmethod
    def _run_many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """One statement for each of *rows*."""

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = self._fetch(sql, args)
        return rows[0][0] if rows else None

    # -- Journal ------------------------------------------------------------------------

    def lookup(self, oid: int) -> tuple[int, Proplist] | None:
        """A stored directory's parent and proplist (before the batch's ops)."""
        rows = self._fetch("SELECT parent, props FROM dirs WHERE id = ?", (oid,))
        return None if not rows else (rows[0][0], decode_proplist(bytes(rows[0][1])))

    def _insert(self, entries: list[tuple[Any, ...]], dirs: list[tuple[int, int]]) -> None:
        """Store history rows and history_dirs rows (an engine may send them otherwise
        than one statement a row)."""
        self._run_many(self.INSERT_ENTRY, entries)
        self._run_many(self.INSERT_DIR, dirs)

    def _append(self, rows: list[Row]) -> None:
        self._insert([(r.seq, r.time, r.user, r.path, " ".join(map(str, r.dirs)), r.blob)
                      for r in rows], [(d, r.seq) for r in rows for d in r.dirs])
        self._run("UPDATE history_size SET bytes = bytes + ?",
                  (sum(len(r.blob) for r in rows),))

    def _trim(self, most: int, cutoff: int | None, max_bytes: int | None) -> int:
        # the common case, nothing due: one statement
        total, oldest = self._fetch(
            "SELECT (SELECT bytes FROM history_size),"
            " (SELECT time FROM history ORDER BY seq LIMIT 1)")[0]
        if oldest is None or ((max_bytes is None or total <= max_bytes)
                              and (cutoff is None or oldest >= cutoff)):
            return 0
        gone: list[tuple[int, str, int]] = []
        for seq, when, dirs, size in self._fetch(
                "SELECT seq, time, dirs, length(entry) FROM history ORDER BY seq LIMIT ?",
                (most,)):
            if not ((cutoff is not None and when < cutoff)
                    or (max_bytes is not None and total > max_bytes)):
                break
            gone.append((seq, dirs, size))
            total -= size
        if not gone:
            return 0
        self._run("DELETE FROM history WHERE seq <= ?", (gone[-1][0],))
        self._run_many("DELETE FROM history_dirs WHERE dir = ? AND seq = ?",
                       [(int(d), seq) for seq, dirs, _ in gone for d in dirs.split()])
        self._run("UPDATE history_size SET bytes = ?", (total,))
        return len(gone)

    def stored(self, seq: int) -> bytes | None:
        blob = self._one("SELECT entry FROM history WHERE seq = ?", (seq,))
        return None if blob is None else bytes(blob)

    def last_seq(self) -> int:
        return int(self._one("SELECT max(seq) FROM history") or 0)

    def _scan(self, q: Query, after: int) -> Iterable[Row]:
        where: list[str] = []
        args: list[Any] = []
        for cond, value in (("time >= ?", q.since), ("time < ?", q.until),
                            ("seq >= ?", q.min_seq), ("seq <= ?", q.max_seq),
                            ('"user" = ?', q.user)):
            if value:
                where.append(cond)
                args.append(value)
        if q.path and q.path != "/":
            where.append("(path = ? OR substr(path, 1, ?) = ?)")
            args += [q.path, len(q.path) + 1, q.path + "/"]
        if q.dir != NO_DIR:
            where.append("seq IN (SELECT seq FROM history_dirs WHERE dir = ?)")
            args.append(q.dir)
        where.append("seq > ?" if q.oldest_first else "seq < ?")
        sql = ('SELECT seq, time, "user", path, entry FROM history WHERE '
               + " AND ".join(where)
               + (" ORDER BY seq" if q.oldest_first else " ORDER BY seq DESC")
               + " LIMIT ?")
        cursor = after or (0 if q.oldest_first else 1 << 62)
        # the first chunk no bigger than the page asked for (a page of one: one row)
        chunk = max(2, min(CHUNK, q.limit + 1))
        while True:
            rows = self._fetch(sql, [*args, cursor, chunk])
            for seq, when, user, path, blob in rows:
                yield Row(seq, when, user, path, (), bytes(blob))
            if len(rows) < chunk:
                return
            cursor, chunk = rows[-1][0], CHUNK

    def size(self) -> tuple[int, int]:
        n, total = self._fetch("SELECT (SELECT count(*) FROM history),"
                               " (SELECT bytes FROM history_size)")[0]
        return int(n), int(total)


__all__ = ["SqlJournal", "CHUNK"]
