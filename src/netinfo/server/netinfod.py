"""netinfod's network side: asyncio UDP and TCP endpoints for one domain.

The one place where exceptions become wire statuses. Each record's RPC prologue is
decoded once (``rpc.prologue``, shared with the binder's server), then the program
table dispatches it: ``programs[prog]``, one ``rpc.Program`` row per program, NETINFO
first (:func:`netinfo_program`); a later program (YP, a change history) is one more row
(:data:`ProgramFactory`, ``NetInfoServer(programs=...)``), served over UDP and TCP under
its own UDP policy and registered with the portmapper when its row says so. NETINFO's
calls are answered by the domain's :class:`~netinfo.server.database.Database` (the
procedure table, then the result-kind table of ``protocol``) on the event-loop thread,
in order. The calls of one read of a socket form one ``Database.batch``: their writes
are committed in one transaction (group commit) before any reply of the batch is sent,
so a write is acknowledged only once it is durable.

Spec: §1.2–§1.4 (RPC, record marking, UDP/TCP), §4 (procedures), §9.4 (READALL stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import resource
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from ..errors import DamagedDirectory, NetInfoError, NiError, Status, StorageError, WireError
from ..facts import Role
from ..model import first_values, is_digits
from ..netif import is_local, local_addresses, peer_uid
from ..storage.cached import StoreWait
from ..storage.changes import Caller
from ..wire import rpc
from ..wire.proplist import pack_status
from ..wire.protocol import (
    NETINFO_PROG,
    NETINFO_VERS,
    PROCEDURES,
    UDP_LENIENT_PROCS,
    UDP_PROCS,
    Kind,
    Proc,
    decode_args,
)
from ..wire.portmap import IPPROTO_TCP, IPPROTO_UDP
from ..wire.rpc import AcceptStat, AuthStat
from ..wire.history import HISTORY_PROG, HISTORY_VERS, PROC_NULL
from ..wire.yp import YPPROG, YPVERS, YpProc
from .database import MAX_STREAMS, Batch, Database
from .fastpath import FastPath
from .history import HistoryProgram
from .held import FETCHING, HeldConnection
from .peers import PeerBounds, PeerLimits
from .listener import Listener
from .rpc import Program, prologue

log = logging.getLogger("netinfo.server")

#: The bounds on peers (peers.PeerLimits; docs/security.md gives the origins).
LIMITS = PeerLimits()
#: Pause reading from a TCP peer whose unread replies exceed this many bytes.
WRITE_HIGH_WATER = LIMITS.queued_per_conn
#: A streamed reply (READALL) leaves in record fragments of about this size ...
STREAM_FRAGMENT = 64 * 1024
#: ... at most this much per turn of the event loop, so others are answered in between,
STREAM_SLICE = 256 * 1024
#: ... and at most this much time making it (a LIST of a million users costs far more
#: per byte than a READALL: bytes alone let one turn take 65 ms, measured at 1M),
STREAM_TURN = 0.002
#: and must be taken by the peer within this many seconds in all (it holds a snapshot:
#: database.MAX_STREAMS),
STREAM_TIMEOUT = 600
#: and a connection whose peer takes none of its queued replies for this many seconds is
#: closed (a stream or not; issue 18, finding N1).
STALL_TIMEOUT = LIMITS.stall
#: How often the bounds in time are checked.
SWEEP_PERIOD = 1.0
#: Incomplete records held by all connections together, at most; past it the connection
#: holding the most is dropped.
PARTIAL_BUDGET = 64 * 1024 * 1024
#: An incomplete record must be completed within this many seconds.
PARTIAL_TIMEOUT = 30.0
#: A connection with nothing to do for this long is closed (clients reconnect).
IDLE_TIMEOUT = 900.0
#: Connections at most (further capped by the descriptor limit); at the cap the network
#: holding the most loses one (peers.PeerBounds), else an idle one makes room, else the
#: newcomer is refused.
MAX_CONNECTIONS = LIMITS.total
#: Reserved ports tried for a root netinfod (Mac OS X's RPC services sat in 600–1023).
RESERVED_PORTS = range(600, 1024)
#: Fetches off the event loop one call may make (a store whose reads are round trips:
#: server.storeio); each runs it again. A LOOKUPREAD makes one or two, a LIST of a
#: directory a few per chunk of 256 children; past it the call reads where it is.
MAX_FETCHES = 32
#: The lane (``TcpConnection.data_received``): a read of at most this many bytes that
#: is one whole record (its mark's last-fragment bit set) may be answered from the kept
#: answers before any other step; bigger or split records take the usual way.
LANE_MAX = 4096
#: UDP datagrams waiting for such a fetch at once (anonymous peers: past it a datagram
#: reads where it is, the loop waiting for the round trip); each holds its datagram.
MAX_UDP_FETCHES = 64
#: Seconds a portmapper call (registering a program) may take.
PMAP_TIMEOUT = 2.0
_U32 = struct.Struct(">I")


# -- call handling ----------------------------------------------------------------------------

@dataclass
class ServerConfig:
    """How one netinfod serves its domain."""

    tag: str
    bind: str = "0.0.0.0"
    port: int | None = None
    lenient_udp: bool = False
    #: treat any caller from a local address as the superuser, whatever its source port
    #: (spec §15.2: privileged-peer detection configurable for unprivileged test runs)
    trust_local: bool = False
    #: answer the hot reads by the short path (``fastpath``; ``--no-fast-path``: off, to
    #: measure against or rule it out)
    fast_path: bool = True
    #: bind the TCP port with SO_REUSEPORT, so that the read workers' listening sockets
    #: (``readworkers``, ``netinfod --read-workers``) share it
    reuse_port: bool = False
    #: keep a store's round trips (PostgreSQL's) off the event loop (``storeio``;
    #: ``--store-on-loop``: on it, to measure against)
    store_threads: bool = True
    #: let the source keep resident LOOKUP indexes (``indexer``, ``storage.keyindex``;
    #: ``--no-lookup-index``: never)
    lookup_index: bool = True


class YpHandler(Protocol):
    """The NIS front door as the dispatcher sees it (nis.NisDoor)."""

    def handle(self, proc: int, args: bytes, caller: Caller,
               udp: bool) -> bytes | Iterator[bytes] | None: ...

    #: whether :meth:`fast` is offered each TCP record before the prologue
    short: bool

    def fast(self, record: bytes, caller: Caller) -> bytes | None:
        """A MATCH answered before the prologue (the reply record), or None."""
        ...

    def lane(self, data: bytes, caller: Caller) -> bytes | None:
        """A MATCH's reply given at once (both with their record marks), or None."""
        ...


