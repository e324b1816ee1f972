"""NIS maps held in memory whole (issue 21: MATCH of any of a million users at about the
cost of a kept answer, as ypserv's ``makedbm`` maps give it, but live).

A MATCH that misses the kept answers (``NisDoor._hot``) renders its line from the
domain: the resident LOOKUP index finds the child, the store gives its stored bytes, the
map's properties are scanned out of them and the line is made: about 20 µs of Python at a
million users against ypserv's 12 µs for its whole call. A map asked often enough
(``nis.RESIDENT_AFTER`` misses) is instead read once from a snapshot of the domain, on
the event loop in turns (``nis.NisDoor``: it answers from what was read so far), into a
:class:`ResidentMap`: every entry's key and finished MATCH result body in one byte
string, found through an open-addressing table (linear probing, at most half full) whose
slots hold each entry's place and 32 bits of its key's hash, so a MATCH reads a slot or
two and the entry: at a million entries each read is a cache miss, and a table of entry
numbers beside arrays of hashes and places took two more.

It stays live without polling: every write's record (``Database.subscribe``) names the
directories it touched with their properties before and after; the keys of the map's
entries of both (``MapSpec.entries``) are marked :meth:`ResidentMap.forget`, and such a
key is answered from the domain again (the usual way) until the map is read anew, which
the door does once too many keys are marked (:meth:`ResidentMap.too_changed`). So the
map answers only keys that no write touched since the snapshot it was read from; a key
it does not hold (a new user, a key that does not exist) goes the usual way too, so it
never answers "no such key". A key two directories hold (``makedbm`` keeps the first,
LOOKUP orders them by child position) is never answered from here either.

Memory: each entry costs its key and body (a passwd line and 8 bytes of XDR) and
:data:`ENTRY_BYTES` more; a door holds at most its budget of them
(``netinfod --nis-resident-mb``), a map that would pass it is not read, nor one past
4 GiB (a slot holds its entry's place in 32 bits).

Pure: no I/O. The door reads the snapshot and feeds the pieces (:func:`entry_bytes`).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable

from ..storage.keyindex import TooBig

#: An entry as the pieces carry it and the map keeps it: the key's and the body's
#: lengths, then both (a key is at most YPMAXRECORD bytes, a body YPMAXRECORD + 8).
_LENGTHS = struct.Struct(">HH")
#: What an entry costs besides its key and body: its lengths (4) and two slots of the
#: table (2 x 8: at most half full; a slot holds the entry's start in the blob and 32
#: bits of its key's hash, so that a lookup reads one slot and the entry, no more).
ENTRY_BYTES = 4 + 2 * 8
#: the low 32 bits
_LOW = 0xFFFFFFFF
#: Keys marked past which a map is read anew: at least this many, or an eighth of its
#: entries (each such key costs a MATCH the usual way, and its key in a set).
FORGOTTEN_MIN = 4096


def _table(entries: int) -> tuple[array[int], int]:
    """An empty table with room for *entries* (at most half full), and its mask."""
    size = 1 << max(3, (2 * entries).bit_length())
    return array("Q", bytes(8 * size)), size - 1


def entry_bytes(key: bytes, body: bytes) -> bytes:
    """One entry of a piece: *key* and the MATCH result *body* answering it."""
    return _LENGTHS.pack(len(key), len(body)) + key + body


class ResidentMap:
    """One map's entries (see the module): fed pieces of :func:`entry_bytes`
    (:meth:`feed`), in the directory's child order, and asked (:meth:`body`) from the
    first piece on: an entry fed is the answer the domain gives for its key (the first
    child holding it, as of the snapshot) until a write makes the key forgotten."""

    __slots__ = ("_blob", "_slots", "_mask", "_max_bytes", "forgotten", "entries",
                 "nbytes", "state", "hits", "seconds")

    def __init__(self, max_bytes: int, expected: int = 0, state: int = 0) -> None:
        """*expected*: about how many entries will be fed (the table is made for them
        at once; past half full it doubles, one pass over the entries fed)."""
        self._blob = bytearray()
        self._slots, self._mask = _table(expected)
        self._max_bytes = min(max_bytes, _LOW)   # every place fits a slot's 32 bits
        #: keys answered the usual way: touched by a write since the snapshot, or held by
        #: two entries
        self.forgotten: set[bytes] = set()
        self.entries = 0
        self.nbytes = 8 * len(self._slots)
        #: the door's read state (``Database.read_state``) the snapshot was taken at
        self.state = state
        #: MATCHes answered from the map
        self.hits = 0
        #: how long reading it took (the door's cooldown before it is read again)
        self.seconds = 0.0

    @property
    def room(self) -> int:
        """The bytes the map may take at most."""
        return self._max_bytes

    def reserve(self, expected: int) -> None:
        """Make the table for about *expected* entries (before the first piece)."""
        if not self.entries:
            self._slots, self._mask = _table(expected)
            self.nbytes = 8 * len(self._slots)

    def feed(self, piece: bytes) -> None:
        """Take the entries of *piece* (:func:`entry_bytes`, concatenated).

        :raises TooBig: past the budget; the caller drops the map.
        :raises ValueError: *piece* is not whole entries.
        """
        blob = self._blob
        at, end = 0, len(piece)
        unpack = _LENGTHS.unpack_from
        base = len(blob)
        new: list[tuple[int, bytes]] = []
        while at < end:
            if at + 4 > end:
                raise ValueError("a piece ends inside an entry")
            klen, blen = unpack(piece, at)
            nxt = at + 4 + klen + blen
            if nxt > end:
                raise ValueError("a piece ends inside an entry")
            new.append((base + at, piece[at + 4:at + 4 + klen]))
            at = nxt
        entries = self.entries + len(new)
        if len(blob) + len(piece) + ENTRY_BYTES * entries > self._max_bytes:
            raise TooBig(f"over {self._max_bytes} bytes")
        blob += piece
        if 2 * entries > self._mask:
            self._grow(entries)
        for start, key in new:
            self._put(start, key)
        self.entries = entries
        self.nbytes = len(blob) + 4 * entries + 8 * len(self._slots)

    def _put(self, start: int, key: bytes) -> None:
        """Slot the entry at *start* of the blob, whose key is *key*: a key held twice
        is forgotten (answered the usual way, which orders its holders)."""
        slots, mask = self._slots, self._mask
        h = hash(key)
        tag = (h >> 32) & _LOW
        i = h & mask
        s = slots[i]
        while s:
            if s >> 32 == tag and self._key((s & _LOW) - 1) == key:
                self.forgotten.add(key)
            i = (i + 1) & mask
            s = slots[i]
        slots[i] = tag << 32 | (start + 1)

    def _grow(self, entries: int) -> None:
        old = self._slots
        self._slots, self._mask = _table(entries)
        for s in old:
            if s:
                start = (s & _LOW) - 1
                self._put(start, self._key(start))

    def _key(self, start: int) -> bytes:
        blob = self._blob
        klen = blob[start] << 8 | blob[start + 1]
        return bytes(blob[start + 4:start + 4 + klen])

    def body(self, key: bytes) -> bytes | None:
        """The MATCH result body of *key*, or None: ask the domain (not held, or
        forgotten)."""
        h = hash(key)
        mask = self._mask
        slots = self._slots
        i = h & mask
        s = slots[i]
        tag = (h >> 32) & _LOW
        while s:
            if s >> 32 == tag:
                blob = self._blob
                at = (s & _LOW) - 1
                klen, blen = _LENGTHS.unpack_from(blob, at)
                k = at + 4 + klen
                if blob[at + 4:k] == key:
                    if key in self.forgotten:
                        return None
                    self.hits += 1
                    return bytes(blob[k:k + blen])
            i = (i + 1) & mask
            s = slots[i]
        return None

    def forget(self, keys: Iterable[bytes]) -> None:
        """*keys* are answered the usual way from now on (a write touched them)."""
        self.forgotten.update(keys)

    def too_changed(self) -> bool:
        """Forgotten past :data:`FORGOTTEN_MIN` and an eighth of the entries."""
        return len(self.forgotten) > max(FORGOTTEN_MIN, self.entries // 8)


__all__ = ["ResidentMap", "entry_bytes", "ENTRY_BYTES", "FORGOTTEN_MIN", "TooBig"]
