"""The lazy node source of the PostgreSQL engine: its rows, read for ``cached.CachedSource``.

As ``sqlite_source`` is for SQLite: everything engine-independent (the bounded LRU, pins
for changes not yet durable, resident big child lists, the LOOKUP overlay, chunked
LIST/LISTALL/READALL, snapshots) is :class:`~.cached.CachedSource`'s; this module holds
the SQL alone. :class:`PgReader` is the :class:`~.cached.RowReader` of one connection:
the store's own (the writer's, whose commits are the only writes to the domain: the
cached source is kept in step by them, ``CachedSource.durable``), or a snapshot's, a
connection of its own in a ``REPEATABLE READ READ ONLY`` transaction, opened on its first
read: in the worker thread of the stream that reads it (``off_loop``: its reads are
network round trips, server/ahead.py), never on the event loop.

Nothing here is proportional to the domain's size at open: the checksum, highest number
and freed numbers are single-row queries (spec §5.6, §5.2, §5.3), LOOKUP reads the
persisted ``keys`` index in PostgreSQL (spec §4.4, §5.4), and a directory is one query
with whether it has children.
"""

from __future__ import annotations

import struct
import sys
import weakref
from array import array
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ..errors import DamagedDirectory, StorageError
from .cached import CachedSource, Row
from .postgres import PgRows, _connect, _one_line, _psycopg, split_url

if TYPE_CHECKING:
    import psycopg

    from .postgres import PostgresStore

#: Directories per chunk of a whole-list read (one query each, as SQLite's).
CHUNK = 256
#: What to do about a directory that does not decode.
RECOVERY = ("restore it from a dump (niload -r / . < dump.raw into a new domain), or copy "
            "the domain from a clone (nistore copy)")

# The hot reads (a directory, a child list, LOOKUP, LOOKUPREAD) are statements prepared
# once per connection and run through libpq itself, binary in and out: psycopg's cursor
# machinery cost more than PostgreSQL's own work (measured: 76 us a LOOKUP through
# Connection.execute, 27 us prepared through libpq, 8 us for SELECT 1).
#: name → (SQL, parameter type oids: int8 20, bytea 17)
_HOT: dict[bytes, tuple[bytes, list[int]]] = {
    # whether it has children at all comes with a directory (one index probe)
    b"ni_row": (b"SELECT instance, parent, props, EXISTS(SELECT 1 FROM kids"
                b" WHERE parent = $1) FROM dirs WHERE id = $1", [20]),
    # the whole list as one value: 8 bytes a child, big-endian (one row, not 1M)
    b"ni_kids": (b"SELECT string_agg(int8send(child), ''::bytea ORDER BY ord) FROM kids"
                 b" WHERE parent = $1", [20]),
    # LOOKUP from the index, in child-list order (kids: still a child of that directory)
    b"ni_lookup": (b"SELECT k.child FROM keys k JOIN kids o ON o.parent = k.parent"
                   b" AND o.child = k.child WHERE k.parent = $1 AND k.key = $2"
                   b" AND k.value = $3 ORDER BY o.ord", [20, 17, 17]),
    # LOOKUPREAD: the first match's row with the index hit, one round trip
    b"ni_first": (b"SELECT d.id, d.props FROM keys k JOIN kids o ON o.parent = k.parent"
                  b" AND o.child = k.child JOIN dirs d ON d.id = k.child"
                  b" WHERE k.parent = $1 AND k.key = $2 AND k.value = $3"
                  b" ORDER BY o.ord LIMIT 1", [20, 17, 17]),
}
_INT8 = struct.Struct(">q")
_TUPLES_OK = 2          # libpq's PGRES_TUPLES_OK
_CONNECTION_OK = 0      # libpq's CONNECTION_OK
#: the hot statements already prepared, per connection
_prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()
_FETCH = "SELECT id, instance, parent, props FROM dirs WHERE id = ANY(%s)"
_FETCH_KIDS = ("SELECT parent, child FROM kids WHERE parent = ANY(%s)"
               " ORDER BY parent, ord")


