"""netinfod's short path for the hot reads (issue 20): from the received record to the
reply bytes with as little as possible in between.

The NETINFO row (``netinfod.netinfo_program``) carries a :class:`FastPath` as its
``fast`` field; ``Dispatcher.handle`` offers it every TCP record of a caller that is not
the master pushing updates, before the RPC prologue. It answers only calls of the shape
every NetInfo client sends (RPC version 2, NETINFO version 2, AUTH_NONE credential and
verifier: the record's 36 bytes after the xid are one of :data:`FAST_PROCS`' precompiled
headers, one dict lookup) for a read whose outcome depends on the domain alone (spec
§4.2: reads ignore instances and the caller; none is authenticated). Anything else
— AUTH_UNIX credentials, other programs, writes, UDP, calls someone watches
(``Database.watch_calls``) — goes the normal way, as does a miss.

What it keeps is a bounded table of replies: the call's bytes after the xid (procedure
and arguments) → the accepted-reply header and body. A hit is the xid of the call and
the stored bytes joined. A miss of READ, SELF, PARENT, READPROP, LOOKUP or LOOKUPREAD
whose arguments are well formed is decoded here with precompiled structs (the codec's
checks: exact length, string bounds) and answered by ``Database.answer`` as the row's
handler would (its counters, its SYSTEM_ERR); any other miss — LIST (a big one is
streamed), arguments that do not decode — by the normal path (``slow``: prologue, the
row's handler), so errors are the normal path's (NI_BADID, NI_NODIR, NI_NOPROP,
GARBAGE_ARGS). A reply is kept when it may be: a success or one of
:data:`KEPT_STATUSES`, read while no write was pending (``Database.read_state``), no
bigger than :data:`MAX_REPLY`, and asked for the second time within the table's size in
misses (``admission.Doorkeeper``: random reads over far more directories than the table
holds would only churn it).

Every argument of these procedures starts with the directory's id (spec §2), and the
reply depends on that directory and its children only (LOOKUP, LOOKUPREAD, LIST search
its children; READ, READPROP, SELF, PARENT read it). So the entries are filed under the
directory number, and each durable write (``Database.subscribe``: ``Change.touched``)
drops the entries of every directory it touched and of their parents before and after;
a whole new tree (``proc`` None) or a change no record describes (``read_state``'s
number moving) drops them all. Nothing security-relevant is passed by: TCP peers were
admitted by ``trusted_networks`` and the peer bounds before any record was read, the
connection's reply budget still counts these replies, and big LIST/LISTALL streams
(bounded by the database's stream limits) are never kept.
"""

from __future__ import annotations

import logging
import struct
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import DamagedDirectory, Status
from ..model import NiId
from ..storage.cached import StoreWait
from ..storage.changes import Change
from ..wire import rpc
from ..wire.protocol import NETINFO_PROG, NETINFO_VERS, Proc
from ..wire.rpc import AcceptStat
from ..wire.xdr import NAME_MAX
from .admission import Doorkeeper
from .database import Database

log = logging.getLogger("netinfo.server")

#: The reads answered here: each one's arguments start with a directory id (spec §2).
FAST_PROCS = (Proc.READ, Proc.LOOKUP, Proc.LOOKUPREAD, Proc.READPROP, Proc.LIST,
              Proc.SELF, Proc.PARENT)
#: Error statuses kept like results: what the domain alone decides (not NI_SERIAL, a
#: damaged directory, which is logged on each read).
KEPT_STATUSES = frozenset({Status.BADID, Status.NODIR, Status.NOPROP})
#: Replies kept at most, and their bytes (call keys and replies) at most.
MAX_ENTRIES = 100_000
MAX_BYTES = 32 << 20
#: A reply bigger than this is not kept (a LIST of a directory of thousands).
MAX_REPLY = 16 << 10
#: What an entry costs beyond its bytes (the ordered dict's slot and link, two bytes
#: objects' headers, the directory index's set slot): measured, 1M users, RSS +44 MiB
#: for the table at its byte bound with 160 counted here, so about twice that.
ENTRY_OVERHEAD = 320

