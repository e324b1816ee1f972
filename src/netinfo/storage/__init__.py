"""The storage contract: how the directory service persists a domain.

The service (spec semantics, ``service.py``) holds the working copy of a domain and sends
every change to its store as an ordered list of primitive operations. The store makes a
batch durable before :meth:`Store.commit` returns; that is what lets the server
acknowledge a write only once it is on disk (issue "crash-safe store").

Operations (typed records, applied in order inside one atomic transaction):

:class:`Put` ``(id, instance, parent, props)``
    create or replace the directory's own record (not its child list).
:class:`Free` ``(id, instance)``
    the directory (and its own child list) is gone; remember its last instance (spec §5.3:
    a reused number continues from it).
:class:`KidIns` ``(parent, pos, child)``
    insert *child* at position *pos* of *parent*'s child list (as ``list.insert``: an
    index past the end appends).
:class:`KidDel` ``(parent, child)``
    remove the first occurrence of *child* from *parent*'s child list (none: no-op).
:class:`Reset` ``()``
    forget everything (full transfer, whole-database load).
:class:`Meta` ``(key, value)``
    set a counter the service keeps with the domain (the anonymous-write quota's usage,
    docs/security.md); a Reset forgets them.

Each engine dispatches on the op's type through one table of its own.
Every batch ends with the new database checksum (spec §5.6), stored with it.

A whole new domain (a clone's copy, spec §9.5) does not go through ops: :meth:`Store.new_copy`
gives a :class:`NewCopy`, written a batch of READALL directories at a time beside the live
domain, which keeps serving, and then swapped in at once by :meth:`Store.adopt`. An engine
without a swap of its own collects an :class:`Image` instead (:class:`ImageCopy`), which the
database then replaces whole.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import StorageError
from ..model import Proplist
from ..wire.proplist import decode_proplist
from ..wire.readall import WireObject

if TYPE_CHECKING:
    from .changes import Change
    from .journal import Journal
    from .nodes import NodeSource


class Put(NamedTuple):
    """Create or replace directory *id*'s own record."""

    id: int
    instance: int
    parent: int
    props: Proplist


class Free(NamedTuple):
    """Directory *id* is gone; *instance* was its last (spec §5.3)."""

    id: int
    instance: int


class KidIns(NamedTuple):
    """Insert *child* at position *pos* of *parent*'s child list (``list.insert``
    semantics). (Not ``index``: that field would hide ``tuple.index``.)"""

    parent: int
    pos: int
    child: int


class KidDel(NamedTuple):
    """Remove the first occurrence of *child* from *parent*'s child list."""

    parent: int
    child: int


class Reset(NamedTuple):
    """Forget everything (a whole new tree follows)."""


class Meta(NamedTuple):
    """Set the service's counter *key* to *value* (read back by ``NodeSource.stored_meta``)."""

    key: str
    value: int


#: One storage operation.
Op = Put | Free | KidIns | KidDel | Reset | Meta
#: The one Reset (it has no fields).
RESET = Reset()


@dataclass(slots=True)
class Record:
    """A directory's own data, without its child list."""

    instance: int
    parent: int
    props: Proplist


@dataclass(slots=True)
class Image:
    """Everything a store holds, as loaded at start-up."""

    records: dict[int, Record] = field(default_factory=dict)
    children: dict[int, list[int]] = field(default_factory=dict)
    freed: dict[int, int] = field(default_factory=dict)
    checksum: int | None = None
    #: the service's counters (:class:`Meta`)
    meta: dict[str, int] = field(default_factory=dict)


