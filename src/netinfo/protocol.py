"""The NETINFO program (200100000 v2): procedures, argument and result codecs, one table.

Layouts are those of spec §2; the procedure list is spec §4.1. Results that are XDR unions on
``ni_status`` carry a body only when the status is NI_OK (spec §2): the server encodes an
error as the bare status word, via :func:`pack_status`.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from enum import IntEnum
from typing import Any, NamedTuple, NoReturn, overload

from .errors import NiError, Status, TooLong, WireError
from .model import Directory, NiId, Proplist
from .xdr import BIG_LIST_MAX, LIST_MAX, NAME_MAX, Packer, Unpacker

NETINFO_PROG = 200100000
NETINFO_VERS = 2

_U32 = struct.Struct(">I")
_ID = struct.Struct(">II")

class Proc(IntEnum):
    """NETINFO procedure numbers (spec §4.1)."""

    PING = 0
    STATISTICS = 1
    ROOT = 2
    SELF = 3
    PARENT = 4
    CREATE = 5
    DESTROY = 6
    READ = 7
    WRITE = 8
    CHILDREN = 9
    LOOKUP = 10
    LIST = 11
    CREATEPROP = 12
    DESTROYPROP = 13
    READPROP = 14
    WRITEPROP = 15
    RENAMEPROP = 16
    LISTPROPS = 17
    CREATENAME = 18
    DESTROYNAME = 19
    READNAME = 20
    WRITENAME = 21
    RPARENT = 22
    LISTALL = 23
    BIND = 24
    READALL = 25
    CRASHED = 26
    RESYNC = 27
    LOOKUPREAD = 28

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

    __slots__ = ("wire",)

    def __init__(self, props: Proplist, wire: bytes) -> None:
        super().__init__(props)
        self.wire = wire

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

    :raises WireError: as :func:`decode_proplist`.
    """
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
    props, end = _scan_proplist(data, start)
    u.pos = end
    return WireProplist(props, bytes(data[start:end]))


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

# -- argument codecs: (pack(p, *args), unpack(u) -> tuple) --------------------------------------

class Codec(NamedTuple):
    pack: Callable[..., None]
    unpack: Callable[[Unpacker], Any]

def _pk_void(p: Packer) -> None:
    pass

def _up_void(u: Unpacker) -> tuple[Any, ...]:
    return ()

def _pk_uint(p: Packer, v: int) -> None:
    p.pack_uint(v)

def _up_uint(u: Unpacker) -> tuple[Any, ...]:
    return (u.unpack_uint(),)

def _pk_idarg(p: Packer, i: NiId) -> None:
    pack_id(p, i)

def _up_idarg(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u),)

def _pk_create(p: Packer, parent: NiId, props: Proplist, where: int,
               target: NiId | None = None) -> None:
    pack_id(p, parent)
    pack_proplist(p, props)
    p.pack_uint(where)
    if target is None:
        p.pack_bool(False)
    else:
        p.pack_bool(True)
        pack_id(p, target)

def _up_create(u: Unpacker) -> tuple[Any, ...]:
    parent = unpack_id(u)
    props = unpack_wire_proplist(u)
    where = u.unpack_uint()
    target = unpack_id(u) if u.unpack_bool() else None
    return (parent, props, where, target)

def _pk_2id(p: Packer, a: NiId, b: NiId) -> None:
    pack_id(p, a)
    pack_id(p, b)

def _up_2id(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), unpack_id(u))

def _pk_id_props(p: Packer, i: NiId, props: Proplist) -> None:
    pack_id(p, i)
    pack_proplist(p, props)

def _up_id_props(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), unpack_wire_proplist(u))

def _pk_lookup(p: Packer, i: NiId, key: str, value: str) -> None:
    pack_id(p, i)
    p.pack_string(key)
    p.pack_string(value)

def _up_lookup(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_string(), u.unpack_string())

def _pk_id_name(p: Packer, i: NiId, name: str) -> None:
    pack_id(p, i)
    p.pack_string(name)

def _up_id_name(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_string())

