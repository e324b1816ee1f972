"""The SQLite engine: the default durable store of a domain (one file per domain).

Layout, one table per concern:

``dirs(id, instance, parent, props)``
    a directory's own record; ``props`` is the XDR proplist (``protocol.encode_proplist``),
    which keeps property order, value order, duplicates and any bytes exactly (spec §5.1).
``kids(parent, ord, child)``
    child lists, one row per entry. ``ord`` is a sparse sort key, so inserting or removing a
    child touches one row, never the whole list (DESIGN.md: a directory may have a million
    children).
``freed(id, instance)``
    last instance of each destroyed object number (spec §5.3: a reused number continues
    from it).
``meta(key, value)``
    the database checksum (spec §5.6) and the service's counters (``Meta`` ops: the
    anonymous-write quota's usage, docs/security.md).
``keys(parent, key, value, child)``
    the LOOKUP index (spec §4.4, §5.4): one row per distinct value of the *first* property
    of each name of every directory but the root, under its parent; kept in step by every
    Put and Free in the same transaction, so a LOOKUP right after start-up needs no index
    build (docs/architecture.md, "Representation at scale"). Names and values are stored
    as their UTF-8 bytes (surrogateescape), exactly as compared.
``schema_version(version)``
    numbered migrations, applied in order at open.

Durability: WAL journal with ``synchronous=FULL``, so a batch is on disk when
:meth:`SqliteStore.commit` returns and a SIGKILL at any moment loses no acknowledged write.
The store must be the only writer of its file; a change by another connection is detected
(``PRAGMA data_version``) and only costs the in-memory child counts.

A clone's copy (spec §9.5) is written into ``FILE.temp`` beside the file by
:class:`SqliteCopy`, rows straight from the READALL stream, and swapped in by
:meth:`SqliteStore.adopt` with one rename, after the old file's WAL is checkpointed and
its connection closed; a ``FILE.temp`` a crash left is discarded (:func:`discard_copy`).
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StorageError, WireError
from ..model import Proplist
from ..wire.proplist import WireProplist, check_proplist, decode_proplist, encode_proplist
from ..wire.readall import WireObject
from . import Free, Image, KidDel, KidIns, Meta, NewCopy, Op, Put, Record, Reset, Store
from .dump import SqlDump
from .sqlite_journal import SqliteJournal, carry_over, schema

if TYPE_CHECKING:
    from .changes import Change
    from .sqlite_source import SqliteSource

#: What to tell the administrator when a database cannot be trusted.
RECOVERY = ("restore it from a dump (niload -r / . < dump.raw into a new domain), or move it "
            "away and let a clone copy it again from the master; "
            "'sqlite3 FILE .recover' may rescue what is left")

# STRICT tables make SQLite refuse a wrongly typed value (an id that is not an integer)
# instead of storing it; older libraries simply get ordinary tables.
_STRICT = ["STRICT"] if sqlite3.sqlite_version_info >= (3, 37) else []


def _options(*options: str) -> str:
    """Table options, e.g. ``" WITHOUT ROWID, STRICT"``."""
    return " " + ", ".join([*options, *_STRICT]) if options or _STRICT else ""


#: a row of the ``keys`` table: (parent, key, value, child)
KeyRow = tuple[int, bytes, bytes, int]


def key_rows(oid: int, parent: int, props: Proplist) -> set[tuple[int, bytes, bytes, int]]:
    """The ``keys`` rows of directory *oid*: (parent, name, value, oid) for each distinct
    value of the first property of each name (spec §4.4: LOOKUP looks at the first property
    of that name only, any value position). None for the root: it is no one's child."""
    return set(key_row_list(oid, parent, props))


def key_row_list(oid: int, parent: int, props: Proplist) -> list[tuple[int, bytes, bytes, int]]:
    """:func:`key_rows` as a list, a row twice when a value is repeated (``INSERT OR
    IGNORE`` takes it once): a new directory's rows, without building a set."""
    if oid == 0:
        return []
    if type(props) is WireProplist and props.firsts is not None:
        # a call's proplist: the pairs were taken as it was decoded; used once (they
        # would double the memory of the cached directory), then encoding again
        f = props.firsts
        props.firsts = None
        return [(parent, name, value, oid)
                for name, value in zip(f[::2], f[1::2], strict=True)]
    rows = []
    seen: set[str] = set()
    names = _NAME_BYTES
    for name, values in props:
        if name in seen:
            continue
        seen.add(name)
        kb = names.get(name)
        if kb is None:
            kb = name.encode("utf-8", "surrogateescape")
            if len(names) < 4096:  # property names are few; never grow without bound
                names[name] = kb
        for v in values:
            rows.append((parent, kb, v.encode("utf-8", "surrogateescape"), oid))
    return rows


def index_delta(new: dict[int, tuple[int, bytes, Proplist]],
                old: dict[int, tuple[int, bytes]]) -> tuple[list[KeyRow], list[KeyRow]]:
    """The LOOKUP index rows to drop and to add when directories are stored as *new*
    (id → parent, stored proplist bytes, proplist) over what was stored, *old* (id →
    parent, bytes; a new directory absent). One stored unchanged (parent and bytes)
    costs nothing; both engines keep their ``keys`` table by it."""
    drop: list[KeyRow] = []
    add: list[KeyRow] = []
    for oid, (parent, blob, props) in new.items():
        was = old.get(oid)
        if was == (parent, blob):
            continue
        if was is None:
            add.extend(key_row_list(oid, parent, props))
            continue
        now = key_rows(oid, parent, props)
        before = key_rows(oid, was[0], decode_proplist(was[1]))
        drop.extend(before - now)
        add.extend(now - before)
    return drop, add


