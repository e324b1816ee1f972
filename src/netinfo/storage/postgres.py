"""The PostgreSQL engine: a domain stored in a PostgreSQL database (issue 23).

URL: ``postgresql://[user@][host][:port]/DBNAME[?param=value&...&domain=NAME]`` (``postgres://``
too), libpq's own URL form (its parameters, ``host=/socket/dir`` among them, go to libpq
unchanged) plus one of ours: ``domain``, the domain's name in that database (default
``netinfo``). Each domain lives in a schema of its own, ``ni_NAME``, so one database holds
any number of domains (:func:`domains` lists them: the catalog).

Layout, one table per concern, as in the SQLite engine (storage/sqlite.py, whose docstring
gives each table's meaning): ``dirs(id, instance, parent, props)`` with the XDR proplist as
``bytea`` (byte for byte what SQLite keeps); ``kids(parent, ord, child)`` with gapped
ordinals (an insert touches one row); ``freed(id, instance)``; ``meta(key, value)`` (the
checksum, spec §5.6, and the service's counters); ``keys(parent, key, value, child)``, the
persisted LOOKUP index (spec §4.4, §5.4), kept in step by every Put and Free in the same
transaction; the change history (issue 24: ``history``, ``history_dirs``,
``history_size``, storage/sql_journal.py), one row per write written in the write's own
transaction; ``schema_version``, numbered migrations of our own applied in order.

One writer per domain: the writer holds a session-level advisory lock whose key is
derived from the schema's name (:meth:`PostgresStore.claim`). PostgreSQL releases it when
the writer's connection ends — its process died, or the connection was lost — so a
standby waiting on it (``netinfod --standby``) takes over at once. Every batch is one
transaction (:meth:`PostgresStore.commit`) on the connection that holds the lock: a writer
that has lost its connection cannot commit, and says so, before a standby writes. It
reconnects at its next batch (:meth:`PostgresStore._reconnect`: the server restarted, or
a standby was promoted and a multi-host URL leads there), takes the lock again without
waiting, and stores again only when the domain is as it committed it; otherwise
(:class:`~netinfo.errors.StoreDiverged`) the database serves what the store holds.

Durability: ``synchronous_commit`` as the server has it (``on`` by default: a commit
returns once its WAL is flushed; with synchronous replication, once a standby has it too).

Reads: the service reads directories on demand (:meth:`PostgresStore.source`: the
engine-independent ``cached.CachedSource`` over ``postgres_source.PgReader``, the SQL of
every read a lazy source makes), so start-up and a standby's takeover read nothing
proportional to the domain's size; :meth:`load` gives the whole domain (``nistore``).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import StorageError, StoreDiverged, WireError
from ..wire.proplist import decode_proplist, encode_proplist
from . import (
    Catalog, Dump, Engine, Free, Image, ImageDump, KidDel, KidIns, Meta, NewCopy, Op, Put,
    Record, Reset, Store,
)
from .changes import SEQ_KEY
from .dump import SqlDump
from .postgres_journal import PostgresJournal
from .postgres_journal import schema as journal_schema
from .sqlite import index_delta

if TYPE_CHECKING:
    import psycopg

    from ..wire.readall import WireObject
    from .changes import Change
    from .nodes import NodeSource

#: The domain a URL without ``domain=`` names.
DEFAULT_DOMAIN = "netinfo"
#: Schema of domain NAME: this prefix, then NAME.
SCHEMA_PREFIX = "ni_"
#: How often a standby tries the lock (seconds); takeover is within this of the release.
STANDBY_POLL = 0.25
#: A writer whose connection was lost tries a new one at most this often (seconds); the
#: writes of batches in between are refused at once.
RECONNECT_PAUSE = 0.5
#: A standby whose own connection was replaced leaves the lock alone this long (seconds),
#: for the writer to reconnect first: it is not dead, the server was (netinfod looks at
#: its connection every second).
STANDBY_GRACE = 5.0
#: The meta rows a writer compares when it reconnects: equal, the domain is as it left
#: it (the change sequence number moves with every recorded write).
_STATE_KEYS = ("checksum", SEQ_KEY)

log = logging.getLogger("netinfo.storage.postgres")

#: The writer's session's TCP keepalives, as the server sends them (seconds; count).
_KEEPALIVES = (("tcp_keepalives_idle", 3), ("tcp_keepalives_interval", 2),
               ("tcp_keepalives_count", 2))

#: Migration number → SQL statements, run in the domain's schema; version 1 is the
#: initial schema. Append, never edit.
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE dirs(id bigint PRIMARY KEY, instance bigint NOT NULL,"
        " parent bigint NOT NULL, props bytea NOT NULL)",
        "CREATE TABLE kids(parent bigint NOT NULL, ord bigint NOT NULL,"
        " child bigint NOT NULL, PRIMARY KEY(parent, ord))",
        "CREATE INDEX kids_child ON kids(parent, child)",
        "CREATE TABLE freed(id bigint PRIMARY KEY, instance bigint NOT NULL)",
        "CREATE TABLE meta(key text PRIMARY KEY, value bigint NOT NULL)",
        "CREATE TABLE keys(parent bigint NOT NULL, key bytea NOT NULL, value bytea NOT NULL,"
        " child bigint NOT NULL, PRIMARY KEY(parent, key, value, child))",
        # a directory's own index rows, found by its number (Put, Free)
        "CREATE INDEX keys_child ON keys(child)",
    ],
    # The change history (issue 24; postgres_journal, storage/sql_journal.py).
    2: [*journal_schema()],
}


#: How long a copy's swap waits for a lock on the live tables (seconds; the event loop
#: waits with it): a reader's transaction left open fails the swap, not the server.
SWAP_LOCK_TIMEOUT = 10
#: The tables that hold the domain itself (what a Reset empties): a copy's are moved into
#: the live schema in place of these (:meth:`PostgresStore.adopt`); the others (the
#: history, schema_version) stay where they are.
_DOMAIN_TABLES = ("dirs", "kids", "freed", "meta", "keys")
#: The schema a clone's copy is written to: the live one's name and this. No domain name
#: holds a '~' (:func:`split_url`), so it is never another domain's schema, and the
#: catalog never lists it (:func:`domains`).
COPY_SUFFIX = "~copy"


def _quoted(schema: str) -> str:
    return f'"{schema}"'


def _migrate(c: psycopg.Connection[Any], schema: str, where: str) -> None:
    """Create *schema* if need be and bring it to the newest version (one transaction;
    *c*'s search_path names it)."""
    with c.transaction():
        c.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
        c.execute("CREATE TABLE IF NOT EXISTS schema_version(version integer NOT NULL)")
        row = c.execute("SELECT max(version) FROM schema_version").fetchone()
        current = (row[0] if row else None) or 0
        newest = max(_MIGRATIONS)
        if current > newest:
            raise StorageError(f"{where} has schema version {current}, newer than "
                               f"this program's {newest}")
        for version in range(current + 1, newest + 1):
            for step in _MIGRATIONS[version]:
                c.execute(step)
            c.execute("INSERT INTO schema_version VALUES (%s)", (version,))


def _drop_leftover(c: psycopg.Connection[Any], schema: str, where: str) -> bool:
    """Drop the copy an interrupted clone's copy left beside *schema* (spec §9.5: a
    leftover copy is never the domain); True when there was one. Only the domain's
    writer may: it alone writes one."""
    leftover = schema + COPY_SUFFIX
    if not c.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                     (leftover,)).fetchone():
        return False
    c.execute(f"DROP SCHEMA IF EXISTS {_quoted(leftover)} CASCADE")
    log.warning("%s: discarded the copy an interrupted transfer left (schema %s)",
                where, leftover)
    return True


