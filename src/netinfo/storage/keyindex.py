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
random per process, so nobody outside can pick colliding values), the entry's position,
its child number and the end of its value in one byte string: 20 bytes and the value's
own bytes (about 30 MB for a million ``userNNNNNN``). The hashes are sorted; a lookup is
one ``bisect`` in C and a comparison of the value itself, so a hash collision costs a
comparison more, never a wrong answer.

Entries changed since the build live in a small overlay (:attr:`KeyIndex.changed`), which
wins over the built arrays; past :func:`too_changed` the source drops the index and
builds it again later. A value held by two or more children is answered None ("ask
the store"), which orders them by child position (spec §4.4: LOOKUP answers in
child-list order); that is rare for the keys asked this often.

Pure: no I/O; the source's reader gives the pairs (``RowReader.pairs``).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
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
#: position (4), its child (4) and the end of its value (4: the values of one index
#: stay under MAX_BYTES, far below 4 GiB).
ENTRY_BYTES = 8 + 4 + 4 + 4


class TooBig(Exception):
    """The index would pass its byte bound: not built."""


class KeyIndex:
    """A directory's children by their first values of one key (see the module):
    :meth:`find` answers LOOKUP's children for a value, :meth:`set` records a child's
    values as they became durable."""

    __slots__ = ("_hashes", "_pos", "_kids", "_ends", "_blob", "changed", "_by_value",
                 "hits", "nbytes", "entries")

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
        # Sorted a bucket of the top eight bits at a time: one sort of the whole would
        # hold the interpreter lock for half a second at a million entries (a C call
        # gives it up to no other thread); a bucket's takes a few milliseconds, and
        # the loop around them lets the event loop in (the build runs in a thread).
        buckets: list[list[int]] = [[] for _ in range(256)]
        for i, h in enumerate(hashes):
            buckets[(h >> 56) + 128].append(i)
        self._hashes = array("q")
        self._pos = array("I")
        for bucket in buckets:
            bucket.sort(key=hashes.__getitem__)
            self._pos.extend(bucket)
            self._hashes.extend(map(hashes.__getitem__, bucket))
        del buckets, hashes
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
        self.nbytes = len(self._blob) + ENTRY_BYTES * self.entries

    def find(self, value: bytes) -> list[int] | None:
        """The children holding *value*: none or one, or None when two or more do (the
        caller asks the store, which orders them)."""
        hashes = self._hashes
        h = hash(value)
        i = bisect_left(hashes, h)
        n = len(hashes)
        hits: list[int] = []
        if i < n and hashes[i] == h:
            pos, ends, blob, kids, changed = (self._pos, self._ends, self._blob,
                                              self._kids, self.changed)
            while i < n and hashes[i] == h:
                j = pos[i]
                if blob[ends[j - 1] if j else 0:ends[j]] == value:
                    child = kids[j]
                    if child not in changed:
                        hits.append(child)
                i += 1
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
