"""A cached, pinned node source over an engine's rows: what a lazy engine shares.

The store is the source of truth; the service reads directories on demand
(docs/architecture.md, "Representation at scale"). :class:`CachedSource` is everything
of that which does not depend on the engine; an engine gives it a :class:`RowReader`
(a directory row by number, a child list, the LOOKUP index, counts, a snapshot reader),
which is all it writes in its own query language (``sqlite_source.SqliteRows``; a second
engine such as PostgreSQL writes one more, issue 19 item 6):

* a bounded LRU of decoded directories (``cache`` entries and ``cache_bytes`` bytes of
  their stored proplists, issue 18 N4: a count alone let a few huge directories hold
  gigabytes; one bigger than the whole bound is not cached at all); a directory with
  :data:`BIG_KIDS` children or more stays resident once its child list is loaded: child
  lists are ``array('I')`` (4 bytes a child), so all of them together cost at most 4 bytes
  per directory of the domain, and a million-child /users is never re-read per request;
* directories changed but not yet durable are *pinned* (two generations: changed since
  the last ``take``, and taken for the commit in flight), so every read sees the
  uncommitted writes and nothing waits on a disk flush; ``durable`` moves them to the
  cache, ``rollback`` drops them (their state is the store's again);
* LOOKUP reads the engine's persisted index in child-list order (spec §4.4, §5.4) and
  overlays the pinned children of the searched directory;
* LIST, LISTALL and READALL read children in chunks of ``RowReader.chunk`` with one
  fetch each, without filling the cache;
* ``snapshot``: a source of its own over the reader's snapshot (a stream's view).

Nothing here is O(n) at open: the checksum, highest number and freed numbers come from
the store (spec §5.6, §5.2, §5.3). Pure: the engine's reader does every I/O.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableSequence
from itertools import chain
from time import monotonic
from typing import Protocol

from ..errors import DamagedDirectory, StorageError, WireError
from ..model import Directory, NiId, Proplist, first_values
from ..wire.proplist import (
    StoredProplist,
    StoredProplists,
    check_proplist,
    decode_proplist,
    encode_proplist,
    stored_list_values,
)
from ..wire.readall import encode_readall_stored
from .keyindex import MAX_BYTES as INDEX_BYTES
from .keyindex import KeyIndex, TooBig
from .nodes import MISSING, Node, NodeSource, bounded_preorder, list_value, matches

#: Directories cached by default: measured (docs/benchmarks.md, "Scale") to keep a
#: 1,000,000-user domain's server well under 300 MB while a working set of users stays hot.
DEFAULT_CACHE = 20_000
#: Bytes of stored proplists (their XDR form) cached by default: 64 MiB, far above what
#: 20,000 ordinary directories take (a user's entry is a few hundred bytes), so it binds
#: only when directories are unusually big (``netinfod --cache-mb``; docs/security.md).
DEFAULT_CACHE_BYTES = 64 << 20
#: Child count from which a loaded child list stays resident (see the module docstring).
BIG_KIDS = 1024
#: Directories a snapshot view (a stream's, :meth:`CachedSource.snapshot`) keeps decoded.
SNAPSHOT_CACHE = 64
#: ... and at most this many bytes of their stored proplists.
SNAPSHOT_CACHE_BYTES = 4 << 20
#: A directory as stored, undecoded: (instance, parent, props XDR, children).
Stored = tuple[int, int, bytes, "array[int]"]
#: LOOKUPs of one key of one directory that the store answered, after which the source
#: asks for a resident index of them (``keyindex``; issue 23): a few hundred, so that
#: a handful of logins builds nothing.
INDEX_AFTER = 256
#: Resident indexes one source keeps (and builds) at most; with ``keyindex.MAX_BYTES``
#: over all of them.
INDEX_MAX = 8
#: An index dropped (too changed, forgotten) or given up is asked for again only after
#: this many times the duration of its last build: building stays a small share of
#: the time, however the directory changes.
INDEX_COOLDOWN = 10
#: (directory, key) pairs whose store LOOKUPs are counted at once (past it, the counts
#: start again).
INDEX_ASKS = 256
#: Keys longer than this (in characters) are never counted nor indexed: the counts keep
#: the keys, and 256 of 60 KB each held 15 MB (tests/test_security.py, finding 6); no
#: directory is looked up often by a name that long.
INDEX_KEY_MAX = 64
#: A directory row: (id, instance, parent, props XDR).
Row = tuple[int, int, int, bytes]
_NO_KIDS: array[int] = array("I")


class RowReader(Protocol):
    """An engine's stored rows, read on one connection (or one snapshot of the store).

    Every method raises ``StorageError`` (with the engine's recovery hint) when the
    engine fails; none decodes a proplist. Names and values of :meth:`lookup` are the
    UTF-8 bytes (surrogateescape) the index keeps.
    """

    #: directories per :meth:`fetch` (one query each)
    chunk: int
    #: True when a read waits on something else than this process's CPU (a network
    #: round trip): a stream then reads a snapshot in a worker thread
    #: (``NodeSource.off_loop``); only a snapshot reader is ever used so
    off_loop: bool

    def row(self, oid: int) -> tuple[int, int, bytes, bool] | None:
        """Directory *oid*: (instance, parent, props XDR, has children), or None."""
        ...

    def props(self, oid: int) -> bytes | None:
        """Directory *oid*'s props XDR alone (no test for children), or None."""
        ...

    def kids(self, oid: int) -> array[int]:
        """*oid*'s child list, in order."""
        ...

    def fetch(self, ids: list[int], with_kids: bool) -> tuple[list[Row], dict[int, array[int]]]:
        """The stored ones among *ids* (at most :attr:`chunk`), in any order, and with
        *with_kids* their child lists (those that have children)."""
        ...

    def has(self, oid: int) -> bool:
        """Is *oid* stored?"""
        ...

    def max_id(self) -> int:
        """The highest stored number; -1 when none is."""
        ...

    def highest(self, excluding: list[int]) -> int:
        """The highest stored number but *excluding*; -1 when none is."""
        ...

    def count(self) -> int:
        """Directories stored."""
        ...

    def gaps(self) -> list[int]:
        """Unused numbers below the highest stored one (any order, maybe repeated)."""
        ...

    def freed(self) -> dict[int, int]:
        """Destroyed number → its last instance (spec §5.3)."""
        ...

    def meta(self, key: str) -> object:
        """The stored value of counter *key* (``checksum``, ``Meta`` ops), or None."""
        ...

    def instances(self) -> list[tuple[int, int]]:
        """(number, instance) of every stored directory."""
        ...

    def ids(self) -> list[int]:
        """Every stored number."""
        ...

    def lookup(self, parent: int, key: bytes, value: bytes) -> list[int]:
        """Children of *parent* whose first *key* property holds *value*, in child-list
        order (the persisted LOOKUP index, spec §4.4)."""
        ...

    def lookup_first(self, parent: int, key: bytes, value: bytes) -> tuple[int, bytes] | None:
        """The first such child with its props XDR, or None."""
        ...

    def pairs(self, parent: int, key: bytes) -> Iterator[tuple[bytes, int]]:
        """Every (value, child) of the persisted index under *parent* and *key*, any
        order, read a chunk at a time (a resident index is built from them:
        ``keyindex``; on a snapshot reader, in a thread of its own)."""
        ...

    def snapshot(self) -> RowReader:
        """A reader of its own on the last commit, unchanged by later ones (close it)."""
        ...

    def damaged(self, oid: int, exc: Exception) -> DamagedDirectory:
        """The error for stored directory *oid*, which does not decode."""
        ...

    def close(self) -> None:
        """Release a snapshot reader (never raises)."""
        ...


#: Results fetched ahead (:class:`WaitingRows`) kept at most, waiting for the calls that
#: asked for them to run again: a few per connection in flight; past it they are
#: dropped (a call that finds its result gone asks again).
READY_MAX = 4096


class StoreWait(BaseException):
    """A read that would wait for the store (a network round trip), raised instead of
    waiting while :attr:`WaitingRows.no_wait` is set: the door fetches *key* off the
    event loop (``server.storeio``) and runs the call again. A BaseException, so that
    no "answer SYSTEM_ERR on any error" clause between the source and the door takes
    it; raised only by reads, before the call changed anything (writes are warmed
    first and then read with waiting allowed: ``Database``)."""

    def __init__(self, rows: WaitingRows, key: ReadKey) -> None:
        super().__init__(key[0])
        self.rows = rows
        self.key = key


class _Failed:
    """A read fetched ahead that failed: raised again where the result is taken."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


#: A read by name: (reader method, its arguments, lists as tuples).
ReadKey = tuple[str, tuple[object, ...]]
#: Runs one reader method, by name with its arguments, where it may wait (a thread).
Runner = Callable[[str, tuple[object, ...]], object]


class WaitingRows:
    """A :class:`RowReader` whose reads are round trips, kept off the event loop
    (issue 23 item 3): each read is either a result fetched ahead (:meth:`offer`, kept
    until the next batch settles, at most :data:`READY_MAX`), or,
    with :attr:`no_wait` set, :class:`StoreWait` naming it, or (reads of a write after
    its warm-up, doors that do not fetch ahead) the read run by *run* (in a reader
    thread with a connection of its own) and waited for.

    A result fetched ahead is the store's committed state when it was read; the cached
    source's pins and LOOKUP overlay cover every write not yet durable, so it stays true
    until the next batch becomes durable (or is rolled back): :meth:`settled` then drops
    every result kept, and :meth:`offer` refuses one read before it."""

    off_loop = True

    def __init__(self, rows: RowReader, run: Runner) -> None:
        self._rows = rows
        self._run = run
        self.chunk = rows.chunk
        #: raise StoreWait rather than wait (set by a door around one call)
        self.no_wait = False
        #: (method, arguments) → its result fetched ahead
        self._ready: dict[ReadKey, object] = {}
        #: batches settled so far (a fetch started before the last one is stale)
        self.settles = 0
        #: reads that waited where they were made (no fetch ahead): what the counters show
        self.waited = 0

    def _read(self, name: str, args: tuple[object, ...]) -> object:
        key = (name, args)
        ready = self._ready
        value = ready.get(key, _Failed)
        if value is not _Failed:
            # kept until the next batch settles (a write's warm-up fetched it for the
            # write's own reads too), but a failure only once: asked again, it is tried
            # again
            if type(value) is _Failed:
                del ready[key]
                raise value.exc
            return value
        if self.no_wait:
            raise StoreWait(self, key)
        self.waited += 1
        return self._run(name, args)

    def offer(self, key: ReadKey, value: object, settles: int) -> None:
        """The result of read *key*, fetched when :attr:`settles` was *settles*: kept
        for the call that asked, unless a batch settled since (then it may be stale)."""
        if settles == self.settles:
            if len(self._ready) >= READY_MAX:
                self._ready.clear()
            self._ready[key] = value

    def failed(self, key: ReadKey, exc: BaseException, settles: int) -> None:
        """Read *key* failed (the store is down): the call that asked gets the error."""
        self.offer(key, _Failed(exc), settles)

    def settled(self) -> None:
        self.settles += 1
        self._ready.clear()

    # -- the RowReader (every read through _read) ------------------------------------------

    def row(self, oid: int) -> tuple[int, int, bytes, bool] | None:
        return self._read("row", (oid,))  # type: ignore[return-value]

    def props(self, oid: int) -> bytes | None:
        row = self.row(oid)   # (one read fetched ahead for both)
        return None if row is None else row[2]

    def kids(self, oid: int) -> array[int]:
        return self._read("kids", (oid,))  # type: ignore[return-value]

    def fetch(self, ids: list[int], with_kids: bool) -> tuple[list[Row], dict[int, array[int]]]:
        return self._read("fetch", (tuple(ids), with_kids))  # type: ignore[return-value]

    def has(self, oid: int) -> bool:
        return self._read("has", (oid,))  # type: ignore[return-value]

    def max_id(self) -> int:
        return self._read("max_id", ())  # type: ignore[return-value]

    def highest(self, excluding: list[int]) -> int:
        return self._read("highest", (tuple(excluding),))  # type: ignore[return-value]

    def count(self) -> int:
        return self._read("count", ())  # type: ignore[return-value]

    def gaps(self) -> list[int]:
        return self._read("gaps", ())  # type: ignore[return-value]

    def freed(self) -> dict[int, int]:
        return self._read("freed", ())  # type: ignore[return-value]

    def meta(self, key: str) -> object:
        return self._read("meta", (key,))

    def instances(self) -> list[tuple[int, int]]:
        return self._read("instances", ())  # type: ignore[return-value]

    def ids(self) -> list[int]:
        return self._read("ids", ())  # type: ignore[return-value]

    def lookup(self, parent: int, key: bytes, value: bytes) -> list[int]:
        return self._read("lookup", (parent, key, value))  # type: ignore[return-value]

    def lookup_first(self, parent: int, key: bytes, value: bytes) -> tuple[int, bytes] | None:
        return self._read("lookup_first", (parent, key, value))  # type: ignore[return-value]

    def pairs(self, parent: int, key: bytes) -> Iterator[tuple[bytes, int]]:
        return self._rows.pairs(parent, key)   # a snapshot's, in a thread: never here

    def snapshot(self) -> RowReader:
        return self._rows.snapshot()

    def damaged(self, oid: int, exc: Exception) -> DamagedDirectory:
        return self._rows.damaged(oid, exc)

    def close(self) -> None:
        return None


def run_read(rows: RowReader, name: str, args: tuple[object, ...]) -> object:
    """Reader method *name* of *rows* with *args* as :class:`WaitingRows` names them
    (lists travel as tuples, to be keys)."""
    if name == "fetch":
        ids, with_kids = args
        return rows.fetch(list(ids), bool(with_kids))  # type: ignore[call-overload]
    if name == "highest":
        return rows.highest(list(args[0]))  # type: ignore[call-overload]
    method: Callable[..., object] = getattr(rows, name)
    return method(*args)


class LazyNode(Node):
    """A directory read from the store; its child list is read on first use."""

    __slots__ = ("_src", "_oid")

    def __init__(self, src: CachedSource, oid: int, instance: int, parent: int,
                 props: Proplist, kids: MutableSequence[int] | None = None) -> None:
        Node.__init__(self, instance, parent, props)
        self._kids = kids
        self._src = src
        self._oid = oid

    @property
    def children(self) -> MutableSequence[int]:
        kids = self._kids
        if kids is None:
            kids = self._kids = self._src._load_kids(self._oid, self)
        return kids


def _weight(n: Node) -> int:
    """A cached directory's weight: its stored proplist's size (the XDR form; a proplist
    just written and not yet encoded is measured by its strings)."""
    props = n.props
    wire = getattr(props, "wire", None)
    if wire is not None:
        return len(wire)
    return 4 + sum(8 + len(k) + sum(4 + len(v) for v in vals) for k, vals in props)


def _kids(item: Node | Stored) -> MutableSequence[int]:
    """The child numbers of a node, or of a stored row (its fourth field)."""
    return item[3] if isinstance(item, tuple) else item.children


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


class IndexJob:
    """A resident index of *key* under directory *oid* to build (``keyindex``): the
    source asks its :attr:`CachedSource.index_runner` to call :meth:`run` in a thread
    of its own (it reads a snapshot opened when the job was made, a chunk at a time)
    and then :meth:`install` where the source is used (the event loop); the changes
    that became durable meanwhile are applied there."""

    def __init__(self, source: CachedSource, oid: int, key: str, max_bytes: int) -> None:
        self.source = source
        self.oid = oid
        self.key = key
        self._max_bytes = max_bytes
        self._rows: RowReader | None = source._rows.snapshot()
        #: the index built, or None (:attr:`error` says why)
        self.index: KeyIndex | None = None
        self.error: str | None = None
        #: the build's duration (the cooldown of the next: INDEX_COOLDOWN)
        self.seconds = 0.0
        #: set to stop the build at its next chunk (a copy is being swapped in)
        self.cancelled = False

    def _pairs(self, rows: RowReader) -> Iterator[tuple[bytes, int]]:
        for n, pair in enumerate(rows.pairs(self.oid, _utf8(self.key))):
            if n & 4095 == 0 and self.cancelled:
                raise TooBig("cancelled")
            yield pair

    def run(self) -> None:
        """Build it (in a thread: reads and CPU, nothing of the source's touched)."""
        start = monotonic()
        rows, self._rows = self._rows, None
        if rows is None:
            return
        try:
            self.index = KeyIndex(self._pairs(rows), self._max_bytes)
        except (TooBig, StorageError) as exc:
            self.error = str(exc)
        finally:
            rows.close()
            self.seconds = monotonic() - start

    def install(self) -> None:
        """Hand the index to its source (where the source is used)."""
        self.source._index_built(self)

    def abandon(self) -> None:
        """Never run: release the snapshot and tell the source."""
        self.cancelled = True
        self.error = self.error or "not run"
        rows, self._rows = self._rows, None
        if rows is not None:
            rows.close()
        self.install()


class CachedSource(NodeSource):
    """The directories of a store, read on demand through a :class:`RowReader`."""

    lazy = True

    def __init__(self, rows: RowReader, cache: int | None = None,
                 cache_bytes: int | None = None) -> None:
        self._rows = rows
        self._max = max(1, DEFAULT_CACHE if cache is None else cache)
        self._max_bytes = max(0, DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes)
        self._cache: OrderedDict[int, Node] = OrderedDict()
        #: the cached directories' stored proplist sizes, and their sum
        self._weights: dict[int, int] = {}
        self.cached_bytes = 0
        #: directories with BIG_KIDS children or more, once their list is loaded
        self._big: dict[int, Node] = {}
        #: changed since the last take(); None: destroyed
        self._pins: dict[int, Node | None] = {}
        #: taken for the commit in flight, until durable()
        self._taken: dict[int, Node | None] = {}
        #: parent → its children among the pinned (LOOKUP re-checks them in memory)
        self._dirty: dict[int, dict[int, None]] = {}
        #: destroyed (pinned as None) → the parent it had
        self._gone: dict[int, int] = {}
        #: no stored id is above this (None: not asked yet); lets a CREATE's search for
        #: a free number past the end skip a query per number (issue 10, bulk loads)
        self._ceiling: int | None = None
        #: True for a snapshot view (:meth:`snapshot`): its reader is its own
        self._reader = False
        #: the reader when its reads are kept off the event loop (:meth:`wait_off_loop`)
        self.waiting: WaitingRows | None = None
        #: runs an :class:`IndexJob` (netinfod: a thread, then back on the loop); None:
        #: no resident index is built (the tools, snapshot views)
        self.index_runner: Callable[[IndexJob], None] | None = None
        #: resident LOOKUP indexes (``keyindex``) by (directory, key)
        self.indexes: dict[tuple[int, str], KeyIndex] = {}
        #: LOOKUPs of a directory's key that the store answered (INDEX_AFTER)
        self._asks: dict[tuple[int, str], int] = {}
        #: builds in flight: their job and the values that became durable meanwhile
        self._building: dict[tuple[int, str], tuple[IndexJob, dict[int, tuple[bytes, ...]]]] = {}
        #: no new build of that index before this time (INDEX_COOLDOWN)
        self._not_before: dict[tuple[int, str], float] = {}
        #: how long the build of each resident index took
        self._build_seconds: dict[tuple[int, str], float] = {}

    def wait_off_loop(self, run: Runner) -> WaitingRows:
        """Read through a :class:`WaitingRows` running each read with *run* (in a reader
        thread): a door can then fetch what a call misses off the event loop."""
        waiting = self.waiting
        if waiting is None:
            waiting = self.waiting = WaitingRows(self._rows, run)
            self._rows = waiting
        return waiting

    def _settled(self) -> None:
        if self.waiting is not None:
            self.waiting.settled()

    # -- decoding what the reader hands over ------------------------------------------------

    def _decode(self, oid: int, blob: bytes) -> Proplist:
        try:
            return decode_proplist(blob)
        except WireError as exc:
            raise self._rows.damaged(oid, exc) from None

    def _checked(self, oid: int, blob: bytes) -> bytes:
        """*blob* if it is a whole proplist (sent as it is: READALL, LISTALL, LOOKUPREAD)."""
        try:
            check_proplist(blob)
        except WireError as exc:
            raise self._rows.damaged(oid, exc) from None
        return blob

    # -- reading one directory -------------------------------------------------------------

    def get(self, oid: int, default: Node | None = None) -> Node | None:
        pins = self._pins
        if oid in pins:
            return pins[oid] or default
        if oid in self._taken:
            return self._taken[oid] or default
        n = self._big.get(oid)
        if n is not None:
            return n
        cache = self._cache
        n = cache.get(oid)
        if n is not None:
            cache.move_to_end(oid)
            return n
        # Whether it has children at all comes with it: most directories are leaves,
        # whose CHILDREN then needs no second read.
        row = self._rows.row(oid)
        if row is None:
            return default
        n = LazyNode(self, oid, row[0], row[1], self._decode(oid, row[2]),
                     None if row[3] else array("I"))
        self._remember(oid, n)
        return n

    def peek(self, oid: int) -> Node | None:
        """:meth:`get` without keeping what is read: a directory read once (a random
        user an LDAP search names) must not flush the working set, as LOOKUPREAD's
        stored answer does not (:meth:`lookup_first`)."""
        if oid in self._pins or oid in self._taken:
            return self.get(oid)
        n = self._big.get(oid) or self._cache.get(oid)
        if n is not None:
            return n
        row = self._rows.row(oid)
        if row is None:
            return None
        return LazyNode(self, oid, row[0], row[1], self._decode(oid, row[2]),
                        None if row[3] else array("I"))

    def lookup_stored(self, oid: int, key: str,
                      value: str) -> tuple[list[int], Node | bytes | None] | None:
        """LOOKUP's children of *oid* (:meth:`lookup`: the resident index, else the
        store's) with the first one as it is read once: its node when in memory, else its
        stored proplist bytes alone (one read of the row, without the test for children;
        neither checked, decoded nor cached: the caller reads them with the checks of
        ``decode_proplist``), None when it is gone. None when the caller is to ask
        LOOKUP itself (pinned children of *oid*). The LDAP door's short path
        (``LdapServer.quick``)."""
        if self._dirty.get(oid):
            return None
        vb = _utf8(value)
        found = self._indexed(oid, key, vb)
        if found is None:
            found = self._rows.lookup(oid, _utf8(key), vb)
        if not found:
            return found, None
        child = found[0]
        if child in self._pins or child in self._taken:
            return found, self.get(child)
        n = self._big.get(child) or self._cache.get(child)
        if n is not None:
            return found, n
        return found, self._rows.props(child)

    def _remember(self, oid: int, n: Node) -> None:
        """Keep clean directory *oid* (resident when big, else in the LRU)."""
        kids = n._kids
        if kids is not None and len(kids) >= BIG_KIDS:
            self._big[oid] = n
            return
        weight = _weight(n)
        self._uncache(oid)
        if weight > self._max_bytes:
            return   # bigger than the whole bound: read again when asked for
        cache = self._cache
        cache[oid] = n
        self._weights[oid] = weight
        self.cached_bytes += weight
        while len(cache) > self._max or self.cached_bytes > self._max_bytes:
            old, _ = cache.popitem(last=False)
            self.cached_bytes -= self._weights.pop(old)

    def _uncache(self, oid: int) -> None:
        """Drop *oid* from the LRU, if there."""
        if self._cache.pop(oid, None) is not None:
            self.cached_bytes -= self._weights.pop(oid)

    def forget(self, oid: int) -> None:
        """Read directory *oid* from the store again when next asked for: another
        process changed it (netinfod's read workers hear of the owner's writes)."""
        self._uncache(oid)
        self._big.pop(oid, None)
        self._ceiling = None
        # its new state is unknown here: no resident index can say what it holds now
        self.drop_indexes()

    def _load_kids(self, oid: int, n: Node) -> MutableSequence[int]:
        kids = self._rows.kids(oid)
        if len(kids) >= BIG_KIDS and self._cache.get(oid) is n:
            self._uncache(oid)
            self._big[oid] = n
        return kids

    def __contains__(self, oid: object) -> bool:
        if not isinstance(oid, int):
            return False
        if oid in self._pins:
            return self._pins[oid] is not None
        if oid in self._taken:
            return self._taken[oid] is not None
        if oid in self._big or oid in self._cache:
            return True
        ceiling = self._ceiling
        if ceiling is None:
            ceiling = self._ceiling = self._rows.max_id()
        return oid <= ceiling and self._rows.has(oid)

    # -- changes (pinned until durable) -----------------------------------------------------

    def _mark(self, oid: int, n: Node) -> None:
        self._dirty.setdefault(n.parent, {})[oid] = None

    def pin(self, oid: int, node: Node) -> None:
        if self._pins.get(oid) is not node:
            self._pins[oid] = node
            self._uncache(oid)
            self._mark(oid, node)

    def __setitem__(self, oid: int, node: Node) -> None:
        self._pins[oid] = node
        self._uncache(oid)
        self._big.pop(oid, None)
        self._mark(oid, node)

    def __delitem__(self, oid: int) -> None:
        n = self.get(oid)
        if n is None:
            raise KeyError(oid)
        self._pins[oid] = None
        self._gone[oid] = n.parent
        self._uncache(oid)
        self._big.pop(oid, None)
        self._mark(oid, n)

    def pop(self, oid: int, default: Node | None = None) -> Node | None:
        n = self.get(oid)
        if n is None:
            return default
        del self[oid]
        return n

    def _settle(self, gen: dict[int, Node | None]) -> None:
        """*gen*'s changes are in the store: its directories become clean cache entries."""
        if self._ceiling is not None and gen:
            self._ceiling = max(self._ceiling, max(gen))
        for oid, n in gen.items():
            if oid in self._pins or oid in self._taken:
                continue  # changed again since: still pinned
            if n is not None:
                self._remember(oid, n)
        self._dirty = {}
        gone, self._gone = self._gone, {}
        if self.indexes or self._building:
            self._index_settled(gen, gone)
        for oid, n in chain(self._taken.items(), self._pins.items()):
            if n is not None:
                self._mark(oid, n)
            elif oid in gone:  # destroyed: its parent still has to re-check it
                self._gone[oid] = gone[oid]
                self._dirty.setdefault(gone[oid], {})[oid] = None

    def take(self) -> None:
        old, self._taken, self._pins = self._taken, self._pins, {}
        if old:
            self._settle(old)
            self._settled()

    def durable(self) -> None:
        old, self._taken = self._taken, {}
        if old:
            self._settle(old)
        self._settled()

    def rollback(self) -> None:
        # The undo log restored every pinned node; drop them all the same and read the
        # store again, which is then exactly the durable state.
        for oid in chain(self._pins, self._taken):
            self._uncache(oid)
            self._big.pop(oid, None)
        self._pins, self._taken, self._dirty, self._gone = {}, {}, {}, {}
        self._settled()

    def _overlay(self) -> dict[int, Node | None]:
        return {**self._taken, **self._pins}

    # -- whole-domain facts ----------------------------------------------------------------

    def __len__(self) -> int:
        rows = self._rows
        n = rows.count()
        for oid, node in self._overlay().items():
            stored = rows.has(oid)
            if node is None and stored:
                n -= 1
            elif node is not None and not stored:
                n += 1
        return n

    def highest(self) -> int:
        overlay = self._overlay()
        live = [oid for oid, n in overlay.items() if n is not None]
        gone = [oid for oid, n in overlay.items() if n is None]
        top = self._rows.highest(gone)
        return max(top, *live) if live else top

    def gaps(self) -> list[int]:
        """Unused numbers below the highest: the holes between stored ids plus
        destroyed ones not yet committed."""
        out: list[int] = [oid for oid, n in self._overlay().items() if n is None]
        out.extend(self._rows.gaps())
        return sorted(set(out))

    def freed(self) -> dict[int, int]:
        return self._rows.freed()

    def stored_checksum(self) -> int | None:
        value = self._rows.meta("checksum")
        return value if isinstance(value, int) else None

    def stored_meta(self, key: str) -> int | None:
        value = self._rows.meta(key)
        return value if isinstance(value, int) else None

    def instances(self) -> Iterator[tuple[int, int]]:
        overlay = self._overlay()
        rows = self._rows.instances()
        for oid, inst in rows:
            if oid not in overlay:
                yield oid, inst
        for oid, n in overlay.items():
            if n is not None:
                yield oid, n.instance

    def items(self) -> Iterator[tuple[int, Node]]:
        overlay = self._overlay()
        ids = self._rows.ids()
        for oid in ids:
            if oid not in overlay:
                n = self.get(oid)
                if n is not None:
                    yield oid, n
        for oid, node in overlay.items():
            if node is not None:
                yield oid, node

    def values(self) -> Iterator[Node]:
        """The resident directories (pinned, big and cached)."""
        seen = self._overlay()
        yield from (n for n in seen.values() if n is not None)
        yield from (n for k, n in self._big.items() if k not in seen)
        yield from (n for k, n in self._cache.items() if k not in seen)

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self, checksum: int) -> CachedSource:
        """A source of its own on the reader's snapshot (``RowReader.snapshot``): the
        last commit, whatever is written after (nothing pinned here is in it: the server
        commits a batch before a stream begins). Its checksum is the one stored with
        that commit (*checksum* is not used)."""
        view = CachedSource(self._rows.snapshot(), SNAPSHOT_CACHE,
                            min(self._max_bytes, SNAPSHOT_CACHE_BYTES))
        view._reader = True
        view.off_loop = self._rows.off_loop
        # The big child lists already resident are the snapshot's too when nothing of
        # theirs is pending (their directory is neither pinned nor in a commit in
        # flight): a copy (4 bytes a child, one memcpy) spares the view reading a
        # million-child list again on the event loop (0.6-1 s at 1M users, measured).
        # Not for a reader whose snapshot is taken by its first read, in the stream's
        # worker thread (off_loop): a commit in between would make the copy stale; that
        # reader reads its lists itself, off the loop.
        for oid, n in ([] if view.off_loop else self._big.items()):
            kids = n._kids
            if kids is not None and oid not in self._pins and oid not in self._taken:
                view._big[oid] = LazyNode(view, oid, n.instance, n.parent, n.props,
                                          kids[:])
        return view

    def close(self) -> None:
        if self._reader:
            self._rows.close()   # ends the snapshot

    # -- resident LOOKUP indexes (keyindex) ------------------------------------------------

    def _indexed(self, oid: int, key: str, value: bytes) -> list[int] | None:
        """LOOKUP's children of *oid* from a resident index of *key*, or None: ask the
        store (no index, or two or more children hold *value*). Counts the store's
        answers, and past INDEX_AFTER of one directory and key asks for an index (of
        any directory: the build reads its pairs, however few; the bytes bound stops
        one too big)."""
        if self.indexes:
            index = self.indexes.get((oid, key))
            if index is not None:
                return index.find(value)
        if self.index_runner is not None and len(key) <= INDEX_KEY_MAX:
            self._asked(oid, key)
        return None

    def _asked(self, oid: int, key: str) -> None:
        k = (oid, key)
        asks = self._asks
        n = asks.get(k, 0) + 1
        if n < INDEX_AFTER:
            if len(asks) >= INDEX_ASKS and k not in asks:
                asks.clear()
            asks[k] = n
            return
        asks.pop(k, None)
        if k in self._building or self.index_runner is None:
            return
        now = monotonic()
        not_before = self._not_before
        if now < not_before.get(k, 0.0):
            return
        if len(not_before) >= INDEX_ASKS:
            for old in [o for o, t in not_before.items() if t <= now]:
                del not_before[old]
        if len(self.indexes) + len(self._building) >= INDEX_MAX and not self._evict():
            return
        room = INDEX_BYTES - sum(i.nbytes for i in self.indexes.values())
        job = IndexJob(self, oid, key, room)
        self._building[k] = (job, {})
        self.index_runner(job)

    def _index_built(self, job: IndexJob) -> None:
        k = (job.oid, job.key)
        entry = self._building.get(k)
        if entry is None or entry[0] is not job:
            return   # dropped meanwhile (forget, the directory destroyed)
        del self._building[k]
        self._build_seconds[k] = job.seconds
        self._not_before[k] = monotonic() + INDEX_COOLDOWN * job.seconds
        index = job.index
        if index is None:
            return
        for child, values in entry[1].items():
            index.set(child, values)
        if not index.too_changed():
            self.indexes[k] = index

    def _index_settled(self, gen: dict[int, Node | None], gone: dict[int, int]) -> None:
        """*gen* became durable: each index (built or being built) of a directory a
        changed child is under learns the child's values now."""
        targets: dict[int, list[tuple[str, Callable[[int, tuple[bytes, ...]], None]]]] = {}
        for (parent, key), index in self.indexes.items():
            targets.setdefault(parent, []).append((key, index.set))
        for (parent, key), (_, seen) in self._building.items():
            targets.setdefault(parent, []).append((key, seen.__setitem__))
        for oid, n in gen.items():
            if oid in targets and n is None:
                self._drop_indexes_of(oid)   # the directory itself is gone
                continue
            if n is None:
                was = gone.get(oid)
                where = list(targets.values()) if was is None else (
                    [targets[was]] if was in targets else [])
                for puts in where:
                    for _, put in puts:
                        put(oid, ())
                continue
            under = targets.get(n.parent)
            if under is None:
                continue
            for key, put in under:
                vals = first_values(n.props, key)
                put(oid, tuple(dict.fromkeys(_utf8(v) for v in vals)) if vals else ())
        for k, index in list(self.indexes.items()):
            if index.too_changed():
                self._drop(k, index)

    def _evict(self) -> bool:
        """All INDEX_MAX in use and one more asked for: drop the least used, if it
        answered fewer than INDEX_AFTER lookups (halving every count: what was used
        long ago fades). True when there is room now."""
        least = min(self.indexes.items(), key=lambda item: item[1].hits, default=None)
        for index in self.indexes.values():
            index.hits //= 2
        if least is None or least[1].hits * 2 >= INDEX_AFTER:
            return False
        self._drop(*least)
        return True

    def _drop(self, k: tuple[int, str], index: KeyIndex) -> None:
        del self.indexes[k]
        # asked for again, it is built after the cooldown of its last build
        self._not_before[k] = monotonic() + INDEX_COOLDOWN * self._build_seconds.pop(k, 0.0)

    def _drop_indexes_of(self, oid: int) -> None:
        for k in [k for k in self.indexes if k[0] == oid]:
            self._drop(k, self.indexes[k])
        for k in [k for k in self._building if k[0] == oid]:
            self._building.pop(k)[0].cancelled = True

    def statistics(self) -> Proplist:
        """``lookup_indexes``: "DIRECTORY KEY ENTRIES BYTES HITS" of each resident
        index (none: no property)."""
        if not self.indexes:
            return []
        return [("lookup_indexes", [f"{oid} {key} {i.entries} {i.nbytes} {i.hits}"
                                    for (oid, key), i in self.indexes.items()])]

    def drop_indexes(self) -> None:
        """Drop every resident index and stop the builds in flight (their snapshots
        close at their next chunk): another process changed the store, or a copy is
        being swapped in."""
        for k, index in list(self.indexes.items()):
            self._drop(k, index)
        for job, _ in self._building.values():
            job.cancelled = True
        self._building.clear()

    # -- whole-list reads -------------------------------------------------------------------

    def lookup(self, oid: int, node: Node, key: str, value: str) -> list[int]:
        """From the persisted index, ordered by child position (spec §4.4, §5.4); the
        pinned children of *oid* are re-checked in memory and merged by position. A
        resident index (``keyindex``) answers for the store when there is one."""
        vb = _utf8(value)
        found = self._indexed(oid, key, vb)
        if found is None:
            found = self._rows.lookup(oid, _utf8(key), vb)
        dirty = self._dirty.get(oid)
        if not dirty:
            return found
        hits = [c for c in found if c not in dirty]
        extra = []
        for c in dirty:
            n = self.get(c)
            if n is not None and n.parent == oid and matches(n.props, key, value):
                extra.append(c)
        if not extra:
            return hits
        want = set(hits + extra)
        # Positions in the current child list, which is in memory when it changed.
        kids = node.children
        if len(want) > 8:
            return [c for c in kids if c in want]
        pos = {}
        for c in want:
            try:
                pos[c] = kids.index(c)
            except ValueError:
                pass
        return sorted(pos, key=pos.__getitem__)

    def lookup_first(self, oid: int, node: Node, key: str,
                     value: str) -> tuple[bool, Node | StoredProplist | None]:
        """One read for LOOKUPREAD: the first match's stored row comes with the index
        hit (child-list order, as :meth:`lookup`); a child that is not in memory is
        answered by its stored proplist, neither decoded nor cached (a random LOOKUPREAD
        must not flush the working set). A resident copy of the child wins; with pinned
        children of *oid* the general path is taken."""
        if self._dirty.get(oid):
            found = self.lookup(oid, node, key, value)
            return True, (self.get(found[0]) if found else None)
        vb = _utf8(value)
        indexed = self._indexed(oid, key, vb)
        if indexed is not None:
            if not indexed:
                return True, None
            child = indexed[0]
            resident = self._big.get(child) or self._cache.get(child)
            if resident is not None:
                return True, resident
            blob = self._rows.props(child)   # one B-tree descent (row() is two)
            if blob is not None:
                return True, StoredProplist(self._checked(child, blob))
        hit = self._rows.lookup_first(oid, _utf8(key), vb)
        if hit is None:
            return True, None
        child, props = hit
        resident = self._big.get(child) or self._cache.get(child)
        return True, (resident if resident is not None
                      else StoredProplist(self._checked(child, props)))

    def stored_first(self, oid: int, key: str, value: bytes) -> bytes | None:
        """:meth:`lookup_first`'s usual answer at its cheapest: the stored proplist
        (checked) of the one child of *oid* whose *key* has *value* as a resident index
        names it, when no copy in memory or change pending decides instead; None: ask
        :meth:`lookup_first` (no index, no match or several, a resident child)."""
        indexes = self.indexes
        if not indexes or self._dirty.get(oid):
            return None
        index = indexes.get((oid, key))
        if index is None:
            return None
        found = index.find(value)
        if not found:
            return None
        child = found[0]
        if child in self._big or child in self._cache:
            return None
        blob = self._rows.props(child)
        return None if blob is None else self._checked(child, blob)

    def children_of(self, node: Node) -> Iterator[tuple[int, Node]]:
        """Along *node*'s child list, a chunk of children per read, the cache left as it
        was (a whole-list read must not flush the working set)."""
        for c, item in self._chunks(node.children, False, False):
            assert isinstance(item, Node)  # not raw: always a node (MISSING is one too)
            yield c, item

    def listall(self, node: Node) -> StoredProplists:
        """LISTALL from the stored proplists, never decoded (they are the wire form)."""
        return StoredProplists(list(self.listall_wire(node)))

    def listall_wire(self, node: Node) -> Iterator[bytes]:
        """The stored proplists along *node*'s child list, a chunk per read, as they
        are (pinned and cached children encoded)."""
        for c, item in self._chunks(node.children, False, True):
            yield (self._checked(c, item[2]) if isinstance(item, tuple)
                   else encode_proplist(item.props))

    def list_values(self, node: Node, name: str) -> Iterator[tuple[int, list[str] | None]]:
        """LIST from the stored proplists, decoding only the property asked for."""
        for c, item in self._chunks(node.children, False, True):
            if isinstance(item, tuple):
                try:
                    values = stored_list_values(item[2], name)
                except WireError as exc:
                    raise self._rows.damaged(c, exc) from None
                yield c, values
                continue
            yield c, list_value(item.props, name)

    def _chunks(self, kids: MutableSequence[int], with_kids: bool, raw: bool
                ) -> Iterator[tuple[int, Node | Stored]]:
        overlay_get = self._overlay().get
        size = self._rows.chunk
        for start in range(0, len(kids), size):
            chunk = kids[start:start + size]
            found: dict[int, Node | Stored] = {}
            need = []
            for c in chunk:
                n = overlay_get(c, MISSING)
                if n is MISSING:
                    n = self._big.get(c) or self._cache.get(c)
                    if n is None:
                        need.append(c)
                        continue
                if n is not None:
                    found[c] = n
            if need:
                found.update(self._fetch(need, with_kids, raw))
            for c in chunk:
                yield c, found.get(c, MISSING)

    def _fetch(self, ids: list[int], with_kids: bool, raw: bool) -> dict[int, Node | Stored]:
        """Directories *ids* from the store (one read; one more for their child lists):
        nodes, or with *raw* (instance, parent, props XDR, children) undecoded."""
        rows, kids = self._rows.fetch(ids, with_kids)
        out: dict[int, Node | Stored] = {}
        for oid, inst, parent, blob in rows:
            k = kids.get(oid, _NO_KIDS) if with_kids else None
            if raw:
                out[oid] = (inst, parent, blob, k if k is not None else _NO_KIDS)
            else:
                out[oid] = LazyNode(self, oid, inst, parent, self._decode(oid, blob),
                                    array("I", k) if k is not None else None)
        return out

    def _walk(self, raw: bool) -> Iterator[tuple[int, Node | Stored]]:
        """Every directory in pre-order (spec §9.4), each level read in chunks with its
        children's child lists, in memory bounded by the tree's depth."""
        root: Node | Stored | None = self.get(0)
        if root is None:
            return
        yield from bounded_preorder(
            # the bound: the highest number + 1 is at least the count, and one index seek
            # where a count reads the whole table (65 ms at 1M, before a READALL starts)
            root, lambda item: self._chunks(_kids(item), True, raw), _kids, self.highest() + 1)

    def preorder(self) -> Iterator[Directory]:
        for oid, n in self._walk(False):
            assert isinstance(n, Node)
            yield Directory(NiId(oid, n.instance), n.props, n.parent, n.children)

    def readall_pieces(self) -> Iterator[bytes]:
        """READALL's directories straight from the stored XDR proplists (no decoding)."""
        for oid, item in self._walk(True):
            if isinstance(item, tuple):
                inst, parent, blob, kids = item
                # never a damaged directory to a clone: the stream fails instead, and
                # the clone keeps its copy (issue 18 N20)
                yield encode_readall_stored(oid, inst, self._checked(oid, blob),
                                            parent, kids)
            else:
                yield encode_readall_stored(oid, item.instance, encode_proplist(item.props),
                                            item.parent, item.children)