class Observer(Protocol):
    """What the server asks of replication (``replicator.Replicator``): whether the
    master's updates must wait. (What replication learns of calls it hears from the
    owner: ``Database.watch_calls``.)"""

    def held(self) -> asyncio.Future[None] | None:
        """A future the master's updates wait for (a copy being swapped in), or None."""
        ...


#: A netinfod program's handler: (call, who the peer is, over UDP?) → its reply. It runs
#: on the event loop, inside the connection's batch (``Database.batch``): its writes are
#: committed with the batch's. Raising WireError or ValueError answers GARBAGE_ARGS, any
#: other exception SYSTEM_ERR.
ProgramHandler = Callable[[rpc.Call, Caller, bool], "bytes | ReplyStream | None"]


class Dispatcher:
    """Turns call records into reply records for one domain (shared by UDP and TCP):
    the shared prologue (``rpc.prologue``), then the program's row
    (:attr:`programs`, NETINFO first)."""

    def __init__(self, db: Database, config: ServerConfig, own_addresses: list[str],
                 programs: Sequence[ProgramFactory] = ()) -> None:
        self.db = db
        self.config = config
        self.own = frozenset(own_addresses)
        self.counters = db.info.counters
        #: asked whether the master's updates must wait (replicator.Replicator.held)
        self.replicator: Observer | None = None
        #: the uid whose local sockets are this domain's superuser: ours, unless we are
        #: root (then only a reserved port makes the superuser, spec §10.2)
        self.owner: int | None = os.geteuid() or None
        #: program number → its row (one row per program: :meth:`add_program`)
        self.programs: dict[int, Program[ProgramHandler]] = {}
        #: the rows' short paths (``Program.fast``), tried before the prologue
        self._fast: tuple[Callable[[bytes, Caller], bytes | ReplyStream | None], ...] = ()
        #: what they answer at once (``Program.lane``), for a connection's lone record,
        #: by the program number's four bytes as a call carries them
        self._lanes: dict[bytes, Callable[[bytes, Caller], bytes | None]] = {}
        for make in (netinfo_program, history_program, *programs):
            self.add_program(make(self))

    def add_program(self, row: Program[ProgramHandler]) -> None:
        """Serve one more program (or replace the row of its number): its calls over UDP
        and TCP go to its handler from now on; the server registers it with the
        portmapper at start when its row says so."""
        self.programs[row.prog] = row
        self._fast = tuple(r.fast for r in self.programs.values() if r.fast is not None)
        self._lanes = {r.prog.to_bytes(4, "big"): r.lane for r in self.programs.values()
                       if r.lane is not None}

    def lane(self, data: bytes, caller: Caller) -> bytes | None:
        """The reply a row's short path gives at once (``Program.lane``) to *data*, one
        record in one fragment with its record mark, with its record mark too; or None
        (then :meth:`handle` answers it). Reads only, so no batch need hold it: for a
        TCP caller with nothing else outstanding (``TcpConnection``), never for the
        master pushing updates."""
        if caller.from_master:
            return None
        # (mark, xid, CALL, RPC version, program)
        lane = self._lanes.get(data[16:20])
        return None if lane is None else lane(data, caller)

    def caller_for(self, host: str, port: int, udp: bool = False,
                   ours: tuple[str, int] | None = None) -> Caller:
        """Who a peer is (spec §10.2 step 1): the local superuser when it is on one of this
        host's addresses and a reserved port, or, when this server is not run by root,
        when the peer's socket belongs to this server's own uid (its owner; read from
        /proc/net, so asked once per TCP connection, never for UDP, which carries no
        writes, spec §1.4)."""
        local = is_local(host, self.own)
        db = self.db
        if db.role is Role.CLONE and port < 1024 and host.removeprefix("::ffff:") == \
                db.facts().master_address:
            # An update pushed by the master: its address and a reserved port (spec §9.2).
            return Caller(host, port, from_master=True)
        su = local and (port < 1024 or self.config.trust_local)
        if su:
            return Caller(host, port, superuser=True, user="root")
        if local and not udp and self.owner is not None \
                and peer_uid(host, port, udp=False, towards=ours) == self.owner:
            return Caller(host, port, superuser=True, user="root", owner=True)
        return Caller(host, port)

    def handle(self, record: bytes, caller: Caller, udp: bool, lenient: bool = False,
               batch: Batch | None = None) -> bytes | ReplyStream | None:
        """Answer one record: the reply, or None for no reply. Within *batch*, the reply
        is added to it (with its program's failure rewrite, for a write).

        :raises WireError: the record is not an RPC call (TCP closes the connection).
        """
        if not udp and not caller.from_master:
            for fast in self._fast:
                # a read of the short path (server.fastpath): no write, no failure rewrite
                short = fast(record, caller)
                if short is not None:
                    if batch is not None:
                        batch.add(short)
                    return short
        reply, on_failure = self.answer(record, caller, udp, lenient)
        if batch is not None:
            batch.add(reply, on_failure)
        return reply

    def answer(self, record: bytes, caller: Caller, udp: bool = False, lenient: bool = False
               ) -> tuple[bytes | ReplyStream | None, Callable[[bytes], bytes] | None]:
        """The normal path of :meth:`handle`: the prologue, then the program's row; the
        reply and what it becomes when its batch fails (its row's ``on_failure``)."""
        found = prologue(record, self.programs, udp, lenient)
        if isinstance(found, bytes):
            reply: bytes | ReplyStream | None = found
            on_failure = None
        else:
            call, row = found
            on_failure = row.on_failure
            try:
                reply = row.handler(call, caller, udp)
            except (WireError, ValueError):
                reply = rpc.reply_accept_error(call.xid, AcceptStat.GARBAGE_ARGS)
            except Exception:
                log.exception("program %d procedure %d failed", call.prog, call.proc)
                reply = rpc.reply_accept_error(call.xid, AcceptStat.SYSTEM_ERR)
        return reply, on_failure


