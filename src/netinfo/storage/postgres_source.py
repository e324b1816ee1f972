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

import asyncio
import struct
import sys
import weakref
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
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
    # Whether it has children at all comes with a directory (one index probe). Written
    # so that the generic plan PostgreSQL switches to after five runs probes the index:
    # for "EXISTS(SELECT 1 FROM kids WHERE parent = $1)" it scanned the whole table
    # (the parameter's estimate is /users' million children), 52 ms a directory at 1M.
    b"ni_row": (b"SELECT instance, parent, props, (SELECT ord FROM kids WHERE parent = $1"
                b" ORDER BY ord LIMIT 1) IS NOT NULL FROM dirs WHERE id = $1", [20]),
    # the whole list as one value: 8 bytes a child, big-endian (one row, not 1M); the
    # rows read along the index by an ordered subquery (with the aggregate's ORDER BY
    # alone the generic plan scanned the whole table: 38 ms for a leaf at 1M), the
    # aggregate's ORDER BY kept (the order of a subquery's rows is not promised)
    b"ni_kids": (b"SELECT string_agg(int8send(child), ''::bytea ORDER BY ord) FROM"
                 b" (SELECT child, ord FROM kids WHERE parent = $1 ORDER BY ord) s", [20]),
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


def forget_prepared(conn: Any) -> None:
    """After a DROP, ALTER or ROLLBACK on *conn*: psycopg then deallocates every
    statement prepared on it (its own cache's rule), ours too. Let that be sent now, and
    prepare ours again at their next use."""
    try:
        if not (conn.closed or conn.broken):
            conn.execute("SELECT 1")
    except Exception:   # a lost connection is replaced, and prepares afresh anyway
        pass
    _prepared.pop(conn, None)


def _prepare(pq: Any, name: bytes) -> None:
    """Prepare hot statement *name* on libpq connection *pq* (blocking).
    :raises StorageError: refused."""
    sql, types = _HOT[name]
    res = pq.prepare(name, sql, types)
    if res.status != 1:   # PGRES_COMMAND_OK
        raise StorageError(res.error_message.decode(errors="replace"))


_FETCH = "SELECT id, instance, parent, props FROM dirs WHERE id = ANY(%s)"
_FETCH_KIDS = ("SELECT parent, child FROM kids WHERE parent = ANY(%s)"
               " ORDER BY parent, ord")


def _row(res: Any) -> tuple[int, int, bytes, bool] | None:
    if not res.ntuples:
        return None
    get = res.get_value
    return (_INT8.unpack(get(0, 0))[0], _INT8.unpack(get(0, 1))[0], bytes(get(0, 2)),
            get(0, 3) == b"\x01")


def _kids(res: Any) -> array[int]:
    blob = res.get_value(0, 0)
    wide = array("q")
    if blob:
        wide.frombytes(blob)
        if sys.byteorder == "little":
            wide.byteswap()
    return array("I", wide)


def _lookup(res: Any) -> list[int]:
    get = res.get_value
    return [_INT8.unpack(get(i, 0))[0] for i in range(res.ntuples)]


def _first(res: Any) -> tuple[int, bytes] | None:
    if not res.ntuples:
        return None
    return _INT8.unpack(res.get_value(0, 0))[0], bytes(res.get_value(0, 1))


def _one_id(oid: object) -> list[bytes]:
    return [_INT8.pack(oid)]


def _triple(parent: object, key: object, value: object) -> list[bytes]:
    return [_INT8.pack(parent), key, value]  # type: ignore[list-item]


#: The hot reads by ``RowReader`` method name: (statement, its parameters from the
#: method's arguments, its result parsed), as :class:`PgReader` runs them and
#: :class:`PgLoopReads` does on the event loop.
HOT_READS: dict[str, tuple[bytes, Callable[..., list[bytes]], Callable[[Any], object]]] = {
    "row": (b"ni_row", _one_id, _row),
    "kids": (b"ni_kids", _one_id, _kids),
    "lookup": (b"ni_lookup", _triple, _lookup),
    "lookup_first": (b"ni_first", _triple, _first),
}


