"""NetInfo's primitive types on the wire (spec §2): ids, properties, proplists and whole
directories (``ni_object``), and the stored-proplist helpers a lazy store answers from
without decoding (``decode_proplist`` in one loop, ``check_proplist`` for stored bytes
sent as they are, ``stored_list_values`` for LIST, ``StoredProplists`` for LISTALL).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import NoReturn, overload

from ..errors import TooLong, WireError
from ..model import Directory, NiId, Proplist
from .xdr import LIST_MAX, NAME_MAX, Packer, Unpacker

_U32 = struct.Struct(">I")
#: XDR is big-endian: words read on a little-endian machine are swapped
_SWAP = sys.byteorder == "little"
_ID = struct.Struct(">II")

# -- primitive NetInfo types ------------------------------------------------------------------

def pack_id(p: Packer, i: NiId | tuple[int, int]) -> None:
    p.pack_raw(_ID.pack(i[0], i[1]))

def unpack_id(u: Unpacker) -> NiId:
    return NiId(*u.unpack_2uint())

def pack_property(p: Packer, prop: tuple[str, list[str]]) -> None:
    p.pack_string(prop[0])
    p.pack_string_array(prop[1])

def unpack_property(u: Unpacker) -> tuple[str, list[str]]:
    return (u.unpack_string(), u.unpack_string_array())

class WireProplist(list[tuple[str, list[str]]]):
    """A proplist that carries its own XDR encoding (*wire*, :func:`encode_proplist`'s
    bytes): what :func:`decode_proplist` returns, so a directory read from the store is
    answered (READ, LOOKUPREAD, ...) with the stored bytes instead of being encoded again
    (issue 10's hot path: encoding was 40% of a LOOKUPREAD's server time).

    It is a list of ``(name, values)`` to everyone else, and it cannot change: the
    service replaces a directory's proplist, never edits it (service.py), and a change
    here would make *wire* lie, so every mutating method raises :class:`TypeError`.
    ``list(w)`` is an ordinary, editable copy."""

    __slots__ = ("wire", "firsts")

    def __init__(self, props: Proplist, wire: bytes,
                 firsts: list[bytes] | None = None) -> None:
        super().__init__(props)
        self.wire = wire
        #: name, value, name, value, ... as bytes, for each value of the first property
        #: of each name: the LOOKUP index's pairs (``storage.sqlite.key_row_list``),
        #: taken as a call's proplist was decoded (:func:`unpack_wire_proplist`) and
        #: dropped once its rows are made; None: not taken (or used)
        self.firsts = firsts

    def _frozen(self, *args: object, **kw: object) -> NoReturn:
        raise TypeError("a WireProplist cannot change: copy it with list() first")

    append = extend = insert = pop = remove = clear = sort = reverse = _frozen
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _frozen


def pack_proplist(p: Packer, props: Proplist | StoredProplist) -> None:
    if type(props) is WireProplist or type(props) is StoredProplist:
        p.pack_raw(props.wire)
        return
    if len(props) > LIST_MAX:
        raise TooLong(f"a list of {len(props)} properties is longer than the protocol's "
                      f"limit of {LIST_MAX}")
    p.pack_uint(len(props))
    for name, values in props:
        p.pack_string(name)
        p.pack_string_array(values)

def unpack_proplist(u: Unpacker) -> Proplist:
    if type(u.data) is bytes:   # one loop over the buffer (a reply's READ, LISTALL)
        props, u.pos = _scan_proplist(u.data, u.pos)
        return props
    # A property takes at least 8 bytes (empty name, empty namelist).
    return u.unpack_array(lambda: (u.unpack_string(), u.unpack_string_array()), LIST_MAX, 8)

def encode_proplist(props: Proplist) -> bytes:
    """A proplist alone, as XDR bytes (also the storage engines' on-disk form)."""
    if type(props) is WireProplist:
        return props.wire
    p = Packer()
    pack_proplist(p, props)
    return p.get_buffer()

def decode_proplist(data: bytes) -> Proplist:
    """A proplist alone (:func:`encode_proplist`'s bytes, the storage engines' form),
    whole, with the checks of :func:`unpack_proplist` and nothing after it.

    One loop over the buffer rather than an :class:`Unpacker` call per field: a lazy
    store decodes a directory on every cache miss (issue 10: 2-3x faster, measured).

    :raises WireError: truncated, oversized or trailing data.
    """
    props, p = _scan_proplist(data, 0)
    size = len(data)
    if p != size:
        raise WireError(f"{size - p} bytes after the proplist")
    return WireProplist(props, data if type(data) is bytes else bytes(data))


def check_proplist(data: bytes) -> None:
    """Check that *data* is a whole proplist as :func:`decode_proplist` would read it
    (every length within the protocol's bounds, nothing missing, nothing after it)
    without building it: what a store's bytes must pass before they are sent as they
    are (READALL, LISTALL, LOOKUPREAD; issue 18 N20).

    Every XDR field is a multiple of 4 bytes, so the walk reads one array of words
    (2.5x quicker than a ``struct`` call per length: it runs on every LOOKUPREAD read
    from the store, issue 20); what it refuses is explained by :func:`_explain`.

    :raises WireError: as :func:`decode_proplist`.
    """
    if not _well_formed(data):
        _explain(data)
        raise WireError("malformed proplist")


def _well_formed(data: bytes) -> bool:
    if len(data) & 3 or not data:
        return False
    w = array("I", data)
    if _SWAP:
        w.byteswap()
    n = w[0]
    if n > LIST_MAX:
        return False
    p = 1
    try:
        for _ in range(n):
            ln = w[p]
            if ln > NAME_MAX:
                return False
            p += 1 + ((ln + 3) >> 2)
            m = w[p]
            if m == 1:   # the usual property: one value
                ln = w[p + 1]
                if ln > NAME_MAX:
                    return False
                p += 2 + ((ln + 3) >> 2)
                continue
            if m > LIST_MAX:
                return False
            p += 1
            for _ in range(m):
                ln = w[p]
                if ln > NAME_MAX:
                    return False
                p += 1 + ((ln + 3) >> 2)
    except IndexError:   # a length past the end
        return False
    return p == len(w)


def _explain(data: bytes) -> None:
    """Raise the :class:`WireError` that says why *data* is not a whole proplist."""
    u32 = _U32.unpack_from
    size = len(data)
    try:
        (n,) = u32(data, 0)
        if n > LIST_MAX or n * 8 > size - 4:
            raise WireError(f"proplist of {n} properties in {size} bytes")
        p = 4
        for _ in range(n):
            (ln,) = u32(data, p)
            if ln > NAME_MAX:
                raise WireError(f"string length {ln} exceeds {NAME_MAX}")
            p += 4 + ln + (-ln & 3)
            (m,) = u32(data, p)
            p += 4
            if m > LIST_MAX or m * 4 > size - p:
                raise WireError(f"namelist of {m} names past the end")
            for _ in range(m):
                (ln,) = u32(data, p)
                if ln > NAME_MAX:
                    raise WireError(f"string length {ln} exceeds {NAME_MAX}")
                p += 4 + ln + (-ln & 3)
    except struct.error as exc:
        raise WireError(f"truncated proplist: {exc}") from None
    if p != size:
        raise WireError("truncated proplist" if p > size else f"{size - p} bytes after "
                        f"the proplist")


def unpack_wire_proplist(u: Unpacker) -> WireProplist:
    """A proplist argument (CREATE, WRITE) with the bytes it came in, which the store
    keeps as they are (issue 10: a bulk load's server encoded every new directory again).
    Immutable, so for the server's decoding of calls only: a client edits what it reads.

    :raises WireError: as :func:`unpack_proplist`.
    """
    data, start = u.data, u.pos
    if type(data) is not bytes:  # a memoryview or bytearray: slices must decode
        data = bytes(data)
    props, end, firsts = _scan_keyed(data, start)
    u.pos = end
    return WireProplist(props, data[start:end], firsts)


def _scan_keyed(data: bytes, p: int) -> tuple[Proplist, int, list[bytes]]:
    """:func:`_scan_proplist`, also giving the LOOKUP index's (name, value) byte pairs,
    flat (:attr:`WireProplist.firsts`): the bytes are at hand here, and a new
    directory's ``keys`` rows then need no encoding (a bulk load's ten rows a user).
    A property of one value, the common case, is read without a loop over values."""
    u32 = _U32.unpack_from
    size = len(data)
    firsts: list[bytes] = []
    seen: set[bytes] = set()
    try:
        (n,) = u32(data, p)
        if n > LIST_MAX or n * 8 > size - p - 4:
            raise WireError(f"proplist of {n} properties in {size - p} bytes")
        p += 4
        props: Proplist = []
        add = props.append
        for _ in range(n):
            (ln,) = u32(data, p)
            if ln > NAME_MAX:
                raise WireError(f"string length {ln} exceeds {NAME_MAX}")
            p += 4
            end = p + ln
            name = data[p:end]
            p = end + (-ln & 3)
            (m,) = u32(data, p)
            p += 4
            first = name not in seen   # LOOKUP sees a name's first property only
            if m == 1:
                (ln,) = u32(data, p)
                if ln > NAME_MAX:
                    raise WireError(f"string length {ln} exceeds {NAME_MAX}")
                p += 4
                end = p + ln
                value = data[p:end]
                p = end + (-ln & 3)
                if first:
                    seen.add(name)
                    firsts += (name, value)
                add((name.decode("utf-8", "surrogateescape"),
                     [value.decode("utf-8", "surrogateescape")]))
                continue
            if m > LIST_MAX or m * 4 > size - p:
                raise WireError(f"namelist of {m} names past the end")
            seen.add(name)
            values = []
            for _ in range(m):
                (ln,) = u32(data, p)
                if ln > NAME_MAX:
                    raise WireError(f"string length {ln} exceeds {NAME_MAX}")
                p += 4
                end = p + ln
                value = data[p:end]
                values.append(value.decode("utf-8", "surrogateescape"))
                if first:
                    firsts += (name, value)
                p = end + (-ln & 3)
            add((name.decode("utf-8", "surrogateescape"), values))
    except struct.error as exc:
        raise WireError(f"truncated proplist: {exc}") from None
    if p > size:
        raise WireError("truncated proplist")
    return props, p, firsts


def _scan_proplist(data: bytes, p: int) -> tuple[Proplist, int]:
    """The proplist encoded at *p* in *data* and where it ends (the checks of
    :func:`unpack_proplist`, in one loop)."""
    u32 = _U32.unpack_from
    size = len(data)
    try:
        (n,) = u32(data, p)
        # A property takes at least 8 bytes (empty name, empty namelist).
        if n > LIST_MAX or n * 8 > size - p - 4:
            raise WireError(f"proplist of {n} properties in {size - p} bytes")
        p += 4
        props: Proplist = []
        for _ in range(n):
            (ln,) = u32(data, p)
            if ln > NAME_MAX:
                raise WireError(f"string length {ln} exceeds {NAME_MAX}")
            p += 4
            end = p + ln
            name = data[p:end].decode("utf-8", "surrogateescape")
            p = end + (-ln & 3)
            (m,) = u32(data, p)
            p += 4
            if m > LIST_MAX or m * 4 > size - p:
                raise WireError(f"namelist of {m} names past the end")
            values = []
            for _ in range(m):
                (ln,) = u32(data, p)
                if ln > NAME_MAX:
                    raise WireError(f"string length {ln} exceeds {NAME_MAX}")
                p += 4
                end = p + ln
                values.append(data[p:end].decode("utf-8", "surrogateescape"))
                p = end + (-ln & 3)
            props.append((name, values))
    except struct.error as exc:
        raise WireError(f"truncated proplist: {exc}") from None
    if p > size:
        raise WireError("truncated proplist")
    return props, p


def take_proplists(data: bytes, p: int, most: int, longest: int) -> tuple[list[Proplist], int]:
    """Up to *most* proplists encoded one after another from *p* in *data*, the bytes of
    a reply received so far (a streamed LISTALL), and where the first one not taken
    begins: decoding stops before a proplist that is not all there yet.

    :raises WireError: a proplist that cannot be whole within *longest* bytes (its
        checks of :func:`unpack_proplist` fail with that much at hand).
    """
    out: list[Proplist] = []
    size = len(data)
    while len(out) < most and p < size:
        try:
            props, end = _scan_proplist(data, p)
        except WireError:
            if size - p >= longest:
                raise
            break
        out.append(props)
        p = end
    return out, p


class StoredProplists(Sequence[Proplist]):
    """Proplists kept as their XDR encoding (:func:`encode_proplist`, the SQLite
    engine's stored form): LISTALL frames them without decoding and encoding each one
    again (a million users, issue 10); reading an item decodes it, so to everyone else
    this is the list of proplists it holds."""

    __slots__ = ("blobs",)

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs

    def __len__(self) -> int:
        return len(self.blobs)

    @overload
    def __getitem__(self, i: int) -> Proplist: ...

    @overload
    def __getitem__(self, i: slice) -> list[Proplist]: ...

    def __getitem__(self, i: int | slice) -> Proplist | list[Proplist]:
        if isinstance(i, slice):
            return [decode_proplist(b) for b in self.blobs[i]]
        return decode_proplist(self.blobs[i])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoredProplists):
            return self.blobs == other.blobs
        return isinstance(other, list) and list(self) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredProplists({list(self)!r})"


