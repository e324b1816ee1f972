"""The lazy node source of the SQLite engine: its rows, read for ``cached.CachedSource``.

Everything engine-independent (the LRU bounded by count and bytes, pins for changes not
yet durable, resident big child lists, rollback, the LOOKUP overlay, chunked
LIST/LISTALL/READALL, snapshots) is :class:`~.cached.CachedSource`'s; this module holds
the SQL alone: :class:`SqliteRows`, the :class:`~.cached.RowReader` of one connection
(the store's own, or a snapshot reader's WAL read transaction, ``SqliteStore.reader``).
:class:`SqliteSource` is the two put together, as ``SqliteStore.source`` gives it.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Iterator
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING

from ..errors import DamagedDirectory, StorageError
from .cached import (  # noqa: F401 - the bounds stay importable from here
    BIG_KIDS,
    DEFAULT_CACHE,
    DEFAULT_CACHE_BYTES,
    SNAPSHOT_CACHE,
    SNAPSHOT_CACHE_BYTES,
    CachedSource,
    LazyNode,
    Row,
)
from .sqlite import CHUNK, RECOVERY

if TYPE_CHECKING:
    from .sqlite import SqliteStore


def damaged(path: str, oid: int, exc: Exception) -> DamagedDirectory:
    """Directory *oid* of the file *path* does not decode (issue 18 N20)."""
    return DamagedDirectory(oid, f"{path}: directory {oid} is damaged ({exc}): it is "
                                 f"refused when read and never sent to a clone; {RECOVERY}")


# LOOKUPREAD's child with its row (SqliteRows.lookup_first). CROSS JOINs keep the keys
# index as the outer loop (see SqliteRows.lookup); kids makes it a child of the
# directory still, and gives the child-list order.
_FIRST = ("SELECT d.id, d.props FROM keys k CROSS JOIN kids o"
          " ON o.parent = k.parent AND o.child = k.child CROSS JOIN dirs d"
          " ON d.id = k.child WHERE k.parent = ? AND k.key = ? AND k.value = ?")
_FIRST_IN_ORDER = _FIRST + " ORDER BY o.ord LIMIT 1"
# The usual case, one match: two B-tree descents instead of three (issue 20: 22-26 us
# instead of 28-32 for a LOOKUPREAD miss at 1M users, in process). The child's own row
# says it is still a child of the directory (``dirs.parent``: the Put that files its
# keys rows under the parent writes it, in the same transaction as the KidIns), so the
# kids row is read only to order two or more matches (_FIRST_IN_ORDER).
_FIRST_ANY = ("SELECT d.id, d.props FROM keys k CROSS JOIN dirs d"
              " ON d.id = k.child AND d.parent = k.parent"
              " WHERE k.parent = ? AND k.key = ? AND k.value = ? LIMIT 2")
# CROSS JOIN keeps keys as the outer loop (SQLite's planner would otherwise walk the whole
# child list: 1,000x slower at 20,000 children)
_LOOKUP = ("SELECT k.child FROM keys k CROSS JOIN kids o ON o.parent = k.parent"
           " AND o.child = k.child WHERE k.parent = ? AND k.key = ? AND k.value = ?"
           " ORDER BY o.ord")
# Every (value, child) of one key under a directory, as LOOKUP reads them (a resident
# index is built from them: keyindex); the order does not matter.
_PAIRS = ("SELECT k.value, k.child FROM keys k CROSS JOIN kids o ON o.parent = k.parent"
          " AND o.child = k.child WHERE k.parent = ? AND k.key = ?")
# Whether it has children at all comes with a directory (one index seek).
_ROW = ("SELECT instance, parent, props, EXISTS(SELECT 1 FROM kids WHERE parent = ?1)"
        " FROM dirs WHERE id = ?1")
# The proplist alone (a directory read once, its children not asked for).
_PROPS = "SELECT props FROM dirs WHERE id = ?"


class SqliteRows:
    """The :class:`~.cached.RowReader` of a SQLite store on connection *conn*."""

    chunk = CHUNK
    #: SQLite's reads are this process's CPU work: made in a thread they fight the event
    #: loop for the interpreter lock (measured: server/ahead.py)
    off_loop = False

    def __init__(self, store: SqliteStore, conn: sqlite3.Connection,
                 snapshot: bool = False, hold: bool = False) -> None:
        self._store = store
        self._conn = conn
        self._snapshot = snapshot
        #: the owner's reads hold one read transaction from the first read until the
        #: next write (``SqliteStore._idle`` ends it): a statement outside one begins
        #: and ends its own, taking and dropping SQLite's locks (fcntl calls) and
        #: checking the WAL each time (issue 20: 6-8 us of a LOOKUPREAD miss at 1M,
        #: served, measured). Its own writes are the only ones the owner's snapshot
        #: could miss, and each write ends the hold first.
        self._hold = hold

    def _bad(self, exc: Exception) -> StorageError:
        return StorageError(f"cannot read sqlite store {self._store.path!r}: {exc}; "
                            f"{RECOVERY}")

    def damaged(self, oid: int, exc: Exception) -> DamagedDirectory:
        return damaged(self._store.path, oid, exc)

    def _held(self) -> sqlite3.Connection:
        """The connection, inside the owner's held read transaction (see __init__)."""
        c = self._conn
        if self._hold and not c.in_transaction:
            c.execute("BEGIN")
        return c

    def row(self, oid: int) -> tuple[int, int, bytes, bool] | None:
        try:
            return self._held().execute(_ROW, (oid,)).fetchone()
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def props(self, oid: int) -> bytes | None:
        try:
            r = self._held().execute(_PROPS, (oid,)).fetchone()
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc
        return None if r is None else r[0]

    def kids(self, oid: int) -> array[int]:
        try:
            return array("I", map(itemgetter(0), self._held().execute(
                "SELECT child FROM kids WHERE parent = ? ORDER BY ord", (oid,))))
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def fetch(self, ids: list[int], with_kids: bool) -> tuple[list[Row], dict[int, array[int]]]:
        marks = ",".join("?" * len(ids))
        kids: dict[int, array[int]] = {}
        try:
            rows = self._held().execute(
                f"SELECT id, instance, parent, props FROM dirs WHERE id IN ({marks})",
                ids).fetchall()
            if with_kids and rows:
                for parent, group in groupby(self._held().execute(
                        f"SELECT parent, child FROM kids WHERE parent IN ({marks})"
                        " ORDER BY parent, ord", ids), itemgetter(0)):
                    kids[parent] = array("I", map(itemgetter(1), group))
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc
        return rows, kids

    def has(self, oid: int) -> bool:
        try:
            return self._held().execute("SELECT 1 FROM dirs WHERE id = ?",
                                      (oid,)).fetchone() is not None
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def max_id(self) -> int:
        return self.highest([])

    def highest(self, excluding: list[int]) -> int:
        sql = "SELECT max(id) FROM dirs"
        if excluding:
            sql += f" WHERE id NOT IN ({','.join('?' * len(excluding))})"
        try:
            top = self._held().execute(sql, excluding).fetchone()[0]
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc
        return -1 if top is None else top

    def count(self) -> int:
        try:
            return self._held().execute("SELECT count(*) FROM dirs").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def gaps(self) -> list[int]:
        out: list[int] = []
        try:
            first, last, count = self._held().execute(
                "SELECT min(id), max(id), count(*) FROM dirs").fetchone()
            if first is None or last - first + 1 == count:  # dense: no holes (0.1 s at 1M)
                out.extend(range(first or 0))
                return out
            out.extend(range(first))
            # Usually every hole is a destroyed number, listed in freed (a Put removes
            # its number from freed): then they are the holes, without a scan (1 s at 1M).
            freed = [oid for (oid,) in self._held().execute(
                "SELECT id FROM freed WHERE id > ? AND id < ?", (first, last))]
            if len(freed) == last - first + 1 - count:
                out.extend(freed)
                return out
            for oid, nxt in self._held().execute(
                    "SELECT id, nxt FROM (SELECT id, lead(id) OVER (ORDER BY id) AS nxt "
                    "FROM dirs) WHERE nxt > id + 1"):
                out.extend(range(oid + 1, nxt))
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc
        return out

    def freed(self) -> dict[int, int]:
        try:
            return dict(self._held().execute("SELECT id, instance FROM freed"))
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def meta(self, key: str) -> object:
        try:
            row = self._held().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc
        return None if row is None else row[0]

    def instances(self) -> list[tuple[int, int]]:
        try:
            return self._held().execute("SELECT id, instance FROM dirs").fetchall()
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def ids(self) -> list[int]:
        try:
            return [oid for (oid,) in self._held().execute("SELECT id FROM dirs")]
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def lookup(self, parent: int, key: bytes, value: bytes) -> list[int]:
        try:
            return [c for (c,) in self._held().execute(_LOOKUP, (parent, key, value))]
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def lookup_first(self, parent: int, key: bytes, value: bytes) -> tuple[int, bytes] | None:
        args = (parent, key, value)
        try:
            # Most values are held by one child: without ORDER BY SQLite builds no
            # sorter (14 instead of 19 us at 1M, measured); two rows ask again in order.
            rows = self._held().execute(_FIRST_ANY, args).fetchall()
            if len(rows) > 1:
                rows = self._held().execute(_FIRST_IN_ORDER, args).fetchall()
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc
        return rows[0] if rows else None

    def pairs(self, parent: int, key: bytes) -> Iterator[tuple[bytes, int]]:
        try:
            cur = self._held().execute(_PAIRS, (parent, key))
            while rows := cur.fetchmany(CHUNK * 16):
                yield from rows
        except sqlite3.Error as exc:
            raise self._bad(exc) from exc

    def snapshot(self) -> SqliteRows:
        """Rows of a :meth:`~.sqlite.SqliteStore.reader` connection: a WAL snapshot."""
        return SqliteRows(self._store, self._store.reader(), snapshot=True)

    def close(self) -> None:
        if self._snapshot:
            try:
                self._conn.close()   # ends the read transaction
            except sqlite3.Error:
                pass


class SqliteSource(CachedSource):
    """The directories of a :class:`~.sqlite.SqliteStore`, read on demand: a
    :class:`~.cached.CachedSource` over :class:`SqliteRows` of *conn*."""

    def __init__(self, store: SqliteStore, conn: sqlite3.Connection,
                 cache: int | None = None, cache_bytes: int | None = None) -> None:
        super().__init__(SqliteRows(store, conn, hold=not store.read_only), cache,
                         cache_bytes)


__all__ = ["SqliteRows", "SqliteSource", "LazyNode", "damaged"]
