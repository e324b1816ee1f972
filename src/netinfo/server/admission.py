"""Which answers the kept-answer tables take in (issue 20: a doorkeeper, as TinyLFU
puts one before its cache).

The short paths keep answers to repeated reads (``fastpath.FastPath`` for NETINFO,
``nis.NisDoor`` for MATCH): a hit is a copy of bytes instead of a read of the store.
When the reads are spread over more keys than a table holds — random users out of a
million — keeping every miss costs more than the hits it brings: each miss then adds
an entry and pushes an older one out, a few hundred bytes allocated and freed and the
table's links touched at random (measured at 1,000,000 users, 4 clients: 48 µs of
server CPU a lookup keeping every miss, 36 µs keeping none).

A :class:`Doorkeeper` lets an answer in the second time its key misses within the last
*window* misses: a read asked again soon is kept (at 1,000 users every one is, from its
second call on), one read once in a long while never enters. It remembers the keys'
hashes only (Python's own, keyed at random per process): a collision can only let an
answer in early, never change one. Bounded: at most *window* hashes, forgotten all at
once when full.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable


class Doorkeeper:
    """The admission of one kept-answer table (see the module)."""

    __slots__ = ("_seen", "window", "admitted", "refused")

    def __init__(self, window: int) -> None:
        """*window*: misses remembered at most (their hashes), as many as the table
        keeps entries."""
        self._seen: set[int] = set()
        self.window = window
        #: answers let in, and misses turned away (a first sighting)
        self.admitted = 0
        self.refused = 0

    def admit(self, key: Hashable) -> bool:
        """May the answer to *key*, a miss just answered, be kept?"""
        h = hash(key)
        seen = self._seen
        if h in seen:
            seen.discard(h)
            self.admitted += 1
            return True
        if len(seen) >= self.window:
            seen.clear()
        seen.add(h)
        self.refused += 1
        return False

    def __len__(self) -> int:
        return len(self._seen)