class NewCopy(ABC):
    """A whole new domain written beside a store's live one, a batch of directories at a
    time in the order of a READALL stream (pre-order from the root, spec §9.4), then
    swapped in whole by :meth:`Store.adopt` (a clone's copy, spec §9.5). :meth:`add`,
    :meth:`finish` and :meth:`discard` may run in a worker thread, one at a time.

    ``count`` and ``checksum`` are those of what was added: Σ (object+1) × instance mod
    2³² (spec §5.6), the checksum the copy is stored with, as the database would compute
    it from the same directories.
    """

    #: the copy as an image, for engines without a swap of their own (the database
    #: then replaces its tree with it); None when :meth:`Store.adopt` swaps it in
    image: Image | None = None

    def __init__(self) -> None:
        self.count = 0
        self.checksum = 0

    def add(self, objects: list[WireObject]) -> None:
        """Write the next directories of the stream.

        :raises StorageError: the first is not the root, a number comes twice, or the
            engine failed (the copy is then unusable: :meth:`discard` it).
        """
        if objects and not self.count and objects[0].oid != 0:
            raise StorageError("a copy must begin with the root directory (spec §9.4)")
        checksum = self.checksum
        for o in objects:
            checksum += (o.oid + 1) * o.instance
        self.checksum = checksum & 0xFFFFFFFF
        self.count += len(objects)
        self._add(objects)

    @abstractmethod
    def _add(self, objects: list[WireObject]) -> None:
        """Write *objects* (checked and counted by :meth:`add`)."""

    def add_freed(self, rows: list[tuple[int, int]]) -> None:
        """Write destroyed numbers with their last instances (spec §5.3), none of them a
        directory of the copy: an exact copy of a stored domain (``nistore copy``; a
        clone's copy has none). Before :meth:`finish`."""
        raise NotImplementedError(f"{type(self).__name__} keeps no freed numbers")

    def add_meta(self, key: str, value: int) -> None:
        """Write the service's counter *key* (a :class:`Meta` op's), as :meth:`add_freed`.
        (The checksum is :attr:`checksum`, which an exact copy sets to the stored one
        before :meth:`finish`, which stores it.)"""
        raise NotImplementedError(f"{type(self).__name__} keeps no counters")

    @abstractmethod
    def finish(self) -> None:
        """Make the copy whole and durable, ready for :meth:`Store.adopt`.

        :raises StorageError: it is empty, its tree is damaged (a directory listed as a
            child twice, as ``service.tree_damage``), or the engine failed.
        """

    @abstractmethod
    def discard(self) -> None:
        """Forget the copy and whatever it wrote (never raises)."""


class ImageCopy(NewCopy):
    """A copy collected as an :class:`Image` (the memory engine, and every engine
    without a swap of its own): the database replaces its tree with :attr:`image`, whose
    tree ``service.tree_damage`` checks."""

    def __init__(self) -> None:
        super().__init__()
        self.image: Image = Image()

    def _add(self, objects: list[WireObject]) -> None:
        records, children = self.image.records, self.image.children
        for o in objects:
            if o.oid in records:
                raise StorageError(f"damaged copy: directory {o.oid} comes twice")
            records[o.oid] = Record(o.instance, o.parent, list(decode_proplist(o.props)))
            if o.children:
                children[o.oid] = o.children.tolist()

    def add_freed(self, rows: list[tuple[int, int]]) -> None:
        self.image.freed.update(rows)

    def add_meta(self, key: str, value: int) -> None:
        self.image.meta[key] = value

    def finish(self) -> None:
        self.image.checksum = self.checksum
        if not self.count:
            raise StorageError("the copy holds no directory")

    def discard(self) -> None:
        self.image = Image()


#: a stored directory's own row: (id, instance, parent, props XDR)
DirRow = tuple[int, int, int, bytes]