#: property name -> its bytes in the keys table (key_row_list)
_NAME_BYTES: dict[str, bytes] = {}


def _build_keys(c: sqlite3.Connection) -> None:
    """Migration 2: index every stored directory (a database made before the index)."""
    rows: list[tuple[int, bytes, bytes, int]] = []
    for oid, parent, blob in c.execute("SELECT id, parent, props FROM dirs"):
        rows.extend(key_row_list(oid, parent, decode_proplist(blob)))
        if len(rows) >= 50_000:
            c.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?)", rows)
            rows = []
    c.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?)", rows)


#: Migration number → steps (SQL statements, or functions of the connection); version 1
#: is the initial schema. Append, never edit.
_MIGRATIONS: dict[int, list[str | Callable[[sqlite3.Connection], None]]] = {
    1: [
        "CREATE TABLE dirs(id INTEGER PRIMARY KEY, instance INTEGER NOT NULL,"
        " parent INTEGER NOT NULL, props BLOB NOT NULL)" + _options(),
        # WITHOUT ROWID: rows are stored in (parent, ord) order, which is exactly the
        # order load() and positional lookups read them in.
        "CREATE TABLE kids(parent INTEGER NOT NULL, ord INTEGER NOT NULL,"
        " child INTEGER NOT NULL, PRIMARY KEY(parent, ord))" + _options("WITHOUT ROWID"),
        # The index carries (parent, ord) too, so "first occurrence of child" is one seek.
        "CREATE INDEX kids_child ON kids(parent, child)",
        "CREATE TABLE freed(id INTEGER PRIMARY KEY, instance INTEGER NOT NULL)" + _options(),
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value ANY)" + _options(),
    ],
    # The persisted LOOKUP index (issue 10: no index build after start-up).
    2: [
        "CREATE TABLE keys(parent INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
        " child INTEGER NOT NULL, PRIMARY KEY(parent, key, value, child))"
        + _options("WITHOUT ROWID"),
        _build_keys,
    ],
    # The change history (issue 24; sqlite_journal).
    3: [*schema(_options(), _options("WITHOUT ROWID"))],
}

#: Ids per ``IN (...)`` query (well under SQLite's host-parameter limit).
CHUNK = 256
#: SQLite's page cache of one snapshot reader (``SqliteStore.reader``), in KiB.
SNAPSHOT_CACHE_KIB = 512
#: SQLite's page cache of a :class:`SqliteDump` (``nistore``), in KiB.
DUMP_CACHE_KIB = 32 * 1024


def migrate(c: sqlite3.Connection, path: str) -> None:
    """Bring the schema of the database on *c* up to the newest version, one numbered
    migration at a time (a new file gets them all, in one transaction)."""
    c.execute("BEGIN IMMEDIATE")
    try:
        c.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
        row = c.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        newest = max(_MIGRATIONS)
        if current > newest:
            raise StorageError(f"sqlite store {path!r} has schema version {current}, "
                               f"newer than this program's {newest}")
        for version in range(current + 1, newest + 1):
            for step in _MIGRATIONS[version]:
                if isinstance(step, str):
                    c.execute(step)
                else:
                    step(c)
            c.execute("INSERT INTO schema_version VALUES (?)", (version,))
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise


class SqliteStore(Store):
    """A domain in one SQLite file (``sqlite:PATH``).

    Ordinal keys: an append takes ``max(ord) + gap``, an insert at the front
    ``min(ord) - gap``, an insert in the middle the midpoint of its neighbours. When two
    neighbours leave no room, only a window of that parent's rows around the spot is
    spaced out again, grown until it has room (see :meth:`_spread`).
    """

    scheme = "sqlite"
    #: Distance between fresh ordinal keys; 32 middle inserts at one spot fit in one gap.
    gap = 1 << 32
    #: Smallest spacing a re-spaced window may leave between neighbours.
    min_step = 1 << 16
    #: Ordinal keys stay within ±limit (SQLite integers are 64-bit).
    limit = 1 << 62
    #: Files up to this size are checked at open; larger ones by verify() after start.
    inline_check_max = 64 << 20

    def __init__(self, path: str, read_only: bool = False) -> None:
        if not path:
            raise StorageError("sqlite store: no file name given")
        self.path = path
        #: a reader of a file another process owns and writes (netinfod's read workers,
        #: server/readworkers): no check, no migration, every write refused by SQLite
        self.read_only = read_only
        #: parent → exact number of kids rows; lets kid_ins tell an append (index == len)
        #: from a middle insert without counting. Dropped on any doubt (failed batch,
        #: another writer); rebuilt per parent with one count, or by load().
        self._counts: dict[int, int] = {}
        #: parent → its highest ``ord``, while known exactly (dropped with the counts, and
        #: by any removal or re-keying): an append at the end needs no ``max(ord)`` query
        #: (a bulk load appends every new user to /users).
        self._last: dict[int, int] = {}
        #: True when the integrity check waits for :meth:`verify` (a large file)
        self.deferred_check = False
        self._verifying: sqlite3.Connection | None = None
        self._verify_child: subprocess.Popen[bytes] | None = None
        self._verify_stopped = False
        self._verify_lock = threading.Lock()
        self._verify_idle = threading.Event()
        self._verify_idle.set()
        self.found_damaged: list[str] = []
        self._conn = self._open_reader() if read_only else self._open(check=True)
        #: the change history, kept in the same file and transactions (issue 24)
        self.journal: SqliteJournal = SqliteJournal(lambda: self._conn, self._idle)

    def _idle(self) -> sqlite3.Connection:
        """The connection with no transaction open, for a write or anything SQLite
        runs outside one (ATTACH, VACUUM): the read transaction the source's reads hold
        between writes (``SqliteRows._held``) ended first. Wherever this is called a
        transaction still open can only be that one: a write's would have made the
        BEGIN that follows fail."""
        c = self._conn
        if c.in_transaction:
            c.execute("COMMIT")
        return c

    def _open(self, check: bool) -> sqlite3.Connection:
        """A connection to the file, in WAL mode, its schema migrated; with *check*, the
        file checked first (at once up to :attr:`inline_check_max`, else by
        :meth:`verify`)."""
        path = self.path
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open sqlite store {path!r}: {exc}") from exc
        try:
            if check:
                try:
                    size = os.path.getsize(path)
                except OSError:
                    size = 0
                if size <= self.inline_check_max:
                    self._check(conn)
                else:
                    # quick_check reads every page: 2.4 s for a million users, more than
                    # the whole start-up budget (issue 10). Opening still reads the
                    # schema (a file that is not a database is refused here); the full
                    # check runs after start-up (verify(), netinfod) while it is served.
                    self.deferred_check = True
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is synced at every commit, so commit() returning means on disk.
            conn.execute("PRAGMA synchronous=FULL")
            migrate(conn, path)
            if check and not self.deferred_check:
                self.found_damaged = self._scan(conn)
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except (sqlite3.Error, StorageError) as exc:
            conn.close()
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cannot open sqlite store {path!r}: {exc}") from exc
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        """A connection that only reads (``query_only``) a file in WAL mode, which its
        owner opened, checked and migrated: it sees each commit of the owner's from its
        next statement on (WAL readers never block the writer nor each other)."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open sqlite store {self.path!r}: {exc}") from exc
        try:
            conn.execute("PRAGMA query_only=1")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"sqlite store {self.path!r} is not in WAL mode "
                                   f"({mode}): it cannot be read beside its writer")
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except (sqlite3.Error, StorageError) as exc:
            conn.close()
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cannot open sqlite store {self.path!r}: {exc}") from exc
        return conn

    def reopen(self) -> None:
        """A reader's connection opened again: the owner swapped a new file in
        (``adopt``), which the old connection does not see. The caller asks for a new
        :meth:`source`."""
        old, self._conn = self._conn, self._open_reader()
        try:
            old.close()
        except sqlite3.Error:
            pass

    def _check(self, conn: sqlite3.Connection | None = None) -> None:
        """Refuse a damaged file (``PRAGMA quick_check``): a database SQLite can only
        partly read must never be served as if it were whole.

        :raises StorageError: with what SQLite reported and how to recover.
        """
        try:
            rows = (conn or self._conn).execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} is damaged or not a database ({exc}); "
                               f"{RECOVERY}") from exc
        problems = [r[0] for r in rows if r and r[0] != "ok"]
        if problems:
            raise StorageError(f"{self.path} is damaged ({problems[0]}"
                               f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}"
                               f"); {RECOVERY}")

    def _scan(self, conn: sqlite3.Connection, most: int = 16) -> list[str]:
        """The first *most* directories whose stored proplist does not decode (issue 18
        N20: SQLite's quick_check sees pages, not values). One pass over ``dirs``
        checking lengths only (``protocol.check_proplist``), beside quick_check's own
        pass over every page."""
        from .sqlite_source import damaged  # noqa: PLC0415 - the seam's other half
        out: list[str] = []
        try:
            for oid, blob in conn.execute("SELECT id, props FROM dirs"):
                try:
                    check_proplist(blob)
                except (WireError, TypeError) as exc:
                    out.append(str(damaged(self.path, oid, exc)))
                    if len(out) >= most:
                        break
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{self.path} is damaged ({exc}); {RECOVERY}") from exc
        return out

    def verify(self) -> str | None:
        """The deferred integrity check of a large file: ``PRAGMA quick_check`` and the
        proplists' scan (:meth:`_scan`) on a connection of their own (WAL: they read
        beside the serving connection, which is not blocked). Both run in a child
        process at the lowest priority (:func:`verify_file`): the scan is Python, 3.5 s
        at 1,000,000 users, and in a thread it held the interpreter lock in 5 ms slices
        (the p99 of the first seconds, issue 20); this thread only waits for it.
        Where no child can be started, they run here. Returns what is wrong (with the
        recovery hint), or None (also when :meth:`interrupt_verify` cut it short);
        the damaged directories found are in :attr:`found_damaged`."""
        outcome = self._verify_elsewhere()
        if outcome is not None:
            problem, found = outcome
            self.found_damaged = found
            return problem
        return self._verify_here()

    def _verify_elsewhere(self) -> tuple[str | None, list[str]] | None:
        """:func:`verify_file` in a child process: (problem, damaged directories), or
        None when the child could not give an answer (the check then runs here)."""
        with self._verify_lock:
            if not self.deferred_check or self._verify_stopped:
                return (None, [])
            try:
                child = subprocess.Popen(
                    [sys.executable, "-c", _VERIFY_CHILD, _PACKAGE_ROOT, self.path],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL)
            except OSError:
                return None
            self._verify_child = child
            self._verify_idle.clear()
        try:
            out, _ = child.communicate()
        finally:
            with self._verify_lock:
                self._verify_child = None
            self._verify_idle.set()
        if self._verify_stopped:
            return (None, [])    # interrupted (shutdown, a swap): nothing was found
        try:
            answer = json.loads(out)
            problem, found = answer["problem"], answer["damaged"]
            if (problem is None or isinstance(problem, str)) and isinstance(found, list) \
                    and all(isinstance(m, str) for m in found) and child.returncode == 0:
                return problem, found
        except (ValueError, TypeError, KeyError):
            pass
        return None   # the child failed (no memory, no interpreter): check here

    def _verify_here(self) -> str | None:
        """:meth:`verify` in this process (a thread: quick_check releases the GIL, the
        scan does not)."""
        with self._verify_lock:
            if not self.deferred_check or self._verify_stopped:
                return None
            try:
                conn = sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro",
                                       uri=True, check_same_thread=False)
            except sqlite3.Error as exc:
                return f"cannot open sqlite store {self.path!r} to check it: {exc}"
            self._verifying = conn
            self._verify_idle.clear()
        try:
            self._check(conn)
            self.found_damaged = self._scan(conn)
        except StorageError as exc:
            if self._verify_stopped:
                return None  # interrupted (shutdown, a swap): nothing was found
            return str(exc)
        except sqlite3.Error:
            if self._verify_stopped:
                return None
            raise
        finally:
            self._verifying = None
            conn.close()
            self._verify_idle.set()
        return None

    def interrupt_verify(self) -> None:
        """Stop a :meth:`verify` running in another thread (shutdown must not wait for
        a check reading the whole file), and keep any from starting."""
        with self._verify_lock:
            self._verify_stopped = True
            conn = self._verifying
            child = self._verify_child
        if conn is not None:
            conn.interrupt()
        if child is not None:
            try:
                child.kill()
            except OSError:
                pass

    # -- reading ------------------------------------------------------------------------

    def load(self) -> Image:
        """Read the whole domain: one pass over each table, in one read transaction."""
        c = self._idle()
        image = Image()
        # Building 100k+ small containers sets off the cyclic GC over and over (more than
        # half the load time, measured); nothing here makes cycles, so pause it.
        paused = gc.isenabled()
        gc.disable()
        try:
            c.execute("BEGIN")
            try:
                image.records = {oid: Record(inst, parent, decode_proplist(props))
                                 for oid, inst, parent, props
                                 in c.execute("SELECT id, instance, parent, props FROM dirs")}
                # Primary-key order of a WITHOUT ROWID table: no sort needed.
                rows = c.execute("SELECT parent, child FROM kids ORDER BY parent, ord")
                image.children = {parent: [child for _, child in group]
                                  for parent, group in groupby(rows, itemgetter(0))}
                image.freed = dict(c.execute("SELECT id, instance FROM freed"))
                meta = dict(c.execute("SELECT key, value FROM meta"))
                checksum = meta.pop("checksum", None)
                image.checksum = checksum
                image.meta = {k: v for k, v in meta.items() if isinstance(v, int)}
            finally:
                c.execute("COMMIT")
        except (sqlite3.Error, WireError, TypeError, ValueError) as exc:
            # WireError: a corrupt props blob; TypeError/ValueError: a value of the wrong
            # kind where a damaged file escaped quick_check
            raise StorageError(f"cannot read sqlite store {self.path!r}: {exc}; "
                               f"{RECOVERY}") from exc
        finally:
            if paused:
                gc.enable()
        # Free and exact: what was just read is what is committed.
        self._counts = {parent: len(kids) for parent, kids in image.children.items()}
        self._last.clear()
        return image

    def source(self, cache: int | None = None,
               cache_bytes: int | None = None) -> SqliteSource:
        """The domain read on demand through a bounded cache (``sqlite_source``)."""
        from .sqlite_source import SqliteSource  # noqa: PLC0415 - the seam's other half
        return SqliteSource(self, self._conn, cache, cache_bytes)

    def reader(self) -> sqlite3.Connection:
        """A read-only connection of its own inside a read transaction that has begun:
        a WAL snapshot of the last commit, unchanged by later ones, for a stream
        (``SqliteRows.snapshot``), usable from another thread than the one that opened
        it (one at a time). Close it when done: while it is open the WAL
        cannot be checkpointed past its start (it grows by what is written meanwhile),
        and :meth:`adopt` cannot swap a copy in.

        :raises StorageError: it cannot be opened.
        """
        try:
            # check_same_thread=False: a stream's reads may run in a worker thread
            # (database.SnapshotStream), one thread at a time, never beside another
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open sqlite store {self.path!r}: {exc}") from exc
        try:
            conn.execute("PRAGMA query_only=1")
            conn.execute(f"PRAGMA cache_size=-{SNAPSHOT_CACHE_KIB}")
            conn.execute("BEGIN")
            # The snapshot is taken by the first read, not by BEGIN.
            conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot read sqlite store {self.path!r}: {exc}") from exc
        return conn

    def dump(self) -> SqliteDump:
        """The whole domain a chunk at a time, in a WAL snapshot of its own
        (:meth:`reader`; ``storage.dump``)."""
        return SqliteDump(self.path, self.reader())

    def exists(self) -> bool:
        """True when at least one directory is stored."""
        try:
            return self._conn.execute("SELECT 1 FROM dirs LIMIT 1").fetchone() is not None
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read sqlite store {self.path!r}: {exc}") from exc

    def index_rows(self) -> set[tuple[int, bytes, bytes, int]]:
        """The whole persisted LOOKUP index (``nistore check``)."""
        return set(self._conn.execute("SELECT parent, key, value, child FROM keys"))

    # -- writing ------------------------------------------------------------------------

    def commit(self, ops: list[Op], checksum: int,
               changes: Sequence[Change] = ()) -> None:
        """Apply *ops* in order in one transaction, store *checksum*, sync to disk.
        (*changes*: the writes of the batch, ``Store.commit``, journalled first in the
        same transaction, :attr:`journal`; the sequence number comes as a ``Meta`` op.)

        Puts and runs of frees go to SQLite with ``executemany``.

        :raises StorageError: anything failed (unknown op, bad value, SQLite error);
            the transaction is rolled back and nothing was applied.
        """
        c = self._idle()
        try:
            c.execute("BEGIN IMMEDIATE")
            version = c.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:  # someone else wrote: counts are stale
                self._counts.clear()
                self._last.clear()
                self._data_version = version
            # The history first: it reads the touched directories' paths as they were.
            self.journal.record(changes, self.journal.lookup)
            # A put touches only dirs and freed, so it commutes with kid_ins/kid_del:
            # puts are gathered into one executemany and flushed before the ops that do
            # not commute with them (free, reset) and at the end.
            puts: list[Put] = []
            i, n = 0, len(ops)
            while i < n:
                op = ops[i]
                kind = type(op)
                i += 1
                if kind is Put:
                    puts.append(op)  # type: ignore[arg-type]
                    continue
                if kind in _FLUSH_PUTS and puts:
                    self._puts(puts)
                    puts = []
                if kind is Free:  # a run of frees: one executemany too
                    j = i - 1
                    while i < n and type(ops[i]) is Free:
                        i += 1
                    self._frees(ops[j:i])  # type: ignore[arg-type]
                    continue
                handler = _SINGLE.get(kind)
                if handler is None:
                    raise ValueError(f"unknown storage op {op!r}")
                handler(self, *op)
            if puts:
                self._puts(puts)
            c.execute("INSERT OR REPLACE INTO meta VALUES ('checksum', ?)", (checksum,))
            c.execute("COMMIT")
        except BaseException as exc:
            self._counts.clear()
            self.journal.forget_paths()
            self._last.clear()
            try:
                if c.in_transaction:
                    c.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # a failed rollback still leaves the last commit as the file's state
            if isinstance(exc, Exception):
                raise StorageError(f"sqlite store {self.path!r}: batch not applied: "
                                   f"{exc}") from exc
            raise

    def _stored(self, ids: Iterable[int]) -> dict[int, tuple[int, bytes]]:
        """id → (parent, props blob) of the stored ones among *ids*."""
        out: dict[int, tuple[int, bytes]] = {}
        ids = list(ids)
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i:i + CHUNK]
            out.update((oid, (parent, blob)) for oid, parent, blob in self._conn.execute(
                f"SELECT id, parent, props FROM dirs WHERE id IN ({','.join('?' * len(chunk))})",
                chunk))
        return out

    def _puts(self, ops: list[Put]) -> None:
        # Only the last put of a directory in the run is stored: a bulk load's batch puts
        # its table once per CREATE (the instance), and each would be a row written.
        final = {op.id: op for op in ops}
        rows = [(oid, inst, parent, encode_proplist(props))
                for oid, inst, parent, props in final.values()]
        c = self._conn
        # The LOOKUP index: per directory, the rows of what was stored before this run of
        # puts against the rows of its last put (a put changing neither parent nor props,
        # as an instance bump of a parent, costs nothing).
        last = {row[0]: (row[2], row[3], op.props)
                for row, op in zip(rows, final.values(), strict=True)}
        drop, add = index_delta(last, self._stored(last))
        c.executemany("DELETE FROM keys WHERE parent = ? AND key = ? AND value = ? AND child = ?",
                      drop)
        add.sort()  # in index order: each insert lands next to the last one
        _insert(c, "keys", 4, add, ignore=True)
        c.executemany("INSERT OR REPLACE INTO dirs VALUES (?, ?, ?, ?)", rows)
        c.executemany("DELETE FROM freed WHERE id = ?", [(r[0],) for r in rows])

    def _frees(self, ops: list[Free]) -> None:
        rows = [(oid, inst) for oid, inst in ops]
        ids = [(oid,) for oid, _ in rows]
        c = self._conn
        drop = [r for oid, (parent, blob) in self._stored(oid for oid, _ in rows).items()
                for r in key_row_list(oid, parent, decode_proplist(blob))]
        c.executemany("DELETE FROM keys WHERE parent = ? AND key = ? AND value = ? AND child = ?",
                      drop)
        c.executemany("DELETE FROM dirs WHERE id = ?", ids)
        c.executemany("DELETE FROM kids WHERE parent = ?", ids)
        c.executemany("INSERT OR REPLACE INTO freed VALUES (?, ?)", rows)
        for oid, _ in rows:
            self._counts[oid] = 0
            self._last.pop(oid, None)

    def _reset(self) -> None:
        for table in ("dirs", "kids", "freed", "meta", "keys"):
            self._conn.execute(f"DELETE FROM {table}")
        self._counts.clear()
        self._last.clear()

    def _meta(self, key: str, value: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _count(self, parent: int) -> int:
        n = self._counts.get(parent)
        if n is None:
            n = self._conn.execute("SELECT count(*) FROM kids WHERE parent = ?",
                                   (parent,)).fetchone()[0]
            self._counts[parent] = n
        return n

    def _kid_ins(self, parent: int, index: int, child: int) -> None:
        c = self._conn
        n = self._count(parent)
        if index < 0:  # same meaning as list.insert, like the memory engine
            index = max(0, index + n)
        if n == 0:
            key = 0
        elif index >= n:
            last = self._last.get(parent)
            if last is None:
                last = c.execute("SELECT max(ord) FROM kids WHERE parent = ?",
                                 (parent,)).fetchone()[0]
            key = last + self.gap
            if key > self.limit:
                return self._renumber(parent, last, child, n)
        elif index == 0:
            key = c.execute("SELECT min(ord) FROM kids WHERE parent = ?",
                            (parent,)).fetchone()[0] - self.gap
            if key < -self.limit:
                return self._renumber(parent, None, child, n)
        else:
            # The neighbours at index-1 and index; scan from the nearer end of the list.
            if index <= n // 2:
                lo, hi = (r[0] for r in c.execute(
                    "SELECT ord FROM kids WHERE parent = ? ORDER BY ord LIMIT 2 OFFSET ?",
                    (parent, index - 1)))
            else:
                hi, lo = (r[0] for r in c.execute(
                    "SELECT ord FROM kids WHERE parent = ? ORDER BY ord DESC LIMIT 2 OFFSET ?",
                    (parent, n - index - 1)))
            if hi - lo < 2:
                return self._spread(parent, lo, hi, child, n)
            key = (lo + hi) // 2
        c.execute("INSERT INTO kids VALUES (?, ?, ?)", (parent, key, child))
        self._counts[parent] = n + 1
        if n == 0 or index >= n:
            self._last[parent] = key

    def _spread(self, parent: int, lo: int, hi: int, child: int, n: int) -> None:
        """Insert *child* between keys *lo* and *hi* that have no room between them.

        Takes k rows each side (k = 4, 16, 64, ...) and spaces them evenly between the
        keys just outside that window, until the spacing is at least ``min_step``; so
        repeated inserts at one spot rewrite a few rows each time, not the whole list.
        """
        c = self._conn
        k = 4
        while True:
            left = c.execute("SELECT ord, child FROM kids WHERE parent = ? AND ord <= ? "
                             "ORDER BY ord DESC LIMIT ?", (parent, lo, k + 1)).fetchall()
            right = c.execute("SELECT ord, child FROM kids WHERE parent = ? AND ord >= ? "
                              "ORDER BY ord LIMIT ?", (parent, hi, k + 1)).fetchall()
            # Rows just beyond the window bound it (they keep their keys).
            lb = left.pop()[0] if len(left) > k else None
            ub = right.pop()[0] if len(right) > k else None
            if lb is None and ub is None:  # the window is the whole list
                return self._renumber(parent, lo, child, n)
            m = len(left) + 1 + len(right)
            # At an end of the list there is open room: use up to m gaps of it.
            if lb is None:
                lb = max(-self.limit, left[-1][0] - m * self.gap)
            if ub is None:
                ub = min(self.limit, right[-1][0] + m * self.gap)
            step = (ub - lb) // (m + 1)
            if step >= self.min_step:
                break
            k *= 4
        self._last.pop(parent, None)
        window = [kid for _, kid in reversed(left)] + [child] + [kid for _, kid in right]
        c.execute("DELETE FROM kids WHERE parent = ? AND ord BETWEEN ? AND ?",
                  (parent, left[-1][0], right[-1][0]))
        c.executemany("INSERT INTO kids VALUES (?, ?, ?)",
                      [(parent, lb + (i + 1) * step, kid) for i, kid in enumerate(window)])
        self._counts[parent] = n + 1

    def _renumber(self, parent: int, after: int | None, child: int, n: int) -> None:
        """Insert *child* after key *after* (None: first) and re-key the whole list.

        The last resort: ordinal keys ran out at an end of the 64-bit range, or the list
        is too dense for a window to help. Keys become multiples of the gap around 0.
        """
        c = self._conn
        rows = c.execute("SELECT ord, child FROM kids WHERE parent = ? ORDER BY ord",
                         (parent,)).fetchall()
        pos = 0 if after is None else sum(1 for key, _ in rows if key <= after)
        kids = [kid for _, kid in rows]
        kids.insert(pos, child)
        step = min(self.gap, 2 * self.limit // (len(kids) + 1))
        if step < 1:
            raise StorageError(f"child list of {parent} ran out of ordinal keys")
        base = -(len(kids) // 2) * step
        self._last.pop(parent, None)
        c.execute("DELETE FROM kids WHERE parent = ?", (parent,))
        c.executemany("INSERT INTO kids VALUES (?, ?, ?)",
                      [(parent, base + i * step, kid) for i, kid in enumerate(kids)])
        self._counts[parent] = n + 1

    def _kid_del(self, parent: int, child: int) -> None:
        # The first occurrence, as list.remove does in the memory engine.
        self._last.pop(parent, None)
        cur = self._conn.execute(
            "DELETE FROM kids WHERE parent = ? AND ord = "
            "(SELECT min(ord) FROM kids WHERE parent = ? AND child = ?)", (parent, parent, child))
        if cur.rowcount and parent in self._counts:
            self._counts[parent] -= cur.rowcount

    # -- a whole new domain (a clone's copy, spec §9.5) ------------------------------------

    def new_copy(self) -> SqliteCopy:
        """A whole new domain written into ``FILE.temp`` beside this one (may be called in
        a worker thread: the copy has its own connection)."""
        return SqliteCopy(self.path, self.gap)

    def adopt(self, copy: NewCopy) -> None:
        """Swap in a finished :class:`SqliteCopy` (spec §9.5's ``.temp``/``.move``, in
        one rename): the old file's WAL is checkpointed into it and its connection
        closed, so that no old WAL can ever be applied to the new file; FILE.temp is
        renamed over FILE (atomic: after a crash FILE is the old domain or the new one,
        and a leftover FILE.temp is discarded at the next open); the file is opened
        again. The database lock (``FILE.lock``, database.py) is another file, held
        throughout. A :meth:`verify` in progress is stopped first (its connection would
        share the new file's WAL); the copy was checked before the swap.

        :raises StorageError: nothing was swapped (the old domain is served on).
        """
        assert isinstance(copy, SqliteCopy)
        self.interrupt_verify()
        self._verify_idle.wait(10)
        try:
            old = self._idle()
            carry_over(old, copy.path)   # a clone keeps its history (issue 24)
            busy = old.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite store {self.path!r}: cannot swap in the copy: "
                               f"{exc}") from exc
        if busy:
            raise StorageError(f"sqlite store {self.path!r}: cannot swap in the copy: "
                               f"its write-ahead log is in use")
        old.close()
        wal = self.path + "-wal"
        try:
            if os.path.exists(wal) and os.path.getsize(wal):
                raise StorageError(f"cannot swap in the copy: {wal} is still in use")
            os.replace(copy.path, self.path)
        except (OSError, StorageError) as exc:
            self._conn = self._open(check=False)   # the old file, as it was
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"cannot swap in the copy {copy.path!r}: {exc}") from exc
        _sync_dir(self.path)   # the rename survives a power loss too
        self._counts.clear()
        self.journal.forget_paths()
        self._last.clear()
        self.deferred_check = False
        self._conn = self._open(check=False)

    def keep_aside(self, label: str) -> str:
        """``FILE.LABEL``: a consistent copy of the domain (SQLite's ``VACUUM INTO``,
        committed data only, WAL included), written beside the file and synced."""
        dest = f"{self.path}.{label}"
        if os.path.exists(dest):
            raise StorageError(f"cannot keep the domain aside: {dest} exists")
        try:
            self._idle().execute("VACUUM INTO ?", (dest,))
            fd = os.open(dest, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except (sqlite3.Error, OSError) as exc:
            try:
                os.unlink(dest)
            except OSError:
                pass
            raise StorageError(f"cannot keep the domain aside as {dest}: {exc}") from exc
        _sync_dir(dest)
        return dest

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL into the file on last close)."""
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot close sqlite store {self.path!r}: {exc}") from exc


class SqliteDump(SqlDump):
    """:class:`~.dump.SqlDump` on a :meth:`SqliteStore.reader` connection (a WAL
    snapshot), with a larger page cache for its sorts (SQLite spills them to temporary
    files beyond it)."""

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self._path = path
        self._conn = conn
        try:
            conn.execute(f"PRAGMA cache_size=-{DUMP_CACHE_KIB}")
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot read sqlite store {path!r}: {exc}") from exc

    def _rows(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        try:
            cur = self._conn.execute(sql)
            while rows := cur.fetchmany(size):
                yield rows
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read sqlite store {self._path!r}: {exc}; "
                               f"{RECOVERY}") from exc

    def close(self) -> None:
        try:
            self._conn.close()   # ends the read transaction
        except sqlite3.Error:
            pass


#: Op type → handler, for the types applied one at a time (Put and Free are batched).
_SINGLE: dict[type, Callable[..., None]] = {KidIns: SqliteStore._kid_ins,
                                            KidDel: SqliteStore._kid_del,
                                            Reset: SqliteStore._reset,
                                            Meta: SqliteStore._meta}
#: Op types that touch dirs or freed, so pending puts must be written before them.
_FLUSH_PUTS = frozenset({Free, Reset})


# -- a clone's copy ---------------------------------------------------------------------

#: The file a copy is written to, beside the domain's (spec §9.5's ``.temp``).
COPY_SUFFIX = ".temp"
#: Rows per INSERT statement of a copy: Python's cost per statement (binding, stepping
#: from the interpreter) is then paid once for that many rows (40% of the insert time
#: of a million users, measured).
ROWS_PER_INSERT = 100
#: Children per batch of kids rows (a directory may have a million).
_KIDS_SLICE = 65536
#: SQLite's page cache while a copy is written, in KiB.
_COPY_CACHE_KIB = 32 * 1024
# A directory listed as a child twice, or the root listed as one (service.tree_damage),
# among the directories that exist.
_LISTED_TWICE = ("SELECT child FROM kids WHERE child IN (SELECT id FROM dirs)"
                 " GROUP BY child HAVING count(*) > 1 OR child = 0 LIMIT 1")


#: Where the ``netinfo`` package is imported from (the child of :meth:`SqliteStore.verify`
#: imports the same one).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: The child of :meth:`SqliteStore.verify`: argv is the package root and the file.
_VERIFY_CHILD = """\
import json, os, sys
try:
    os.nice(19)
except OSError:
    pass
sys.path.insert(0, sys.argv[1])
from netinfo.storage.sqlite import verify_file
problem, damaged = verify_file(sys.argv[2])
sys.stdout.write(json.dumps({"problem": problem, "damaged": damaged}))
"""


def verify_file(path: str) -> tuple[str | None, list[str]]:
    """The deferred integrity check of the file *path* (run by :meth:`SqliteStore.verify`
    in a child process): what ``quick_check`` found wrong (with the recovery hint) or
    None, and the first damaged directories (:meth:`SqliteStore._scan`'s messages)."""
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot open sqlite store {path!r} to check it: {exc}", []
    probe = SqliteStore.__new__(SqliteStore)   # its checks, without opening it again
    probe.path = path
    try:
        probe._check(conn)
        return None, probe._scan(conn)
    except StorageError as exc:
        return str(exc), []
    finally:
        conn.close()


def discard_copy(path: str) -> None:
    """Remove what an interrupted copy of *path*'s domain left beside it (``FILE.temp``
    and its journal files); the domain itself is untouched."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.unlink(path + COPY_SUFFIX + suffix)
        except FileNotFoundError:
            pass


def _sync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _insert(c: sqlite3.Connection, table: str, width: int, rows: list[tuple],
            ignore: bool = False) -> None:
    """*rows* into *table*, :data:`ROWS_PER_INSERT` to a statement."""
    verb = "INSERT OR IGNORE" if ignore else "INSERT"
    one = "(" + ",".join("?" * width) + ")"
    k = ROWS_PER_INSERT
    whole = len(rows) - len(rows) % k
    if whole:
        c.executemany(f"{verb} INTO {table} VALUES " + ",".join([one] * k),
                      (tuple(chain.from_iterable(rows[i:i + k])) for i in range(0, whole, k)))
    if whole < len(rows):
        c.executemany(f"{verb} INTO {table} VALUES {one}", rows[whole:])


class SqliteCopy(NewCopy):
    """A whole domain written into ``FILE.temp`` beside the store's file, straight from
    a READALL stream's bytes: the ``dirs`` rows take the XDR proplists as they came (the
    store's own form), the ``kids`` rows the child lists with the ordinal keys the
    store's appends give (0, gap, 2·gap, ...), the ``keys`` rows the pairs the decoder
    picked up (:attr:`~netinfo.wire.protocol.WireObject.firsts`): the very rows a
    ``Database.replace`` of the same tree leaves, with the same schema, in one
    transaction. Nothing is journalled or synced while it is written (a crash leaves a
    file that is discarded); :meth:`finish` checks the tree and the file and syncs it,
    in WAL mode like every store file. One thread at a time (``add`` after ``add``).
    """

    def __init__(self, path: str, gap: int) -> None:
        super().__init__()
        self.path = path + COPY_SUFFIX
        self._gap = gap
        self._conn: sqlite3.Connection | None = None
        discard_copy(path)
        try:
            c = self._conn = sqlite3.connect(self.path, isolation_level=None)
            c.execute("PRAGMA journal_mode=OFF")
            c.execute("PRAGMA synchronous=OFF")
            c.execute("PRAGMA locking_mode=EXCLUSIVE")   # nobody else opens it: no -shm
            c.execute(f"PRAGMA cache_size=-{_COPY_CACHE_KIB}")
            migrate(c, self.path)
            c.execute("BEGIN")
        except (sqlite3.Error, StorageError) as exc:
            self.discard()
            raise StorageError(f"cannot write a copy to {self.path!r}: {exc}") from exc

    def _add(self, objects: list[WireObject]) -> None:
        c = self._conn
        assert c is not None
        gap = self._gap
        try:
            _insert(c, "dirs", 4, [(o.oid, o.instance, o.parent, o.props) for o in objects])
            kids: list[tuple[int, int, int]] = []
            for o in objects:
                ch = o.children
                for start in range(0, len(ch), _KIDS_SLICE):
                    kids.extend((o.oid, (start + i) * gap, k)
                                for i, k in enumerate(ch[start:start + _KIDS_SLICE]))
                    if len(kids) >= _KIDS_SLICE:
                        _insert(c, "kids", 3, kids)
                        kids = []
            _insert(c, "kids", 3, kids)
            # The LOOKUP index (spec §4.4): none for the root, which is no one's child;
            # a value twice in one property is one row.
            _insert(c, "keys", 4, [(o.parent, k, v, o.oid) for o in objects if o.oid
                                   for k, v in o.firsts], ignore=True)
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"damaged copy: a directory comes twice ({exc})") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write a copy to {self.path!r}: {exc}") from exc

    def add_freed(self, rows: list[tuple[int, int]]) -> None:
        c = self._conn
        assert c is not None
        try:
            _insert(c, "freed", 2, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write a copy to {self.path!r}: {exc}") from exc

    def add_meta(self, key: str, value: int) -> None:
        c = self._conn
        assert c is not None
        try:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write a copy to {self.path!r}: {exc}") from exc

    def finish(self) -> None:
        c = self._conn
        assert c is not None
        if not self.count:
            raise StorageError("the copy holds no directory")
        try:
            row = c.execute(_LISTED_TWICE).fetchone()
            if row is not None:
                raise StorageError(f"damaged database: directory {row[0]} is listed as a "
                                   f"child more than once")
            c.execute("INSERT INTO meta VALUES ('checksum', ?)", (self.checksum,))
            c.execute("COMMIT")
            problems = [r[0] for r in c.execute("PRAGMA quick_check") if r[0] != "ok"]
            if problems:
                raise StorageError(f"the copy {self.path!r} is damaged: {problems[0]}")
            c.execute("PRAGMA journal_mode=WAL")
            c.close()
            self._conn = None
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write a copy to {self.path!r}: {exc}") from exc

    def discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
        discard_copy(self.path[:-len(COPY_SUFFIX)])