class PgReader(PgRows):
    """The :class:`~.cached.RowReader` of a :class:`~.postgres.PostgresStore` on
    connection *conn*; with *conn* None, a snapshot reader that opens a connection of its
    own on its first read (:meth:`snapshot`)."""

    chunk = CHUNK
    #: every read is a round trip to the server: a snapshot stream reads in a worker
    #: thread (server/ahead.py)
    off_loop = True

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any] | None) -> None:
        super().__init__(conn)  # type: ignore[arg-type]  # None: opened on first use
        self._store = store
        self._snapshot = conn is None
        self._pg_error: type[Exception] = _psycopg().Error

    @property
    def _c(self) -> psycopg.Connection[Any]:
        if not self._snapshot:
            # the writer's connection as it is now: one lost is replaced by the store
            # (PostgresStore._reconnect), and the reads follow it
            conn = self._conn = self._store._conn
            return conn
        conn = self._conn
        if conn is None:
            conn = self._conn = self._open_snapshot()
        return conn

    def _open_snapshot(self) -> psycopg.Connection[Any]:
        conninfo, _ = split_url(self._store.url)
        conn = _connect(conninfo, "snapshot")
        try:
            conn.execute(f'SET search_path TO "{self._store.schema}"')
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # the snapshot is taken by the transaction's first query
            conn.execute("SELECT 1 FROM meta LIMIT 1")
        except Exception as exc:
            conn.close()
            raise self._bad(exc) from exc
        return conn

    def _bad(self, exc: BaseException) -> StorageError:
        lost = " (the connection to PostgreSQL is lost)" if self._lost() else ""
        return StorageError(f"cannot read {self._store.where}: {_one_line(exc)}{lost}")

    def _q(self, sql: str, args: Sequence[object] | dict[str, object] = (),
           binary: bool = False) -> list[Any]:
        for again in (True, False):
            try:
                return self._c.execute(sql, args, binary=binary).fetchall()
            except self._pg_error as exc:
                if not (again and self._lost()):
                    raise self._bad(exc) from exc
            self._store.revive()   # a lost writer's connection: once more on the new one
        raise AssertionError("unreachable")

    def _lost(self) -> bool:
        """The writer's connection is gone (a snapshot's is never replaced)."""
        conn = self._conn
        return not self._snapshot and conn is not None and (
            conn.closed or conn.broken or conn.pgconn.status != _CONNECTION_OK)

    def _hot(self, name: bytes, params: list[bytes]) -> Any:
        """The result of hot statement *name* (``_HOT``), binary: one round trip; on a
        lost writer's connection, once more on the one that replaces it."""
        try:
            return self._hot_once(name, params)
        except StorageError:
            if not self._lost():
                raise
        self._store.revive()
        return self._hot_once(name, params)

    def _hot_once(self, name: bytes, params: list[bytes]) -> Any:
        conn = self._c
        pq = conn.pgconn
        try:
            done = _prepared.setdefault(conn, set())
            if name not in done:
                sql, types = _HOT[name]
                res = pq.prepare(name, sql, types)
                if res.status != 1:   # PGRES_COMMAND_OK
                    raise self._bad(StorageError(res.error_message.decode(errors="replace")))
                done.add(name)
            res = pq.exec_prepared(name, params, [1] * len(params), 1)
        except self._pg_error as exc:
            raise self._bad(exc) from exc
        if res.status != _TUPLES_OK:
            raise self._bad(StorageError(res.error_message.decode(errors="replace")))
        return res

    def _one(self, sql: str, args: Sequence[object] = ()) -> Any:
        rows = self._q(sql, args)
        return rows[0][0] if rows else None

    def damaged(self, oid: int, exc: Exception) -> DamagedDirectory:
        return DamagedDirectory(oid, f"{self._store.where}: directory {oid} is damaged "
                                     f"({exc}): it is refused when read and never sent to "
                                     f"a clone; {RECOVERY}")

    # -- the RowReader ---------------------------------------------------------------------

    def row(self, oid: int) -> tuple[int, int, bytes, bool] | None:
        res = self._hot(b"ni_row", [_INT8.pack(oid)])
        if not res.ntuples:
            return None
        get = res.get_value
        return (_INT8.unpack(get(0, 0))[0], _INT8.unpack(get(0, 1))[0], bytes(get(0, 2)),
                get(0, 3) == b"\x01")

    def kids(self, oid: int) -> array[int]:
        blob = self._hot(b"ni_kids", [_INT8.pack(oid)]).get_value(0, 0)
        wide = array("q")
        if blob:
            wide.frombytes(blob)
            if sys.byteorder == "little":
                wide.byteswap()
        return array("I", wide)

    def fetch(self, ids: list[int], with_kids: bool) -> tuple[list[Row], dict[int, array[int]]]:
        rows: list[Row] = [(oid, inst, parent, bytes(props)) for oid, inst, parent, props
                           in self._q(_FETCH, (ids,), binary=True)]
        kids: dict[int, array[int]] = {}
        if with_kids and rows:
            for parent, group in groupby(self._q(_FETCH_KIDS, (ids,), binary=True),
                                         itemgetter(0)):
                kids[parent] = array("I", map(itemgetter(1), group))
        return rows, kids

    def has(self, oid: int) -> bool:
        return bool(self._q("SELECT 1 FROM dirs WHERE id = %s", (oid,)))

    def max_id(self) -> int:
        return self.highest([])

    def highest(self, excluding: list[int] | None = None) -> int:
        if excluding:
            top = self._one("SELECT max(id) FROM dirs WHERE id <> ALL(%s)", (excluding,))
        else:
            top = self._one("SELECT max(id) FROM dirs")
        return -1 if top is None else int(top)

    def count(self) -> int:
        return int(self._one("SELECT count(*) FROM dirs"))

    def gaps(self) -> list[int]:
        out: list[int] = []
        first, last, count = self._q("SELECT min(id), max(id), count(*) FROM dirs")[0]
        if first is None or last - first + 1 == count:   # dense: no holes
            out.extend(range(first or 0))
            return out
        out.extend(range(first))
        # Usually every hole is a destroyed number, listed in freed (as SQLite's).
        freed = [oid for (oid,) in self._q(
            "SELECT id FROM freed WHERE id > %s AND id < %s", (first, last))]
        if len(freed) == last - first + 1 - count:
            out.extend(freed)
            return out
        for oid, nxt in self._q(
                "SELECT id, nxt FROM (SELECT id, lead(id) OVER (ORDER BY id) AS nxt"
                " FROM dirs) w WHERE nxt > id + 1"):
            out.extend(range(oid + 1, nxt))
        return out

    def freed(self) -> dict[int, int]:
        return dict(self._q("SELECT id, instance FROM freed"))

    def meta(self, key: str) -> int | None:
        v = self._one("SELECT value FROM meta WHERE key = %s", (key,))
        return None if v is None else int(v)

    def instances(self) -> list[tuple[int, int]]:
        return [(oid, inst) for oid, inst in self._q("SELECT id, instance FROM dirs",
                                                      binary=True)]

    def ids(self) -> list[int]:
        return [oid for (oid,) in self._q("SELECT id FROM dirs", binary=True)]

    def lookup(self, parent: int, key: bytes, value: bytes) -> list[int]:
        res = self._hot(b"ni_lookup", [_INT8.pack(parent), key, value])
        get = res.get_value
        return [_INT8.unpack(get(i, 0))[0] for i in range(res.ntuples)]

    def lookup_first(self, parent: int, key: bytes, value: bytes) -> tuple[int, bytes] | None:
        res = self._hot(b"ni_first", [_INT8.pack(parent), key, value])
        if not res.ntuples:
            return None
        return _INT8.unpack(res.get_value(0, 0))[0], bytes(res.get_value(0, 1))

    def snapshot(self) -> PgReader:
        """A reader of a snapshot of its own: a connection in a repeatable-read
        transaction, opened (and the snapshot taken) by its first read, in the thread
        that reads it."""
        return PgReader(self._store, None)

    def close(self) -> None:
        if self._snapshot and self._conn is not None:
            conn, self._conn = self._conn, None  # type: ignore[assignment]
            try:
                conn.close()   # ends the read transaction
            except Exception:
                pass


class PgSource(CachedSource):
    """The directories of a :class:`~.postgres.PostgresStore`, read on demand: a
    :class:`~.cached.CachedSource` over :class:`PgReader` of the store's connection."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any],
                 cache: int | None = None, cache_bytes: int | None = None) -> None:
        super().__init__(PgReader(store, conn), cache, cache_bytes)


__all__ = ["PgReader", "PgSource"]