class PgReader(PgRows):
    """The :class:`~.cached.RowReader` of a :class:`~.postgres.PostgresStore` on
    connection *conn*; with *conn* None, a snapshot reader that opens a connection of its
    own on its first read (:meth:`snapshot`)."""

    chunk = CHUNK
    #: every read is a round trip to the server: a snapshot stream reads in a worker
    #: thread (server/ahead.py)
    off_loop = True

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any] | None,
                 side: bool = False) -> None:
        super().__init__(conn)  # type: ignore[arg-type]  # None: opened on first use
        self._store = store
        self._snapshot = conn is None and not side
        #: a reader thread's (:meth:`side`): a connection of its own, opened on first use
        #: and again after it is lost
        self._side = side
        self._pg_error: type[Exception] = _psycopg().Error

    @classmethod
    def side(cls, store: PostgresStore) -> PgReader:
        """A reader of what is committed, on a connection of its own opened by its first
        read (in the reader thread that uses it, ``server.storeio``): it never shares
        the writer's, which a commit in flight holds."""
        return cls(store, None, side=True)

    @property
    def _c(self) -> psycopg.Connection[Any]:
        if self._side:
            conn = self._conn
            if conn is None or self._lost():
                if conn is not None:
                    conn.close()
                conn = self._conn = self._store._session()
            return conn
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
            self._revive()   # a lost writer's connection: once more on the new one
        raise AssertionError("unreachable")

    def _revive(self) -> None:
        """After a read found the connection lost: the writer's is replaced by the store
        (a reader thread's own is replaced by its next read, :attr:`_c`)."""
        if not self._side:
            self._store.revive()

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
        self._revive()
        return self._hot_once(name, params)

    def _hot_once(self, name: bytes, params: list[bytes]) -> Any:
        conn = self._c
        pq = conn.pgconn
        try:
            done = _prepared.setdefault(conn, set())
            if name not in done:
                _prepare(pq, name)
                done.add(name)
            res = pq.exec_prepared(name, params, [1] * len(params), 1)
        except (self._pg_error, StorageError) as exc:
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
        return _row(self._hot(b"ni_row", [_INT8.pack(oid)]))

    def props(self, oid: int) -> bytes | None:
        row = self.row(oid)   # (one prepared statement; the test for children is cheap)
        return None if row is None else row[2]

    def kids(self, oid: int) -> array[int]:
        return _kids(self._hot(b"ni_kids", [_INT8.pack(oid)]))

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
        return _lookup(self._hot(b"ni_lookup", [_INT8.pack(parent), key, value]))

    def lookup_first(self, parent: int, key: bytes, value: bytes) -> tuple[int, bytes] | None:
        return _first(self._hot(b"ni_first", [_INT8.pack(parent), key, value]))

    def pairs(self, parent: int, key: bytes) -> Iterator[tuple[bytes, int]]:
        try:
            # a named (server-side) cursor: a chunk at a time, never the whole set
            with self._c.cursor(name="ni_pairs", binary=True) as cur:
                cur.itersize = CHUNK * 16
                cur.execute("SELECT k.value, k.child FROM keys k JOIN kids o"
                            " ON o.parent = k.parent AND o.child = k.child"
                            " WHERE k.parent = %s AND k.key = %s", (parent, key))
                for value, child in cur:
                    yield bytes(value), child
        except self._pg_error as exc:
            raise self._bad(exc) from exc

    def snapshot(self) -> PgReader:
        """A reader of a snapshot of its own: a connection in a repeatable-read
        transaction, opened (and the snapshot taken) by its first read, in the thread
        that reads it."""
        return PgReader(self._store, None)

    def close(self) -> None:
        if (self._snapshot or self._side) and self._conn is not None:
            conn, self._conn = self._conn, None  # type: ignore[assignment]
            try:
                conn.close()   # ends the read transaction
            except Exception:
                pass


#: Connections the event loop drives for the hot reads (:class:`PgLoopReads`): one read
#: in flight on each; four let the backends work on both cores of a small machine while
#: netinfod answers other calls.
LOOP_CONNECTIONS = 4


class PgLoopReads:
    """The hot reads (:data:`HOT_READS`) on connections driven by the event loop itself,
    libpq in non-blocking mode: the query is sent, the loop goes on, and the result is
    taken when the socket is readable (each connection's socket stays registered with
    the loop). No thread: a result read in a thread waits for the interpreter lock
    while the loop is busy (measured: 0.51x the on-loop rate with one client, 0.57x
    with four, at 100,000 users), and no task per read. Each connection is the store's
    (``PostgresStore._session``) with the statements prepared, opened in a thread on
    first need, at most :data:`LOOP_CONNECTIONS` with one read in flight each (more
    reads queue); a connection found lost is dropped and the read tried once more on a
    new one (``server.storeio``)."""

    names = frozenset(HOT_READS)

    def __init__(self, store: PostgresStore, size: int = LOOP_CONNECTIONS) -> None:
        self._store = store
        self._size = size
        self._free: list[_LoopConn] = []
        self._opening = 0
        self._all: set[_LoopConn] = set()
        #: reads waiting for a connection: (name, args, done, tries left)
        self._queue: deque[tuple[str, tuple[object, ...], Done, int]] = deque()

    def _connect(self) -> psycopg.Connection[Any]:
        """In a thread: a new connection with the hot statements prepared."""
        conn = self._store._session()
        try:
            for name in _HOT:
                _prepare(conn.pgconn, name)
        except Exception:
            conn.close()
            raise
        conn.pgconn.nonblocking = 1
        return conn

    def read(self, name: str, args: tuple[object, ...], done: Done, tries: int = 2) -> None:
        """Start ``RowReader`` method *name* with *args* on the loop; ``done(value,
        None)`` with its result, or ``done(None, error)`` (a ``StorageError``), later,
        on the loop."""
        if self._free:
            self._free.pop().send(name, args, done, tries)
            return
        self._queue.append((name, args, done, tries))
        if len(self._all) + self._opening < self._size:
            self._opening += 1
            fut = asyncio.ensure_future(asyncio.to_thread(self._connect))
            fut.add_done_callback(self._opened)

    def _opened(self, fut: asyncio.Future[psycopg.Connection[Any]]) -> None:
        self._opening -= 1
        try:
            conn = fut.result()
        except BaseException as exc:
            # nobody to serve the queue: each read fails with the reason
            queue, self._queue = self._queue, deque()
            err = StorageError(f"cannot read {self._store.where}: {_one_line(exc)}")
            for _, _, done, _ in queue:
                done(None, err)
            return
        c = _LoopConn(self, conn)
        self._all.add(c)
        self.idle(c)

    def idle(self, c: _LoopConn) -> None:
        """*c* is free again: the next queued read, if any."""
        if self._queue:
            c.send(*self._queue.popleft())
        else:
            self._free.append(c)

    def lost(self, c: _LoopConn, name: str, args: tuple[object, ...], done: Done,
             tries: int, why: str) -> None:
        """*c* failed: dropped; the read it carried tried again, or failed."""
        self._all.discard(c)
        if c in self._free:
            self._free.remove(c)
        c.close()
        if tries > 1:
            self.read(name, args, done, tries - 1)
        else:
            done(None, StorageError(f"cannot read {self._store.where}: {why} (the "
                                    f"connection to PostgreSQL is lost)"))

    def close(self) -> None:
        for c in list(self._all):
            c.close()
        self._all.clear()
        self._free = []


