"""The change history's records and its RPC program, as bytes (issue 24).

A domain's journal keeps one :class:`Entry` per write: its sequence number, when it was
made, who made it (the caller as authenticated, spec §10.2), the NETINFO procedure
(spec §4.1), the path of the directory it wrote at the time, and the states before and
after of every directory it touched (:class:`State`: instance, parent, position,
proplist, spec §5.1). The engines store an entry as the XDR bytes of :func:`pack_entry`
(the same bytes go over the wire), beside a few columns to search on.

The history program (docs/architecture.md, "The change history"): RPC program
:data:`HISTORY_PROG` (200100002, in the user-defined range, after NETINFO's 200100000 and
NIBIND's 200100001), version 1, on netinfod's TCP port (never UDP):

========  =====================  ================================================
proc      arguments              result
========  =====================  ================================================
0 NULL    void                   void
1 QUERY   :class:`Query`         status, then (entries, more, next cursor)
========  =====================  ================================================

A reply carries at most ``Query.limit`` (at most :data:`PAGE_MAX`) entries and about
:data:`PAGE_BYTES` bytes; ``more`` says whether a next page exists and the next call
passes the cursor it gave. Status is a NETINFO status (spec §3): NI_PERM for an
anonymous caller, NI_AUTHERROR and NI_NOUSER for a credential that does not
authenticate.

Pure: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import WireError
from ..model import Proplist
from .proplist import encode_proplist, pack_proplist, unpack_proplist
from .xdr import BIG_LIST_MAX, Packer, Unpacker

#: The history program's number (user-defined range 0x20000000-0x3FFFFFFF) and version.
HISTORY_PROG = 200100002
HISTORY_VERS = 1
#: Its procedures.
PROC_NULL = 0
PROC_QUERY = 1
#: The most entries one reply carries, and about how many bytes.
PAGE_MAX = 1000
PAGE_BYTES = 512 * 1024
#: Longest path or user name an entry carries.
TEXT_MAX = 1 << 20
#: ``Entry.proc`` of a whole new tree (an import, a clone's copy: ``Change.proc`` None).
WHOLE_TREE = 0xFFFFFFFF
#: ``Entry.dir`` when there is no one directory (a whole new tree).
NO_DIR = 0xFFFFFFFF
#: ``State.position`` when the write did not move the directory (``DirState.position``).
NO_POSITION = -1

#: A state's flag: present, with the same proplist as the state before (not repeated).
SAME_PROPS = 2

#: Caller flags (spec §10.2): the local superuser by reserved port, the owner of an
#: unprivileged server by uid, an update pushed by the master.
SUPERUSER = 1
OWNER = 2
FROM_MASTER = 4


class State(NamedTuple):
    """A directory's state at one moment (``changes.DirState``)."""

    instance: int
    parent: int
    position: int        # NO_POSITION: unchanged by the write
    props: Proplist


class Dir(NamedTuple):
    """One directory a write touched: its number and states (None: did not exist)."""

    id: int
    before: State | None
    after: State | None


class Entry(NamedTuple):
    """One write in the journal."""

    seq: int
    #: microseconds since the epoch (UTC)
    time: int
    #: the authenticated user ("" anonymous); "root" for the superuser
    user: str
    #: SUPERUSER | OWNER | FROM_MASTER
    flags: int
    addr: str
    port: int
    #: the NETINFO procedure (spec §4.1), or WHOLE_TREE
    proc: int
    #: the written directory's path at the time ("/" for the root)
    path: str
    #: the written directory (a CREATE's new one, a DESTROY's destroyed one), or NO_DIR
    dir: int
    touched: tuple[Dir, ...]


class Query(NamedTuple):
    """What a QUERY asks for. Entries come newest first (``oldest_first`` false), from
    ``cursor`` on (0: the newest, or the oldest): seq < cursor newest first, seq >
    cursor oldest first."""

    cursor: int = 0
    oldest_first: bool = False
    #: only entries made in [since, until) microseconds (0: no bound)
    since: int = 0
    until: int = 0
    #: only this user's entries ("": anyone)
    user: str = ""
    #: only entries whose path is this one or below it ("": anywhere)
    path: str = ""
    #: only entries touching this directory (NO_DIR: any)
    dir: int = NO_DIR
    #: only entries with seq in [min_seq, max_seq] (0: no bound)
    min_seq: int = 0
    max_seq: int = 0
    limit: int = 100


