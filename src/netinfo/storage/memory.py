"""The memory engine: the reference implementation of the store contract, for tests.

``memory:`` is a new store of its own each time; ``memory:NAME`` is kept for the life of
the process, so that it can be opened again, locked against a second writer and listed by
a catalog (``memory:LOC`` holds the stores ``memory:LOC/TAG``): the same engine methods
as SQLite's, for the contract tests of every engine.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..model import Proplist
from . import (
    Catalog,
    DatabaseInUse,
    Engine,
    Image,
    Op,
    Store,
    WriterLock,
    apply_ops,
    validate_ops,
)
from .journal import MemoryJournal

if TYPE_CHECKING:
    from .changes import Change


class MemoryStore(Store):
    """Keeps the domain in process memory; "durable" until the process ends."""

    scheme = "memory"

    def __init__(self) -> None:
        self._image = Image()
        self.journal: MemoryJournal = MemoryJournal()

    def _lookup(self, oid: int) -> tuple[int, Proplist] | None:
        r = self._image.records.get(oid)
        return None if r is None else (r.parent, r.props)

    def load(self) -> Image:
        return copy.deepcopy(self._image)

    def exists(self) -> bool:
        return bool(self._image.records)

    def commit(self, ops: list[Op], checksum: int,
               changes: Sequence[Change] = ()) -> None:
        validate_ops(ops)  # all or nothing: a malformed batch changes nothing
        self.journal.record(changes, self._lookup)   # the history (issue 24)
        apply_ops(self._image, ops)
        self._image.checksum = checksum

    def close(self) -> None:
        pass


#: ``memory:NAME`` → its store, for the process's life
_NAMED: dict[str, MemoryStore] = {}
#: names whose one-writer lock is held
_HELD: set[str] = set()


class MemoryLock(WriterLock):
    """The writer's lock of a named memory store (within this process)."""

    def __init__(self, name: str, where: str) -> None:
        if name in _HELD:
            raise DatabaseInUse(where, None)
        _HELD.add(name)
        self._name: str | None = name

    def release(self) -> None:
        if self._name is not None:
            _HELD.discard(self._name)
            self._name = None


class MemoryCatalog(Catalog):
    """The named stores ``memory:LOC/TAG`` of this process."""

    def __init__(self, location: str) -> None:
        self._prefix = f"{location}/"

    def domains(self) -> list[str]:
        n = len(self._prefix)
        return sorted(name[n:] for name, st in _NAMED.items()
                      if name.startswith(self._prefix) and st.exists())

    def url(self, tag: str) -> str:
        return f"memory:{self._prefix}{tag}"

    def where(self, tag: str) -> str:
        return self.url(tag)

    def exists(self, tag: str) -> bool:
        st = _NAMED.get(self._prefix + tag)
        return st is not None and st.exists()

    def create(self, tag: str) -> None:
        _NAMED.setdefault(self._prefix + tag, MemoryStore())

    def destroy(self, tag: str) -> None:
        _NAMED.pop(self._prefix + tag, None)

    def check_free(self, tag: str) -> None:
        if self._prefix + tag in _HELD:
            raise DatabaseInUse(self.where(tag), None)


class MemoryEngine(Engine):
    """``memory:`` stores; nothing is left beside them by a crash (the process is gone)."""

    scheme = "memory"

    def open(self, rest: str) -> MemoryStore:
        if not rest:
            return MemoryStore()
        st = _NAMED.get(rest)
        if st is None:
            st = _NAMED[rest] = MemoryStore()
        return st

    def lock(self, rest: str, where: str) -> WriterLock | None:
        return MemoryLock(rest, where) if rest else None

    def catalog(self, location: str) -> MemoryCatalog:
        return MemoryCatalog(location)
