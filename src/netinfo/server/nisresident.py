"""NIS maps held in memory whole (issue 21: MATCH of any of a million users at about the
cost of a kept answer, as ypserv's ``makedbm`` maps give it, but live).

A MATCH that misses the kept answers (``NisDoor._hot``) renders its line from the
domain: the resident LOOKUP index finds the child, the store gives its stored bytes, the
map's properties are scanned out of them and the line is made: about 20 µs of Python at a
million users against ypserv's 12 µs for its whole call. A map asked often enough
(``nis.RESIDENT_AFTER`` misses) is instead read once from a snapshot of the domain, on
the event loop in turns (``nis.NisDoor``: it answers from what was read so far), into a
:class:`ResidentMap`: every entry's key and finished MATCH result body, one after the
other in a few regions of memory, found through an open-addressing table (linear
probing, at most half full) whose slots hold each entry's region, its place there and 20
bits of its key's hash, so a MATCH reads a slot or two and the entry: at a million
entries each read is a cache miss, and a table of entry numbers beside arrays of hashes
and places took two more. The regions, and a big table, come from the memory the
caller gives (:data:`Memory`): ``server/residents`` gives anonymous memory maps, the big
ones (:data:`HUGE_FROM`) in huge pages, so a random read costs a cache miss but seldom a
page walk too (a slot read took 155 ns instead of 220–250 at a million entries,
measured), and a map dropped gives its memory back to the system at once.

Keys are kept as a YP call carries them, XDR strings (length, bytes, padding:
:func:`xdr_key`), so the door asks with the call's own bytes (:meth:`ResidentMap.answer`)
and the comparison is of the key's length, then of its bytes; :meth:`ResidentMap.body` asks
with a plain key.

It stays live without polling: every write's record (``Database.subscribe``) names the
directories it touched with their properties before and after; the keys of the map's
entries of both (``MapSpec.entries``) are marked :meth:`ResidentMap.forget`, and such a
key is answered from the domain again (the usual way) until the map is read anew, which
the door does once too many keys are marked (:meth:`ResidentMap.too_changed`). So the
map answers only keys that no write touched since the snapshot it was read from; a key
it does not hold (a new user, a key that does not exist) goes the usual way too, so it
never answers "no such key". A key two directories hold (``makedbm`` keeps the first,
LOOKUP orders them by child position) is never answered from here either.

Memory: each entry costs its key and body (a passwd line and 8 bytes of XDR), 2 to 5
bytes of XDR length and padding, and :data:`ENTRY_BYTES` more; a door holds at most its
budget of them (``netinfod --nis-resident-mb``), a map that would pass it is not read.

Pure: no I/O. The door reads the snapshot and feeds the pieces (:func:`entry_bytes`).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterable
from typing import Protocol, TypeAlias, overload

from ..storage.keyindex import TooBig
from ..wire.xdr import opaque

#: An entry as the pieces carry it and the map keeps it: the body's length, the key as
#: an XDR string (:func:`xdr_key`), the body (at most 0xFFFF bytes; a YP body is at most
#: YPMAXRECORD + 8)
_BLEN = struct.Struct(">H")
#: What an entry costs besides its key and body: the body's length (2) and two slots of
#: the table (2 x 8: at most half full; a slot holds the entry's region, its place there
#: and 20 bits of its key's hash, so that a lookup reads one slot and the entry, no more).
ENTRY_BYTES = 2 + 2 * 8
#: A slot: the tag (the key hash's top 20 bits) above the region's number (19 bits, from
#: 1: a slot is never 0) above the entry's place in its region (25 bits).
_PLACE_BITS = 25
_PLACE = (1 << _PLACE_BITS) - 1
_REGION_BITS = 19
_REGION = (1 << _REGION_BITS) - 1
_TAG_SHIFT = _PLACE_BITS + _REGION_BITS
_TAG = (1 << (64 - _TAG_SHIFT)) - 1
#: The regions' sizes: the first at least REGION_MIN, each next one twice the last, up
#: to REGION_MAX (a place is 25 bits): what is never written takes no memory
REGION_MIN = 1 << 16
REGION_MAX = 1 << _PLACE_BITS
#: Tables from this size on come from the memory given (the rest are arrays); the memory
#: ``server/residents`` gives is in huge pages from this size on (a small map does not
#: take 2 MiB for its few entries)
HUGE_FROM = 4 << 20
#: The largest entry: its body's length, the key's XDR string, the body
_ENTRY_MAX = 2 + 4 + 0xFFFF + 3 + 0xFFFF
#: Keys marked past which a map is read anew: at least this many, or an eighth of its
#: entries (each such key costs a MATCH the usual way, and its key in a set).
FORGOTTEN_MIN = 4096


def xdr_key(key: bytes) -> bytes:
    """*key* as a YP call carries it (RFC 4506 opaque<>: length, bytes, zero padding),
    and as the map keeps and compares it."""
    return opaque(key)


class Region(Protocol):
    """Memory entries are written to, as an anonymous ``mmap.mmap`` is: zeros at first;
    a slice read is bytes."""

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, i: int, /) -> int: ...

    @overload
    def __getitem__(self, s: slice, /) -> bytes: ...

    def __setitem__(self, s: slice, data: bytes, /) -> None: ...


#: Where a map's memory comes from: *size* bytes of zeros (``residents.anonymous_memory``)
Memory = Callable[[int], Region]


def _xdr_length(xkey: bytes | Region, at: int) -> int:
    """The length of the XDR key at *at* of *xkey* (its length word, bytes, padding)."""
    return (int.from_bytes(xkey[at:at + 4], "big") + 7) & ~3


#: The slots: 64-bit numbers, read and written by index
Table: TypeAlias = "array[int] | memoryview"


def _table(entries: int, memory: Memory) -> tuple[Table, int]:
    """An empty table with room for *entries* (at most half full), and its mask."""
    size = 1 << max(3, (2 * entries).bit_length())
    if 8 * size < HUGE_FROM:
        return array("Q", bytes(8 * size)), size - 1
    return memoryview(memory(8 * size)).cast("Q"), size - 1  # type: ignore[arg-type]


def entry_bytes(key: bytes, body: bytes) -> bytes:
    """One entry of a piece: *key* and the MATCH result *body* answering it (each at
    most 0xFFFF bytes: ValueError past it)."""
    if len(key) > 0xFFFF or len(body) > 0xFFFF:
        raise ValueError("a resident entry's key and body are at most 0xFFFF bytes")
    return _BLEN.pack(len(body)) + xdr_key(key) + body


class ResidentMap:
    """One map's entries (see the module): fed pieces of :func:`entry_bytes`
    (:meth:`feed`), in the directory's child order, and asked (:meth:`answer`,
    :meth:`body`) from the first piece on: an entry fed is the answer the domain gives
    for its key (the first child holding it, as of the snapshot) until a write makes the
    key forgotten."""

    __slots__ = ("_memory", "_regions", "_used", "_slots", "_mask", "_max_bytes",
                 "forgotten", "entries", "nbytes", "_fed", "state", "hits", "seconds")

    def __init__(self, max_bytes: int, expected: int = 0, state: int = 0, *,
                 memory: Memory) -> None:
        """*expected*: about how many entries will be fed (the table is made for them
        at once; past half full it doubles, one pass over the entries fed); *memory*:
        where the entries (and a big table) are kept."""
        self._memory = memory
        #: the regions the entries are copied to (a slot's region numbers count from 1:
        #: the first is one byte, never written)
        self._regions: list[Region] = [memory(1)]
        #: the bytes written in the last region
        self._used = 0
        self._slots, self._mask = _table(expected, memory)
        self._max_bytes = max_bytes
        #: keys (as XDR strings) answered the usual way: touched by a write since the
        #: snapshot, or held by two entries
        self.forgotten: set[bytes] = set()
        self.entries = 0
        #: the bytes of the entries fed
        self._fed = 0
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
            self._slots, self._mask = _table(expected, self._memory)
            self.nbytes = 8 * len(self._slots)

    def feed(self, piece: bytes) -> None:
        """Take the entries of *piece* (:func:`entry_bytes`, concatenated).

        :raises TooBig: past the budget (or past half a million regions); the caller
            drops the map.
        :raises ValueError: *piece* is not whole entries.
        """
        at, end = 0, len(piece)
        spans: list[tuple[int, int, bytes]] = []     # each entry's start, end and key
        while at < end:
            if at + 6 > end:
                raise ValueError("a piece ends inside an entry")
            blen = piece[at] << 8 | piece[at + 1]
            xlen = _xdr_length(piece, at + 2)
            nxt = at + 2 + xlen + blen
            if nxt > end or nxt - at > _ENTRY_MAX:
                raise ValueError("a piece ends inside an entry")
            spans.append((at, nxt, piece[at + 2:at + 2 + xlen]))
            at = nxt
        entries = self.entries + len(spans)
        fed = self._fed + end
        if fed + ENTRY_BYTES * entries > self._max_bytes:
            raise TooBig(f"over {self._max_bytes} bytes")
        if not spans:
            return
        # copied in runs: as much of the piece as the last region holds, then a new one
        regions = self._regions
        region, used = regions[-1], self._used
        run = 0                 # where in the piece the run being copied begins
        places: list[int] = []
        for start, nxt, _ in spans:
            if used + nxt - run > len(region):
                if start > run:
                    region[used:used + start - run] = piece[run:start]
                    used += start - run
                if len(regions) > _REGION:
                    raise TooBig(f"over {_REGION} regions")
                size = min(REGION_MAX, max(REGION_MIN, 2 * len(region)))
                region, used, run = self._memory(max(size, nxt - start)), 0, start
                regions.append(region)
            places.append((len(regions) - 1) << _PLACE_BITS | (used + start - run))
        region[used:used + end - run] = piece[run:end]
        self._used = used + end - run
        self._fed = fed
        if 2 * entries > self._mask:
            self._grow(entries)
        for place, (_, _, xkey) in zip(places, spans, strict=True):
            self._put(place, xkey)
        self.entries = entries
        self.nbytes = fed + 8 * len(self._slots)

    def _put(self, place: int, xkey: bytes) -> None:
        """Slot the entry at *place* (region number and place in it), whose key is
        *xkey*: a key held twice is forgotten (answered the usual way, which orders its
        holders)."""
        slots, mask = self._slots, self._mask
        h = hash(xkey)
        tag = (h >> _TAG_SHIFT) & _TAG
        i = h & mask
        s = slots[i]
        while s:
            if s >> _TAG_SHIFT == tag and self._xkey(s) == xkey:
                self.forgotten.add(xkey)
            i = (i + 1) & mask
            s = slots[i]
        slots[i] = tag << _TAG_SHIFT | place

    def _grow(self, entries: int) -> None:
        old = self._slots
        self._slots, self._mask = _table(entries, self._memory)
        for s in old:
            if s:
                self._put(s & ~(_TAG << _TAG_SHIFT), self._xkey(s))

    def _xkey(self, slot: int) -> bytes:
        region = self._regions[slot >> _PLACE_BITS & _REGION]
        at = (slot & _PLACE) + 2
        return region[at:at + _xdr_length(region, at)]

    def answer(self, xkey: bytes) -> bytes | None:
        """The MATCH result body of the key *xkey* names (an XDR string as a call
        carries it: :func:`xdr_key`), or None: ask the domain (not held, forgotten, or
        *xkey* not one whole XDR string)."""
        h = hash(xkey)
        mask = self._mask
        slots = self._slots
        i = h & mask
        s = slots[i]
        tag = (h >> _TAG_SHIFT) & _TAG
        while s:
            if s >> _TAG_SHIFT == tag:
                region = self._regions[s >> _PLACE_BITS & _REGION]
                at = (s & _PLACE) + 2
                n = len(xkey)
                # as long as the key kept there (its length word first), and equal
                if n == (region[at + 2] << 8 | region[at + 3]) + 7 & ~3 and \
                        region[at:at + n] == xkey:
                    if self.forgotten and xkey in self.forgotten:
                        return None
                    self.hits += 1
                    k = at + n
                    return region[k:k + (region[at - 2] << 8 | region[at - 1])]
            i = (i + 1) & mask
            s = slots[i]
        return None

    def body(self, key: bytes) -> bytes | None:
        """The MATCH result body of *key*, or None: ask the domain (not held, or
        forgotten)."""
        return self.answer(xdr_key(key)) if len(key) <= 0xFFFF else None

    def forget(self, keys: Iterable[bytes]) -> None:
        """*keys* are answered the usual way from now on (a write touched them)."""
        self.forgotten.update(xdr_key(k) for k in keys)

    def too_changed(self) -> bool:
        """Forgotten past :data:`FORGOTTEN_MIN` and an eighth of the entries."""
        return len(self.forgotten) > max(FORGOTTEN_MIN, self.entries // 8)


__all__ = ["ResidentMap", "Memory", "Region", "entry_bytes", "xdr_key", "ENTRY_BYTES",
           "FORGOTTEN_MIN", "TooBig"]
