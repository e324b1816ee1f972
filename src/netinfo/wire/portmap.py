"""The portmapper protocol (program 100000, version 2, RFC 1833 §3) and its registry, pure.

NetInfo relies on GETPORT (to find nibindd) and CALLIT (broadcast binding, spec §1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .xdr import Packer, Struct, Unpacker

PMAP_PROG = 100000
PMAP_VERS = 2
PMAP_PORT = 111
IPPROTO_TCP = 6
IPPROTO_UDP = 17
#: CALLIT arguments are a datagram's worth at most.
CALLIT_ARGS_MAX = 65536


class PmapProc(IntEnum):
    NULL = 0
    SET = 1
    UNSET = 2
    GETPORT = 3
    DUMP = 4
    CALLIT = 5


@dataclass(frozen=True, slots=True)
class Mapping(Struct):
    """``struct mapping {prog, vers, prot, port}``."""

    prog: int
    vers: int
    prot: int
    port: int

    def pack(self, p: Packer) -> None:
        for v in (self.prog, self.vers, self.prot, self.port):
            p.pack_uint(v)

    @classmethod
    def unpack(cls, u: Unpacker) -> Mapping:
        return cls(u.unpack_uint(), u.unpack_uint(), u.unpack_uint(), u.unpack_uint())


def encode_bool(v: bool) -> bytes:
    return b"\0\0\0\x01" if v else b"\0\0\0\0"


def encode_uint(v: int) -> bytes:
    p = Packer()
    p.pack_uint(v)
    return p.get_buffer()


def encode_dump(maps: list[Mapping]) -> bytes:
    """DUMP result: an optional-pointer list of mappings."""
    p = Packer()
    p.pack_pointer_list(maps, lambda m: m.pack(p))
    return p.get_buffer()


#: Mappings a DUMP reply may hold for the client (rpcb.REGISTRY_MAX is the server's).
DUMP_MAX = 65536


def decode_dump(u: Unpacker) -> list[Mapping]:
    return u.unpack_pointer_list(lambda: Mapping.unpack(u), DUMP_MAX, "mappings")


def encode_callit_args(prog: int, vers: int, proc: int, args: bytes) -> bytes:
    p = Packer()
    for v in (prog, vers, proc):
        p.pack_uint(v)
    p.pack_opaque(args)
    return p.get_buffer()


def decode_callit_args(data: bytes) -> tuple[int, int, int, bytes]:
    u = Unpacker(data)
    prog, vers, proc = u.unpack_uint(), u.unpack_uint(), u.unpack_uint()
    args = u.unpack_opaque(CALLIT_ARGS_MAX)
    u.done()
    return prog, vers, proc, args


def encode_callit_result(port: int, result: bytes) -> bytes:
    p = Packer()
    p.pack_uint(port)
    p.pack_opaque(result)
    return p.get_buffer()


def decode_callit_result(u: Unpacker) -> tuple[int, bytes]:
    port = u.unpack_uint()
    return port, u.unpack_opaque(CALLIT_ARGS_MAX)


# The registry that answers version 2 (and rpcbind's 3 and 4) is rpcb.Registry.
