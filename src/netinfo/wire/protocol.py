"""The NETINFO program (200100000 v2): procedures, argument and result codecs, one table.

Layouts are those of spec §2; the procedure list is spec §4.1. Results that are XDR unions on
``ni_status`` carry a body only when the status is NI_OK (spec §2): the server encodes an
error as the bare status word, via :func:`~netinfo.wire.proplist.pack_status`. The types
every procedure carries (ids, proplists, directories) are :mod:`netinfo.wire.proplist`;
the READALL stream is :mod:`netinfo.wire.readall`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from ..errors import NiError, Status
from ..model import Directory, NiId, Proplist
from .proplist import (
    StoredProplists,
    encode_proplist,
    pack_id,
    pack_property,
    pack_proplist,
    pack_status,
    unpack_id,
    unpack_property,
    unpack_proplist,
    unpack_wire_proplist,
)
from .readall import decode_readall, iter_readall
from .xdr import BIG_LIST_MAX, Packer, Unpacker

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
