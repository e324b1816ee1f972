"""The NIBIND program (nibindd, 200100001 v1): types, codecs and the tag registry, pure.

Spec §6.1 (types), §6.2 (procedures and who may call them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

from ..errors import NiError, Status
from .xdr import Packer, Unpacker

#: the argument structures :func:`decode_struct` decodes
T = TypeVar("T", "Registration", "CloneArgs", "BindArgs")

NIBIND_PROG = 200100001
NIBIND_VERS = 1
#: ``nibind_listreg_res`` carries at most 32 registrations (spec §6.1).
LISTREG_MAX = 32


class BindProc(IntEnum):
    PING = 0
    REGISTER = 1
    UNREGISTER = 2
    GETREGISTER = 3
    LISTREG = 4
    CREATEMASTER = 5
    CREATECLONE = 6
    DESTROYDOMAIN = 7
    BIND = 8
    #: opennetinfo extension: make the clone serving a tag its domain's master
    #: (``nidomain -p``); original clients never call it, original servers lack it.
    PROMOTE = 100


#: Procedures only a privileged caller may use (spec §6.2).
PRIVILEGED = frozenset({BindProc.REGISTER, BindProc.UNREGISTER, BindProc.CREATEMASTER,
                        BindProc.CREATECLONE, BindProc.DESTROYDOMAIN, BindProc.PROMOTE})
#: Procedures a portmapper may forward through CALLIT: the ones anyone may call. A
#: forwarded call leaves from the local host, so administration must never be reachable
#: that way (as rpcbind refuses indirect calls to its own SET/UNSET/CALLIT).
FORWARDABLE = frozenset({BindProc.PING, BindProc.BIND, BindProc.GETREGISTER,
                         BindProc.LISTREG})

#: Longest tag accepted (a file name component, ``TAG.nidb``, stays well under 255).
TAG_MAX = 64
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def valid_tag(tag: str) -> bool:
    """A tag names a database file (``DIR/TAG.nidb``), so only letters, digits, ``.``,
    ``_`` and ``-``, 1 to :data:`TAG_MAX` characters, not starting with ``.`` or ``-``:
    no ``/``, no ``..``, no NUL, nothing that leaves the database directory."""
    return (0 < len(tag) <= TAG_MAX and tag[0] not in ".-" and ".." not in tag
            and all(c in _TAG_CHARS for c in tag))


@dataclass(frozen=True, slots=True)
class Registration:
    """``nibind_registration``: a tag and its UDP and TCP ports."""

    tag: str
    udp_port: int
    tcp_port: int

    def pack(self, p: Packer) -> None:
        p.pack_string(self.tag)
        p.pack_uint(self.udp_port)
        p.pack_uint(self.tcp_port)

    @classmethod
    def unpack(cls, u: Unpacker) -> Registration:
        return cls(u.unpack_string(), u.unpack_uint(), u.unpack_uint())


@dataclass(frozen=True, slots=True)
class CloneArgs:
    """``nibind_clone_args`` (spec §6.1)."""

    tag: str
    master_name: str
    master_addr: int
    master_tag: str

    def pack(self, p: Packer) -> None:
        p.pack_string(self.tag)
        p.pack_string(self.master_name)
        p.pack_uint(self.master_addr)
        p.pack_string(self.master_tag)

    @classmethod
    def unpack(cls, u: Unpacker) -> CloneArgs:
        return cls(u.unpack_string(), u.unpack_string(), u.unpack_uint(), u.unpack_string())


@dataclass(frozen=True, slots=True)
class BindArgs:
    """``nibind_bind_args``: a child (address, tag) looking for a parent tag (spec §6.3)."""

    client_addr: int
    client_tag: str
    server_tag: str

    def pack(self, p: Packer) -> None:
        p.pack_uint(self.client_addr)
        p.pack_string(self.client_tag)
        p.pack_string(self.server_tag)

    @classmethod
    def unpack(cls, u: Unpacker) -> BindArgs:
        return cls(u.unpack_uint(), u.unpack_string(), u.unpack_string())


def _enc(fn: Callable[..., None], *values: Any) -> bytes:
    p = Packer()
    fn(p, *values)
    return p.get_buffer()


def encode_tag(tag: str) -> bytes:
    return _enc(Packer.pack_string, tag)


def decode_tag(data: bytes) -> str:
    u = Unpacker(data)
    tag = u.unpack_string()
    u.done()
    return tag


def encode_struct(obj: Registration | CloneArgs | BindArgs) -> bytes:
    """One NIBIND argument structure as XDR bytes."""
    return _enc(lambda p: obj.pack(p))


def decode_struct(cls: type[T], data: bytes) -> T:
    """One NIBIND argument structure; trailing bytes are an error.

    :raises WireError: the bytes do not decode.
    """
    u = Unpacker(data)
    obj = cls.unpack(u)
    u.done()
    return obj


def encode_registration(r: Registration) -> bytes:
    return encode_struct(r)


def decode_registration(data: bytes) -> Registration:
    return decode_struct(Registration, data)


def encode_clone_args(a: CloneArgs) -> bytes:
    return encode_struct(a)


def decode_clone_args(data: bytes) -> CloneArgs:
    return decode_struct(CloneArgs, data)


def encode_bind_args(a: BindArgs) -> bytes:
    return encode_struct(a)


def decode_bind_args(data: bytes) -> BindArgs:
    return decode_struct(BindArgs, data)


def encode_status(status: int) -> bytes:
    return _enc(Packer.pack_int, status)


def encode_getregister_res(status: int, udp_port: int = 0, tcp_port: int = 0) -> bytes:
    p = Packer()
    p.pack_int(status)
    if status == Status.OK:
        p.pack_uint(udp_port)
        p.pack_uint(tcp_port)
    return p.get_buffer()


def decode_getregister_res(u: Unpacker) -> tuple[int, int]:
    """(udp_port, tcp_port). :raises NiError: status ≠ NI_OK (e.g. NI_NOTAG)."""
    status = u.unpack_int()
    if status != Status.OK:
        raise NiError(status)
    return u.unpack_uint(), u.unpack_uint()


def encode_listreg_res(regs: list[Registration]) -> bytes:
    p = Packer()
    p.pack_int(Status.OK)
    p.pack_array(regs[:LISTREG_MAX], lambda r: r.pack(p), LISTREG_MAX)
    return p.get_buffer()


def decode_listreg_res(u: Unpacker) -> list[Registration]:
    status = u.unpack_int()
    if status != Status.OK:
        raise NiError(status)
    return u.unpack_array(lambda: Registration.unpack(u), LISTREG_MAX, 12)


def decode_status(u: Unpacker) -> int:
    return u.unpack_int()