#: A program of netinfod: its row, made for one server (its database and config).
ProgramFactory = Callable[[Dispatcher], Program[ProgramHandler]]


def _nospace(reply: bytes) -> bytes:
    """A NETINFO write's reply when its batch could not be made durable: NI_NOSPACE
    after the accepted-reply header (24 bytes with an AUTH_NULL verifier)."""
    return reply[:24] + pack_status(Status.NOSPACE)


def netinfo_program(disp: Dispatcher) -> Program[ProgramHandler]:
    """NETINFO (spec §4), the first row: over UDP only PING and BIND, or the lenient
    list with ``--lenient-udp`` (spec §1.4); registered with nibindd (REGISTER), never
    with the portmapper (spec §1.1)."""
    db, counters = disp.db, disp.counters

    def handle(call: rpc.Call, caller: Caller, udp: bool) -> bytes | ReplyStream | None:
        xid = call.xid
        info = PROCEDURES[call.proc]
        try:
            args = decode_args(info, call.args)
        except (WireError, ValueError):
            return rpc.reply_accept_error(xid, AcceptStat.GARBAGE_ARGS)
        if info.kind is Kind.STREAM:
            counters[info.proc][0] += 1
            # READALL's watchers hear when the state sent is fixed (the snapshot, after
            # the batch's commit): Database.readall
            return ReplyStream(rpc.reply_success(xid), db.readall(caller, args[0]))
        if info.proc in _STREAMED:
            streamed = db.stream(info.proc, caller, args)
            if streamed is not None and udp:
                # a reply too big for a datagram (lenient UDP): "use TCP", spec §1.4
                close = getattr(streamed, "close", None)
                if close is not None:
                    close()
                return rpc.reply_auth_error(xid, AuthStat.TOOWEAK)
            if streamed is not None:
                counters[info.proc][0] += 1
                return ReplyStream(rpc.reply_success(xid), streamed)
        if call.auth is not None:
            # Apple's lookupd shortcut: password "checksum" asks for the checksum only (§4.4).
            only = call.auth.machinename == rpc.invert(b"checksum")
            # The owner's power covers calls without a credential; one that carries a
            # password is checked as that user's (a program the owner runs for others,
            # such as netinfo-web, then acts as them, never as the owner).
            su = caller.superuser and not caller.owner
            caller = Caller(caller.addr, caller.port, su, caller.user if su else None,
                            checksum_only=only, credential=call.auth)
        t0 = time.perf_counter_ns()
        try:
            body = db.answer(info.proc, caller, args)
        except StoreWait:
            counters[info.proc][0] -= 1   # counted when it runs again
            raise
        except Exception:
            log.exception("procedure %s failed", info.proc.name)
            return rpc.reply_accept_error(xid, AcceptStat.SYSTEM_ERR)
        finally:
            c = counters[info.proc]
            c[0] += 1
            c[1] += (time.perf_counter_ns() - t0) // 1000
        if body is None:
            # BIND of a child not served here (spec §4.4; Apple's SYSTEM_ERR, see protocol)
            return rpc.reply_accept_error(xid, AcceptStat.SYSTEM_ERR)
        return rpc.reply_success(xid, body)

    fast = FastPath(db, counters, lambda record, caller: disp.answer(record, caller)[0]) \
        if disp.config.fast_path else None
    return Program(NETINFO_PROG, NETINFO_VERS, NETINFO_VERS, handle,
                   procs=frozenset(PROCEDURES), udp=UDP_PROCS, udp_lenient=UDP_LENIENT_PROCS,
                   on_failure=_nospace, fast=fast.answer if fast is not None else None,
                   lane=fast.lane if fast is not None else None)