def _pk_createprop(p: Packer, i: NiId, prop: tuple[str, list[str]], where: int) -> None:
    pack_id(p, i)
    pack_property(p, prop)
    p.pack_uint(where)

def _up_createprop(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), unpack_property(u), u.unpack_uint())

def _pk_id_idx(p: Packer, i: NiId, idx: int) -> None:
    pack_id(p, i)
    p.pack_uint(idx)

def _up_id_idx(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_uint())

def _pk_writeprop(p: Packer, i: NiId, idx: int, values: list[str]) -> None:
    pack_id(p, i)
    p.pack_uint(idx)
    p.pack_string_array(values)

def _up_writeprop(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_uint(), u.unpack_string_array())

def _pk_propname(p: Packer, i: NiId, idx: int, name: str) -> None:
    pack_id(p, i)
    p.pack_uint(idx)
    p.pack_string(name)

def _up_propname(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_uint(), u.unpack_string())

def _pk_createname(p: Packer, i: NiId, idx: int, name: str, where: int) -> None:
    pack_id(p, i)
    p.pack_uint(idx)
    p.pack_string(name)
    p.pack_uint(where)

def _up_createname(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_uint(), u.unpack_string(), u.unpack_uint())

def _pk_nameindex(p: Packer, i: NiId, idx: int, nidx: int) -> None:
    pack_id(p, i)
    p.pack_uint(idx)
    p.pack_uint(nidx)

def _up_nameindex(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_uint(), u.unpack_uint())

def _pk_writename(p: Packer, i: NiId, idx: int, nidx: int, name: str) -> None:
    pack_id(p, i)
    p.pack_uint(idx)
    p.pack_uint(nidx)
    p.pack_string(name)

def _up_writename(u: Unpacker) -> tuple[Any, ...]:
    return (unpack_id(u), u.unpack_uint(), u.unpack_uint(), u.unpack_string())

def _pk_binding(p: Packer, tag: str, addr: int) -> None:
    p.pack_string(tag)
    p.pack_uint(addr)

def _up_binding(u: Unpacker) -> tuple[Any, ...]:
    return (u.unpack_string(), u.unpack_uint())

VOID = Codec(_pk_void, _up_void)
UINT_ARG = Codec(_pk_uint, _up_uint)
ID_ARG = Codec(_pk_idarg, _up_idarg)
CREATE_ARGS = Codec(_pk_create, _up_create)
DESTROY_ARGS = Codec(_pk_2id, _up_2id)
PROPLIST_STUFF = Codec(_pk_id_props, _up_id_props)
LOOKUP_ARGS = Codec(_pk_lookup, _up_lookup)
NAME_ARGS = Codec(_pk_id_name, _up_id_name)
CREATEPROP_ARGS = Codec(_pk_createprop, _up_createprop)
PROP_ARGS = Codec(_pk_id_idx, _up_id_idx)
WRITEPROP_ARGS = Codec(_pk_writeprop, _up_writeprop)
PROPNAME_ARGS = Codec(_pk_propname, _up_propname)
CREATENAME_ARGS = Codec(_pk_createname, _up_createname)
NAMEINDEX_ARGS = Codec(_pk_nameindex, _up_nameindex)
WRITENAME_ARGS = Codec(_pk_writename, _up_writename)
BINDING_ARGS = Codec(_pk_binding, _up_binding)

# -- result codecs: pack(p, value) after the NI_OK word; unpack(u) -> value -------------------

def _rp_id(p: Packer, v: NiId) -> None:
    pack_id(p, v)

def _ru_id(u: Unpacker) -> NiId:
    return unpack_id(u)

def _rp_parent(p: Packer, v: tuple[int, NiId]) -> None:
    p.pack_uint(v[0])
    pack_id(p, v[1])

def _ru_parent(u: Unpacker) -> tuple[int, NiId]:
    return (u.unpack_uint(), unpack_id(u))

def _rp_children(p: Packer, v: tuple[list[int], NiId]) -> None:
    p.pack_uint_array(v[0])
    pack_id(p, v[1])

def _ru_children(u: Unpacker) -> tuple[list[int], NiId]:
    return (u.unpack_uint_array(), unpack_id(u))