class StoredProplist(Sequence[tuple[str, list[str]]]):
    """One proplist kept as its stored XDR encoding (:func:`encode_proplist`'s bytes),
    decoded only if someone looks inside: the server's LOOKUPREAD of a directory that is
    not in memory sends the stored bytes as they are, which saves decoding them into
    Python objects and encoding them again (issue 10: half of a LOOKUPREAD's time at
    1,000,000 users, measured). To everyone else it is the proplist it holds.

    :raises WireError: on first access, when the bytes do not decode.
    """

    __slots__ = ("wire", "_props")

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self._props: Proplist | None = None

    def _decoded(self) -> Proplist:
        props = self._props
        if props is None:
            props = self._props = decode_proplist(self.wire)
        return props

    def __len__(self) -> int:
        return len(self._decoded())

    @overload
    def __getitem__(self, i: int) -> tuple[str, list[str]]: ...

    @overload
    def __getitem__(self, i: slice) -> Proplist: ...

    def __getitem__(self, i: int | slice) -> tuple[str, list[str]] | Proplist:
        return self._decoded()[i]

    def __iter__(self) -> Iterator[tuple[str, list[str]]]:
        return iter(self._decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoredProplist):
            return self.wire == other.wire
        return isinstance(other, list) and self._decoded() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredProplist({self._decoded()!r})"