#: What a loop-driven read calls with its outcome: (value, None) or (None, the error).
Done = Callable[[object, "BaseException | None"], None]


class _LoopConn:
    """One connection of :class:`PgLoopReads`, its socket registered with the loop."""

    __slots__ = ("_owner", "_conn", "_pq", "_fd", "_loop", "_busy", "_last")

    def __init__(self, owner: PgLoopReads, conn: psycopg.Connection[Any]) -> None:
        self._owner = owner
        self._conn = conn
        self._pq = conn.pgconn
        self._fd = self._pq.socket
        self._loop = asyncio.get_running_loop()
        #: the read in flight: (name, args, done, tries), or None
        self._busy: tuple[str, tuple[object, ...], Done, int] | None = None
        self._last: Any = None
        self._loop.add_reader(self._fd, self._readable)

    def send(self, name: str, args: tuple[object, ...], done: Done, tries: int) -> None:
        stmt, params, _ = HOT_READS[name]
        self._busy = (name, args, done, tries)
        self._last = None
        pq = self._pq
        try:
            values = params(*args)
            pq.send_query_prepared(stmt, values, [1] * len(values), 1)
            if pq.flush():   # the rest is sent when the socket can take it
                self._loop.add_writer(self._fd, self._writable)
        except Exception as exc:
            self._fail(_one_line(exc))

    def _writable(self) -> None:
        try:
            if not self._pq.flush():
                self._loop.remove_writer(self._fd)
        except Exception as exc:
            self._loop.remove_writer(self._fd)
            self._fail(_one_line(exc))

    def _readable(self) -> None:
        pq = self._pq
        try:
            pq.consume_input()
            while not pq.is_busy():
                res = pq.get_result()
                if res is None:
                    break
                self._last = res
            else:
                return   # more to come
        except Exception as exc:
            self._fail(_one_line(exc))
            return
        busy, self._busy = self._busy, None
        if busy is None:
            if pq.status != _CONNECTION_OK:   # closed by the server while idle
                self._owner.lost(self, "", (), _ignore, 0, "closed")
            return
        name, _, done, _ = busy
        res = self._last
        self._last = None
        self._owner.idle(self)
        if res is None or res.status != _TUPLES_OK:
            why = "no result" if res is None else res.error_message.decode(errors="replace")
            done(None, StorageError(f"cannot read {self._owner._store.where}: {why}"))
            return
        try:
            value = HOT_READS[name][2](res)
        except Exception as exc:
            done(None, exc)
            return
        done(value, None)

    def _fail(self, why: str) -> None:
        busy, self._busy = self._busy, None
        if busy is None:
            self._owner.lost(self, "", (), _ignore, 0, why)
        else:
            self._owner.lost(self, *busy, why)

    def close(self) -> None:
        try:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        except Exception:
            pass
        try:
            self._conn.close()
        except Exception:
            pass


def _ignore(value: object, exc: BaseException | None) -> None:
    return None


class PgSource(CachedSource):
    """The directories of a :class:`~.postgres.PostgresStore`, read on demand: a
    :class:`~.cached.CachedSource` over :class:`PgReader` of the store's connection."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any],
                 cache: int | None = None, cache_bytes: int | None = None) -> None:
        super().__init__(PgReader(store, conn), cache, cache_bytes)


__all__ = ["HOT_READS", "PgLoopReads", "PgReader", "PgSource"]