def _pack_entry(p: Packer, e: tuple[int, list[str] | None]) -> None:
    p.pack_uint(e[0])
    if e[1] is None:
        p.pack_bool(False)
    else:
        p.pack_bool(True)
        p.pack_string_array(e[1])

#: Entries or proplists per piece of a streamed LIST or LISTALL reply.
STREAM_PIECE = 512


def list_pieces(count: int, entries: Iterator[tuple[int, list[str] | None]],
                nid: NiId) -> Iterator[bytes]:
    """LIST's reply body (NI_OK, *count* entries, the directory's id; the layout of
    :func:`_rp_list`) in pieces of :data:`STREAM_PIECE` entries, made as they are taken.

    :raises ValueError: *entries* did not hold exactly *count* (the directory changed
        under the stream; Database.stream keeps writes away meanwhile).
    """
    p = Packer()
    p.pack_raw(b"\0\0\0\0")
    p.pack_uint(count)
    n = 0
    for e in entries:
        _pack_entry(p, e)
        n += 1
        if n % STREAM_PIECE == 0:
            yield p.get_buffer()
            p = Packer()
    if n != count:
        raise ValueError(f"LIST streamed {n} entries, announced {count}")
    pack_id(p, nid)
    yield p.get_buffer()


def listall_pieces(nid: NiId, count: int, blobs: Iterator[bytes]) -> Iterator[bytes]:
    """LISTALL's reply body (NI_OK, the directory's id, *count* proplists already in XDR;
    the layout of :func:`_rp_listall`) in pieces of :data:`STREAM_PIECE` proplists.

    :raises ValueError: *blobs* did not hold exactly *count*.
    """
    part = [b"\0\0\0\0" + _ID.pack(nid[0], nid[1]) + _U32.pack(count)]
    n = 0
    for b in blobs:
        part.append(b)
        n += 1
        if n % STREAM_PIECE == 0:
            yield b"".join(part)
            part = []
    if n != count:
        raise ValueError(f"LISTALL streamed {n} proplists, announced {count}")
    if part:
        yield b"".join(part)


def _rp_list(p: Packer, v: tuple[list[tuple[int, list[str] | None]], NiId]) -> None:
    p.pack_array(v[0], lambda e: _pack_entry(p, e), BIG_LIST_MAX)
    pack_id(p, v[1])

def _ru_list(u: Unpacker) -> tuple[list[tuple[int, list[str] | None]], NiId]:
    def entry() -> tuple[int, list[str] | None]:
        oid = u.unpack_uint()
        return (oid, u.unpack_string_array() if u.unpack_bool() else None)
    entries = u.unpack_array(entry, BIG_LIST_MAX, 8)
    return (entries, unpack_id(u))

def _rp_proplist(p: Packer, v: tuple[NiId, Proplist]) -> None:
    pack_id(p, v[0])
    pack_proplist(p, v[1])

def _ru_proplist(u: Unpacker) -> tuple[NiId, Proplist]:
    return (unpack_id(u), unpack_proplist(u))

def _rp_create(p: Packer, v: tuple[NiId, NiId]) -> None:
    pack_id(p, v[0])
    pack_id(p, v[1])

def _ru_create(u: Unpacker) -> tuple[NiId, NiId]:
    return (unpack_id(u), unpack_id(u))

def _rp_namelist(p: Packer, v: tuple[list[str], NiId]) -> None:
    p.pack_string_array(v[0])
    pack_id(p, v[1])

def _ru_namelist(u: Unpacker) -> tuple[list[str], NiId]:
    return (u.unpack_string_array(), unpack_id(u))

def _rp_readname(p: Packer, v: tuple[NiId, str]) -> None:
    pack_id(p, v[0])
    p.pack_string(v[1])

def _ru_readname(u: Unpacker) -> tuple[NiId, str]:
    return (unpack_id(u), u.unpack_string())

def _rp_binding(p: Packer, v: tuple[str, int]) -> None:
    p.pack_string(v[0])
    p.pack_uint(v[1])