_CALL_HEAD = struct.Struct(">IIIIIIIII")
#: The accepted-success header after the xid: REPLY, MSG_ACCEPTED, AUTH_NONE verifier
#: of length 0, SUCCESS (RFC 5531 §9).
_ACCEPTED = rpc.reply_success(0)[4:]
_OFFSET = 4 + len(_ACCEPTED)           # where the NETINFO status starts in a reply
_ARGS = 40                             # where a fast call's arguments start
_STATUS = struct.Struct(">I")
_ID = struct.Struct(">II")
_ID_N = struct.Struct(">III")
#: procedures whose arguments are one id, exactly 8 bytes (spec §2)
_ID_ONLY = frozenset({Proc.READ, Proc.SELF, Proc.PARENT})
#: ... an id and two strings (LOOKUP, LOOKUPREAD: key, value)
_ID_2STR = frozenset({Proc.LOOKUP, Proc.LOOKUPREAD})


def decode_args(proc: int, record: bytes) -> tuple[Any, ...] | None:
    """The arguments of a call of *proc* (its record, arguments at byte 40) as the
    protocol's codecs decode them, or None when they are not plainly well formed (the
    normal path then answers, GARBAGE_ARGS or not). Strings as ``Unpacker.unpack_string``:
    at most NAME_MAX bytes, padded to 4, UTF-8 with surrogate escapes; nothing after."""
    n = len(record)
    if proc in _ID_ONLY:
        return (NiId(*_ID.unpack_from(record, _ARGS)),) if n == _ARGS + 8 else None
    if proc == Proc.READPROP:
        if n != _ARGS + 12:
            return None
        o, i, idx = _ID_N.unpack_from(record, _ARGS)
        return (NiId(o, i), idx)
    if proc not in _ID_2STR:
        return None
    parts = lookup_parts(record)
    return None if parts is None else lookup_args(parts)


def lookup_args(parts: tuple[int, int, bytes, bytes]) -> tuple[Any, ...]:
    """:func:`lookup_parts`' as the codecs decode them: (id, key, value)."""
    o, i, key, value = parts
    return (NiId(o, i), key.decode("utf-8", "surrogateescape"),
            value.decode("utf-8", "surrogateescape"))


def lookup_parts(record: bytes) -> tuple[int, int, bytes, bytes] | None:
    """A LOOKUP or LOOKUPREAD record's arguments undecoded: (object, instance, key bytes,
    value bytes), or None when they are not plainly well formed (:func:`decode_args`)."""
    n = len(record)
    if n < _ARGS + 12:
        return None
    o, i, k = _ID_N.unpack_from(record, _ARGS)
    if k > NAME_MAX:
        return None
    key_end = _ARGS + 12 + k
    at = key_end + ((4 - (k & 3)) & 3)
    if at + 4 > n:
        return None
    v = _STATUS.unpack_from(record, at)[0]
    value_end = at + 4 + v
    if v > NAME_MAX or value_end + ((4 - (v & 3)) & 3) != n:
        return None
    return o, i, record[_ARGS + 12:key_end], record[at + 4:value_end]


def call_heads(procs: Iterable[int] = FAST_PROCS) -> dict[bytes, int]:
    """The 36 bytes after the xid of a NETINFO call of each of *procs* with AUTH_NONE
    credential and verifier → the procedure (RFC 5531 §9: msg_type, rpcvers, prog, vers,
    proc, cred flavor and length, verf flavor and length)."""
    return {_CALL_HEAD.pack(rpc.CALL, rpc.RPC_VERSION, NETINFO_PROG, NETINFO_VERS, p,
                            0, 0, 0, 0): int(p) for p in procs}


