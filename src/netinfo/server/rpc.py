"""A small asyncio ONC RPC server for the binder's programs (portmapper, NIBIND).

netinfod's data path has its own synchronous, group-committing transport (``server.py``);
the binder's programs answer a few calls a second but must await the network while doing
so (CALLIT forwarding, NIBIND BIND forwarding), so here every call is a coroutine. TCP calls
on one connection are answered in order (spec §1.3); UDP calls run concurrently.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import WireError
from ..netif import is_local, local_addresses
from ..wire import rpc
from ..wire.rpc import AcceptStat
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


#: A program's handler: (call, peer) → reply record, or None to stay silent.
Handler = Callable[[rpc.Call, Peer], Awaitable[bytes | None]]


@dataclass
class Program:
    """One RPC program: versions it answers and its handler."""

    prog: int
    low: int
    high: int
    handler: Handler


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
#: /64; replies are small, so a peer that takes none of them for 10 s is gone.
TCP_LIMITS = PeerLimits(total=MAX_TCP_CONNECTIONS, per_address=64, per_network=128,
                        queued_per_conn=64 * 1024, queued_total=4 * 1024 * 1024, stall=10.0)


#: Errors of accept() that mean "no descriptor or memory left" (issue 18 N19).
ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: At most one log line per this many seconds about them.
ACCEPT_LOG_PERIOD = 10.0
_QUIET_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, name: str) -> None:
    """Make accept() failing for lack of descriptors (EMFILE, ENFILE) or memory one
    rate-limited log line instead of a traceback each time (issue 18 N19).

    asyncio itself stops accepting on that listener for a second and then tries again
    (``ACCEPT_RETRY_DELAY``), which is the pause wanted: the connections already open are
    served meanwhile, and as they close accepting resumes. It reports each failure
    through the loop's exception handler, whose default logs a traceback; this handler
    takes those reports and passes everything else on. Installed once per loop."""
    if loop in _QUIET_LOOPS:
        return
    previous = loop.get_exception_handler()
    state = {"last": float("-inf"), "missed": 0}

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in ACCEPT_EXHAUSTED and \
                "accept" in str(context.get("message", "")):
            now = time.monotonic()
            if now - state["last"] >= ACCEPT_LOG_PERIOD:
                more = f" ({state['missed']} more since the last report)" \
                    if state["missed"] else ""
                log.warning("%s: cannot accept connections: %s; accepting paused for a "
                            "second%s", name, exc.strerror or exc, more)
                state["last"], state["missed"] = now, 0
            else:
                state["missed"] += 1
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    _QUIET_LOOPS.add(loop)


class RpcServer:
    """Serves a set of programs on one UDP and one TCP socket."""

    def __init__(self, programs: list[Program]) -> None:
        self.programs = {p.prog: p for p in programs}
        self._tcp: asyncio.AbstractServer | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._local: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        #: TCP connections (their writers) whose handler is answering a call
        self._busy: set[asyncio.StreamWriter] = set()
        self.bounds: PeerBounds[asyncio.StreamWriter] = PeerBounds(
            TCP_LIMITS, self._drop, lambda w: w not in self._busy)
        self.udp_port = 0
        self.tcp_port = 0
        #: this host's addresses: UDP replies to them are not size-capped
        self.own = frozenset(local_addresses())

    async def answer(self, record: bytes, peer: Peer) -> bytes | None:
        """The reply to one record (None: no reply). :raises WireError: not a call."""
        try:
            call = rpc.decode_call(record)
        except rpc.RpcMismatch as e:
            return rpc.reply_rpc_mismatch(e.xid)
        prog = self.programs.get(call.prog)
        if prog is None:
            return rpc.reply_accept_error(call.xid, AcceptStat.PROG_UNAVAIL)
        if not prog.low <= call.vers <= prog.high:
            # libtirpc clients ask v4, then v3, then fall back to v2 on this answer.
            return rpc.reply_accept_error(call.xid, AcceptStat.PROG_MISMATCH, prog.low,
                                          prog.high)
        if call.auth_error is not None:
            return rpc.reply_auth_error(call.xid, call.auth_error)
        try:
            return await prog.handler(call, peer)
        except (WireError, ValueError):
            return rpc.reply_accept_error(call.xid, AcceptStat.GARBAGE_ARGS)
        except Exception:
            log.exception("program %d procedure %d failed", call.prog, call.proc)
            return rpc.reply_accept_error(call.xid, AcceptStat.SYSTEM_ERR)

    async def start(self, tcp_sock: socket.socket, udp_sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        quiet_accept_errors(loop, "rpcserver")
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
        self.tcp_port = tcp_sock.getsockname()[1]
        self.udp_port = udp_sock.getsockname()[1]

    def spawn(self, coro: Awaitable) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start_local(self, sock: socket.socket) -> None:
        """Also serve a listening AF_UNIX stream socket (rpcbind's local transport, which
        libtirpc's rpcb calls try first): its peers are known by their credentials."""
        self._local = await asyncio.start_unix_server(self._serve_local, sock=sock)

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
        try:
            while True:
                try:
                    async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                        data = await reader.read(65536)
                except TimeoutError:
                    break  # idle, or a record never completed: free the descriptor
                if not data or writer not in bounds:
                    break
                self._busy.add(writer)
                bounds.active(writer, time.monotonic())
                for rec in rr.feed(data):
                    reply = await self.answer(rec, peer)
                    if reply is not None:
                        writer.write(rpc.frame(reply))
                try:
                    # a peer that takes none of its replies is not waited for long
                    async with asyncio.timeout(bounds.limits.stall):
                        await writer.drain()
                except TimeoutError:
                    log.info("closing %s: replies not taken for %.0f s", peer.addr,
                             bounds.limits.stall)
                    break
                self._busy.discard(writer)
        except (WireError, ConnectionError) as e:
            log.debug("closing %s: %s", peer.addr, e)
        finally:
            self._busy.discard(writer)
            bounds.forget(writer)
            writer.close()

    def _drop(self, writer: asyncio.StreamWriter, why: str) -> None:
        """Close a TCP connection for the bounds (another peer needed the room)."""
        log.info("closing %s: %s", (writer.get_extra_info("peername") or ("?",))[0], why)
        writer.transport.abort()

    async def close(self) -> None:
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