class Dump(ABC):
    """One consistent read of a whole stored domain (a read transaction or snapshot of
    its own), a chunk at a time, each stream in a fixed order so that two stores can be
    compared side by side (``nistore``: copy, its read-back, check, info). Memory is
    bounded by a chunk, and by one directory's child list. Every method raises
    ``StorageError`` when the engine fails; a stream may be read again (from its
    start, in the same snapshot); :meth:`close` ends the read."""

    #: directories per chunk of :meth:`dirs`
    chunk = 2000

    @abstractmethod
    def dirs(self) -> Iterator[list[DirRow]]:
        """Every directory's row, by number, :attr:`chunk` at a time."""

    @abstractmethod
    def kids(self) -> Iterator[tuple[int, array[int]]]:
        """Every child list (parent, children in order), by parent."""

    @abstractmethod
    def parents(self) -> Iterator[int]:
        """Every number with a child list, ascending."""

    @abstractmethod
    def listings(self) -> Iterator[tuple[int, int]]:
        """Every child list entry as (child, parent), by child then parent."""

    @abstractmethod
    def freed(self) -> Iterator[tuple[int, int]]:
        """Destroyed numbers that no directory has taken again, with their last
        instances (spec §5.3), by number."""

    @abstractmethod
    def meta(self) -> tuple[int | None, dict[str, int]]:
        """(the stored checksum, the service's counters)."""

    @abstractmethod
    def summary(self) -> tuple[int, int, int]:
        """(directories, the highest number or -1, rows of freed numbers)."""

    def keys(self) -> Iterator[tuple[int, int, bytes, bytes]] | None:
        """The persisted LOOKUP index as (child, parent, name, value) rows, by child
        (one child's rows in any order); None for an engine without one."""
        return None

    @abstractmethod
    def unreached(self, most: int = 10) -> tuple[int, list[int]]:
        """Directories the root does not reach through the child lists: how many, and
        the first *most* numbers. Only when no directory is listed twice, the root by
        none, and every listed number is a directory (else a cycle might never end)."""

    def close(self) -> None:
        """End the read (never raises)."""
        return None


class ImageDump(Dump):
    """The :class:`Dump` of an :class:`Image` (an engine without one of its own)."""

    def __init__(self, image: Image) -> None:
        self._image = image

    def dirs(self) -> Iterator[list[DirRow]]:
        from ..wire.proplist import encode_proplist  # noqa: PLC0415 - storage's own form
        records = self._image.records
        ids = sorted(records)
        for i in range(0, len(ids), self.chunk):
            yield [(oid, records[oid].instance, records[oid].parent,
                    encode_proplist(records[oid].props)) for oid in ids[i:i + self.chunk]]

    def kids(self) -> Iterator[tuple[int, array[int]]]:
        for parent, kids in sorted(self._image.children.items()):
            if kids:
                yield parent, array("I", kids)

    def parents(self) -> Iterator[int]:
        return (p for p, _ in self.kids())

    def listings(self) -> Iterator[tuple[int, int]]:
        return iter(sorted((c, p) for p, kids in self._image.children.items() for c in kids))

    def freed(self) -> Iterator[tuple[int, int]]:
        return iter(sorted((oid, inst) for oid, inst in self._image.freed.items()
                           if oid not in self._image.records))

    def meta(self) -> tuple[int | None, dict[str, int]]:
        return self._image.checksum, dict(self._image.meta)

    def summary(self) -> tuple[int, int, int]:
        records = self._image.records
        return len(records), max(records, default=-1), len(self._image.freed)

    def unreached(self, most: int = 10) -> tuple[int, list[int]]:
        records, children = self._image.records, self._image.children
        seen: set[int] = set()
        todo = [0] if 0 in records else []
        while todo:
            oid = todo.pop()
            if oid in seen:
                continue
            seen.add(oid)
            todo.extend(children.get(oid, ()))
        left = sorted(set(records) - seen)
        return len(left), left[:most]


