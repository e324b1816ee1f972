"""A resident LOOKUP index of one key of one directory (issue 23: lookups of a
million users without a store round trip; issue 20: without a store query).

LOOKUP reads the store's persisted index (spec §4.4, §5.4): a B-tree descent or three in
SQLite (10-14 us at 1,000,000 users), a network round trip to PostgreSQL (about 40-55 us
here). A directory asked again and again for one key (``/users`` by ``name``) gets a
copy of that index in memory instead, built off the event loop from a snapshot
(``CachedSource.index_job``) and kept equal to the store's committed state by the
directories that become durable (:meth:`KeyIndex.set`).

Compact, not a dict: a dict of a million bytes keys costs about 120 MB in CPython. Here
each entry is a 64-bit hash (Python's own ``hash`` of the value: SipHash, keyed at
random per process, so nobody outside can pick colliding values), its child number and
the end of its value in one byte string, and a hash table of entry numbers (open
addressing, linear probing, at most half full) finds them: 24 bytes and the value's own
bytes (about 34 MB for a million ``userNNNNNN``). A lookup reads a slot or two and
compares the value itself, so a hash collision costs a comparison more, never a wrong
answer. (A sorted array and ``bisect`` took 20 probes at a million, each a cache miss
once the server shares its cores with clients: issue 20's profile.)

Entries changed since the build live in a small overlay (:attr:`KeyIndex.changed`), which
wins over the built arrays; past :func:`too_changed` the source drops the index and
builds it again later. A value held by two or more children is answered None ("ask
the store"), which orders them by child position (spec §4.4: LOOKUP answers in
child-list order); that is rare for the keys asked this often.

Pure: no I/O; the source's reader gives the pairs (``RowReader.pairs``).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

#: Entries a built index may hold in all, bytes of values included, before the build is
#: given up (one source keeps at most :data:`MAX_BYTES` in all: ``CachedSource``).
MAX_BYTES = 256 << 20
#: Changed entries past which an index is dropped (and built again from the store once
#: lookups ask for it): at least this many, or a quarter of the built entries. A
#: quarter keeps the total work of the rebuilds of a growing directory within a few
#: times its final size (geometric growth).
CHANGED_MIN = 4096
#: Bytes an entry costs besides its value, as the arrays hold them: its hash (8), its
#: child (4), the end of its value (4: the values of one index stay under MAX_BYTES, far
#: below 4 GiB) and two slots of the table (2 x 4: at most half full; up to four when
#: the table has just doubled, which :attr:`KeyIndex.nbytes` counts).
ENTRY_BYTES = 8 + 4 + 4 + 2 * 4

class TooBig(Exception):
    """The index would pass its byte bound: not built."""


class KeyIndex:
    """A directory's children by their first values of one key (see the module):
    :meth:`find` answers LOOKUP's children for a value, :meth:`set` records a child's
    values as they became durable."""

    __slots__ = ("_hashes", "_slots", "_mask", "_kids", "_ends", "_blob", "changed",
                 "_by_value", "hits", "nbytes", "entries")

    def __init__(self, pairs: Iterable[tuple[bytes, int]], max_bytes: int = MAX_BYTES) -> None:
        """Build from *pairs* (value, child), the store's index rows of one key under
        one directory, in any order.

        :raises TooBig: past *max_bytes* (values included); nothing is kept then.
        """
        hashes = array("q")
        kids = array("I")
        ends = array("I")
        blob = bytearray()
        for value, child in pairs:
            hashes.append(hash(value))
            kids.append(child)
            blob += value
            ends.append(len(blob))
            if len(blob) + ENTRY_BYTES * len(kids) > max_bytes:
                raise TooBig(f"over {max_bytes} bytes")
        # Slot i holds entry j as j + 1 (0: empty). A Python loop, not one C call: the
        # build runs in a thread, and the loop gives the event loop its turns.
        size = 1 << max(3, (2 * len(kids)).bit_length())
        mask = size - 1
        slots = array("I", bytes(4 * size))
        for j, h in enumerate(hashes, 1):
            i = h & mask
            while slots[i]:
                i = (i + 1) & mask
            slots[i] = j
        self._hashes = hashes
        self._slots = slots
        self._mask = mask
        self._kids = kids
        self._ends = ends
        self._blob = bytes(blob)
        #: child → its values since the build (empty: it matches nothing any more)
        self.changed: dict[int, tuple[bytes, ...]] = {}
        #: value → the changed children holding it
        self._by_value: dict[bytes, set[int]] = {}
        #: lookups answered
        self.hits = 0
        self.entries = len(kids)
        self.nbytes = len(self._blob) + 16 * self.entries + 4 * size

    def find(self, value: bytes) -> list[int] | None:
        """The children holding *value*: none or one, or None when two or more do (the
        caller asks the store, which orders them)."""
        h = hash(value)
        slots, hashes, mask = self._slots, self._hashes, self._mask
        i = h & mask
        j = slots[i]
        hits: list[int] = []
        while j:
            j -= 1
            if hashes[j] == h:
                ends = self._ends
                if self._blob[ends[j - 1] if j else 0:ends[j]] == value:
                    child = self._kids[j]
                    if child not in self.changed:
                        hits.append(child)
            i = (i + 1) & mask
            j = slots[i]
        more = self._by_value.get(value)
        if more:
            hits.extend(more)
        if len(hits) > 1:
            return None
        self.hits += 1
        return hits

    def set(self, child: int, values: tuple[bytes, ...]) -> None:
        """*child*'s values of the key as they are now durable (none: it was destroyed,
        lost the property, or is not this directory's child)."""
        by_value = self._by_value
        for v in self.changed.get(child, ()):
            holders = by_value.get(v)
            if holders is not None:
                holders.discard(child)
                if not holders:
                    del by_value[v]
        self.changed[child] = values
        for v in values:
            by_value.setdefault(v, set()).add(child)

    def too_changed(self) -> bool:
        """Changed past :data:`CHANGED_MIN` and a quarter of the entries built."""
        return len(self.changed) > max(CHANGED_MIN, self.entries // 4)