def history_program(disp: Dispatcher) -> Program[ProgramHandler]:
    """The change history's program (issue 24; ``server.history``): NULL over UDP, its
    queries over TCP only; readable by the superuser, by users for what their
    ``_writers`` admit, and by the domain's clones copying their master's journal."""
    db, own, tag = disp.db, disp.own, disp.config.tag

    def is_clone(addr: str) -> bool:
        return any(p.addr == addr for p in db.facts().clones(lambda a: is_local(a, own), tag))

    h = HistoryProgram(db, is_clone)
    return Program(HISTORY_PROG, HISTORY_VERS, HISTORY_VERS, h.reply,
                   procs=frozenset(h.procedures), udp=frozenset({PROC_NULL}))


def yp_program(door: YpHandler) -> ProgramFactory:
    """The NIS front door (issue 21) as netinfod's YP row (program 100004, version 2):
    every procedure over UDP and TCP; the door registers itself with the portmapper
    (``nis.register``), so the row does not ask the server to."""

    def make(disp: Dispatcher) -> Program[ProgramHandler]:
        def handle(call: rpc.Call, caller: Caller, udp: bool) -> bytes | ReplyStream | None:
            body = door.handle(call.proc, call.args, caller, udp)
            if body is None:
                return None
            if isinstance(body, bytes):
                return rpc.reply_success(call.xid, body)
            return ReplyStream(rpc.reply_success(call.xid), body)

        return Program(YPPROG, YPVERS, YPVERS, handle, procs=_YP_PROCS, udp=None,
                       fast=door.fast if door.short else None,
                       lane=door.lane if door.short else None)
    return make


#: The YP procedures (the NIS front door answers each).
_YP_PROCS = frozenset(int(p) for p in YpProc)
#: Reads answered in pieces when their directory is big (Database.stream).
_STREAMED = frozenset({Proc.LIST, Proc.LISTALL})


class ReplyStream:
    """A reply produced in pieces (READALL, spec §9.4; LIST and LISTALL of a big
    directory): sent as record fragments while the peer takes them, never built whole."""

    __slots__ = ("head", "pieces")

    def __init__(self, head: bytes, pieces: Iterator[bytes]) -> None:
        self.head = head
        self.pieces = pieces

    def close(self) -> None:
        close = getattr(self.pieces, "close", None)
        if close is not None:
            close()