class Page(NamedTuple):
    """A QUERY's answer."""

    entries: list[Entry]
    more: bool
    cursor: int


# -- codecs ---------------------------------------------------------------------------------

def _pack_u64(p: Packer, v: int) -> None:
    p.pack_uint((v >> 32) & 0xFFFFFFFF)
    p.pack_uint(v & 0xFFFFFFFF)


def _unpack_u64(u: Unpacker) -> int:
    hi, lo = u.unpack_2uint()
    return (hi << 32) | lo


_STATE_HEAD = struct.Struct(">IIIi")


def _pack_state(p: Packer, s: State | None, encoded: dict[int, bytes] | None = None,
                before: State | None = None) -> None:
    if s is None:
        p.pack_uint(0)
        return
    if before is not None and before.props == s.props:
        p.pack_raw(_STATE_HEAD.pack(SAME_PROPS, s.instance, s.parent, s.position))
        return
    p.pack_raw(_STATE_HEAD.pack(1, s.instance, s.parent, s.position))
    props = s.props
    if encoded is None:
        pack_proplist(p, props)
        return
    # a proplist the write did not change is the same object before and after (the
    # service replaces proplists, never edits them): encoded once
    blob = encoded.get(id(props))
    if blob is None:
        blob = encoded[id(props)] = encode_proplist(props)
    p.pack_raw(blob)


def _unpack_state(u: Unpacker, before: State | None = None) -> State | None:
    flag = u.unpack_uint()
    if flag == 0:
        return None
    instance, parent = u.unpack_2uint()
    position = u.unpack_int()
    if flag == SAME_PROPS and before is not None:
        return State(instance, parent, position, before.props)
    if flag != 1:
        raise WireError(f"bad state flag {flag}")
    return State(instance, parent, position, list(unpack_proplist(u)))


def _unpack_dir(u: Unpacker) -> Dir:
    oid = u.unpack_uint()
    before = _unpack_state(u)
    return Dir(oid, before, _unpack_state(u, before))


def pack_entry(p: Packer, e: Entry, encoded: dict[int, bytes] | None = None) -> None:
    """*e* as XDR; *encoded* (id of a proplist → its bytes) lets a caller share the
    encoding of proplists among the entries of one batch while they are alive."""
    _pack_u64(p, e.seq)
    _pack_u64(p, e.time)
    p.pack_string(e.user)
    p.pack_uint(e.flags)
    p.pack_string(e.addr)
    p.pack_uint(e.port)
    p.pack_uint(e.proc)
    p.pack_string(e.path, TEXT_MAX)
    p.pack_uint(e.dir)
    p.pack_uint(len(e.touched))
    for d in e.touched:
        p.pack_uint(d.id)
        _pack_state(p, d.before, encoded)
        _pack_state(p, d.after, encoded, d.before)


def unpack_entry(u: Unpacker) -> Entry:
    seq = _unpack_u64(u)
    when = _unpack_u64(u)
    user = u.unpack_string()
    flags = u.unpack_uint()
    addr = u.unpack_string()
    port, proc = u.unpack_2uint()
    path = u.unpack_string(TEXT_MAX)
    oid = u.unpack_uint()
    touched = tuple(u.unpack_array(lambda: _unpack_dir(u), BIG_LIST_MAX, 12))
    return Entry(seq, when, user, flags, addr, port, proc, path, oid, touched)


_U32 = struct.Struct(">I").pack
_HEAD = struct.Struct(">IIII").pack
_PADS = (b"", b"\0\0\0", b"\0\0", b"\0")
_NONE = b"\0\0\0\0"
#: A state: (instance, parent, position or None, proplist), as ``changes.DirState``.
StateLike = tuple[int, int, "int | None", Proplist]


def _text(s: str) -> bytes:
    b = s.encode("utf-8", "surrogateescape")
    n = len(b)
    if n > TEXT_MAX:
        raise ValueError(f"a text of {n} bytes is longer than {TEXT_MAX}")
    return _U32(n) + b + _PADS[n & 3]