def _ru_binding(u: Unpacker) -> tuple[str, int]:
    return (u.unpack_string(), u.unpack_uint())

def _rp_listall(p: Packer, v: tuple[NiId, Sequence[Proplist]]) -> None:
    pack_id(p, v[0])
    lists = v[1]
    if isinstance(lists, StoredProplists):  # already XDR: framed as is
        if len(lists) > BIG_LIST_MAX:
            raise ValueError(f"array longer than {BIG_LIST_MAX}")
        p.pack_uint(len(lists))
        p.pack_raw(b"".join(lists.blobs))
        return
    p.pack_array(lists, lambda pl: pack_proplist(p, pl), BIG_LIST_MAX)

def _ru_listall(u: Unpacker) -> tuple[NiId, list[Proplist]]:
    sid = unpack_id(u)
    return (sid, u.unpack_array(lambda: unpack_proplist(u), BIG_LIST_MAX, 4))

ID_RES = Codec(_rp_id, _ru_id)
PARENT_RES = Codec(_rp_parent, _ru_parent)
CHILDREN_RES = Codec(_rp_children, _ru_children)
LIST_RES = Codec(_rp_list, _ru_list)
PROPLIST_RES = Codec(_rp_proplist, _ru_proplist)
CREATE_RES = Codec(_rp_create, _ru_create)
LOOKUP_RES = CHILDREN_RES  # ni_lookup_res: idlist then self_id, the same layout
NAMELIST_RES = Codec(_rp_namelist, _ru_namelist)
READNAME_RES = Codec(_rp_readname, _ru_readname)
RPARENT_RES = Codec(_rp_binding, _ru_binding)
LISTALL_RES = Codec(_rp_listall, _ru_listall)

class Kind(IntEnum):
    """How a procedure's result is framed on the wire."""

    UNION = 0      # ni_status, then the body when NI_OK
    VOID = 1       # nothing (PING, CRASHED)
    BARE_PROPLIST = 2  # STATISTICS: a proplist with no status word
    BARE_STATUS = 3    # RESYNC: just the status
    NO_REPLY_UNLESS_OK = 4  # BIND: reply (void) only when served
    STREAM = 5     # READALL: streamed by the server (spec §9.4)

class ProcInfo(NamedTuple):
    """One row of the procedure table."""

    proc: Proc
    args: Codec
    result: Codec | None
    kind: Kind
    method: str     # DirectoryService method name
    is_write: bool

def _row(proc: Proc, args: Codec, result: Codec | None, kind: Kind = Kind.UNION,
         is_write: bool = False) -> ProcInfo:
    return ProcInfo(proc, args, result, kind, "proc_" + proc.name.lower(), is_write)

#: THE procedure table (spec §4.1): every NETINFO procedure, its codecs and its kind.
PROCEDURES: dict[int, ProcInfo] = {r.proc: r for r in (
    _row(Proc.PING, VOID, None, Kind.VOID),
    _row(Proc.STATISTICS, VOID, None, Kind.BARE_PROPLIST),
    _row(Proc.ROOT, VOID, ID_RES),
    _row(Proc.SELF, ID_ARG, ID_RES),
    _row(Proc.PARENT, ID_ARG, PARENT_RES),
    _row(Proc.CREATE, CREATE_ARGS, CREATE_RES, is_write=True),
    _row(Proc.DESTROY, DESTROY_ARGS, ID_RES, is_write=True),
    _row(Proc.READ, ID_ARG, PROPLIST_RES),
    _row(Proc.WRITE, PROPLIST_STUFF, ID_RES, is_write=True),
    _row(Proc.CHILDREN, ID_ARG, CHILDREN_RES),
    _row(Proc.LOOKUP, LOOKUP_ARGS, LOOKUP_RES),
    _row(Proc.LIST, NAME_ARGS, LIST_RES),
    _row(Proc.CREATEPROP, CREATEPROP_ARGS, ID_RES, is_write=True),
    _row(Proc.DESTROYPROP, PROP_ARGS, ID_RES, is_write=True),
    _row(Proc.READPROP, PROP_ARGS, NAMELIST_RES),
    _row(Proc.WRITEPROP, WRITEPROP_ARGS, ID_RES, is_write=True),
    _row(Proc.RENAMEPROP, PROPNAME_ARGS, ID_RES, is_write=True),
    _row(Proc.LISTPROPS, ID_ARG, NAMELIST_RES),
    _row(Proc.CREATENAME, CREATENAME_ARGS, ID_RES, is_write=True),
    _row(Proc.DESTROYNAME, NAMEINDEX_ARGS, ID_RES, is_write=True),
    _row(Proc.READNAME, NAMEINDEX_ARGS, READNAME_RES),
    _row(Proc.WRITENAME, WRITENAME_ARGS, ID_RES, is_write=True),
    _row(Proc.RPARENT, VOID, RPARENT_RES),
    _row(Proc.LISTALL, ID_ARG, LISTALL_RES),
    _row(Proc.BIND, BINDING_ARGS, None, Kind.NO_REPLY_UNLESS_OK),
    _row(Proc.READALL, UINT_ARG, None, Kind.STREAM),
    _row(Proc.CRASHED, UINT_ARG, None, Kind.VOID),
    _row(Proc.RESYNC, VOID, None, Kind.BARE_STATUS),
    _row(Proc.LOOKUPREAD, LOOKUP_ARGS, PROPLIST_RES),
)}