def stored_list_values(data: bytes, name: str) -> list[str] | None:
    """LIST's entry for one child (spec §4.4 LIST: the values of the first property
    called *name* that has at least one value; None when there is none), read from an
    encoded proplist without decoding the other properties.

    :raises WireError: truncated data.
    """
    want = name.encode("utf-8", "surrogateescape")
    u32 = _U32.unpack_from
    size = len(data)
    try:
        (n,) = u32(data, 0)
        p = 4
        for _ in range(n):
            (ln,) = u32(data, p)
            p += 4
            end = p + ln
            if end > size:
                raise WireError("truncated proplist")
            hit = data[p:end] == want
            p = end + (-ln & 3)
            (m,) = u32(data, p)
            p += 4
            if hit and m:
                if m > LIST_MAX:
                    raise WireError(f"namelist of {m} names")
                values = []
                for _ in range(m):
                    (ln,) = u32(data, p)
                    p += 4
                    end = p + ln
                    if end > size:
                        raise WireError("truncated proplist")
                    values.append(data[p:end].decode("utf-8", "surrogateescape"))
                    p = end + (-ln & 3)
                return values
            for _ in range(m):
                (ln,) = u32(data, p)
                p += 4 + ln + (-ln & 3)
    except struct.error as exc:
        raise WireError(f"truncated proplist: {exc}") from None
    return None