class Store(ABC):
    """A durable home for one domain. Engines implement these four methods."""

    #: URL scheme of the engine ("memory", "sqlite").
    scheme: str = ""
    #: the change history the engine keeps in its commits (issue 24), or None
    journal: Journal | None = None

    @abstractmethod
    def load(self) -> Image:
        """Read the whole domain (an empty :class:`Image` for a new store)."""

    @abstractmethod
    def commit(self, ops: list[Op], checksum: int,
               changes: Sequence[Change] = ()) -> None:
        """Apply *ops* atomically and durably, and store *checksum* with them.

        *changes* are the writes the batch is made of (``changes.Change``, one per write,
        in order, each with its touched directories' before and after states and its own
        ops, which *ops* holds in the same order, followed by the batch's bookkeeping: the
        sequence number, ``changes.SEQ_KEY``): what an engine journals in the same
        transaction (a change history) or checks (a shared engine: each touched
        directory's expected instance, ``Touched.before``). Empty for a batch that is no
        write (a new domain's root, a conversion).

        :raises StorageError: nothing was applied.
        """

    def exists(self) -> bool:
        """True when the store already holds a domain (any record)."""
        return bool(self.load().records)

    def dump(self) -> Dump:
        """The whole stored domain read a chunk at a time, in a read of its own
        (:class:`Dump`; close it). The default reads the :meth:`load`-ed image."""
        return ImageDump(self.load())

    #: True when an integrity check is left for :meth:`verify`, after start-up
    deferred_check = False
    #: what the integrity check found of damaged directories (issue 18 N20): one
    #: message each, naming the directory and how to repair it; the domain is served
    #: all the same, and reading one of them is refused
    found_damaged: list[str] = []

    def verify(self) -> str | None:
        """Run a deferred integrity check; what is wrong, or None (thread-safe)."""
        return None

    def interrupt_verify(self) -> None:
        """Cut a :meth:`verify` running in another thread short."""
        return None

    def source(self, cache: int | None = None,
               cache_bytes: int | None = None) -> NodeSource | None:
        """The stored domain read on demand, through a cache of about *cache* directories
        and *cache_bytes* bytes of stored proplists (None: the engine's defaults), or None
        when the engine has no such reader: the service then serves a :meth:`load`-ed
        image (docs/architecture.md,
        "Representation at scale")."""
        return None

    def claim(self, wait: bool = False,
              announce: Callable[[str], None] | None = None) -> None:
        """Become the domain's one writer, for an engine whose lock is its own (a shared
        engine: PostgreSQL's advisory lock); with *wait* (a standby) wait for it, telling
        *announce* who holds it. The default does nothing (a SQLite file is locked by
        its owner, server/database.py).

        :raises StorageError: another writer holds it (without *wait*).
        """
        return None

    def new_copy(self) -> NewCopy:
        """A whole new domain to be written beside this one (:class:`NewCopy`; may be
        called in a worker thread). The default collects an :class:`Image`."""
        return ImageCopy()

    def keep_aside(self, label: str) -> str | None:
        """Write a copy of the stored domain beside the store, its name ending in
        ``.LABEL``; its path, or None when the engine keeps no file (the default).
        :raises StorageError: nothing was kept."""
        return None

    def adopt(self, copy: NewCopy) -> None:
        """Swap in a finished *copy* of :meth:`new_copy` atomically: after a crash the
        store holds the old domain or the new one, never a mix. Engines whose copies are
        images never get here (the database replaces the tree instead).

        :raises StorageError: the old domain stays.
        """
        raise NotImplementedError(f"{type(self).__name__} copies are images")

    def side_reader(self) -> Any:
        """A ``cached.RowReader`` of the stored domain on a connection of its own, for a
        thread that reads while the writer commits (netinfod takes a store's round trips
        off the event loop: ``server.storeio``, issue 23 item 3), or None for an engine
        whose reads do not wait on a server (the default: SQLite reads a local file).
        It reads what is committed; the caller closes it."""
        return None

    def loop_reader(self) -> Any:
        """An engine's own way to run its hot reads on the event loop without waiting
        (``postgres_source.PgLoopReads``: ``names``, ``async read(name, args)``,
        ``close()``), or None: ``server.storeio`` then runs every fetch in a reader
        thread (the default)."""
        return None

    def keep_alive(self) -> None:
        """Between batches, about every second (netinfod): look at the connection to a
        store server (an engine with one: PostgreSQL) and replace it when it was lost,
        without waiting for a write. Nothing to do by default.

        :raises StoreDiverged: reconnected, but the domain is not as this writer
            committed it (``errors.StoreDiverged``).
        :raises StorageError: the connection is lost and not back yet.
        """
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the engine's resources."""


