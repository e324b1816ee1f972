"""rpcbind versions 3 and 4 (program 100000, RFC 1833 §2) and the registry that answers
them and portmapper version 2 alike. Pure.

Version 3 and 4 registrations name a transport (``netid``: ``udp``, ``tcp``, ``udp6``,
``tcp6``, ``local``) and a universal address (``h1.h2.h3.h4.p1.p2`` for IPv4, the IPv6
text form followed by ``.p1.p2``, a path for ``local``) instead of a protocol number and a
port; libtirpc services such as Debian's ``ypbind`` register that way, and ``rpcinfo``
without ``-p`` lists them with DUMP. A version 2 SET is the same registration on ``udp``
or ``tcp`` (RFC 1833 §2.2: one table for every version).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .portmap import IPPROTO_TCP, IPPROTO_UDP, Mapping
from .xdr import Packer, Struct, Unpacker

RPCBVERS_3 = 3
RPCBVERS_4 = 4
#: netid, universal address and owner are unbounded strings in RFC 1833; these are ours.
NETID_MAX = 64
UADDR_MAX = 256
OWNER_MAX = 256
#: Registrations held at most (a DUMP answers them all; SET fails past it).
REGISTRY_MAX = 4096

#: The netids of portmapper version 2's protocols.
NETID_OF_PROT = {IPPROTO_UDP: "udp", IPPROTO_TCP: "tcp"}
PROT_OF_NETID = {v: k for k, v in NETID_OF_PROT.items()}


class RpcbProc(IntEnum):
    """RFC 1833 §2.2 (version 3) and §2.3 (version 4, which adds 9–12)."""

    NULL = 0
    SET = 1
    UNSET = 2
    GETADDR = 3
    DUMP = 4
    CALLIT = 5      # BCAST in version 4
    GETTIME = 6
    UADDR2TADDR = 7
    TADDR2UADDR = 8
    GETVERSADDR = 9
    INDIRECT = 10
    GETADDRLIST = 11
    GETSTAT = 12


@dataclass(frozen=True, slots=True)
class Rpcb(Struct):
    """``struct rpcb {prog, vers, netid, addr, owner}``."""

    prog: int
    vers: int
    netid: str
    addr: str
    owner: str = ""

    def pack(self, p: Packer) -> None:
        p.pack_uint(self.prog)
        p.pack_uint(self.vers)
        p.pack_string(self.netid, NETID_MAX)
        p.pack_string(self.addr, UADDR_MAX)
        p.pack_string(self.owner, OWNER_MAX)

    @classmethod
    def unpack(cls, u: Unpacker) -> Rpcb:
        return cls(u.unpack_uint(), u.unpack_uint(), u.unpack_string(NETID_MAX),
                   u.unpack_string(UADDR_MAX), u.unpack_string(OWNER_MAX))


def encode_string(s: str) -> bytes:
    """GETADDR's result: the universal address, "" when not registered."""
    p = Packer()
    p.pack_string(s, UADDR_MAX)
    return p.get_buffer()


def decode_string(data: bytes) -> str:
    u = Unpacker(data)
    s = u.unpack_string(UADDR_MAX)
    u.done()
    return s


def encode_rpcblist(entries: list[Rpcb]) -> bytes:
    """DUMP's result: ``rpcblist_ptr``, an optional-pointer list."""
    p = Packer()
    p.pack_pointer_list(entries, lambda r: r.pack(p))
    return p.get_buffer()


def decode_rpcblist(data: bytes) -> list[Rpcb]:
    u = Unpacker(data)
    out = u.unpack_pointer_list(lambda: Rpcb.unpack(u), REGISTRY_MAX, "registrations")
    u.done()
    return out


def port_of(uaddr: str) -> int | None:
    """The port of an IP universal address (its last two dotted parts), or None."""
    parts = uaddr.rsplit(".", 2)
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 3 for p in parts[1:]):
        return None
    hi, lo = int(parts[1]), int(parts[2])
    if hi > 255 or lo > 255:
        return None
    return hi << 8 | lo


def host_of(uaddr: str) -> str:
    return uaddr.rsplit(".", 2)[0]


def uaddr(host: str, port: int) -> str:
    """``host.p1.p2`` (RFC 1833 §2.1)."""
    return f"{host}.{port >> 8}.{port & 0xFF}"


class Registry:
    """The table of registrations (prog, vers, netid) → (universal address, owner), which
    portmapper version 2 sees through its ``udp`` and ``tcp`` rows."""

    def __init__(self) -> None:
        self._map: dict[tuple[int, int, str], tuple[str, str]] = {}

    # -- version 3 and 4 --------------------------------------------------------------------

    def set_rpcb(self, r: Rpcb) -> bool:
        """RPCBPROC_SET: fails when the (prog, vers, netid) is registered already."""
        key = (r.prog, r.vers, r.netid)
        if key in self._map or len(self._map) >= REGISTRY_MAX or not r.netid:
            return False
        self._map[key] = (r.addr, r.owner)
        return True

    def unset_rpcb(self, r: Rpcb) -> bool:
        """RPCBPROC_UNSET: that netid's registration, or every netid's when it is ""."""
        keys = [k for k in self._map if k[0] == r.prog and k[1] == r.vers
                and (not r.netid or k[2] == r.netid)]
        for k in keys:
            del self._map[k]
        return bool(keys)

    def getaddr(self, prog: int, vers: int, netid: str, any_version: bool = True) -> str:
        """RPCBPROC_GETADDR: the address on *netid*, "" when none. Version 3 and 4's
        GETADDR take another version of the program when the one asked is not there
        (RFC 1833: the caller learns of it by PROG_MISMATCH); GETVERSADDR does not."""
        found = self._map.get((prog, vers, netid))
        if found is None and any_version:
            others = sorted((v, a) for (p, v, n), (a, _) in self._map.items()
                            if p == prog and n == netid)
            if others:
                return others[-1][1]
        return "" if found is None else found[0]

    def dump_rpcb(self) -> list[Rpcb]:
        return [Rpcb(p, v, n, a, o) for (p, v, n), (a, o) in sorted(self._map.items())]

    # -- version 2 --------------------------------------------------------------------------

    def set(self, m: Mapping) -> bool:
        """PMAPPROC_SET: fails when the triple is already mapped (UNSET first)."""
        netid = NETID_OF_PROT.get(m.prot)
        if netid is None:
            return False
        return self.set_rpcb(Rpcb(m.prog, m.vers, netid, uaddr("0.0.0.0", m.port),
                                  "superuser"))

    def unset(self, prog: int, vers: int) -> bool:
        """PMAPPROC_UNSET: every transport's registration of (prog, vers)."""
        return self.unset_rpcb(Rpcb(prog, vers, "", ""))

    def getport(self, prog: int, vers: int, prot: int) -> int:
        netid = NETID_OF_PROT.get(prot)
        found = self._map.get((prog, vers, netid)) if netid else None
        return (port_of(found[0]) or 0) if found else 0

    def dump(self) -> list[Mapping]:
        out = []
        for (p, v, n), (a, _) in sorted(self._map.items()):
            port = port_of(a)
            if n in PROT_OF_NETID and port is not None:
                out.append(Mapping(p, v, PROT_OF_NETID[n], port))
        return out


__all__ = ["RPCBVERS_3", "RPCBVERS_4", "RpcbProc", "Rpcb", "Registry", "encode_string",
           "decode_string", "encode_rpcblist", "decode_rpcblist", "port_of", "host_of",
           "uaddr"]