def _psycopg() -> Any:
    try:
        import psycopg  # noqa: PLC0415 - optional: opennetinfo[postgres]
    except ImportError as exc:
        raise StorageError("postgresql stores need psycopg 3: pip install "
                           "'opennetinfo[postgres]'") from exc
    return psycopg


def split_url(url: str) -> tuple[str, str]:
    """(libpq URL, domain name) of a store URL: ``domain=`` taken out of the query."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    domain = DEFAULT_DOMAIN
    rest = []
    for k, v in query:
        if k == "domain":
            domain = v
        else:
            rest.append((k, v))
    if not domain or len(domain) > 48 or not all(c.isalnum() or c in "._-" for c in domain):
        raise StorageError(f"postgresql store: bad domain name {domain!r} (letters, digits, "
                           f"'.', '_', '-', at most 48)")
    return urlunsplit(parts._replace(query=urlencode(rest))), domain


def lock_key(schema: str) -> int:
    """The advisory lock of a domain: 64 bits of a hash of its schema's name."""
    digest = hashlib.sha256(b"opennetinfo writer " + schema.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _connect(conninfo: str, what: str) -> psycopg.Connection[Any]:
    pg = _psycopg()
    try:
        conn: psycopg.Connection[Any] = pg.connect(
            conninfo, autocommit=True, connect_timeout=10,
            application_name=f"netinfo {what} pid {os.getpid()} on {socket.gethostname()}")
    except pg.Error as exc:
        raise StorageError(f"cannot connect to postgresql ({_one_line(exc)})") from exc
    return conn


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def domains(url: str) -> list[str]:
    """The domains stored in the database of *url* (the catalog: every schema with our
    schema_version table)."""
    conninfo, _ = split_url(url)
    conn = _connect(conninfo, "catalog")
    try:
        rows = conn.execute(
            "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid"
            " WHERE c.relname = 'schema_version' AND n.nspname LIKE %s ORDER BY 1",
            (SCHEMA_PREFIX.replace("_", r"\_") + "%",)).fetchall()
    finally:
        conn.close()
    # a copy being written (or left by a crash) is no domain
    return [r[0][len(SCHEMA_PREFIX):] for r in rows if COPY_SUFFIX not in r[0]]


class StoreInUse(StorageError):
    """Another writer holds the domain's advisory lock."""


class PgRows:
    """Reads of the store's own (counts, a child list, key lookups, the whole index), as
    SQL on one connection, no caching: each method is one round trip. The lazy source's
    reader adds the rest (``postgres_source.PgReader``). Names and
    values of :meth:`lookup` are compared as their UTF-8 bytes (surrogateescape), as
    stored in ``keys``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def _one(self, sql: str, args: Sequence[object] = ()) -> Any:
        row = self._conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def row(self, oid: int) -> tuple[int, int, bytes, bool] | None:
        """Directory *oid* as stored: (instance, parent, props XDR, has children)."""
        r = self._conn.execute(
            "SELECT instance, parent, props, EXISTS(SELECT 1 FROM kids WHERE parent = %(i)s)"
            " FROM dirs WHERE id = %(i)s", {"i": oid}).fetchone()
        return None if r is None else (r[0], r[1], bytes(r[2]), r[3])

    def children(self, parent: int) -> list[int]:
        """*parent*'s whole child list, in order."""
        return [c for (c,) in self._conn.execute(
            "SELECT child FROM kids WHERE parent = %s ORDER BY ord", (parent,))]

    def lookup(self, parent: int, key: bytes, value: bytes) -> list[int]:
        """The children of *parent* whose first *key* property holds *value* (spec
        §4.4), in child-list order, from the ``keys`` index."""
        return [c for (c,) in self._conn.execute(
            "SELECT k.child FROM keys k JOIN kids o ON o.parent = k.parent"
            " AND o.child = k.child WHERE k.parent = %s AND k.key = %s AND k.value = %s"
            " ORDER BY o.ord", (parent, key, value))]

    def count(self) -> int:
        """Directories stored."""
        return int(self._one("SELECT count(*) FROM dirs"))

    def kid_count(self, parent: int) -> int:
        return int(self._one("SELECT count(*) FROM kids WHERE parent = %s", (parent,)))

    def highest(self) -> int:
        """The highest stored number, -1 when none."""
        top = self._one("SELECT max(id) FROM dirs")
        return -1 if top is None else int(top)

    def freed(self) -> dict[int, int]:
        return dict(self._conn.execute("SELECT id, instance FROM freed").fetchall())

    def meta(self, key: str) -> int | None:
        v = self._one("SELECT value FROM meta WHERE key = %s", (key,))
        return None if v is None else int(v)

    def instances(self) -> list[tuple[int, int]]:
        return self._conn.execute("SELECT id, instance FROM dirs ORDER BY id").fetchall()

    def index_rows(self) -> set[tuple[int, bytes, bytes, int]]:
        """The whole ``keys`` index (``nistore check``)."""
        return {(p, bytes(k), bytes(v), c) for p, k, v, c in
                self._conn.execute("SELECT parent, key, value, child FROM keys")}


class PostgresStore(Store):
    """A domain in a schema of a PostgreSQL database (``postgresql://...``).

    Opening connects only; :meth:`claim` makes this store the domain's writer (the
    advisory lock, then the migrations). A store that never claimed may read
    (:meth:`load`, :meth:`exists`, :attr:`rows`); its first :meth:`commit` claims without
    waiting.
    """

    scheme = "postgresql"
    #: distance between fresh ordinal keys (as SQLite's)
    gap = 1 << 32
    #: ordinal keys stay within ±limit
    limit = 1 << 62

    def __init__(self, url: str) -> None:
        self.url = url
        conninfo, self.domain = split_url(url)
        self.schema = SCHEMA_PREFIX + self.domain
        self.where = f"postgresql domain {self.domain}"
        self._key = lock_key(self.schema)
        self._claimed = False
        #: parent → number of kids rows, and → its highest ordinal (appends need no query)
        self._counts: dict[int, int] = {}
        self._last: dict[int, int] = {}
        #: kids rows inserted but not yet sent (flushed before any read of kids)
        self._pending_kids: list[tuple[int, int, int]] = []
        self._conninfo = conninfo
        self._pg_error: type[Exception] = _psycopg().Error
        self._conn = self._session()
        self.rows = PgRows(self._conn)
        #: the change history, in the domain's schema and the batches' transactions
        #: held by each commit's transaction and by the journal's statements, which
        #: share the writer's connection (a commit may run in a thread of its own)
        self._writing = threading.RLock()
        self.journal: PostgresJournal = PostgresJournal(self._conn, self._writing)
        #: the domain's checksum and change number as this writer last committed them
        #: (None until it claims), compared when it reconnects (:meth:`_reconnect`)
        self._state: dict[str, int | None] | None = None
        #: when a lost connection may next be replaced; why it was lost
        self._retry_at = 0.0
        self._lost = ""
        #: a divergence a read's reconnection found (:meth:`revive`), raised by the next
        #: batch or look at the connection
        self._diverged: StoreDiverged | None = None

    def _session(self) -> psycopg.Connection[Any]:
        """A new connection, set up for the domain's schema."""
        conn = _connect(self._conninfo, "store")
        try:
            conn.execute(f'SET search_path TO "{self.schema}"')
            # Over TCP, the server drops a silent writer's session (and its lock, for a
            # standby to take) within 3 + 2 × 2 s of its last sign of life; on a unix
            # socket these do nothing (a closed socket is seen at once).
            for name, value in _KEEPALIVES:
                conn.execute(f"SET {name} = {value}")
        except self._pg_error as exc:
            conn.close()
            raise StorageError(f"{self.where}: {_one_line(exc)}") from exc
        return conn

    # -- one writer ----------------------------------------------------------------------

    def holder(self, conn: psycopg.Connection[Any] | None = None) -> str:
        """Who holds the domain's lock, as PostgreSQL knows it ("nobody" when free)."""
        k = self._key & 0xFFFFFFFFFFFFFFFF
        row = (conn or self._conn).execute(
            "SELECT a.application_name, a.pid, a.client_addr FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
            " AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            (k >> 32, k & 0xFFFFFFFF)).fetchone()
        if row is None:
            return "nobody"
        name, pid, addr = row
        return f"{name or 'a client'} (backend {pid}{f' from {addr}' if addr else ''})"

    def claim(self, wait: bool = False, announce: Callable[[str], None] | None = None
              ) -> None:
        """Become the domain's one writer: take its advisory lock, then bring the schema
        up to date. With *wait* (a standby), wait for the lock, telling *announce* once
        who holds it; otherwise refuse at once.

        :raises StoreInUse: another writer holds it (one line naming it).
        """
        if self._claimed:
            return
        try:
            got = self.rows._one("SELECT pg_try_advisory_lock(%s)", (self._key,))
            if not got:
                who = self.holder()
                if not wait:
                    raise StoreInUse(f"{self.where} is in use by {who}")
                if announce is not None:
                    announce(f"standby for {self.where}, held by {who}: waiting to take over")
                while not got:
                    time.sleep(STANDBY_POLL)
                    got = self._try_lock_waiting()
            self._claimed = True
            self._migrate()
            if _drop_leftover(self._conn, self.schema, self.where):
                self._forget()   # a DROP: psycopg deallocates the prepared statements
            self._state = self._stored_state(self._conn)
        except self._pg_error as exc:
            raise StorageError(f"{self.where}: {_one_line(exc)}") from exc

    def _try_lock_waiting(self) -> bool:
        """A standby's next try for the lock; a connection lost meanwhile (the server
        restarted, or failed over) is replaced, and the standby waits on."""
        try:
            return bool(self.rows._one("SELECT pg_try_advisory_lock(%s)", (self._key,)))
        except self._pg_error:
            if not self._conn.broken:
                raise
        try:
            self._swap(self._session())
        except StorageError:
            return False   # tried again at the next poll
        time.sleep(STANDBY_GRACE)
        return False

    def _stored_state(self, conn: psycopg.Connection[Any]) -> dict[str, int | None]:
        rows = dict(conn.execute("SELECT key, value FROM meta WHERE key = ANY(%s)",
                                 (list(_STATE_KEYS),)).fetchall()) \
            if PgRows(conn)._one("SELECT to_regclass('meta') IS NOT NULL") else {}
        return {k: rows.get(k) for k in _STATE_KEYS}

    def _swap(self, conn: psycopg.Connection[Any]) -> None:
        """Put *conn* in place of the writer's lost connection (the row reader too)."""
        old, self._conn = self._conn, conn
        self.rows._conn = conn
        self.journal._conn = conn
        self.journal.forget_paths()   # paths it knew may be stale after a failover
        try:
            old.close()
        except Exception:   # already gone
            pass

    def _live(self) -> None:
        """Before a batch: make sure the writer's connection is alive, and replace it
        when it is lost. An idle connection's socket is readable only when the server
        sent something unasked (it closed the session: restart, failover, terminated
        backend), so that is checked without a round trip."""
        diverged, self._diverged = self._diverged, None
        if diverged is not None:
            raise diverged
        c = self._conn
        if not (c.closed or c.broken):
            try:
                ready = select.select([c.fileno()], [], [], 0)[0]
            except (OSError, ValueError):
                ready = [True]
            if not ready:
                return
            try:
                c.execute("SELECT 1")
                return
            except self._pg_error as exc:
                if not c.broken:
                    raise StorageError(f"{self.where}: {_one_line(exc)}") from exc
                self._lost = _one_line(exc)
        self._reconnect()

    def _reconnect(self) -> None:
        """A new connection for a writer whose connection was lost: the lock taken again
        (without waiting) and the domain found as this writer left it; only then are
        batches stored again.

        :raises StorageError: not now (nothing answers, or another writer holds the lock:
            the next batch tries again, after :data:`RECONNECT_PAUSE`).
        :raises StoreDiverged: reconnected, but the domain is not as this writer
            committed it: its caller serves what the store holds from now on.
        """
        lost = (f"{self.where}: the connection to PostgreSQL is lost"
                f"{f' ({self._lost})' if self._lost else ''}: writes are refused until "
                f"it is back")
        now = time.monotonic()
        if now < self._retry_at:
            raise StorageError(lost)
        self._retry_at = now + RECONNECT_PAUSE
        try:
            conn = self._session()
        except StorageError as exc:
            raise StorageError(f"{lost}; reconnecting failed: {exc}") from exc
        try:
            if not PgRows(conn)._one("SELECT pg_try_advisory_lock(%s)", (self._key,)):
                who = self.holder(conn)
                conn.close()
                raise StorageError(f"{lost}; reconnected, but {who} holds the domain now")
            state = self._stored_state(conn)
        except self._pg_error as exc:
            conn.close()
            raise StorageError(f"{lost}; reconnecting failed: {_one_line(exc)}") from exc
        self._swap(conn)
        self._counts.clear()
        self._last.clear()
        self._pending_kids = []
        self._lost = ""
        known, self._state = self._state, state
        if known is not None and state != known:
            raise StoreDiverged(
                f"{self.where}: reconnected to PostgreSQL, but the domain is not as this "
                f"writer committed it (checksum and change {known['checksum']}, "
                f"{known[SEQ_KEY]}; stored {state['checksum']}, {state[SEQ_KEY]}: a "
                f"failover lost acknowledged writes or kept an unacknowledged batch, or "
                f"another writer wrote)")
        log.warning("%s: reconnected to PostgreSQL; writes are stored again", self.where)

    def _migrate(self) -> None:
        _migrate(self._conn, self.schema, self.where)

    def schema_version(self) -> int:
        """The domain's schema version (0: no domain there)."""
        if not self._has_schema():
            return 0
        return int(self.rows._one("SELECT max(version) FROM schema_version") or 0)

    def _has_schema(self) -> bool:
        return bool(self.rows._one("SELECT to_regclass('schema_version') IS NOT NULL"))

    # -- reading -------------------------------------------------------------------------

    def exists(self) -> bool:
        try:
            return self._has_schema() and self.schema_version() >= 1 and \
                self._conn.execute("SELECT 1 FROM dirs LIMIT 1").fetchone() is not None
        except self._pg_error as exc:
            raise StorageError(f"cannot read {self.where}: {_one_line(exc)}") from exc

    def load(self) -> Image:
        """The whole domain, read in one repeatable-read transaction."""
        image = Image()
        c = self._conn
        paused = gc.isenabled()
        gc.disable()
        try:
            if not self._has_schema():
                return image
            c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                # binary results: a bytea comes as its bytes, not as hex to decode
                image.records = {oid: Record(inst, parent, decode_proplist(props))
                                 for oid, inst, parent, props in c.execute(
                                     "SELECT id, instance, parent, props FROM dirs",
                                     binary=True)}
                rows = c.execute("SELECT parent, child FROM kids ORDER BY parent, ord",
                                 binary=True)
                image.children = {parent: [child for _, child in group]
                                  for parent, group in groupby(rows, itemgetter(0))}
                image.freed = dict(c.execute("SELECT id, instance FROM freed").fetchall())
                meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            finally:
                c.execute("COMMIT")
            image.checksum = meta.pop("checksum", None)
            image.meta = meta
        except (self._pg_error, WireError) as exc:
            raise StorageError(f"cannot read {self.where}: {_one_line(exc)}") from exc
        finally:
            if paused:
                gc.enable()
        self._counts = {p: len(k) for p, k in image.children.items()}
        self._last = {}
        return image

    def source(self, cache: int | None = None,
               cache_bytes: int | None = None) -> NodeSource:
        """The domain read on demand through a bounded cache (``postgres_source``), on
        this store's connection: the writer's, whose commits are the domain's only
        writes, so the cache is kept in step by them (pinned until durable). A standby
        that takes over opens a store of its own: it starts with a cold cache. A domain
        not made yet is claimed first (its schema made), as its first commit would."""
        from .postgres_source import PgSource  # noqa: PLC0415 - the seam's other half
        if not self._claimed:
            try:
                made = self._has_schema() and self.schema_version() >= 1
            except self._pg_error as exc:
                raise StorageError(f"cannot read {self.where}: {_one_line(exc)}") from exc
            if not made:
                self.claim()
        return PgSource(self, self._conn, cache, cache_bytes)

    def side_reader(self) -> Any:
        """A reader of the committed domain on a connection of its own (``Store``)."""
        from .postgres_source import PgReader  # noqa: PLC0415 - the seam's other half
        return PgReader.side(self)

    def loop_reader(self) -> Any:
        """The hot reads on connections the event loop drives (``Store``)."""
        from .postgres_source import PgLoopReads  # noqa: PLC0415 - the seam's other half
        return PgLoopReads(self)

    def dump(self) -> Dump:
        """The whole domain a chunk at a time, in a snapshot of its own (:class:`PgDump`;
        an empty image where no domain was ever made)."""
        try:
            made = self._has_schema() and self.schema_version() >= 1
        except self._pg_error as exc:
            raise StorageError(f"cannot read {self.where}: {_one_line(exc)}") from exc
        return PgDump(self) if made else ImageDump(Image())

    def index_rows(self) -> set[tuple[int, bytes, bytes, int]]:
        """The whole persisted LOOKUP index (``nistore check``)."""
        try:
            return self.rows.index_rows() if self._has_schema() else set()
        except self._pg_error as exc:
            raise StorageError(f"cannot read {self.where}: {_one_line(exc)}") from exc

    # -- writing -------------------------------------------------------------------------

    def commit(self, ops: list[Op], checksum: int,
               changes: Sequence[Change] = ()) -> None:
        """Apply *ops* in order and store *checksum*, in one transaction on the writer's
        connection (a batch of writes: *changes*, ``Store.commit``, journalled first in
        the same transaction, :attr:`journal`; the sequence number comes as a ``Meta``
        op).

        :raises StorageError: nothing was applied (the connection lost, an unknown op, a
            bad value); the message says which.
        """
        with self._writing:
            self._commit(ops, checksum, changes)

    def _commit(self, ops: list[Op], checksum: int, changes: Sequence[Change]) -> None:
        self.claim()
        self._live()
        c = self._conn
        # A big batch (a copy, a replace) makes millions of small tuples, which set the
        # cyclic GC off again and again (nothing here makes cycles): pause it.
        paused = gc.isenabled() and len(ops) > 10_000
        if paused:
            gc.disable()
        try:
            with c.transaction():
                # The history first: it reads the touched directories' paths as they were.
                self.journal.record(changes, self.journal.lookup)
                puts: list[Put] = []
                for op in ops:
                    kind = type(op)
                    if kind is Put:
                        puts.append(op)  # type: ignore[arg-type]
                        continue
                    if kind in _FLUSH_PUTS and puts:
                        self._puts(puts)
                        puts = []
                    handler = _SINGLE.get(kind)
                    if handler is None:
                        raise StorageError(f"unknown storage op {op!r}")
                    handler(self, *op)
                if puts:
                    self._puts(puts)
                self._flush_kids()
                c.execute("INSERT INTO meta VALUES ('checksum', %s) ON CONFLICT (key)"
                          " DO UPDATE SET value = EXCLUDED.value", (checksum,))
        except BaseException as exc:
            self._forget()
            if isinstance(exc, StorageError):
                raise StorageError(f"{self.where}: batch not applied: {exc}") from exc
            if isinstance(exc, Exception):
                lost = ""
                if c.closed or c.broken:
                    self._lost = _one_line(exc)
                    lost = (" (the connection to PostgreSQL is lost: writes are refused "
                            "until it is back)")
                raise StorageError(f"{self.where}: batch not applied: {_one_line(exc)}"
                                   f"{lost}") from exc
            raise
        else:
            self._committed(ops, checksum)
        finally:
            if paused:
                gc.enable()

    def _committed(self, ops: list[Op], checksum: int) -> None:
        """Note the state a committed batch left (compared at a reconnection)."""
        state = self._state
        if state is None:
            return
        for op in ops:
            if isinstance(op, Reset):
                state[SEQ_KEY] = None
            elif isinstance(op, Meta) and op.key in state:
                state[op.key] = op.value
        state["checksum"] = checksum

    def _puts(self, ops: list[Put]) -> None:
        self._flush_kids()
        last = {op.id: op for op in ops}
        ids = list(last)
        rows = {oid: (op.instance, op.parent, encode_proplist(op.props))
                for oid, op in last.items()}
        c = self._conn
        old = {oid: (parent, bytes(blob)) for oid, parent, blob in c.execute(
            "SELECT id, parent, props FROM dirs WHERE id = ANY(%b::bigint[])", (ids,),
            binary=True)}
        drop, add = index_delta(
            {oid: (parent, blob, last[oid].props) for oid, (_, parent, blob) in rows.items()},
            old)
        if drop:
            c.execute("DELETE FROM keys k USING unnest(%b::bigint[], %b::bytea[], %b::bytea[],"
                      " %b::bigint[]) AS d(p, k, v, c) WHERE k.parent = d.p AND k.key = d.k"
                      " AND k.value = d.v AND k.child = d.c", _columns(drop, 4), binary=True)
        if add:
            # once each (a value twice in a property is one row), in the primary key's
            # order: each row lands beside the last. A row of a directory's own is never
            # there already (its old rows are known, and Free removes them all), so
            # this is a plain INSERT: a clash is a damaged index, and fails the batch.
            add = sorted(set(add))
            c.execute("INSERT INTO keys SELECT * FROM unnest(%b::bigint[], %b::bytea[],"
                      " %b::bytea[], %b::bigint[])", _columns(add, 4), binary=True)
        c.execute("INSERT INTO dirs SELECT * FROM unnest(%b::bigint[], %b::bigint[],"
                  " %b::bigint[], %b::bytea[]) ON CONFLICT (id) DO UPDATE SET"
                  " instance = EXCLUDED.instance, parent = EXCLUDED.parent,"
                  " props = EXCLUDED.props",
                  _columns([(oid, *r) for oid, r in rows.items()], 4), binary=True)
        c.execute("DELETE FROM freed WHERE id = ANY(%b::bigint[])", (ids,), binary=True)

    def _free(self, oid: int, instance: int) -> None:
        self._flush_kids()
        c = self._conn
        c.execute("DELETE FROM keys WHERE child = %s", (oid,))
        c.execute("DELETE FROM dirs WHERE id = %s", (oid,))
        c.execute("DELETE FROM kids WHERE parent = %s", (oid,))
        c.execute("INSERT INTO freed VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET"
                  " instance = EXCLUDED.instance", (oid, instance))
        self._counts[oid] = 0
        self._last.pop(oid, None)

    def _reset(self) -> None:
        self._pending_kids = []
        self._conn.execute("TRUNCATE dirs, kids, freed, meta, keys")
        self._counts.clear()
        self._last.clear()

    def _meta(self, key: str, value: int) -> None:
        self._conn.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key)"
                           " DO UPDATE SET value = EXCLUDED.value", (key, value))

    def _flush_kids(self) -> None:
        if self._pending_kids:
            rows, self._pending_kids = self._pending_kids, []
            self._conn.execute("INSERT INTO kids SELECT * FROM unnest(%b::bigint[],"
                               " %b::bigint[], %b::bigint[])", _columns(rows, 3), binary=True)

    def _count(self, parent: int) -> int:
        n = self._counts.get(parent)
        if n is None:
            self._flush_kids()
            n = self._counts[parent] = self.rows.kid_count(parent)
        return n

    def _kid_ins(self, parent: int, index: int, child: int) -> None:
        n = self._count(parent)
        if index < 0:  # list.insert's meaning, as the memory engine
            index = max(0, index + n)
        if n == 0:
            key = 0
        elif index >= n:   # an append: the usual case, no query once the end is known
            top = self._last.get(parent)
            if top is None:
                self._flush_kids()
                top = self.rows._one("SELECT max(ord) FROM kids WHERE parent = %s", (parent,))
            key = top + self.gap
            if key > self.limit:
                return self._renumber(parent, n, n, child)
        else:
            self._flush_kids()
            if index == 0:
                key = self.rows._one("SELECT min(ord) FROM kids WHERE parent = %s",
                                     (parent,)) - self.gap
                if key < -self.limit:
                    return self._renumber(parent, 0, n, child)
            else:
                lo, hi = (o for o, _ in self._conn.execute(
                    "SELECT ord, child FROM kids WHERE parent = %s ORDER BY ord"
                    " LIMIT 2 OFFSET %s", (parent, index - 1)))
                if hi - lo < 2:
                    return self._renumber(parent, index, n, child)
                key = (lo + hi) // 2
        self._pending_kids.append((parent, key, child))
        self._counts[parent] = n + 1
        if index >= n:
            self._last[parent] = key

    def _renumber(self, parent: int, index: int, n: int, child: int) -> None:
        """Insert *child* at *index* and space the whole list evenly again (the last
        resort: two neighbours without room between them)."""
        self._flush_kids()
        kids = self.rows.children(parent)
        kids.insert(index, child)
        step = min(self.gap, 2 * self.limit // (len(kids) + 1))
        if step < 1:
            raise StorageError(f"child list of {parent} ran out of ordinal keys")
        base = -(len(kids) // 2) * step
        self._conn.execute("DELETE FROM kids WHERE parent = %s", (parent,))
        rows = [(parent, base + i * step, k) for i, k in enumerate(kids)]
        self._pending_kids = rows
        self._counts[parent] = n + 1
        self._last[parent] = rows[-1][1]

    def _kid_del(self, parent: int, child: int) -> None:
        self._flush_kids()
        cur = self._conn.execute(
            "DELETE FROM kids WHERE parent = %(p)s AND ord = (SELECT min(ord) FROM kids"
            " WHERE parent = %(p)s AND child = %(c)s) RETURNING ord", {"p": parent, "c": child})
        gone = cur.fetchone()
        if gone is not None:
            if parent in self._counts:
                self._counts[parent] -= 1
            if self._last.get(parent) == gone[0]:
                del self._last[parent]

    # -- a whole new domain (a clone's copy, spec §9.5) ------------------------------------

    def new_copy(self) -> PostgresCopy:
        """A whole new domain written into the schema ``ni_NAME~copy`` beside this one, on
        a connection of the copy's own (may be called in a worker thread)."""
        return PostgresCopy(self)

    def adopt(self, copy: NewCopy) -> None:
        """Swap in a finished :class:`PostgresCopy`, in one transaction on the writer's
        connection: the live schema's domain tables (:data:`_DOMAIN_TABLES`) are dropped
        and the copy's moved into it in their place, then the copy's schema is dropped.
        After a crash the domain is the old one or the new one, never a mix (a leftover
        copy schema is dropped by the next writer, :meth:`claim`). The live schema stays
        (its name keys the writer's advisory lock, and every reader's search_path names
        it), and so do its change history (issue 24: a clone keeps it, as SQLite's copy
        carries it over) and schema_version. Statements prepared on other connections
        name the tables by search_path: PostgreSQL analyses them again once the tables
        they used are dropped.

        :raises StorageError: nothing was swapped (the old domain is served on).
        """
        if not isinstance(copy, PostgresCopy) or copy.schema != self.schema + COPY_SUFFIX \
                or not copy.finished:
            raise StorageError(f"{self.where}: cannot swap in an unfinished or foreign copy")
        live, new = _quoted(self.schema), _quoted(copy.schema)
        with self._writing:
            self.claim()
            self._live()
            c = self._conn
            try:
                with c.transaction():
                    # a reader's transaction (a stream left open) would hold the swap
                    # indefinitely: fail instead, and keep the old domain
                    c.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}s'")
                    got = c.execute(f"SELECT max(version) FROM {new}.schema_version"
                                    ).fetchone()
                    if got is None or got[0] != max(_MIGRATIONS):
                        raise StorageError(f"the copy has schema version {got}")
                    c.execute("DROP TABLE " + ", ".join(f"{live}.{t}" for t in _DOMAIN_TABLES))
                    for t in _DOMAIN_TABLES:
                        c.execute(f"ALTER TABLE {new}.{t} SET SCHEMA {live}")
                    c.execute(f"DROP SCHEMA {new} CASCADE")
            except (self._pg_error, StorageError) as exc:
                self._forget()
                if isinstance(exc, self._pg_error) and (c.closed or c.broken):
                    self._lost = _one_line(exc)
                raise StorageError(f"{self.where}: cannot swap in the copy: "
                                   f"{_one_line(exc)}") from exc
            self._forget()
            if self._state is not None:
                self._state = self._stored_state(c)
        log.info("%s: swapped in a copy of %d directories written beside it", self.where,
                 copy.count)

    def _forget(self) -> None:
        """Drop what is known of the tables' rows (after a swap, or a failed batch), and
        of the statements prepared on the writer's connection (psycopg deallocates them
        all after a DROP, ALTER or ROLLBACK there)."""
        from .postgres_source import forget_prepared  # noqa: PLC0415 - the seam's other half
        self._counts.clear()
        self._last.clear()
        self._pending_kids = []
        self.journal.forget_paths()
        forget_prepared(self._conn)

    # -- the rest of the contract ------------------------------------------------------------

    def revive(self) -> None:
        """For a read that found the writer's connection lost: replace it now
        (:meth:`_live`) rather than at the next batch (the lazy source reads on it,
        ``postgres_source``). A domain found changed meanwhile is kept for the next batch
        or look at the connection (:meth:`keep_alive`), which raise it: the service then
        serves what the store holds.

        :raises StorageError: not replaced (or found changed: the read fails too)."""
        if not self._claimed:
            raise StorageError(f"{self.where}: the connection to PostgreSQL is lost")
        try:
            self._live()
        except StoreDiverged as exc:
            self._diverged = exc
            raise StorageError(str(exc)) from exc

    def keep_alive(self) -> None:
        """A writer's lost connection noticed without a write, and replaced
        (:meth:`_live`; ``Store.keep_alive``)."""
        if self._claimed:
            with self._writing:
                self._live()

    def close(self) -> None:
        """Release the advisory lock, then close the connection. (The lock would go
        with the session, but the server ends it only after close() returns: a writer
        started at once, a restart, could find the domain still held.)"""
        if self._claimed and not self._conn.closed:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except self._pg_error:
                pass   # (a connection lost: its session, and the lock, end anyway)
        self._conn.close()


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as *width* column lists (one ``unnest`` statement sends them all)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


# A copy's rows in COPY's binary format, packed here (a tenth of the cost of psycopg's
# row at a time): the header (signature, flags, no extension), then each row as its
# field count and each field as its length and bytes (int8: 8 big-endian bytes), then -1.
_COPY_HEAD = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TAIL = struct.pack(">h", -1)
#: a dirs row up to its proplist's bytes: (id, instance, parent, length of props)
_DIRS_ROW = struct.Struct(">hiqiqiqi").pack
#: a kids row: (parent, ord, child)
_KIDS_ROW = struct.Struct(">hiqiqiq").pack
#: a freed row: (id, instance)
_FREED_ROW = struct.Struct(">hiqiq").pack
#: a keys row's parent and the key's length; the value's length; the child
_KEYS_HEAD = struct.Struct(">hiqi").pack
_LENGTH = struct.Struct(">i").pack
_KEYS_TAIL = struct.Struct(">iq").pack
#: bytes of rows sent to the server at a time by a copy
_COPY_CHUNK = 1 << 20
# A directory listed as a child twice, or the root listed as one (service.tree_damage),
# among the directories that exist (as SQLite's copy checks). A join, and no LIMIT: with
# "child IN (SELECT id FROM dirs) ... LIMIT 1" the planner counted on finding one early
# and probed kids_child (parent, child) by child for every directory, a scan of the
# whole index each: hours at 1,000,000 (measured: 2.2 s this way).
_LISTED_TWICE = ("SELECT k.child FROM kids k JOIN dirs d ON d.id = k.child"
                 " GROUP BY k.child HAVING count(*) > 1 OR k.child = 0")


#: The tables a copy fills in bulk: their indexes (primary keys too) are dropped when the
#: copy's schema is made and built again once, from all the rows, by :meth:`finish`
#: (maintained row by row, the ``keys`` index took most of a copy's time: at 1,000,000
#: users, 53 s of writing with them against 24.5 s without, and 17 s to build them).
_BULK_TABLES = ["dirs", "kids", "keys"]
#: ``maintenance_work_mem`` of the index builds of :meth:`PostgresCopy.finish`
_INDEX_MEMORY = "128MB"


def _drop_indexes(c: psycopg.Connection[Any], schema: str) -> list[str]:
    """Drop the indexes and primary keys of the :data:`_BULK_TABLES` of *schema* (the
    copy's, just made by the migrations); the statements that make them again, as the
    migrations made them (same names, same definitions), primary keys first."""
    keys = c.execute(
        "SELECT t.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = %s AND t.relname = ANY(%s) AND k.contype = 'p' ORDER BY 1",
        (schema, _BULK_TABLES)).fetchall()
    names = [name for _, name, _ in keys]
    others = c.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
        " AND tablename = ANY(%s) AND NOT indexname = ANY(%s) ORDER BY 1",
        (schema, _BULK_TABLES, names)).fetchall()
    with c.transaction():
        for table, name, _ in keys:
            c.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in others:
            c.execute(f'DROP INDEX "{name}"')
    return ([f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
             for table, name, definition in keys] + [sql for _, sql in others])