def encode_record(seq: int, when: int, user: str, flags: int, addr: str, port: int,
                  proc: int, path: str, oid: int,
                  touched: Sequence[tuple[int, StateLike | None, StateLike | None]],
                  encoded: dict[int, bytes]) -> bytes:
    """:func:`encode_entry`'s bytes straight from a write's record (``changes.Touched``
    states, position None for :data:`NO_POSITION`), without building the entry: the
    journal's hot path, one call per write. *encoded*: as :func:`pack_entry`'s."""
    parts = [_HEAD(seq >> 32, seq & 0xFFFFFFFF, when >> 32, when & 0xFFFFFFFF),
             _text(user), _U32(flags), _text(addr), _U32(port), _U32(proc), _text(path),
             _U32(oid), _U32(len(touched))]
    add = parts.append
    for did, before, after in touched:
        add(_U32(did))
        for st in (before, after):
            if st is None:
                add(_NONE)
                continue
            pos = st[2]
            props = st[3]
            if st is after and before is not None and (before[3] is props
                                                       or before[3] == props):
                # the proplist the write did not change (a parent's instance bump)
                add(_STATE_HEAD.pack(SAME_PROPS, st[0], st[1],
                                     NO_POSITION if pos is None else pos))
                continue
            add(_STATE_HEAD.pack(1, st[0], st[1], NO_POSITION if pos is None else pos))
            blob = encoded.get(id(props))
            if blob is None:
                blob = encoded[id(props)] = encode_proplist(props)
            add(blob)
    return b"".join(parts)


def encode_entry(e: Entry, encoded: dict[int, bytes] | None = None) -> bytes:
    """An entry as stored (and sent)."""
    p = Packer()
    pack_entry(p, e, encoded)
    return p.get_buffer()


def decode_entry(data: bytes) -> Entry:
    """:func:`encode_entry`'s bytes back. :raises WireError: not an entry."""
    u = Unpacker(data)
    e = unpack_entry(u)
    u.done()
    return e


def encode_query(q: Query) -> bytes:
    p = Packer()
    _pack_u64(p, q.cursor)
    p.pack_bool(q.oldest_first)
    _pack_u64(p, q.since)
    _pack_u64(p, q.until)
    p.pack_string(q.user)
    p.pack_string(q.path, TEXT_MAX)
    p.pack_uint(q.dir)
    _pack_u64(p, q.min_seq)
    _pack_u64(p, q.max_seq)
    p.pack_uint(q.limit)
    return p.get_buffer()


def decode_query(data: bytes) -> Query:
    """:raises WireError: not a query."""
    u = Unpacker(data)
    q = Query(_unpack_u64(u), u.unpack_bool(), _unpack_u64(u), _unpack_u64(u),
              u.unpack_string(), u.unpack_string(TEXT_MAX), u.unpack_uint(),
              _unpack_u64(u), _unpack_u64(u), u.unpack_uint())
    u.done()
    return q


def encode_page(status: int, page: Page | None = None, stored: Sequence[bytes] = ()) -> bytes:
    """A QUERY's reply body: the status, then on NI_OK the entries (*stored*: their
    :func:`encode_entry` bytes as the journal keeps them, sent unchanged), ``more`` and
    the next cursor."""
    p = Packer()
    p.pack_uint(status)
    if status == 0:
        assert page is not None
        p.pack_uint(len(stored))
        for blob in stored:
            p.pack_raw(blob)
        p.pack_bool(page.more)
        _pack_u64(p, page.cursor)
    return p.get_buffer()


def decode_page(data: bytes) -> tuple[int, Page | None]:
    """(status, page): the page when the status is NI_OK. :raises WireError."""
    u = Unpacker(data)
    status = u.unpack_uint()
    if status != 0:
        u.done()
        return status, None
    entries = u.unpack_array(lambda: unpack_entry(u), PAGE_MAX, 32)
    more = u.unpack_bool()
    cursor = _unpack_u64(u)
    u.done()
    return 0, Page(entries, more, cursor)


__all__ = ["HISTORY_PROG", "HISTORY_VERS", "PROC_NULL", "PROC_QUERY", "PAGE_MAX",
           "PAGE_BYTES", "WHOLE_TREE", "NO_DIR", "NO_POSITION", "SUPERUSER", "OWNER",
           "FROM_MASTER", "State", "Dir", "Entry", "Query", "Page", "pack_entry",
           "unpack_entry", "encode_entry", "encode_record", "decode_entry", "encode_query",
           "decode_query", "encode_page", "decode_page"]