class TcpConnection(HeldConnection):
    """One TCP client: pipelined calls answered in order (spec §1.3).

    Memory per connection stays bounded: calls are answered only while the replies not
    yet taken by the peer stay under :data:`WRITE_HIGH_WATER`; the rest wait in
    ``backlog`` (with reading paused) until the peer catches up. A READALL reply is
    streamed as record fragments under the same mark, a slice per turn of the event
    loop, so other connections' small calls are answered in between.
    """

    def __init__(self, server: NetInfoServer) -> None:
        self.server = server
        self.reader = rpc.RecordReader()
        self.transport: asyncio.Transport | None = None
        self.caller = Caller()
        self.backlog: deque[bytes] = deque()
        self._writing_paused = False
        self._stream: ReplyStream | None = None
        self._stream_started = 0.0
        #: the master's updates wait for this (Observer.held), or this connection's
        #: commit or (FETCHING) store fetch (server.storeio); None: calls are answered
        self._held: asyncio.Future[None] | object | None = None
        #: fetches off the loop made for the backlog's first call so far
        self._fetches = 0
        #: reply bytes handed to the transport so far (what the peer took: this minus
        #: what the transport still buffers)
        self.written = 0
        #: the reply bytes queued that the bounds were last told of (``_queued``): a
        #: reply of the lane that leaves at once, while this is 0, tells them nothing new
        self._told = 0

    @property
    def idle(self) -> bool:
        """Nothing waiting to be answered or sent (what is half-read the bounds know)."""
        t = self.transport
        return (not self.backlog and self._stream is None
                and (t is None or not t.get_write_buffer_size()))

    def _hold(self) -> bool:
        """True when this is the master's connection and its updates must wait for a copy
        being swapped in (spec §9.5; Replicator.held): reading stops, and the calls
        already read are answered once it is done, in order."""
        if self._held is not None:
            return True
        if not self.caller.from_master:
            return False
        observer = self.server.dispatcher.replicator
        held = observer.held() if observer is not None else None
        if held is None:
            return False
        self._held = held
        if self.transport is not None:
            self.transport.pause_reading()

        def release(_: asyncio.Future[None]) -> None:
            self._held = None
            self._continue()
        held.add_done_callback(release)
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        disp = self.server.dispatcher
        ours = transport.get_extra_info("sockname")
        self.caller = disp.caller_for(peer[0], peer[1],
                                      ours=(ours[0], ours[1]) if ours else None)
        self.server.info.connections += 1  # balanced by connection_lost
        if not disp.db.admits_tcp(peer[0], is_local(peer[0], disp.own)):
            # trusted_networks: close right after accept (spec §10.5)
            log.info("refusing %s: not in trusted_networks", peer[0])
            transport.close()
            return
        refused = self.server.bounds.admit(self, peer[0], time.monotonic())
        if refused is not None:
            log.warning("refusing %s: %s", peer[0], refused)
            transport.close()
            return
        transport.set_write_buffer_limits(  # type: ignore[attr-defined]
            high=self.server.bounds.limits.queued_per_conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.info.connections -= 1
        self.server.forget(self)
        self.backlog.clear()
        if self._stream is not None:
            self._stream.close()  # ends the transfer: writes are accepted again
            self._stream = None

    def pause_writing(self) -> None:
        # A peer that does not read its replies stops being read.
        self._writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._queued()
        self._continue()

    def _write(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(data)
        self.written += len(data)
        self._queued()

    def measure(self) -> tuple[int, int]:
        """(reply bytes queued, reply bytes the peer has taken in all)."""
        t = self.transport
        queued = t.get_write_buffer_size() if t is not None and not t.is_closing() else 0
        return queued, self.written - queued

    def _queued(self) -> None:
        """Tell the bounds what is queued now (past the budget of all connections, the
        one holding the most is dropped: peers.PeerBounds.queued)."""
        queued, taken = self.measure()
        self._told = queued
        self.server.bounds.queued(self, queued, taken, time.monotonic())

    def _continue(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._writing_paused \
                or self._hold():
            return
        if self._stream is not None:
            self._pump()
            if self._stream is not None:
                return
        if self.backlog:
            self._answer()
        if not self.backlog and self._stream is None and not self._writing_paused:
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        now = time.monotonic()
        bounds = self.server.bounds
        bounds.active(self, now)
        n = len(data)
        if n <= LANE_MAX and int.from_bytes(data[:4], "big") == rpc.LAST_FRAGMENT + n - 4 \
                and not self.backlog and self._stream is None and self._held is None \
                and not self._writing_paused and not self.reader.pending() \
                and self._lane_open():
            # the lane: one whole record, nothing else outstanding (so no batch or
            # order to keep); a read a short path answers at once is sent at once
            out = self.server.dispatcher.lane(data, self.caller)
            if out is not None:
                transport.write(out)
                self.written += len(out)
                if self._told or transport.get_write_buffer_size():
                    self._queued()
                return
        try:
            records = self.reader.feed(data)
        except WireError as e:
            log.warning("closing %s: %s", self.caller.addr, e)
            transport.abort()
            return
        if not bounds.account(self, self.reader.pending(), now, fresh=bool(records)):
            return   # dropped: over the budget of incomplete records
        if records:
            self.backlog.extend(records)
            if self._stream is None and not self._hold():
                self._answer()
            else:
                transport.pause_reading()  # the stream's (or a copy's) turn: calls wait

    def _lane_open(self) -> bool:
        """Whether the lane may answer now (a read worker first applies the owner's
        invalidations, as before any batch)."""
        return True

    def _answer(self) -> None:
        """Answer backlog calls while the unsent replies stay under the high-water mark."""
        transport = self.transport
        assert transport is not None
        disp = self.server.dispatcher
        db = disp.db
        budget = self.server.bounds.limits.queued_per_conn - transport.get_write_buffer_size()
        bad = False
        size = 0
        stream: ReplyStream | None = None
        miss: StoreWait | None = None
        backlog = self.backlog
        # A store whose reads are round trips (server.storeio): a call that misses
        # raises StoreWait before it changes anything; it is fetched off the loop and
        # the call runs again (up to MAX_FETCHES times; then it reads where it is).
        waiting = db.waiting
        # One batch per read of the socket: its writes are committed together (group
        # commit) before any of its replies is sent (Database.batch).
        batch = db.batch()
        try:
            while backlog and size < budget:
                rec = backlog.popleft()
                if waiting is not None:
                    waiting.no_wait = self._fetches < MAX_FETCHES
                try:
                    reply = disp.handle(rec, self.caller, udp=False, batch=batch)
                except StoreWait as e:
                    backlog.appendleft(rec)
                    miss = e
                    break
                except WireError as e:
                    log.warning("closing %s: %s", self.caller.addr, e)
                    bad = True
                    backlog.clear()
                    break
                self._fetches = 0
                if isinstance(reply, ReplyStream):
                    # its snapshot is taken at its first piece, after this commit
                    stream = reply
                    break
                if reply is not None:
                    size += len(reply)
        finally:
            if waiting is not None:
                waiting.no_wait = False
        if batch.close_now():
            self._send(batch, bad, stream, miss)
            return
        # the commit runs in the commit thread: this connection waits for it (the calls
        # read meanwhile wait in the backlog), the others are answered meanwhile

        async def settle() -> None:
            await batch.close_async()
            self._send(batch, bad, stream, miss)
        self._wait(asyncio.ensure_future(settle()))

    def _wait(self, fut: asyncio.Future[None]) -> None:
        """Hold this connection until *fut* is done (the calls it reads meanwhile wait
        in the backlog, and its reading pauses when they come), then carry on."""
        self._hold_until(fut, log, self.caller.addr)

    def _send(self, batch: Batch, bad: bool, stream: ReplyStream | None,
              miss: StoreWait | None) -> None:
        """Send a closed batch's replies; then the stream it ended with, the fetch its
        last call waits for, or the rest of the backlog."""
        transport = self.transport
        if transport is None or transport.is_closing():
            if stream is not None:
                stream.close()
            return
        out = [rpc.frame(r) for r in batch.replies if isinstance(r, bytes)]
        if out:
            self._write(b"".join(out))
            if transport.is_closing():
                return   # dropped: over the budget of queued replies
        if bad:
            transport.close()
            return
        if stream is not None:
            self._stream = stream
            self._stream_started = time.monotonic()
            transport.pause_reading()
            self._pump()
            return
        if miss is not None:
            # reading goes on (more calls wait in the backlog: data_received pauses it
            # then); pausing and resuming it per fetch cost two epoll changes each
            self._fetches += 1
            self._held = FETCHING
            self.server.dispatcher.db.fetch(miss, self._fetched)
            return
        if self.backlog:
            transport.pause_reading()
            if not self._writing_paused:
                # The kernel took everything at once: carry on after other connections.
                asyncio.get_running_loop().call_soon(self._continue)

    def _pump(self) -> None:
        """Send the next slice of the stream as record fragments (spec §1.3): at most
        :data:`STREAM_SLICE` bytes per turn of the event loop, and only while the peer
        keeps up (:meth:`pause_writing` stops it, :meth:`resume_writing` resumes)."""
        stream, transport = self._stream, self.transport
        assert stream is not None and transport is not None
        if time.monotonic() - self._stream_started > STREAM_TIMEOUT:
            log.warning("closing %s: a streamed reply (READALL, LIST, LISTALL) not taken "
                        "within %d s", self.caller.addr, STREAM_TIMEOUT)
            transport.abort()
            return
        sent = 0
        buf = [stream.head] if stream.head else []
        stream.head = b""
        size = sum(map(len, buf))
        try:
            self._pump_slice(stream, transport, buf, size, sent)
        except DamagedDirectory as e:
            # never sent on (a clone keeps its copy, issue 18 N20): one line, no traceback
            self.server.db.report_damage(e)
            log.warning("closing %s: a streamed reply met a damaged directory (%d)",
                        self.caller.addr, e.oid)
            stream.close()
            self._stream = None
            transport.abort()
        except Exception:
            # The reply cannot be finished (a damaged store, a directory that changed
            # under a stream): the record is cut, so the connection must go.
            log.exception("closing %s: a streamed reply failed", self.caller.addr)
            stream.close()
            self._stream = None
            transport.abort()

    def _pump_slice(self, stream: ReplyStream, transport: asyncio.Transport,
                    buf: list[bytes], size: int, sent: int) -> None:
        until = time.monotonic() + STREAM_TURN
        for piece in stream.pieces:
            buf.append(piece)
            size += len(piece)
            late = time.monotonic() > until
            if size - len(piece) >= STREAM_FRAGMENT or (late and len(buf) > 1):
                # Everything but the newest piece: the record's last fragment is never
                # empty (READALL's end marker is always the final piece).
                out = b"".join(buf[:-1])
                self._write(_fragment(out, last=False))
                if transport.is_closing():
                    return   # dropped: over the budget of queued replies
                sent += len(out)
                buf, size = [piece], len(piece)
                if sent >= STREAM_SLICE or self._writing_paused or late:
                    stream.head = b"".join(buf)  # carried over to the next slice
                    if not self._writing_paused:
                        asyncio.get_running_loop().call_soon(self._continue)
                    return
        self._stream = None
        self._write(_fragment(b"".join(buf), last=True))
        asyncio.get_running_loop().call_soon(self._continue)


def _fragment(data: bytes, last: bool) -> bytes:
    return _U32.pack((rpc.LAST_FRAGMENT if last else 0) | len(data)) + data


class UdpEndpoint(asyncio.DatagramProtocol):
    """The UDP port: PING and BIND (spec §1.4); reads too in lenient mode; never writes."""

    def __init__(self, server: NetInfoServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        #: datagrams waiting for a fetch off the loop (MAX_UDP_FETCHES)
        self.fetching = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple, fetches: int = 0) -> None:
        disp = self.server.dispatcher
        local = is_local(addr[0], disp.own)
        # Lenient reads over UDP obey trusted_networks like TCP (PING and BIND stay open:
        # binding needs them, spec §10.5).
        lenient = self.server.config.lenient_udp and disp.db.admits_tcp(addr[0], local)
        waiting = disp.db.waiting
        if waiting is not None:
            waiting.no_wait = fetches < MAX_FETCHES and self.fetching < MAX_UDP_FETCHES
        try:
            with disp.db.batch() as batch:   # no NETINFO writes over UDP (spec §1.4)
                disp.handle(data, disp.caller_for(addr[0], addr[1], udp=True), udp=True,
                            lenient=lenient, batch=batch)
        except WireError:
            return  # not an RPC call: drop it
        except StoreWait as miss:
            self._fetch(miss, data, addr, fetches)
            return
        finally:
            if waiting is not None:
                waiting.no_wait = False
        reply = batch.replies[0]
        if isinstance(reply, ReplyStream):
            reply.close()   # never streamed over UDP
            return
        if isinstance(reply, bytes) and self.transport is not None:
            if not local:
                reply = rpc.bounded_udp_reply(reply, len(data))
            self.transport.sendto(reply, addr)

    def _fetch(self, miss: StoreWait, data: bytes, addr: tuple, fetches: int) -> None:
        """Fetch what the datagram's call missed off the loop, then answer it again."""
        self.fetching += 1

        def again() -> None:
            self.fetching -= 1
            if self.transport is not None and not self.transport.is_closing():
                self.datagram_received(data, addr, fetches + 1)
        self.server.dispatcher.db.fetch(miss, again)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class NetInfoServer:
    """One netinfod: a domain's :class:`~netinfo.server.database.Database` behind a UDP and a
    TCP port, serving NETINFO and any further rows of its program table (*programs*:
    factories of ``rpc.Program`` rows, :data:`ProgramFactory`)."""

    def __init__(self, db: Database, config: ServerConfig,
                 own_addresses: list[str] | None = None,
                 programs: Sequence[ProgramFactory] = ()) -> None:
        self.db = db
        self.config = config
        self.info = db.info
        self.dispatcher = Dispatcher(db, config, own_addresses or local_addresses(),
                                     programs)
        self.udp_port = 0
        self.tcp_port = 0
        self._tcp: Listener | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.tcp_socket: socket.socket | None = None
        self._search: asyncio.Task | None = None
        self._watch: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        #: RPARENT without a binding starts a parent search (spec §8.2): the owner says
        #: so (Database.watch_calls), not the reply's bytes
        self._unwatch = db.watch_calls(self._rparent_answered, frozenset({Proc.RPARENT}))
        #: (prog, vers) registered with the portmapper by start
        self.registered: list[tuple[int, int]] = []
        self.max_connections = connection_cap()
        #: connections per address, per network and in all; incomplete records; queued
        #: reply bytes; stalls and idle connections (peers.PeerBounds)
        self.bounds: PeerBounds[TcpConnection] = PeerBounds(
            replace(LIMITS, total=self.max_connections, partial_total=PARTIAL_BUDGET,
                    partial_timeout=PARTIAL_TIMEOUT, idle_timeout=IDLE_TIMEOUT),
            self._drop, lambda c: c.idle)

    def _rparent_answered(self, proc: int, caller: Caller, args: tuple,
                          outcome: object) -> None:
        if isinstance(outcome, NiError) and outcome.status == Status.NORESPONSE:
            self.want_parent()

    # -- bounds on what anonymous peers can hold ------------------------------------------

    @property
    def conns(self) -> dict[TcpConnection, object]:
        """Open TCP connections, oldest first."""
        return self.bounds.conns  # type: ignore[return-value]

    @property
    def partial_bytes(self) -> int:
        """Bytes of incomplete records held by all connections (PeerBounds.account)."""
        return self.bounds.partial_bytes

    def _drop(self, conn: TcpConnection, why: str) -> None:
        """Close *conn* for the bounds (peers.PeerBounds). Room made for a newcomer and
        idle connections are logged as information, the rest as warnings."""
        quiet = why.startswith(("making room", "idle"))
        log.log(logging.INFO if quiet else logging.WARNING, "closing %s: %s",
                conn.caller.addr, why)
        if conn.transport is not None:
            conn.transport.abort()
        self.bounds.forget(conn)

    def forget(self, conn: TcpConnection) -> None:
        self.bounds.forget(conn)

    async def _sweep(self) -> None:
        """Close connections idle too long, slow to complete a record, whose peer takes
        none of their replies (:data:`STALL_TIMEOUT`): PeerBounds.sweep; and those whose
        stream runs too long."""
        while True:
            await asyncio.sleep(SWEEP_PERIOD)
            now = time.monotonic()
            self.bounds.sweep(now, TcpConnection.measure)
            for c in list(self.conns):
                if c._stream is not None and now - c._stream_started > STREAM_TIMEOUT:
                    self._drop(c, f"a streamed reply (READALL, LIST, LISTALL) not taken "
                                  f"within {STREAM_TIMEOUT} s")

    async def start(self) -> None:
        """Bind both ports (spec §1.1: one UDP and one TCP port per netinfod) and register
        the programs whose rows ask for it with the portmapper."""
        loop = asyncio.get_running_loop()
        tsock, usock = bind_pair(self.config.bind, self._wanted_ports(),
                                 reuse_port=self.config.reuse_port)
        self._tcp = Listener(tsock, lambda: TcpConnection(self),
                             f"netinfod {self.config.tag}").start()
        #: the listening socket (its siblings serve the read workers: ``readworkers``)
        self.tcp_socket = tsock
        self._udp, _ = await loop.create_datagram_endpoint(lambda: UdpEndpoint(self), sock=usock)
        self.tcp_port = tsock.getsockname()[1]
        self.udp_port = usock.getsockname()[1]
        self._sweeper = asyncio.ensure_future(self._sweep())
        if self.config.store_threads:
            self.db.serve_off_loop()   # an engine whose reads wait on a server (storeio)
        if self.config.lookup_index:
            self.db.serve_indexes()    # resident LOOKUP indexes (indexer, keyindex)
        await self._register()

    async def _register(self) -> None:
        """Each row with ``register``: every version's UDP and TCP port with the
        portmapper of this host (the system's rpcbind, or nibindd's embedded one where
        ``NETINFO_PORTMAPPER`` says: client.binding), UNSET first (a SET of a mapped
        triple fails, RFC 1833). A portmapper that does not answer or refuses is logged;
        the program is served all the same."""
        from ..client.binding import pmap_set, pmap_unset  # noqa: PLC0415 - the client side
        for row in self.dispatcher.programs.values():
            if not row.register:
                continue
            for vers in row.versions():
                try:
                    await pmap_unset(row.prog, vers, timeout=PMAP_TIMEOUT)
                    ok = [await pmap_set(row.prog, vers, prot, port, timeout=PMAP_TIMEOUT)
                          for prot, port in ((IPPROTO_UDP, self.udp_port),
                                             (IPPROTO_TCP, self.tcp_port))]
                except (NetInfoError, OSError, WireError) as e:
                    log.warning("program %d version %d not registered with the "
                                "portmapper: %s", row.prog, vers, e)
                    continue
                self.registered.append((row.prog, vers))
                if not all(ok):
                    log.warning("the portmapper refused program %d version %d", row.prog,
                                vers)

    async def _unregister(self) -> None:
        from ..client.binding import pmap_unset  # noqa: PLC0415
        for prog, vers in self.registered:
            try:
                await pmap_unset(prog, vers, timeout=PMAP_TIMEOUT)
            except (NetInfoError, OSError, WireError):
                pass
        self.registered = []

    def _wanted_ports(self) -> tuple[int | None, int | None]:
        if self.config.port is not None:
            return self.config.port, self.config.port
        root = self.db.root_props()

        def num(name: str) -> int | None:
            v = first_values(root, name)
            return int(v[0]) if v and is_digits(v[0]) else None
        both = num("port")
        return num("udp_port") or both, num("tcp_port") or both

    # -- parent binding (spec §8.2) ------------------------------------------------------

    def want_parent(self) -> None:
        """Start a parent search unless one runs or this domain is a root."""
        db = self.db
        if self._search is not None and not self._search.done():
            return
        if db.is_forced_root():
            self.info.binding = "forcedRoot"
            return
        candidates = [c for c in db.facts().parent_candidates()
                      if not (c[1] == self.config.tag and is_local(c[0], self.dispatcher.own))]
        if not candidates:
            self.info.binding = "root"
            return
        self._search = asyncio.ensure_future(self._search_parent(candidates))

    async def _search_parent(self, candidates: list[tuple[str, str]]) -> None:
        from ..client.binding import find_parent  # noqa: PLC0415 - binding uses the client side
        found = await find_parent(self.config.tag, candidates)
        if found is None:
            self.info.binding = "notResponding"
            log.info("no parent answered for %s (candidates %s)", self.config.tag, candidates)
            return
        self.info.parent = found
        self.info.binding = f"{found[0]}/{found[1]}"
        log.info("bound to parent %s/%s", *found)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._watch_parent())

    async def _watch_parent(self, period: float = 60.0) -> None:
        """Re-check the binding; search again when the parent stops answering (§8.2 step 2)."""
        from ..client.binding import ping_netinfod  # noqa: PLC0415
        while self.info.parent is not None:
            await asyncio.sleep(period)
            addr, tag = self.info.parent
            if not await ping_netinfod(addr, tag):
                log.info("parent %s/%s stopped answering", addr, tag)
                self.info.parent = None
                self.info.binding = "notResponding"
                self.want_parent()
                return

    async def close(self) -> None:
        self._unwatch()
        for task in (self._search, self._watch, self._sweeper):
            if task is not None:
                task.cancel()
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        await self._unregister()
        if self.db.dirty:
            with contextlib.suppress(StorageError):
                self.db.commit()


def connection_cap() -> int:
    """:data:`LIMITS` ``.total``, kept well under the descriptor limit (the database, the
    UDP socket and the listener need some), so accept() never fails for lack of one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return LIMITS.total
    # the snapshot streams' read connections need three each
    return max(8, min(LIMITS.total, soft - 64 - 3 * MAX_STREAMS))


def bind_pair(host: str, ports: tuple[int | None, int | None], reuse_port: bool = False
              ) -> tuple[socket.socket, socket.socket]:
    """Bound TCP (listening) and UDP sockets, on the same port when none is fixed.

    Fixed ports are used as given; otherwise a reserved port when running as root (the
    original servers sat in 600–1023), else an ephemeral port.
    """
    udp_port, tcp_port = ports
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    if udp_port is not None or tcp_port is not None:
        return (_listen(fam, host, tcp_port or 0, reuse_port),
                _udp(fam, host, udp_port or 0))
    candidates: list[int] = []
    if os.geteuid() == 0:
        candidates = random.sample(RESERVED_PORTS, len(RESERVED_PORTS))
    for port in candidates + [0] * 50:
        try:
            t = _listen(fam, host, port, reuse_port)
        except OSError:
            continue
        try:
            return t, _udp(fam, host, t.getsockname()[1])
        except OSError:
            t.close()
    raise OSError("no free port pair for UDP and TCP")


def _listen(fam: int, host: str, port: int, reuse_port: bool = False,
            backlog: int | None = 128) -> socket.socket:
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # the kernel spreads new connections over every socket of the group
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        if backlog is not None:
            s.listen(backlog)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def listen_socket(like: socket.socket) -> socket.socket:
    """One more socket bound to *like*'s address and port (both SO_REUSEPORT), not yet
    listening: a read worker's share of the TCP port (``readworkers``), which joins the
    port's group when the worker calls ``listen`` (until then no connection waits on it
    for a worker still starting)."""
    host, port = like.getsockname()[:2]
    return _listen(like.family, host, port, reuse_port=True, backlog=None)


def _udp(fam: int, host: str, port: int) -> socket.socket:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


__all__ = ["NetInfoServer", "ServerConfig", "Dispatcher", "local_addresses", "bind_pair",
           "listen_socket"]