#: Procedures that a UDP port answers (spec §1.4).
UDP_PROCS = frozenset({Proc.PING, Proc.BIND})
#: Read procedures additionally answered over UDP in lenient (Previous-like) mode.
UDP_LENIENT_PROCS = frozenset(
    r.proc for r in PROCEDURES.values()
    if not r.is_write and r.proc not in (Proc.READALL, Proc.CRASHED, Proc.RESYNC))

def decode_args(info: ProcInfo, data: bytes) -> tuple[Any, ...]:
    """Decode a procedure's arguments; trailing bytes are an error (GARBAGE_ARGS)."""
    u = Unpacker(data)
    args: tuple[Any, ...] = info.args.unpack(u)
    u.done()
    return args

def encode_args(info: ProcInfo, *args: Any) -> bytes:
    p = Packer()
    info.args.pack(p, *args)
    return p.get_buffer()

# -- READALL stream (spec §9.4) ---------------------------------------------------------------

def encode_readall_head(checksum: int, highest: int) -> bytes:
    return struct.pack(">iII", Status.OK, checksum, highest)

def encode_readall_object(d: Directory) -> bytes:
    p = Packer()
    p.pack_uint(1)
    pack_object(p, d)
    return p.get_buffer()

_OBJECT_HEAD = struct.Struct(">III")
_OBJECT_TAIL = struct.Struct(">II")
_BIG_ENDIAN = sys.byteorder == "big"


def encode_readall_stored(oid: int, instance: int, props_xdr: bytes, parent: int,
                          children: Sequence[int]) -> bytes:
    """:func:`encode_readall_object` of a directory whose proplist is already XDR (as the
    SQLite engine stores it, ``encode_proplist``): the bytes are the same, without
    decoding and re-encoding every property (READALL of a million users, issue 10)."""
    n = len(children)
    if n > BIG_LIST_MAX:
        raise ValueError(f"array longer than {BIG_LIST_MAX}")
    if isinstance(children, array):
        kids = array("I", children)
        if not _BIG_ENDIAN:
            kids.byteswap()
        tail = kids.tobytes()
    else:
        tail = struct.pack(f">{n}I", *children)
    return b"".join((_OBJECT_HEAD.pack(1, oid, instance), props_xdr,
                     _OBJECT_TAIL.pack(parent, n), tail))


READALL_END = b"\0\0\0\0"

#: Largest directory a READALL stream may carry, in bytes: each one is held whole until
#: its last byte arrives. Far above any real directory (a million children take 4 MiB, a
#: WRITE is at most a 16 MiB call), and a bound on what a broken stream can make the
#: receiver hold.
READALL_OBJECT_MAX = 64 << 20
_I32 = struct.Struct(">i")
_HEAD = struct.Struct(">III")
_ZEROS = (b"", b"\0", b"\0\0", b"\0\0\0")


