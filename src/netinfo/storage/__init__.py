"""The storage contract: how the directory service persists a domain.

The service (spec semantics, ``service.py``) holds the working copy of a domain and sends
every change to its store as an ordered list of primitive operations. The store makes a
batch durable before :meth:`Store.commit` returns; that is what lets the server
acknowledge a write only once it is on disk (issue "crash-safe store").

Operations, applied in order inside one atomic transaction:

``("put", id, instance, parent, props)``
    create or replace the directory's own record (not its child list).
``("free", id, last_instance)``
    the directory (and its own child list) is gone; remember its last instance (spec §5.3:
    a reused number continues from it).
``("kid_ins", parent, index, child)``
    insert *child* at position *index* of *parent*'s child list (as ``list.insert``: an
    index past the end appends).
``("kid_del", parent, child)``
    remove the first occurrence of *child* from *parent*'s child list (none: no-op).
``("reset",)``
    forget everything (full transfer, whole-database load).

Every batch ends with the new database checksum (spec §5.6), stored with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..model import Proplist

Op = tuple[Any, ...]


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


_SHAPES = {"put": (int, int, int, list), "free": (int, int), "kid_ins": (int, int, int),
           "kid_del": (int, int), "reset": ()}


def validate_ops(ops: list[Op]) -> None:
    """Check every op's kind and field types before anything is applied.

    :raises StorageError: a malformed op (the batch must then be refused whole).
    """
    from ..errors import StorageError  # noqa: PLC0415 - errors is pure; avoid a cycle
    for op in ops:
        shape = _SHAPES.get(op[0]) if isinstance(op, tuple) and op else None
        if shape is None or len(op) != len(shape) + 1 or not all(
                isinstance(v, t) for v, t in zip(op[1:], shape)):
            raise StorageError(f"malformed storage op {op!r}")


def apply_ops(image: Image, ops: list[Op]) -> None:
    """Apply validated *ops* to an in-memory :class:`Image` (the memory engine's commit)."""
    records, children, freed = image.records, image.children, image.freed
    for op in ops:
        kind = op[0]
        if kind == "put":
            _, oid, inst, parent, props = op
            records[oid] = Record(inst, parent, [(k, list(v)) for k, v in props])
            freed.pop(oid, None)
        elif kind == "kid_ins":
            _, parent, index, child = op
            children.setdefault(parent, []).insert(index, child)
        elif kind == "kid_del":
            _, parent, child = op
            kids = children.get(parent)
            if kids and child in kids:
                kids.remove(child)
                if not kids:
                    del children[parent]
        elif kind == "free":
            _, oid, inst = op
            records.pop(oid, None)
            children.pop(oid, None)
            freed[oid] = inst
        elif kind == "reset":
            records.clear()
            children.clear()
            freed.clear()
        else:
            raise ValueError(f"unknown storage op {kind!r}")


__all__ = ["Store", "Image", "Record", "Op", "open_store", "apply_ops", "validate_ops"]