class FastPath:
    """The reply table of one domain (see the module's text)."""

    def __init__(self, db: Database, counters: list[list[int]],
                 slow: Callable[[bytes, Any], Any], max_entries: int = MAX_ENTRIES,
                 max_bytes: int = MAX_BYTES) -> None:
        self._db = db
        self._counters = counters
        #: the normal path for one record and caller: prologue, row handler
        self._slow = slow
        self._heads = call_heads()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: call bytes after the xid → reply bytes after the xid, least recently used first
        self._replies: OrderedDict[bytes, bytes] = OrderedDict()
        #: directory number → the keys filed under it
        self._by_dir: dict[int, set[bytes]] = {}
        #: which answers are kept: those asked twice within the last max_entries misses
        self.door = Doorkeeper(max_entries)
        self.bytes = 0
        self._generation: int | None = db.read_state()
        self.hits = 0
        self.misses = 0
        #: misses answered from a child's stored bytes (:meth:`_stored`)
        self.stored = 0
        ref = weakref.ref(self)

        def changed(changes: list[Change]) -> None:
            me = ref()
            if me is None:
                unsubscribe()   # the server is gone; the database may live on
            else:
                me.changed(changes)
        unsubscribe = db.subscribe(changed)

    def __len__(self) -> int:
        return len(self._replies)

    def lane(self, data: bytes, caller: Any) -> bytes | None:
        """The reply this path gives at once (``Program.lane``) to *data*, a record with
        its record mark, with its record mark too: a kept answer, or, where reads never
        wait for a round trip (``Database.waiting`` None: SQLite), a miss it decodes and
        answers itself; None: the usual way (:meth:`answer` through the connection's
        batch), as for writes pending, LIST, odd arguments."""
        reply: bytes | None = self._take(data[4:], caller, True)
        return None if reply is None else rpc.frame(reply)

    def answer(self, record: bytes, caller: Any) -> Any:
        """The reply to *record* (bytes; a stream or None as the normal path gives), or
        None when it is not a call this path takes."""
        return self._take(record, caller, False)

    def _take(self, record: bytes, caller: Any, lane: bool) -> Any:
        """:meth:`answer`, or with *lane* :meth:`lane` (None wherever the normal path
        would have to answer)."""
        proc = self._heads.get(record[4:_ARGS])
        db = self._db
        if proc is None or db.is_watched(proc):
            return None
        state = db.read_state()
        if state is None:
            # writes pending in this batch: the reply must see them (and they may yet be
            # rolled back): neither kept nor answered from the table
            if lane:
                return None
            self.misses += 1
            return self._slow(record, caller)
        if state != self._generation:
            self.clear()
            self._generation = state
        key = record[4:]
        hit = self._replies.get(key)
        if hit is not None:
            self._replies.move_to_end(key)
            self._counters[proc][0] += 1
            self.hits += 1
            return record[:4] + hit
        args: tuple[Any, ...] | None
        if db.waiting is not None:
            if lane:
                return None   # a miss that may need a fetch: the connection's machinery
            args = decode_args(proc, record)
        elif proc == Proc.LOOKUPREAD:
            # decoded once: for the stored bytes' way, else for the usual one
            parts = lookup_parts(record)
            args = None
            if parts is not None:
                reply = self._stored(record, parts)
                if reply is not None:
                    self.misses += 1
                    self.stored += 1
                    return self._kept_too(record, reply, state)
                args = lookup_args(parts)
        else:
            args = decode_args(proc, record)
        if lane and args is None:
            return None   # the normal path's (LIST, odd arguments)
        self.misses += 1
        reply = self._slow(record, caller) if args is None else \
            self._direct(proc, record, caller, args)
        return self._kept_too(record, reply, state)

    def _kept_too(self, record: bytes, reply: Any, state: int) -> Any:
        """*reply* (to *record*, read at *state*), kept when it may be."""
        if isinstance(reply, bytes) and len(reply) <= MAX_REPLY \
                and reply[4:_OFFSET] == _ACCEPTED and len(reply) >= _OFFSET + 4 \
                and self._db.read_state() == state:
            status = _STATUS.unpack_from(reply, _OFFSET)[0]
            if (status == Status.OK or status in KEPT_STATUSES) \
                    and self.door.admit(key := record[4:]):
                self._keep(key, reply[4:], _STATUS.unpack_from(record, _ARGS)[0])
        return reply

    def _stored(self, record: bytes, parts: tuple[int, int, bytes, bytes]) -> bytes | None:
        """A LOOKUPREAD miss (*record*, its :func:`lookup_parts`) answered with its
        child's stored proplist as the source finds it at its cheapest
        (``NodeSource.stored_first``: a resident index, one read of the store), the reply
        built around those bytes; None: the usual way (:meth:`_direct`, which also
        reports a damaged directory)."""
        oid, _, key, value = parts
        t0 = time.perf_counter_ns()
        source = self._db.source
        try:
            blob = source.stored_first(oid, key.decode("utf-8", "surrogateescape"), value)
            node = None if blob is None else source.get(oid)
        except DamagedDirectory:
            return None
        if blob is None or node is None:
            return None
        c = self._counters[Proc.LOOKUPREAD]
        c[0] += 1
        c[1] += (time.perf_counter_ns() - t0) // 1000
        # status NI_OK, the searched directory's id (spec §4.4 LOOKUPREAD), the proplist
        return b"".join((record[:4], _ACCEPTED, _ID_N.pack(Status.OK, oid, node.instance),
                         blob))

    def _direct(self, proc: int, record: bytes, caller: Any, args: tuple[Any, ...]) -> bytes:
        """A miss answered as the NETINFO row's handler answers it (``Database.answer``,
        its counters and time, SYSTEM_ERR for a failure), without its prologue."""
        t0 = time.perf_counter_ns()
        try:
            body = self._db.answer(proc, caller, args)
        except StoreWait:
            self._counters[proc][0] -= 1   # counted when it runs again
            raise
        except Exception:
            log.exception("procedure %s failed", Proc(proc).name)
            return rpc.reply_accept_error(_STATUS.unpack_from(record)[0],
                                          AcceptStat.SYSTEM_ERR)
        finally:
            c = self._counters[proc]
            c[0] += 1
            c[1] += (time.perf_counter_ns() - t0) // 1000
        if body is None:
            return rpc.reply_accept_error(_STATUS.unpack_from(record)[0],
                                          AcceptStat.SYSTEM_ERR)
        return record[:4] + _ACCEPTED + body

    def _keep(self, key: bytes, reply: bytes, oid: int) -> None:
        replies = self._replies
        replies[key] = reply
        self._by_dir.setdefault(oid, set()).add(key)
        self.bytes += len(key) + len(reply) + ENTRY_OVERHEAD
        while len(replies) > self.max_entries or self.bytes > self.max_bytes:
            old, was = replies.popitem(last=False)
            self.bytes -= len(old) + len(was) + ENTRY_OVERHEAD
            filed = _STATUS.unpack_from(old, _ARGS - 4)[0]
            keys = self._by_dir.get(filed)
            if keys is not None:
                keys.discard(old)
                if not keys:
                    del self._by_dir[filed]

    def drop(self, oid: int) -> None:
        """Forget the replies about directory *oid*."""
        keys = self._by_dir.pop(oid, None)
        if keys:
            replies = self._replies
            for k in keys:
                was = replies.pop(k, None)
                if was is not None:
                    self.bytes -= len(k) + len(was) + ENTRY_OVERHEAD

    def clear(self) -> None:
        self._replies.clear()
        self._by_dir.clear()
        self.bytes = 0

    def changed(self, changes: list[Change]) -> None:
        """A durable batch (``Database.subscribe``): what its writes touched, and the
        parents of those (whose LOOKUP, LOOKUPREAD and LIST read their children), is
        read again."""
        if not self._replies:
            return
        drop = self.drop
        for c in changes:
            if c.proc is None:
                self.clear()
                return
            for t in c.touched:
                drop(t.id)
                if t.before is not None:
                    drop(t.before.parent)
                if t.after is not None:
                    drop(t.after.parent)