class WireObject(NamedTuple):
    """One directory of a READALL stream (spec §9.4) as it travelled, undecoded: its
    number and instance, its proplist as XDR bytes (exactly :func:`encode_proplist`'s,
    the SQLite engine's stored form), its parent and its child numbers. ``firsts`` are
    the pairs LOOKUP finds it by, as bytes: each value of the first property of each name
    (spec §4.4), picked up while the proplist was checked."""

    oid: int
    instance: int
    props: bytes
    parent: int
    children: array[int]
    firsts: list[tuple[bytes, bytes]]

    def directory(self) -> Directory:
        """The same directory decoded (plain lists)."""
        return Directory(NiId(self.oid, self.instance), list(decode_proplist(self.props)),
                         self.parent, self.children.tolist())


class _Short(Exception):
    """The buffer ends inside a directory; *need*: bytes known to be needed (0: unknown)."""

    def __init__(self, need: int = 0) -> None:
        self.need = need


def _wire_object(buf: bytes, p: int) -> tuple[WireObject | None, int]:
    """The directory of a READALL stream at *p* of *buf* and where the next one starts
    (None: the terminator). Every length is checked as :func:`decode_proplist` and
    :func:`unpack_object` check them; a proplist whose padding is not zero bytes is
    encoded again, so that the bytes kept are :func:`encode_proplist`'s.

    :raises _Short: *buf* ends first. :raises WireError: not a READALL object.
    """
    u32 = _U32.unpack_from
    size = len(buf)
    try:
        (more,) = u32(buf, p)
        if not more:
            return None, p + 4
        if more != 1:
            raise WireError(f"bad bool {more} in a READALL stream", fatal=True)
        oid, instance, n = _HEAD.unpack_from(buf, p + 4)
        if n > LIST_MAX:
            raise WireError(f"proplist of {n} properties", fatal=True)
        q = p + 16
        firsts: list[tuple[bytes, bytes]] = []
        seen: set[bytes] = set()
        canonical = True
        name = b""
        first = False
        for _ in range(n):
            # The property's name (values = -1), then each of its values: one string
            # reader for both, inline (this loop runs for every string of the domain).
            values, m = -1, 0
            while values < m:
                (ln,) = u32(buf, q)
                if ln > NAME_MAX:
                    raise WireError(f"string length {ln} exceeds {NAME_MAX}", fatal=True)
                q += 4
                end = q + ln
                nxt = end + (-ln & 3)
                if nxt > size:
                    raise _Short(nxt)
                if nxt != end and buf[end:nxt] != _ZEROS[nxt - end]:
                    canonical = False
                if values < 0:
                    name = buf[q:end]
                    (m,) = u32(buf, nxt)
                    if m > LIST_MAX:
                        raise WireError(f"namelist of {m} names", fatal=True)
                    nxt += 4
                    first = name not in seen   # LOOKUP sees a name's first property only
                    seen.add(name)
                elif first:
                    firsts.append((name, buf[q:end]))
                q = nxt
                values += 1
        props = buf[p + 12:q]
        parent, nkids = _OBJECT_TAIL.unpack_from(buf, q)
    except struct.error:
        raise _Short() from None
    if nkids > BIG_LIST_MAX:
        raise WireError(f"array length {nkids} exceeds {BIG_LIST_MAX}", fatal=True)
    q += 8
    end = q + 4 * nkids
    if end > size:
        raise _Short(end)
    kids = array("I", buf[q:end])
    if not _BIG_ENDIAN:
        kids.byteswap()
    if not canonical:   # list(): a WireProplist would give its own bytes back
        props = encode_proplist(list(decode_proplist(props)))
    return WireObject(oid, instance, props, parent, kids, firsts), end


