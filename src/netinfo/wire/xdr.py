"""XDR (RFC 4506) on :mod:`struct`: the primitives NetInfo needs, with bounded lengths.

Strings are NetInfo names: 8-bit text the protocol never interprets (spec §2). They are
held as :class:`str` decoded from UTF-8 with ``surrogateescape``, so any byte sequence
survives a decode/encode round trip unchanged.

Decoders raise only :class:`~netinfo.errors.WireError`.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Self, TypeVar

from ..errors import TooLong, WireError

T = TypeVar("T")

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_2U32 = struct.Struct(">II")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_LITTLE = sys.byteorder == "little"

#: ``ni_name`` is ``string<65535>`` in ni_prot.x (spec §2).
NAME_MAX = 65535
#: ``ni_namelist`` and ``ni_proplist`` are declared ``<65535>`` (spec §2).
LIST_MAX = 65535
#: ``ni_idlist``, ``ni_entrylist``, ``ni_proplist_list`` are declared ``<1048576>``.
BIG_LIST_MAX = 1048576
#: opaque_auth bodies are at most 400 bytes (RFC 5531 §8.2).
AUTH_MAX = 400


def opaque(data: bytes) -> bytes:
    """*data* as a variable-length opaque (RFC 4506 §4.10): its length, the bytes, zero
    padding to four (what :meth:`Packer.pack_opaque` appends, in one piece)."""
    n = len(data)
    return _U32.pack(n) + data + _PAD[n & 3]


def encode_str(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def decode_str(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class Packer:
    """Append-only XDR encoder. ``bytes(packer)`` / :meth:`get_buffer` give the result."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def get_buffer(self) -> bytes:
        return b"".join(self._parts)

    __bytes__ = get_buffer

    def pack_raw(self, data: bytes) -> None:
        self._parts.append(data)

    def pack_uint(self, v: int) -> None:
        try:
            self._parts.append(_U32.pack(v))
        except struct.error as e:
            raise ValueError(f"uint out of range: {v!r}") from e

    def pack_int(self, v: int) -> None:
        try:
            self._parts.append(_I32.pack(v))
        except struct.error as e:
            raise ValueError(f"int out of range: {v!r}") from e

    def pack_bool(self, v: bool) -> None:
        self._parts.append(_U32.pack(1 if v else 0))

    def pack_opaque(self, data: bytes) -> None:
        n = len(data)
        self._parts.append(_U32.pack(n))
        self._parts.append(data)
        self._parts.append(_PAD[n & 3])

    def pack_string(self, s: str, maxlen: int = NAME_MAX) -> None:
        b = s.encode("utf-8", "surrogateescape")
        if len(b) > maxlen:
            raise TooLong(f"a name or value of {len(b)} bytes is longer than the protocol's "
                          f"limit of {maxlen} bytes")
        self.pack_opaque(b)

    def pack_array(self, items: Iterable[T], pack_item: Callable[[T], None],
                   maxlen: int = BIG_LIST_MAX) -> None:
        items = list(items)
        if len(items) > maxlen:
            raise TooLong(f"a list of {len(items)} entries is longer than the "
                          f"protocol's limit of {maxlen}")
        self._parts.append(_U32.pack(len(items)))
        for it in items:
            pack_item(it)

    def pack_pointer_list(self, items: Iterable[T], pack_item: Callable[[T], None]) -> None:
        """A chain of optional data (``struct x { ...; x *next; }``, RFC 4506 §4.19):
        TRUE before each item, FALSE after the last (portmapper and rpcbind DUMP)."""
        for item in items:
            self.pack_uint(1)
            pack_item(item)
        self.pack_uint(0)

    def pack_uint_array(self, items: Sequence[int], maxlen: int = BIG_LIST_MAX) -> None:
        n = len(items)
        if n > maxlen:
            raise TooLong(f"a list of {n} entries is longer than the protocol's limit "
                          f"of {maxlen}")
        if isinstance(items, array) and items.typecode == "I" and items.itemsize == 4:
            # A lazy source's child list (array('I')): copied in C, no int per entry
            # (CHILDREN of a million-entry directory, issue 10).
            wire = array("I", items)
            if _LITTLE:
                wire.byteswap()
            self._parts.append(_U32.pack(n))
            self._parts.append(wire.tobytes())
            return
        self._parts.append(struct.pack(f">I{n}I", n, *items))

    def pack_string_array(self, items: Iterable[str], maxlen: int = LIST_MAX) -> None:
        items = list(items)
        if len(items) > maxlen:
            raise TooLong(f"a list of {len(items)} entries is longer than the "
                          f"protocol's limit of {maxlen}")
        parts = self._parts
        parts.append(_U32.pack(len(items)))
        for s in items:
            b = s.encode("utf-8", "surrogateescape")
            n = len(b)
            if n > NAME_MAX:
                raise TooLong(f"a name or value of {n} bytes is longer than the "
                              f"protocol's limit of {NAME_MAX} bytes")
            parts.append(_U32.pack(n))
            parts.append(b)
            parts.append(_PAD[n & 3])


