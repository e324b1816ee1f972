"""The READALL stream (spec §9.4): its head, its objects (also from stored bytes, without
decoding), its terminator, and :class:`ReadAllDecoder`, which decodes the stream as it
arrives into :class:`WireObject` s.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from ..errors import NiError, Status, WireError
from ..model import Directory, NiId
from .proplist import decode_proplist, encode_proplist, pack_object
from .xdr import BIG_LIST_MAX, LIST_MAX, NAME_MAX, Packer, Unpacker

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
_U32 = struct.Struct(">I")
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