class ReadAllDecoder:
    """READALL's reply body (spec §9.4) decoded as its bytes arrive, in memory bounded by
    one directory: :meth:`feed` returns the directories completed so far (as
    :class:`WireObject`), :meth:`finish` checks the reply ended where the stream does.

    After the first bytes, ``status`` is the reply's status (a caller raises
    :class:`~netinfo.errors.NiError` for any other than NI_OK: nothing else follows);
    after the head, ``checksum`` (0: the caller is current) and ``highest``.

    :raises WireError: bytes that are not a READALL reply; then nothing more is decoded.
    """

    __slots__ = ("status", "checksum", "highest", "ended", "_head", "_tail", "_parts",
                 "_have", "_need")

    def __init__(self) -> None:
        self.status: int | None = None
        self.checksum = 0
        self.highest = 0
        #: the terminator was read (or an error status): nothing may follow
        self.ended = False
        self._head = False     # the status, checksum and highest number are read
        self._tail = b""       # the start of a directory not complete yet
        self._parts: list[bytes] = []
        self._have = 0         # bytes in _tail and _parts
        self._need = 4         # bytes to hold before decoding again

    @property
    def head_read(self) -> bool:
        """The status is known, and with NI_OK the checksum and highest number too."""
        return self._head

    def feed(self, data: bytes) -> list[WireObject]:
        if not data:
            return []
        if self.ended:
            raise WireError("bytes after the end of a READALL reply", fatal=True)
        self._parts.append(data)
        self._have += len(data)
        if self._have < self._need:
            return []
        return self._decode(final=False)

    def finish(self) -> list[WireObject]:
        """The reply ended: the directories still held.

        :raises WireError: it ended before its status, its head or its terminator.
        """
        out = self._decode(final=True) if self._have else []
        if not self.ended:
            raise WireError("READALL reply cut short" if self.status is not None
                            else "READALL reply without a status", fatal=True)
        return out

    def _decode(self, final: bool) -> list[WireObject]:
        parts, self._parts = self._parts, []
        if self._tail:
            parts.insert(0, self._tail)
        buf = parts[0] if len(parts) == 1 else b"".join(parts)
        size = len(buf)
        p = 0
        if not self._head:
            if size < 4:
                return self._keep(buf, 0, 4, final)
            (self.status,) = _I32.unpack_from(buf, 0)
            if self.status != Status.OK:
                # a bare status (spec §2): nothing follows, and nothing after it is read
                self._head = self.ended = True
                self._tail, self._have = b"", 0
                return []
            if size < 12:
                return self._keep(buf, 0, 12, final)
            self.checksum, self.highest = _OBJECT_TAIL.unpack_from(buf, 4)
            self._head = True
            p = 12
        out: list[WireObject] = []
        while not self.ended:
            try:
                obj, nxt = _wire_object(buf, p)
            except _Short as short:
                self._keep(buf, p, short.need - p, final)
                return out
            if obj is None:
                self.ended = True
            else:
                out.append(obj)
            p = nxt
        if p != size:
            raise WireError(f"{size - p} bytes after the end of a READALL reply", fatal=True)
        self._tail, self._have = b"", 0
        return out

    def _keep(self, buf: bytes, p: int, known: int, final: bool) -> list[WireObject]:
        """Hold ``buf[p:]``, the start of a directory that needs *known* bytes at least,
        until enough has come: what it needs when known, and twice what is held, so
        that a big one is decoded a bounded number of times."""
        if final:
            self._tail, self._have = b"", 0
            return []
        tail = buf[p:]
        cap = READALL_OBJECT_MAX
        if len(tail) > cap or known > cap:
            raise WireError(f"a READALL directory of more than {cap} bytes", fatal=True)
        self._tail, self._have = tail, len(tail)
        self._need = max(known, min(2 * len(tail), cap), len(tail) + 1)
        return []


def decode_readall(u: Unpacker) -> tuple[int, int, list[Directory]]:
    """Decode a whole READALL result: (checksum, highest_id, objects), with
    :class:`ReadAllDecoder` over the bytes left in *u*.

    :raises NiError: the status was not NI_OK. :raises WireError:
    """
    d = ReadAllDecoder()
    objs = d.feed(bytes(u.data[u.pos:]))
    if d.status is not None and d.status != Status.OK:
        raise NiError(d.status)
    objs += d.finish()
    u.pos = len(u.data)
    return d.checksum, d.highest, [o.directory() for o in objs]