class Unpacker:
    """XDR decoder over a bytes-like buffer; every read is bounds-checked."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def done(self) -> None:
        """Raise :class:`WireError` if bytes remain (RFC 4506 messages are exact)."""
        if self.pos != len(self.data):
            raise WireError(f"{len(self.data) - self.pos} trailing bytes")

    def unpack_uint(self) -> int:
        p = self.pos
        if p + 4 > len(self.data):
            raise WireError("truncated uint")
        self.pos = p + 4
        v: int = _U32.unpack_from(self.data, p)[0]
        return v

    def unpack_int(self) -> int:
        p = self.pos
        if p + 4 > len(self.data):
            raise WireError("truncated int")
        self.pos = p + 4
        v: int = _I32.unpack_from(self.data, p)[0]
        return v

    def unpack_2uint(self) -> tuple[int, int]:
        p = self.pos
        if p + 8 > len(self.data):
            raise WireError("truncated pair")
        self.pos = p + 8
        return _2U32.unpack_from(self.data, p)

    def unpack_bool(self) -> bool:
        v = self.unpack_uint()
        if v > 1:
            raise WireError(f"bad bool {v}")
        return v == 1

    def unpack_opaque(self, maxlen: int = NAME_MAX) -> bytes:
        n = self.unpack_uint()
        if n > maxlen:
            raise WireError(f"opaque length {n} exceeds {maxlen}")
        p = self.pos
        end = p + n
        padded = end + ((4 - (n & 3)) & 3)
        if padded > len(self.data):
            raise WireError("truncated opaque")
        self.pos = padded
        return bytes(self.data[p:end])

    def unpack_string(self, maxlen: int = NAME_MAX) -> str:
        return self.unpack_opaque(maxlen).decode("utf-8", "surrogateescape")

    def _count(self, maxlen: int, min_item: int) -> int:
        n = self.unpack_uint()
        if n > maxlen:
            raise WireError(f"array length {n} exceeds {maxlen}")
        # Each element takes at least min_item bytes: refuse counts the buffer cannot hold
        # before allocating anything (a hostile count must not cost memory).
        if n * min_item > len(self.data) - self.pos:
            raise WireError("truncated array")
        return n

    def unpack_array(self, unpack_item: Callable[[], T], maxlen: int = BIG_LIST_MAX,
                     min_item: int = 4) -> list[T]:
        n = self._count(maxlen, min_item)
        return [unpack_item() for _ in range(n)]

    def unpack_pointer_list(self, unpack_item: Callable[[], T], maxlen: int,
                            what: str = "items") -> list[T]:
        """The chain :meth:`Packer.pack_pointer_list` writes, at most *maxlen* items."""
        out: list[T] = []
        while self.unpack_bool():
            if len(out) >= maxlen:
                raise WireError(f"more than {maxlen} {what}")
            out.append(unpack_item())
        return out

    def unpack_uint_array(self, maxlen: int = BIG_LIST_MAX) -> list[int]:
        n = self._count(maxlen, 4)
        p = self.pos
        self.pos = p + 4 * n
        return list(struct.unpack_from(f">{n}I", self.data, p))

    def unpack_string_array(self, maxlen: int = LIST_MAX) -> list[str]:
        n = self._count(maxlen, 4)
        data = self.data
        size = len(data)
        p = self.pos
        out = []
        for _ in range(n):
            if p + 4 > size:
                raise WireError("truncated string")
            ln = _U32.unpack_from(data, p)[0]
            if ln > NAME_MAX:
                raise WireError(f"string length {ln} exceeds {NAME_MAX}")
            p += 4
            end = p + ln
            if end + ((4 - (ln & 3)) & 3) > size:
                raise WireError("truncated string")
            out.append(data[p:end].decode("utf-8", "surrogateescape"))
            p = end + ((4 - (ln & 3)) & 3)
        self.pos = p
        return out


class Struct:
    """A value type packed as one XDR struct: subclasses give :meth:`pack` and
    :meth:`unpack`; :meth:`encode` and :meth:`decode` (the whole buffer, nothing after
    it) follow from them."""

    __slots__ = ()

    def pack(self, p: Packer) -> None:
        raise NotImplementedError

    @classmethod
    def unpack(cls, u: Unpacker) -> Self:
        raise NotImplementedError

    def encode(self) -> bytes:
        p = Packer()
        self.pack(p)
        return p.get_buffer()

    @classmethod
    def decode(cls, data: bytes) -> Self:
        u = Unpacker(data)
        v = cls.unpack(u)
        u.done()
        return v