class DatabaseInUse(StorageError):
    """Another process holds the database open (one writer per database)."""

    def __init__(self, where: str, pid: int | None) -> None:
        self.where = where
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"database {where} is in use by {who}")


class WriterLock(ABC):
    """The one-writer lock of a database, held until :meth:`release`."""

    @abstractmethod
    def release(self) -> None:
        """Let another writer in (idempotent)."""


class Catalog(ABC):
    """The domains at one location of an engine (a directory for SQLite: ``DIR/TAG.nidb``):
    what nibindd serves (spec §6.4), ``nibindd --init`` and ``netinfod -m`` create and
    DESTROYDOMAIN removes. Tags are ``wire.nibind.valid_tag`` names."""

    @abstractmethod
    def domains(self) -> list[str]:
        """The tags of every domain held there, sorted."""

    @abstractmethod
    def url(self, tag: str) -> str:
        """The store URL of domain *tag* (``open_store``)."""

    @abstractmethod
    def where(self, tag: str) -> str:
        """How messages name domain *tag* ("database WHERE is in use by ...")."""

    @abstractmethod
    def exists(self, tag: str) -> bool:
        """True when domain *tag* is held there (in any form its engine converts)."""

    @abstractmethod
    def create(self, tag: str) -> None:
        """Make room for domain *tag* (its store is then opened with ``create``)."""

    @abstractmethod
    def destroy(self, tag: str) -> None:
        """Remove domain *tag* and whatever its copies left (never raises)."""

    @abstractmethod
    def check_free(self, tag: str) -> None:
        """:raises DatabaseInUse: a process holds domain *tag* (nothing is changed)."""


class Engine(ABC):
    """One storage engine: its stores, the one-writer lock of a store, what a crash left
    beside one, and its catalog of domains. Selected by a store URL's scheme
    (:func:`engine_of`); *rest* is the URL after ``scheme:`` (and ``//``)."""

    #: URL scheme ("memory", "sqlite")
    scheme: str = ""

    @abstractmethod
    def open(self, rest: str) -> Store:
        """The store *rest* names (a new, empty one when there is none yet).

        :raises StorageError: it cannot be opened."""

    def lock(self, rest: str, where: str) -> WriterLock | None:
        """Take the one-writer lock of store *rest* (None: the engine needs none).

        :raises DatabaseInUse: another process holds it, named in the message by *where*.
        """
        return None

    def discard_leftovers(self, rest: str) -> None:
        """Discard what an interrupted copy of store *rest* left (spec §9.5: a leftover
        ``.temp`` is never the domain). Called by the lock's holder, before opening."""
        return None

    @abstractmethod
    def catalog(self, location: str) -> Catalog:
        """The domains at *location* (SQLite: a directory)."""


def _memory() -> Engine:
    from .memory import MemoryEngine
    return MemoryEngine()


def _sqlite() -> Engine:
    from .sqlite_catalog import SqliteEngine
    return SqliteEngine()


def _postgres() -> Engine:
    from .postgres import PostgresEngine
    return PostgresEngine()


#: URL scheme → engine loader: the one extension point of storage. An engine is one more
#: row and one more module (issue 23: ``postgresql``, storage/postgres.py).
_ENGINES: dict[str, Callable[[], Engine]] = {
    "memory": _memory, "sqlite": _sqlite, "postgresql": _postgres, "postgres": _postgres,
}
#: Schemes whose engine takes the URL whole (libpq's URL form: ``//host`` matters).
_WHOLE_URL = frozenset({"postgresql", "postgres"})
_LOADED: dict[str, Engine] = {}


def engine(scheme: str) -> Engine:
    """The engine of URL scheme *scheme*.

    :raises ValueError: unknown scheme."""
    e = _LOADED.get(scheme)
    if e is None:
        if scheme not in _ENGINES:
            raise ValueError(f"unknown storage scheme {scheme!r}")
        e = _LOADED[scheme] = _ENGINES[scheme]()
    return e