def iter_readall(value: Any) -> Iterator[bytes]:
    """The READALL reply body in pieces (spec §9.4): the head, one piece per directory,
    the end marker. *value* is the service's ``ReadAll``, or None when the caller is
    current (checksum 0, no objects). Its ``pieces``, when given, are the directories
    already encoded (a lazy source); else ``objects`` are encoded here."""
    if value is None:
        yield encode_readall_head(0, 0)
    else:
        yield encode_readall_head(value.checksum, value.highest)
        if value.pieces is not None:
            yield from value.pieces
        else:
            for d in value.objects:
                yield encode_readall_object(d)
    yield READALL_END


# -- result kinds: how each Kind is encoded by a server and decoded by a client ------------------

class ResultKind(NamedTuple):
    """How results of one :class:`Kind` travel (server and in-process channel encode,
    the client decodes)."""

    #: the service's value → reply body; None: answer SYSTEM_ERR (BIND not served)
    encode: Callable[[ProcInfo, Any], bytes | None]
    #: an NiError status → reply body; None: answer SYSTEM_ERR (the kind has no status)
    failure: Callable[[int], bytes | None]
    #: reply body (at an unpacker) → the value; raises NiError for an error status
    decode: Callable[[ProcInfo, Unpacker], Any]


def _enc_union(info: ProcInfo, value: Any) -> bytes:
    p = Packer()
    p.pack_raw(b"\0\0\0\0")
    info.result.pack(p, value)  # type: ignore[union-attr]
    return p.get_buffer()


def _dec_union(info: ProcInfo, u: Unpacker) -> Any:
    status = u.unpack_int()
    if status != Status.OK:
        raise NiError(status)
    value = info.result.unpack(u)  # type: ignore[union-attr]
    u.done()
    return value


def _enc_void(info: ProcInfo, value: Any) -> bytes:
    return b""


def _dec_void(info: ProcInfo, u: Unpacker) -> None:
    return None


def _enc_bare_proplist(info: ProcInfo, value: Any) -> bytes:
    return encode_proplist(value)


def _dec_bare_proplist(info: ProcInfo, u: Unpacker) -> Proplist:
    props = unpack_proplist(u)
    u.done()
    return props


def _enc_bare_status(info: ProcInfo, value: Any) -> bytes:
    return pack_status(value)


def _dec_bare_status(info: ProcInfo, u: Unpacker) -> int:
    status = u.unpack_int()
    if status != Status.OK:
        raise NiError(status)
    return status


def _enc_bind(info: ProcInfo, value: Any) -> bytes | None:
    # BIND (spec §4.4): an empty success only when /machines lists the child. Otherwise
    # SYSTEM_ERR, as Apple answers, rather than NeXT's silence, so that a pipelined TCP
    # caller is never left waiting (and nibindd needs no timeout).
    return b"" if value else None


def _dec_bind(info: ProcInfo, u: Unpacker) -> bool:
    return True


def _enc_stream(info: ProcInfo, value: Any) -> bytes:
    return b"".join(iter_readall(value))


def _dec_stream(info: ProcInfo, u: Unpacker) -> tuple[int, int, list[Directory]]:
    return decode_readall(u)


def _no_status(status: int) -> None:
    return None


#: THE result-kind table: Kind → (encode, failure, decode).
RESULT_KINDS: dict[Kind, ResultKind] = {
    Kind.UNION: ResultKind(_enc_union, pack_status, _dec_union),
    Kind.VOID: ResultKind(_enc_void, _no_status, _dec_void),
    Kind.BARE_PROPLIST: ResultKind(_enc_bare_proplist, _no_status, _dec_bare_proplist),
    Kind.BARE_STATUS: ResultKind(_enc_bare_status, pack_status, _dec_bare_status),
    Kind.NO_REPLY_UNLESS_OK: ResultKind(_enc_bind, _no_status, _dec_bind),
    Kind.STREAM: ResultKind(_enc_stream, pack_status, _dec_stream),
}
