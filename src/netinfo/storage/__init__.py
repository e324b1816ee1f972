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

Each engine dispatches on the op's type through one table of its own.
Every batch ends with the new database checksum (spec §5.6), stored with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..model import Proplist

if TYPE_CHECKING:
    from ..nodes import NodeSource


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


#: One storage operation.
Op = Put | Free | KidIns | KidDel | Reset
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


class Store(ABC):
    """A durable home for one domain. Engines implement these four methods."""

    #: URL scheme of the engine ("memory", "sqlite").
    scheme: str = ""

    @abstractmethod
    def load(self) -> Image:
        """Read the whole domain (an empty :class:`Image` for a new store)."""

    @abstractmethod
    def commit(self, ops: list[Op], checksum: int) -> None:
        """Apply *ops* atomically and durably, and store *checksum* with them.

        :raises StorageError: nothing was applied.
        """

    def exists(self) -> bool:
        """True when the store already holds a domain (any record)."""
        return bool(self.load().records)

    #: True when an integrity check is left for :meth:`verify`, after start-up
    deferred_check = False

    def verify(self) -> str | None:
        """Run a deferred integrity check; what is wrong, or None (thread-safe)."""
        return None

    def interrupt_verify(self) -> None:
        """Cut a :meth:`verify` running in another thread short."""
        return None

    def source(self, cache: int | None = None) -> NodeSource | None:
        """The stored domain read on demand, through a cache of about *cache* directories
        (None: the engine's default), or None when the engine has no such reader: the
        service then serves a :meth:`load`-ed image (docs/architecture.md,
        "Representation at scale")."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the engine's resources."""


_ENGINES: dict[str, Callable[[str], Store]] = {}


def _memory(rest: str) -> Store:
    from .memory import MemoryStore
    return MemoryStore()


def _sqlite(rest: str) -> Store:
    from .sqlite import SqliteStore
    return SqliteStore(rest)


#: URL scheme → engine factory: the one extension point of storage.
_ENGINES.update({"memory": _memory, "sqlite": _sqlite})


def open_store(url: str) -> Store:
    """Open a store from a URL: ``memory:`` or ``sqlite:PATH`` (``sqlite:///abs/path`` too).

    :raises ValueError: unknown scheme.
    """
    scheme, _, rest = url.partition(":")
    if scheme not in _ENGINES:
        raise ValueError(f"unknown storage scheme {scheme!r}")
    if rest.startswith("//"):
        rest = rest[2:]
    return _ENGINES[scheme](rest)


#: Op type → the types of its fields, for :func:`validate_ops`.
_SHAPES: dict[type, tuple[type, ...]] = {Put: (int, int, int, list), Free: (int, int),
                                         KidIns: (int, int, int), KidDel: (int, int),
                                         Reset: ()}


def validate_ops(ops: list[Op]) -> None:
    """Check every op's type and field types before anything is applied.

    :raises StorageError: a malformed op (the batch must then be refused whole).
    """
    from ..errors import StorageError  # noqa: PLC0415 - errors is pure; avoid a cycle
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


#: Op type → how it changes an in-memory :class:`Image` (the memory engine's dispatch).
_APPLY: dict[type, Callable[[Image, Any], None]] = {
    Put: _put, KidIns: _kid_ins, KidDel: _kid_del, Free: _free, Reset: _reset}


def apply_ops(image: Image, ops: list[Op]) -> None:
    """Apply validated *ops* to an in-memory :class:`Image` (the memory engine's commit)."""
    for op in ops:
        fn = _APPLY.get(type(op))
        if fn is None:
            raise ValueError(f"unknown storage op {op!r}")
        fn(image, op)


__all__ = ["Store", "Image", "Record", "Op", "Put", "Free", "KidIns", "KidDel", "Reset",
           "RESET", "open_store", "apply_ops", "validate_ops"]
