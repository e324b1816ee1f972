"""YP (NIS) version 2, program 100004: the arguments and results of its procedures, pure.

Layouts as ``rpcsvc/yp.x`` declares them (the YP v2 protocol), on the RPC layer of
:mod:`.rpc` (RFC 5531). Every length is bounded by the protocol's own constants:
``domainname`` is ``string<256>``, ``mapname`` ``string<64>``, ``peername``
``string<64>``, ``keydat`` and ``valdat`` ``opaque<1024>``. A key or value that does not
fit is refused here (a server leaves such an entry out of its map: a client's XDR
filter would refuse the whole reply).

Two layouts differ from the letter of the old Sun text and follow what every client and
server sends: ``ypresp_key_val`` is the value *then* the key, and FIRST takes a
``ypreq_nokey`` (a trailing empty key, which some clients add, is accepted).

Decoders raise only :class:`~netinfo.errors.WireError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from ..errors import WireError
from .xdr import Packer, Unpacker

YPPROG = 100004
YPVERS = 2
#: version 1 (the original YP) is answered PROG_MISMATCH (2, 2)
YPVERS_ORIG = 1

#: ``keydat`` / ``valdat`` are ``opaque<YPMAXRECORD>``.
YPMAXRECORD = 1024
#: ``domainname`` is ``string<YPMAXDOMAIN>``.
YPMAXDOMAIN = 256
#: ``mapname`` is ``string<YPMAXMAP>``.
YPMAXMAP = 64
#: ``peername`` is ``string<YPMAXPEER>``.
YPMAXPEER = 64
#: MAPLIST answers at most this many names (a linked list a client walks whole).
MAPLIST_MAX = 4096


class YpProc(IntEnum):
    NULL = 0
    DOMAIN = 1
    DOMAIN_NONACK = 2
    MATCH = 3
    FIRST = 4
    NEXT = 5
    XFR = 6
    CLEAR = 7
    ALL = 8
    MASTER = 9
    ORDER = 10
    MAPLIST = 11


class YpStat(IntEnum):
    """``enum ypstat``."""

    TRUE = 1
    NOMORE = 2
    FALSE = 0
    NOMAP = -1
    NODOM = -2
    NOKEY = -3
    BADOP = -4
    BADDB = -5
    YPERR = -6
    BADARGS = -7
    VERS = -8


class YpXfrStat(IntEnum):
    """``enum ypxfrstat`` (the values a server that does not push maps uses)."""

    SUCC = 1
    AGE = 2
    NOMAP = -1
    NODOM = -2
    RSRC = -3
    RPC = -4
    MADDR = -5
    YPERR = -6
    BADARGS = -7
    DBM = -8
    FILE = -9
    SKEW = -10
    CLEAR = -11
    FORCE = -12
    XFRERR = -13
    REFUSED = -14


# -- arguments ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReqNokey:
    """``ypreq_nokey``: FIRST, ALL, MASTER, ORDER."""

    domain: str
    map: str


@dataclass(frozen=True, slots=True)
class ReqKey:
    """``ypreq_key``: MATCH, NEXT."""

    domain: str
    map: str
    key: bytes


@dataclass(frozen=True, slots=True)
class ReqXfr:
    """``ypreq_xfr``: XFR (``ypmap_parms`` then transid, prog, port)."""

    domain: str
    map: str
    ordernum: int
    peer: str
    transid: int
    prog: int
    port: int


def _domain(u: Unpacker) -> str:
    return u.unpack_string(YPMAXDOMAIN)


def _map(u: Unpacker) -> str:
    return u.unpack_string(YPMAXMAP)


def decode_domain(data: bytes) -> str:
    """DOMAIN, DOMAIN_NONACK, MAPLIST: a ``domainname``."""
    u = Unpacker(data)
    d = _domain(u)
    u.done()
    return d


def decode_nokey(data: bytes, trailing_key: bool = False) -> ReqNokey:
    """A ``ypreq_nokey``; with *trailing_key* an optional ``keydat`` after it is read and
    ignored (FIRST)."""
    u = Unpacker(data)
    req = ReqNokey(_domain(u), _map(u))
    if trailing_key and u.remaining():
        u.unpack_opaque(YPMAXRECORD)
    u.done()
    return req


def decode_key(data: bytes) -> ReqKey:
    u = Unpacker(data)
    req = ReqKey(_domain(u), _map(u), u.unpack_opaque(YPMAXRECORD))
    u.done()
    return req


def decode_xfr(data: bytes) -> ReqXfr:
    u = Unpacker(data)
    domain, name, order = _domain(u), _map(u), u.unpack_uint()
    peer = u.unpack_string(YPMAXPEER)
    req = ReqXfr(domain, name, order, peer, u.unpack_uint(), u.unpack_uint(), u.unpack_uint())
    u.done()
    return req


def encode_domain(domain: str) -> bytes:
    p = Packer()
    p.pack_string(domain, YPMAXDOMAIN)
    return p.get_buffer()


def encode_nokey(domain: str, name: str) -> bytes:
    p = Packer()
    p.pack_string(domain, YPMAXDOMAIN)
    p.pack_string(name, YPMAXMAP)
    return p.get_buffer()


def encode_key(domain: str, name: str, key: bytes) -> bytes:
    p = Packer()
    p.pack_string(domain, YPMAXDOMAIN)
    p.pack_string(name, YPMAXMAP)
    _pack_datum(p, key)
    return p.get_buffer()


def encode_xfr(req: ReqXfr) -> bytes:
    p = Packer()
    p.pack_string(req.domain, YPMAXDOMAIN)
    p.pack_string(req.map, YPMAXMAP)
    p.pack_uint(req.ordernum)
    p.pack_string(req.peer, YPMAXPEER)
    for v in (req.transid, req.prog, req.port):
        p.pack_uint(v)
    return p.get_buffer()


# -- results -----------------------------------------------------------------------------------

def fits(datum: bytes) -> bool:
    """Can *datum* travel as a ``keydat`` / ``valdat``?"""
    return len(datum) <= YPMAXRECORD


def _pack_datum(p: Packer, datum: bytes) -> None:
    if len(datum) > YPMAXRECORD:
        raise ValueError(f"a YP key or value of {len(datum)} bytes is longer than "
                         f"{YPMAXRECORD}")
    p.pack_opaque(datum)


def encode_bool(v: bool) -> bytes:
    return b"\0\0\0\x01" if v else b"\0\0\0\0"


def encode_val(stat: int, val: bytes = b"") -> bytes:
    """``ypresp_val``: MATCH."""
    p = Packer()
    p.pack_int(stat)
    _pack_datum(p, val)
    return p.get_buffer()


def encode_key_val(stat: int, key: bytes = b"", val: bytes = b"") -> bytes:
    """``ypresp_key_val``: FIRST, NEXT (the value first, then the key)."""
    p = Packer()
    p.pack_int(stat)
    _pack_datum(p, val)
    _pack_datum(p, key)
    return p.get_buffer()


def encode_all_entry(stat: int, key: bytes = b"", val: bytes = b"") -> bytes:
    """One ``ypresp_all`` with ``more`` TRUE: an entry (stat TRUE) or the end of a
    failed or finished stream (stat NOMORE, NOMAP, ...)."""
    return b"\0\0\0\x01" + encode_key_val(stat, key, val)


#: The ``ypresp_all`` with ``more`` FALSE that ends the stream.
ALL_END = b"\0\0\0\0"


def encode_master(stat: int, peer: str = "") -> bytes:
    p = Packer()
    p.pack_int(stat)
    p.pack_string(peer, YPMAXPEER)
    return p.get_buffer()


def encode_order(stat: int, ordernum: int = 0) -> bytes:
    p = Packer()
    p.pack_int(stat)
    p.pack_uint(ordernum & 0xFFFFFFFF)
    return p.get_buffer()


def encode_maplist(stat: int, maps: Iterable[str] = ()) -> bytes:
    """``ypresp_maplist``: the stat, then the names as an optional-pointer list."""
    p = Packer()
    p.pack_int(stat)
    n = 0
    for name in maps:
        n += 1
        if n > MAPLIST_MAX:
            raise ValueError(f"more than {MAPLIST_MAX} maps")
        p.pack_bool(True)
        p.pack_string(name, YPMAXMAP)
    p.pack_bool(False)
    return p.get_buffer()


def encode_xfr_result(transid: int, stat: int) -> bytes:
    """``ypresp_xfr``."""
    p = Packer()
    p.pack_uint(transid)
    p.pack_int(stat)
    return p.get_buffer()


# -- results, decoded (the client side: tests, tools) -----------------------------------------

def _stat(u: Unpacker) -> int:
    return u.unpack_int()


def decode_bool(data: bytes) -> bool:
    u = Unpacker(data)
    v = u.unpack_bool()
    u.done()
    return v


def decode_val(data: bytes) -> tuple[int, bytes]:
    u = Unpacker(data)
    out = (_stat(u), u.unpack_opaque(YPMAXRECORD))
    u.done()
    return out


def unpack_key_val(u: Unpacker) -> tuple[int, bytes, bytes]:
    """(stat, key, value) of a ``ypresp_key_val`` (sent value first)."""
    stat = _stat(u)
    val = u.unpack_opaque(YPMAXRECORD)
    return stat, u.unpack_opaque(YPMAXRECORD), val


def decode_key_val(data: bytes) -> tuple[int, bytes, bytes]:
    u = Unpacker(data)
    out = unpack_key_val(u)
    u.done()
    return out


def decode_all(data: bytes, limit: int = 1 << 24) -> tuple[list[tuple[bytes, bytes]], int]:
    """A whole ALL reply body: ((key, value) entries, the stat that ended it: NOMORE
    when the map was sent whole)."""
    u = Unpacker(data)
    out: list[tuple[bytes, bytes]] = []
    end = int(YpStat.NOMORE)
    while u.unpack_bool():
        stat, key, val = unpack_key_val(u)
        if stat != YpStat.TRUE:
            end = stat
            continue
        if len(out) >= limit:
            raise WireError(f"more than {limit} entries")
        out.append((key, val))
    u.done()
    return out, end


def decode_master(data: bytes) -> tuple[int, str]:
    u = Unpacker(data)
    out = (_stat(u), u.unpack_string(YPMAXPEER))
    u.done()
    return out


def decode_order(data: bytes) -> tuple[int, int]:
    u = Unpacker(data)
    out = (_stat(u), u.unpack_uint())
    u.done()
    return out


def decode_maplist(data: bytes) -> tuple[int, list[str]]:
    u = Unpacker(data)
    stat = _stat(u)
    maps: list[str] = []
    while u.unpack_bool():
        if len(maps) >= MAPLIST_MAX:
            raise WireError(f"more than {MAPLIST_MAX} maps")
        maps.append(_map(u))
    u.done()
    return stat, maps


def decode_xfr_result(data: bytes) -> tuple[int, int]:
    u = Unpacker(data)
    out = (u.unpack_uint(), u.unpack_int())
    u.done()
    return out


__all__ = [
    "YPPROG", "YPVERS", "YPMAXRECORD", "YPMAXDOMAIN", "YPMAXMAP", "YPMAXPEER",
    "YpProc", "YpStat", "YpXfrStat", "ReqNokey", "ReqKey", "ReqXfr",
    "decode_domain", "decode_nokey", "decode_key", "decode_xfr",
    "encode_domain", "encode_nokey", "encode_key", "encode_xfr", "fits",
    "encode_bool", "encode_val", "encode_key_val", "encode_all_entry", "ALL_END",
    "encode_master", "encode_order", "encode_maplist", "encode_xfr_result",
    "decode_bool", "decode_val", "unpack_key_val", "decode_key_val", "decode_all",
    "decode_master", "decode_order", "decode_maplist", "decode_xfr_result",
]