def engine_of(url: str) -> tuple[Engine, str]:
    """The engine of a store URL and the rest of the URL (``sqlite:///abs/path`` →
    the SQLite engine, ``/abs/path``).

    :raises ValueError: unknown scheme."""
    scheme, _, rest = url.partition(":")
    if scheme in _WHOLE_URL:
        return engine(scheme), url
    if rest.startswith("//"):
        rest = rest[2:]
    return engine(scheme), rest


def open_store(url: str) -> Store:
    """Open a store from a URL: ``memory:`` (``memory:NAME``: one kept for the process),
    ``sqlite:PATH`` (``sqlite:///abs/path`` too) or ``postgresql://...?domain=NAME``
    (storage/postgres.py).

    :raises ValueError: unknown scheme.
    """
    e, rest = engine_of(url)
    return e.open(rest)


def open_catalog(url: str) -> Catalog:
    """The catalog a location URL names: ``sqlite:DIR`` (every ``DIR/TAG.nidb``),
    ``memory:NAME`` (the ``memory:NAME/TAG`` stores of this process).

    :raises ValueError: unknown scheme."""
    e, rest = engine_of(url)
    return e.catalog(rest)


#: Op type → the types of its fields, for :func:`validate_ops`.
_SHAPES: dict[type, tuple[type, ...]] = {Put: (int, int, int, list), Free: (int, int),
                                         KidIns: (int, int, int), KidDel: (int, int),
                                         Reset: (), Meta: (str, int)}


def validate_ops(ops: list[Op]) -> None:
    """Check every op's type and field types before anything is applied.

    :raises StorageError: a malformed op (the batch must then be refused whole).
    """
    for op in ops:
        shape = _SHAPES.get(type(op))
        if shape is None or len(op) != len(shape) or not all(
                isinstance(v, t) for v, t in zip(op, shape, strict=True)):
            raise StorageError(f"malformed storage op {op!r}")


def _put(image: Image, op: Put) -> None:
    image.records[op.id] = Record(op.instance, op.parent, [(k, list(v)) for k, v in op.props])
    image.freed.pop(op.id, None)


def _kid_ins(image: Image, op: KidIns) -> None:
    image.children.setdefault(op.parent, []).insert(op.pos, op.child)


def _kid_del(image: Image, op: KidDel) -> None:
    kids = image.children.get(op.parent)
    if kids and op.child in kids:
        kids.remove(op.child)
        if not kids:
            del image.children[op.parent]


def _free(image: Image, op: Free) -> None:
    image.records.pop(op.id, None)
    image.children.pop(op.id, None)
    image.freed[op.id] = op.instance


def _reset(image: Image, op: Reset) -> None:
    image.records.clear()
    image.children.clear()
    image.freed.clear()
    image.meta.clear()


def _meta(image: Image, op: Meta) -> None:
    image.meta[op.key] = op.value


#: Op type → how it changes an in-memory :class:`Image` (the memory engine's dispatch).
_APPLY: dict[type, Callable[[Image, Any], None]] = {
    Put: _put, KidIns: _kid_ins, KidDel: _kid_del, Free: _free, Reset: _reset, Meta: _meta}


def apply_ops(image: Image, ops: list[Op]) -> None:
    """Apply validated *ops* to an in-memory :class:`Image` (the memory engine's commit)."""
    for op in ops:
        fn = _APPLY.get(type(op))
        if fn is None:
            raise ValueError(f"unknown storage op {op!r}")
        fn(image, op)


__all__ = ["Store", "Dump", "ImageDump", "DirRow", "Image", "Record", "Op", "Put", "Free",
           "KidIns", "KidDel", "Reset", "Meta",
           "RESET", "NewCopy", "ImageCopy", "open_store", "apply_ops", "validate_ops",
           "Engine", "Catalog", "WriterLock", "DatabaseInUse", "engine", "engine_of",
           "open_catalog"]
