"""ONC RPC serving shared by every listener: the program table's row (:class:`Program`),
the call prologue decoded once (:func:`prologue`), and a small asyncio server for the
binder's programs (:class:`RpcServer`: portmapper, NIBIND).

netinfod's data path has its own synchronous, group-committing transport (``netinfod``)
over the same rows and prologue; the binder's programs answer a few calls a second but
must await the network while doing so (CALLIT forwarding, NIBIND BIND forwarding), so
there every call is a coroutine. TCP calls on one connection are answered in order (spec
§1.3); UDP calls run concurrently. Both bound their TCP peers with one
:class:`~netinfo.server.peers.PeerBounds`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from ..errors import WireError
from ..netif import is_local, local_addresses
from ..wire import rpc
from ..wire.rpc import AcceptStat, AuthStat
from .listener import Listener
from .peers import PeerBounds, PeerLimits

log = logging.getLogger("netinfo.rpcserver")

#: The binder's programs take small arguments; cap their records accordingly.
MAX_BINDER_RECORD = 1 << 20


@dataclass(frozen=True, slots=True)
class Peer:
    """Who sent a call, and over which transport."""

    addr: str
    port: int
    udp: bool
    #: the peer's uid on a local (AF_UNIX) socket, from its credentials; None elsewhere
    uid: int | None = None


#: A binder program's handler: (call, peer) → reply record, or None to stay silent.
Handler = Callable[[rpc.Call, Peer], Awaitable[bytes | None]]

H = TypeVar("H")


@dataclass(frozen=True)
class Program(Generic[H]):
    """One row of a listener's program table: an RPC program, the versions it answers
    and its handler (whose form is the listener's: a coroutine for :class:`RpcServer`,
    a plain call for netinfod), with the rules the shared :func:`prologue` applies."""

    prog: int
    low: int
    high: int
    handler: H
    #: the procedures it has (None: the handler decides); others: PROC_UNAVAIL
    procs: frozenset[int] | None = None
    #: procedures answered over UDP (None: all); any other is refused AUTH_ERROR /
    #: AUTH_TOOWEAK, "use TCP" (spec §1.4 for NETINFO)
    udp: frozenset[int] | None = None
    #: more procedures answered over UDP when the listener is lenient (netinfod
    #: ``--lenient-udp``)
    udp_lenient: frozenset[int] = frozenset()
    #: register every version's UDP and TCP port with the portmapper (the system's
    #: rpcbind or nibindd's own: ``NETINFO_PORTMAPPER``) while served
    register: bool = False
    #: what the reply of a call that wrote becomes when its batch cannot be made durable
    #: (``Database.batch``; NETINFO: NI_NOSPACE); None: kept
    on_failure: Callable[[bytes], bytes] | None = None
    #: a short path offered each TCP record before the prologue (netinfod's
    #: ``fastpath.FastPath.answer``: (record, caller) → the reply, or None to take the
    #: normal path); it answers reads only, so a batch's failure never rewrites them
    fast: Callable[[bytes, Any], Any] | None = None
    #: what the short path answers at once ((the record with its record mark, caller) →
    #: the reply with its record mark, or None): offered by a TCP connection a lone
    #: whole record it read in one fragment with nothing else outstanding, before any of
    #: the connection's machinery, and written as it comes; reads only (netinfod's
    #: ``FastPath.lane``, the NIS door's ``NisDoor.lane``)
    lane: Callable[[bytes, Any], bytes | None] | None = None

    def versions(self) -> range:
        return range(self.low, self.high + 1)


def prologue(record: bytes, programs: Mapping[int, Program[H]], udp: bool = False,
             lenient: bool = False) -> tuple[rpc.Call, Program[H]] | bytes:
    """The RPC call prologue, decoded once for every listener (spec §1.2): the call and
    its program's row, or the reply that ends the call here — RPC_MISMATCH, PROG_UNAVAIL
    (no such program), PROG_MISMATCH with the program's low and high version, AUTH_ERROR
    (a credential that does not decode; a procedure not answered over UDP: TOOWEAK,
    spec §1.4), PROC_UNAVAIL (a procedure the row does not have).

    :raises WireError: the record is not an RPC call (TCP closes the connection).
    """
    try:
        call = rpc.decode_call(record)
    except rpc.RpcMismatch as e:
        return rpc.reply_rpc_mismatch(e.xid)
    row = programs.get(call.prog)
    if row is None:
        return rpc.reply_accept_error(call.xid, AcceptStat.PROG_UNAVAIL)
    if not row.low <= call.vers <= row.high:
        # libtirpc clients ask v4, then v3, then fall back to v2 on this answer.
        return rpc.reply_accept_error(call.xid, AcceptStat.PROG_MISMATCH, row.low, row.high)
    if call.auth_error is not None:
        return rpc.reply_auth_error(call.xid, call.auth_error)
    if row.procs is not None and call.proc not in row.procs:
        return rpc.reply_accept_error(call.xid, AcceptStat.PROC_UNAVAIL)
    if udp and row.udp is not None and call.proc not in row.udp and not (
            lenient and call.proc in row.udp_lenient):
        return rpc.reply_auth_error(call.xid, AuthStat.TOOWEAK)
    return call, row


#: UDP calls being answered at once (some await the network, e.g. NIBIND BIND); more
#: are dropped like lost datagrams.
MAX_UDP_IN_FLIGHT = 256
#: TCP connections at once (nibindd and portmapper calls are short): at the cap the
#: network (then the address) holding the most loses one, else an idle one makes room,
#: else the newcomer is closed (peers.PeerBounds).
MAX_TCP_CONNECTIONS = 256
#: A TCP peer that sends nothing for this long is disconnected.
TCP_IDLE_TIMEOUT = 120.0
#: The bounds on TCP peers: a quarter of the connections per address, half per /24 or
#: /64; replies are small, so a peer that takes none of them for 10 s is gone; records
#: are small too (MAX_BINDER_RECORD), 16 MiB of incomplete ones in all, each completed
#: within 30 s.
TCP_LIMITS = PeerLimits(total=MAX_TCP_CONNECTIONS, per_address=64, per_network=128,
                        queued_per_conn=64 * 1024, queued_total=4 * 1024 * 1024, stall=10.0,
                        partial_total=16 * 1024 * 1024, partial_timeout=30.0,
                        idle_timeout=TCP_IDLE_TIMEOUT)
#: How often the bounds in time are checked (PeerBounds.sweep).
SWEEP_PERIOD = 1.0


class RpcServer:
    """Serves a set of programs on one UDP and one TCP socket."""

    def __init__(self, programs: list[Program[Handler]]) -> None:
        self.programs = {p.prog: p for p in programs}
        self._tcp: Listener | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._local: Listener | None = None
        self._tasks: set[asyncio.Task] = set()
        #: TCP connections (their writers) whose handler is answering a call
        self._busy: set[asyncio.StreamWriter] = set()
        self.bounds: PeerBounds[asyncio.StreamWriter] = PeerBounds(
            TCP_LIMITS, self._drop, lambda w: w not in self._busy)
        #: reply bytes handed to each TCP connection's transport (what its peer took:
        #: this minus what the transport still buffers)
        self._written: dict[asyncio.StreamWriter, int] = {}
        self._sweeper: asyncio.Task | None = None
        self.udp_port = 0
        self.tcp_port = 0
        #: this host's addresses: UDP replies to them are not size-capped
        self.own = frozenset(local_addresses())

    async def answer(self, record: bytes, peer: Peer) -> bytes | None:
        """The reply to one record (None: no reply). :raises WireError: not a call."""
        found = prologue(record, self.programs, peer.udp)
        if isinstance(found, bytes):
            return found
        call, prog = found
        try:
            return await prog.handler(call, peer)
        except (WireError, ValueError):
            return rpc.reply_accept_error(call.xid, AcceptStat.GARBAGE_ARGS)
        except Exception:
            log.exception("program %d procedure %d failed", call.prog, call.proc)
            return rpc.reply_accept_error(call.xid, AcceptStat.SYSTEM_ERR)

    async def start(self, tcp_sock: socket.socket, udp_sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._tcp = Listener(tcp_sock, self._stream, "rpcserver").start()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
        self.tcp_port = tcp_sock.getsockname()[1]
        self.udp_port = udp_sock.getsockname()[1]
        self._sweeper = asyncio.ensure_future(self._sweep())

    def _measure(self, writer: asyncio.StreamWriter) -> tuple[int, int]:
        """(reply bytes queued, reply bytes its peer has taken in all)."""
        t = writer.transport
        queued = t.get_write_buffer_size() if not t.is_closing() else 0
        return queued, self._written.get(writer, 0) - queued

    async def _sweep(self) -> None:
        """The bounds in time: stalled, half-sent and idle connections go."""
        while True:
            await asyncio.sleep(SWEEP_PERIOD)
            self.bounds.sweep(time.monotonic(), self._measure)

    def spawn(self, coro: Awaitable) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start_local(self, sock: socket.socket) -> None:
        """Also serve a listening AF_UNIX stream socket (rpcbind's local transport, which
        libtirpc's rpcb calls try first): its peers are known by their credentials."""
        self._local = Listener(sock, partial(self._stream, self._serve_local),
                               "rpcserver (local)").start()

    def _stream(self, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                      Awaitable[None]] | None = None
                ) -> asyncio.StreamReaderProtocol:
        """A connection's protocol: its reader and writer handed to *serve* (TCP's by
        default), as ``asyncio.start_server`` makes them."""
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(), serve or self._serve_tcp)

    async def _serve_local(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                   struct.calcsize("3i"))
            uid = struct.unpack("3i", cred)[1]
        except (OSError, AttributeError, struct.error):
            writer.close()
            return
        await self._serve_tcp(reader, writer, Peer("127.0.0.1", 0 if uid == 0 else 65535,
                                                   False, uid))

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, peer: Peer | None = None) -> None:
        if peer is None:
            peername = writer.get_extra_info("peername") or ("", 0)
            peer = Peer(peername[0], peername[1], False)
        bounds = self.bounds
        refused = bounds.admit(writer, peer.addr, time.monotonic())
        if refused is not None:
            log.info("refusing %s: %s", peer.addr, refused)
            writer.close()
            return
        rr = rpc.RecordReader(MAX_BINDER_RECORD)
        self._written[writer] = 0
        try:
            while True:
                # idle, stalled and half-sent connections are closed by the sweep
                data = await reader.read(65536)
                if not data or writer not in bounds:
                    break
                now = time.monotonic()
                bounds.active(writer, now)
                records = rr.feed(data)
                if not bounds.account(writer, rr.pending(), now, fresh=bool(records)):
                    break   # over the budget of incomplete records: dropped
                self._busy.add(writer)
                for rec in records:
                    reply = await self.answer(rec, peer)
                    if reply is not None:
                        out = rpc.frame(reply)
                        writer.write(out)
                        self._written[writer] += len(out)
                        queued, taken = self._measure(writer)
                        if not bounds.queued(writer, queued, taken, time.monotonic()):
                            return
                try:
                    # a peer that takes none of its replies is not waited for long
                    async with asyncio.timeout(bounds.limits.stall):
                        await writer.drain()
                except TimeoutError:
                    log.info("closing %s: replies not taken for %.0f s", peer.addr,
                             bounds.limits.stall)
                    break
                self._busy.discard(writer)
                queued, taken = self._measure(writer)
                bounds.queued(writer, queued, taken, time.monotonic())
        except (WireError, ConnectionError) as e:
            log.debug("closing %s: %s", peer.addr, e)
        finally:
            self._busy.discard(writer)
            self._written.pop(writer, None)
            bounds.forget(writer)
            writer.close()

    def _drop(self, writer: asyncio.StreamWriter, why: str) -> None:
        """Close a TCP connection for the bounds (another peer needed the room)."""
        log.info("closing %s: %s", (writer.get_extra_info("peername") or ("?",))[0], why)
        writer.transport.abort()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._local is not None:
            self._local.close()
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for t in list(self._tasks):
            t.cancel()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(self.server._tasks) >= MAX_UDP_IN_FLIGHT:
            return  # as a lost datagram: the client retransmits (bounded memory)
        self.server.spawn(self._one(data, addr))

    async def _one(self, data: bytes, addr: tuple) -> None:
        try:
            reply = await self.server.answer(data, Peer(addr[0], addr[1], True))
        except WireError:
            return
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            if not is_local(addr[0], self.server.own):
                reply = rpc.bounded_udp_reply(reply, len(data))  # no amplifier for spoofers
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)
