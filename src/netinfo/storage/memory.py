"""The memory engine: the reference implementation of the store contract, for tests."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..model import Proplist
from . import Image, Op, Store, apply_ops, validate_ops
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