class PostgresCopy(NewCopy):
    """A whole domain written into the schema ``ni_NAME~copy`` beside the live one
    (dropped first if a crash left one), straight from a READALL stream's bytes, on a
    connection of the copy's own (never the writer's: a commit thread uses that). The
    schema is made by the same migrations as the live one; each :meth:`add` is one
    transaction of three binary COPYs (packed here: :data:`_COPY_HEAD`): the ``dirs``
    rows with the XDR proplists as they came (the store's own form), the ``kids`` rows
    with the ordinals the store's appends give (0, gap, 2·gap, ...), the ``keys`` rows
    from the pairs the decoder picked up
    (:attr:`~netinfo.wire.readall.WireObject.firsts`, each once): the very rows a
    ``Database.replace`` of the same tree leaves. Those transactions do not wait for the
    disk (``synchronous_commit`` off), nor maintain an index: the copy's tables get theirs
    (primary keys too: a directory that comes twice is found then) from :meth:`finish`,
    built once from all the rows (:data:`_BULK_TABLES`), which then checks the tree and
    stores the checksum, in one transaction that waits for the disk. Swapped in by
    :meth:`PostgresStore.adopt`; one thread at a time."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__()
        self.schema = store.schema + COPY_SUFFIX
        self.where = store.where
        self._conninfo = store._conninfo
        self._gap = store.gap
        self._pg_error = store._pg_error
        self._unique = _psycopg().errors.UniqueViolation
        self._conn: psycopg.Connection[Any] | None = None
        #: set by :meth:`finish`: the copy is whole, ready to be adopted
        self.finished = False
        try:
            c = self._conn = _connect(self._conninfo, "copy")
            c.execute(f"SET search_path TO {_quoted(self.schema)}")
            c.execute("SET synchronous_commit = off")
            c.execute(f"DROP SCHEMA IF EXISTS {_quoted(self.schema)} CASCADE")
            _migrate(c, self.schema, self.where)
            self._remake = _drop_indexes(c, self.schema)
        except (self._pg_error, StorageError) as exc:
            self.discard()
            raise StorageError(f"{self.where}: cannot write a copy: {_one_line(exc)}") from exc

    def _write(self, c: psycopg.Connection[Any], table: str, rows: Iterable[bytes]) -> None:
        """Rows packed in COPY's binary format into *table* by one COPY, sent about a
        megabyte at a time (a child list of a million is never held whole)."""
        with c.cursor().copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
            chunk = [_COPY_HEAD]
            size = 0
            for row in rows:
                chunk.append(row)
                size += len(row)
                if size >= _COPY_CHUNK:
                    cp.write(b"".join(chunk))
                    chunk, size = [], 0
            chunk.append(_COPY_TAIL)
            cp.write(b"".join(chunk))

    def _add(self, objects: list[WireObject]) -> None:
        c = self._conn
        assert c is not None
        gap = self._gap
        try:
            with c.transaction():
                self._write(c, "dirs", (
                    _DIRS_ROW(4, 8, o.oid, 8, o.instance, 8, o.parent, len(o.props))
                    + o.props for o in objects))
                if any(o.children for o in objects):
                    self._write(c, "kids", (_KIDS_ROW(3, 8, o.oid, 8, i * gap, 8, k)
                                            for o in objects
                                            for i, k in enumerate(o.children)))
                # The LOOKUP index (spec §4.4): none for the root, which is no one's
                # child; a value twice in one property is one row.
                self._write(c, "keys", (
                    b"".join((_KEYS_HEAD(4, 8, o.parent, len(k)), k, _LENGTH(len(v)), v,
                              _KEYS_TAIL(8, o.oid)))
                    for o in objects if o.oid for k, v in dict.fromkeys(o.firsts)))
        except self._unique as exc:
            raise StorageError(f"damaged copy: a directory comes twice "
                               f"({_one_line(exc)})") from exc
        except self._pg_error as exc:
            raise StorageError(f"{self.where}: cannot write a copy: {_one_line(exc)}") from exc

    def add_freed(self, rows: list[tuple[int, int]]) -> None:
        c = self._conn
        assert c is not None
        try:
            with c.transaction():
                self._write(c, "freed", (_FREED_ROW(2, 8, oid, 8, inst) for oid, inst in rows))
        except self._pg_error as exc:
            raise StorageError(f"{self.where}: cannot write a copy: {_one_line(exc)}") from exc

    def add_meta(self, key: str, value: int) -> None:
        c = self._conn
        assert c is not None
        try:
            c.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key)"
                      " DO UPDATE SET value = EXCLUDED.value", (key, value))
        except self._pg_error as exc:
            raise StorageError(f"{self.where}: cannot write a copy: {_one_line(exc)}") from exc

    def finish(self) -> None:
        c = self._conn
        assert c is not None
        if not self.count:
            raise StorageError("the copy holds no directory")
        try:
            with c.transaction():
                c.execute("SET LOCAL synchronous_commit = on")
                c.execute(f"SET LOCAL maintenance_work_mem = '{_INDEX_MEMORY}'")
                try:
                    for statement in self._remake:
                        c.execute(statement)
                except self._unique as exc:
                    raise StorageError(f"damaged copy: a directory comes twice "
                                       f"({_one_line(exc)})") from exc
                row = c.execute(_LISTED_TWICE).fetchone()
                if row is not None:
                    raise StorageError(f"damaged database: directory {row[0]} is listed as "
                                       f"a child more than once")
                c.execute("INSERT INTO meta VALUES ('checksum', %s)", (self.checksum,))
            # the planner's statistics of the new tables, before they serve
            c.execute("ANALYZE dirs, kids, keys")
            c.close()
            self._conn = None
        except self._pg_error as exc:
            raise StorageError(f"{self.where}: cannot write a copy: {_one_line(exc)}") from exc
        self.finished = True

    def discard(self) -> None:
        c, self._conn = self._conn, None
        self.finished = False
        try:
            if c is not None:
                c.close()   # a transaction in progress is rolled back
            c = _connect(self._conninfo, "copy")
            try:
                c.execute(f"DROP SCHEMA IF EXISTS {_quoted(self.schema)} CASCADE")
            finally:
                c.close()
        except Exception:   # never raises (NewCopy.discard); the next writer drops it
            log.warning("%s: the copy schema %s was not dropped", self.where, self.schema)


class PgDump(SqlDump):
    """:class:`~.dump.SqlDump` on a connection of its own in a ``REPEATABLE READ READ
    ONLY`` transaction: each stream a server-side cursor, fetched a chunk at a time in
    binary form. Its sorts are PostgreSQL's (``work_mem``, then on disk)."""

    def __init__(self, store: PostgresStore) -> None:
        self._where = store.where
        self._pg_error = store._pg_error
        self._names = itertools.count(1)
        self._conn: psycopg.Connection[Any] | None = None
        try:
            c = self._conn = _connect(store._conninfo, "dump")
            c.execute(f"SET search_path TO {_quoted(store.schema)}")
            c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        except (self._pg_error, StorageError) as exc:
            self.close()
            raise StorageError(f"cannot read {self._where}: {_one_line(exc)}") from exc

    def _rows(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        c = self._conn
        assert c is not None
        try:
            with c.cursor(name=f"ni_dump_{next(self._names)}", binary=True) as cur:
                cur.execute(sql)
                while rows := cur.fetchmany(size):
                    yield rows
        except self._pg_error as exc:
            raise StorageError(f"cannot read {self._where}: {_one_line(exc)}") from exc

    def close(self) -> None:
        c, self._conn = self._conn, None
        if c is not None:
            try:
                c.close()   # the transaction is rolled back: it only read
            except Exception:   # never raises (Dump.close)
                pass


#: Op type → handler, for the ops applied one at a time (Puts are gathered).
_SINGLE: dict[type, Callable[..., None]] = {Free: PostgresStore._free,
                                            KidIns: PostgresStore._kid_ins,
                                            KidDel: PostgresStore._kid_del,
                                            Reset: PostgresStore._reset,
                                            Meta: PostgresStore._meta}
#: Op types that touch dirs or keys, so gathered Puts must be written before them.
_FLUSH_PUTS = frozenset({Free, Reset})


class PostgresCatalog(Catalog):
    """The domains of one PostgreSQL database (every schema with our ``schema_version``):
    *base* is a store URL without ``domain=``; domain TAG is ``BASE?domain=TAG``."""

    def __init__(self, base: str) -> None:
        self.base = base

    def domains(self) -> list[str]:
        return domains(self.base)

    def url(self, tag: str) -> str:
        parts = urlsplit(self.base)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != "domain"] + [("domain", tag)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def where(self, tag: str) -> str:
        return f"postgresql domain {tag}"

    def exists(self, tag: str) -> bool:
        return tag in self.domains()

    def create(self, tag: str) -> None:
        """Nothing to make: the writer creates its schema when it claims the domain."""

    def destroy(self, tag: str) -> None:
        conninfo, _ = split_url(self.url(tag))
        try:
            conn = _connect(conninfo, "catalog")
        except StorageError:
            return
        try:
            for schema in (SCHEMA_PREFIX + tag, SCHEMA_PREFIX + tag + COPY_SUFFIX):
                conn.execute(f"DROP SCHEMA IF EXISTS {_quoted(schema)} CASCADE")
        except Exception:   # never raises (Catalog.destroy)
            pass
        finally:
            conn.close()

    def check_free(self, tag: str) -> None:
        """The writer's advisory lock is taken by ``Store.claim`` when the domain opens
        (one line naming the holder); nothing to check beforehand."""


class PostgresEngine(Engine):
    """The ``postgresql:`` (and ``postgres:``) row of the engine table: *rest* is the
    whole store URL (``storage._WHOLE_URL``); the one-writer lock is the advisory lock
    :meth:`PostgresStore.claim` takes; a clone's copy a crash interrupted leaves its
    schema beside the domain's (:class:`PostgresCopy`), dropped by the next writer."""

    scheme = "postgresql"

    def open(self, rest: str) -> Store:
        return PostgresStore(rest)

    def discard_leftovers(self, rest: str) -> None:
        """Drop the schema an interrupted copy left, when no writer holds the domain
        (the lock taken for that moment only: a running writer's copy in progress is
        never touched). A standby, which cannot yet, leaves it to its :meth:`claim`."""
        conninfo, domain = split_url(rest)
        schema = SCHEMA_PREFIX + domain
        key = lock_key(schema)
        try:
            conn = _connect(conninfo, "leftovers")
        except StorageError:
            return   # opening the store says why
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row and row[0]:
                try:
                    _drop_leftover(conn, schema, f"postgresql domain {domain}")
                finally:
                    # released here, not by closing: the server ends the session after
                    # close() returns, and the writer's claim that follows at once
                    # found the lock still held ("in use by netinfo leftovers")
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except _psycopg().Error as exc:
            log.warning("postgresql domain %s: leftover copy not checked: %s", domain,
                        _one_line(exc))
        finally:
            conn.close()

    def catalog(self, location: str) -> Catalog:
        return PostgresCatalog(location)