def stored_first_props(data: bytes, names: frozenset[bytes]) -> Proplist:
    """The first property of each of *names* (their UTF-8 bytes) in an encoded proplist,
    in the order they come, read in one pass without decoding the others: what a
    renderer that reads only ``first_values`` of those names (nismaps) sees exactly as
    in the whole proplist (NIS MATCH from the stored bytes, issue 21).

    The lengths are read as one array of big-endian words (every XDR field is a
    multiple of 4 bytes; trailing bytes short of a word count as missing, as when read
    one at a time): a NIS map read whole scans a million of these (issue 21).

    :raises WireError: truncated or oversized data.
    """
    size = len(data)
    w = array("I", data[:size & ~3])
    if _SWAP:
        w.byteswap()
    out: Proplist = []
    want = set(names)
    try:
        n = w[0]
        if n > LIST_MAX:
            raise WireError(f"proplist of {n} properties")
        p = 1
        for _ in range(n):
            if not want:
                break
            ln = w[p]
            at = 4 * p + 4
            end = at + ln
            if ln > NAME_MAX or end > size:
                raise WireError("truncated proplist")
            name = data[at:end]
            p += 1 + ((ln + 3) >> 2)
            m = w[p]
            p += 1
            if m > LIST_MAX:
                raise WireError(f"namelist of {m} names")
            if name in want:
                want.discard(name)
                values = []
                for _ in range(m):
                    ln = w[p]
                    at = 4 * p + 4
                    end = at + ln
                    if ln > NAME_MAX or end > size:
                        raise WireError("truncated proplist")
                    values.append(data[at:end].decode("utf-8", "surrogateescape"))
                    p += 1 + ((ln + 3) >> 2)
                out.append((name.decode("utf-8", "surrogateescape"), values))
                continue
            for _ in range(m):
                p += 1 + ((w[p] + 3) >> 2)
    except IndexError:
        raise WireError("truncated proplist: a length past the end") from None
    return out


def pack_object(p: Packer, d: Directory) -> None:
    pack_id(p, d.id)
    pack_proplist(p, d.props)
    p.pack_uint(d.parent)
    p.pack_uint_array(d.children)

def unpack_object(u: Unpacker) -> Directory:
    oid = unpack_id(u)
    props = unpack_proplist(u)
    parent = u.unpack_uint()
    return Directory(oid, props, parent, u.unpack_uint_array())

def pack_status(status: int) -> bytes:
    """The bare status word: a whole error result (spec §2, unions)."""
    return struct.pack(">i", status)
