"""ONC RPC transports of the client side: TCP record-marked and pipelined, UDP with
retransmission.

Everything that owns a socket on the calling side lives here, below :mod:`netinfo.client`
(the NETINFO procedures) and :mod:`netinfo.client.binding` (portmapper and nibindd calls), which
both import it and nothing of each other's.

Replies are gathered whole, except those of calls made with
:meth:`RpcConnection.call_stream` (READALL, spec §9.4), which are handed to a
:class:`ReplyStream` as their bytes arrive, in bounded memory however long they are.

A connection that cannot be made, is reset or is closed raises
:class:`~netinfo.errors.ConnectionFailed`, a :class:`~netinfo.errors.NetInfoError` that is
also a :class:`ConnectionError`; no answer in time raises
:class:`~netinfo.errors.Timeout`.

Spec: §1.2 (RPC messages), §1.3 (TCP record marking), §1.4 (which transport), §7.1
(connecting; a reserved source port when running as root), §10.2 (the local superuser).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections import deque
from contextvars import ContextVar

from ..errors import ConnectionFailed, Timeout, TooLong, WireError
from ..model import format_host_port
from ..wire import rpc
from ..wire.xdr import Unpacker

#: Default timeouts (spec §7.1: 5 s for reads, 60 s for writes).
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 60.0
#: Source ports tried by a privileged caller (spec §10.2: a reserved port makes root).
RESERVED = range(600, 1024)
#: Bytes of a streamed reply waiting for its reader, at most: past this the connection
#: stops reading (and the sender's TCP window closes) until the reader has taken half.
STREAM_HIGH_WATER = 4 * 1024 * 1024
#: A streamed reply's bytes are handed to its reader at most this many at a time, so the
#: work done with each piece between two turns of the event loop stays small.
STREAM_READ = 64 * 1024
#: The largest reply record the connections opened in this context gather
#: (:data:`~netinfo.wire.rpc.MAX_REPLY_RECORD` unless lowered; the web manager lowers it for
#: the requests it serves, docs/security.md).
REPLY_LIMIT: ContextVar[int] = ContextVar("netinfo_reply_limit",
                                          default=rpc.MAX_REPLY_RECORD)
#: An RPC reply header is at most this long (a verifier is at most 400 bytes, RFC 5531).
_REPLY_HEAD_MAX = 512
_U32 = struct.Struct(">I")


def new_xid() -> int:
    """A random transaction id to start from (spec §1.2)."""
    return random.getrandbits(32)


def _failed(what: str, exc: BaseException | None = None) -> ConnectionFailed:
    """A :class:`ConnectionFailed` saying *what*, caused by *exc* (kept as errno too)."""
    if isinstance(exc, ConnectionFailed):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        # os.strerror: asyncio's own strerror ("Connect call failed ('h', p)") says less
        err = ConnectionFailed(exc.errno, f"{what}: {os.strerror(exc.errno)}")
    else:
        err = ConnectionFailed(f"{what}: {exc}" if exc is not None else what)
    err.__cause__ = exc
    return err


class RpcConnection(asyncio.Protocol):
    """A TCP connection carrying record-marked RPC calls; many calls in flight at once.

    Replies are gathered whole (at most :data:`REPLY_LIMIT` bytes), but
    for calls made with :meth:`call_stream`, whose reply is handed to a
    :class:`ReplyStream` as its bytes arrive, in memory bounded by
    :data:`STREAM_HIGH_WATER` whatever its length.
    """

    def __init__(self) -> None:
        self.pieces = rpc.PieceReader()
        self.max_record = REPLY_LIMIT.get()
        self.transport: asyncio.Transport | None = None
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        #: xid → the stream of a streamed call whose reply has not begun
        self.streams: dict[int, ReplyStream] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._xid = new_xid()
        # Calls issued in one turn of the event loop leave in one write (one segment
        # rather than one per call), so pipelined calls reach the server together.
        self._out: list[bytes] = []
        self._rec = bytearray()                # the reply record being gathered
        self._routed = False                   # its xid has been looked at
        self._sink: ReplyStream | None = None  # where the current record streams to

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            pieces = self.pieces.feed(data)
        except WireError as e:
            self._fail(e)
            return
        for piece, first, end in pieces:
            if first:
                self._sink, self._routed = None, False
            sink = self._sink
            if sink is not None:
                sink.feed(piece, end)
                continue
            if first and end and not self.streams:
                self._deliver(piece)   # the usual case: a whole reply in one piece
                continue
            rec = self._rec
            rec += piece
            if len(rec) > self.max_record:
                self._fail(WireError(f"reply larger than {self.max_record} bytes",
                                     fatal=True))
                return
            if not self._routed and (len(rec) >= 4 or end):
                self._routed = True
                sink = self.streams.pop(_U32.unpack_from(rec)[0], None) \
                    if len(rec) >= 4 else None
                if sink is not None:   # the reply of a streamed call: hand it over
                    self._rec = bytearray()
                    self._sink = sink
                    sink.feed(bytes(rec), end)
                    continue
            if end:
                self._rec = bytearray()
                self._deliver(bytes(rec))

    def _deliver(self, rec: bytes) -> None:
        try:
            xid = rpc.reply_xid(rec)
        except WireError:
            return
        fut = self.waiting.pop(xid, None)
        if fut is not None and not fut.done():
            fut.set_result(rec)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_failed("connection closed by the server") if exc is None
                   else _failed("connection lost", exc))
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(exc)
        self.waiting.clear()
        for stream in [*self.streams.values(), *([self._sink] if self._sink else [])]:
            stream.fail(exc)
        self.streams.clear()
        self._sink = None
        if self.transport is not None:
            self.transport.abort()

    def next_xid(self) -> int:
        """The next transaction id on this connection."""
        self._xid = (self._xid + 1) & 0xFFFFFFFF
        return self._xid

    def send(self, record: bytes, xid: int) -> asyncio.Future[bytes]:
        """Send one call record; the future gets the reply record.

        :raises ConnectionFailed: the connection is closed. :raises TooLong: the record
            is over the servers' cap (:data:`rpc.MAX_CALL_RECORD`).
        """
        self._queue(record)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[xid] = fut
        return fut

    def _queue(self, record: bytes) -> None:
        if len(record) > rpc.MAX_CALL_RECORD:
            # A server closes the connection on a call record over its cap (spec §1.3):
            # say so before sending, instead of a "Communication failure" after.
            raise TooLong(f"a call of {len(record)} bytes is more than a server accepts "
                          f"({rpc.MAX_CALL_RECORD} bytes)")
        if self.transport is None or self.transport.is_closing():
            raise _failed("connection is closed")
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(rpc.frame(record))

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    async def call(self, prog: int, vers: int, proc: int, args: bytes,
                   auth: rpc.AuthUnix | None, timeout: float) -> Unpacker:
        """One call; returns an unpacker at the results.

        :raises RpcError, Timeout, ConnectionFailed:
        """
        xid = self.next_xid()
        fut = self.send(rpc.encode_call(xid, prog, vers, proc, args, auth), xid)
        try:
            async with asyncio.timeout(timeout):
                rec = await fut
        except TimeoutError:
            self.waiting.pop(xid, None)
            raise Timeout(f"no reply within {timeout} s") from None
        return rpc.decode_reply(rec)[1]

    async def call_stream(self, prog: int, vers: int, proc: int, args: bytes,
                          auth: rpc.AuthUnix | None, timeout: float) -> ReplyStream:
        """One call whose reply is taken as it arrives (READALL's, spec §9.4): its
        :class:`ReplyStream`, once the RPC reply header is read and accepted. *timeout*
        bounds each wait for more of the reply, not the whole of it.

        :raises RpcError, Timeout, ConnectionFailed, WireError:
        """
        xid = self.next_xid()
        self._queue(rpc.encode_call(xid, prog, vers, proc, args, auth))
        stream = self.streams[xid] = ReplyStream(self, xid, timeout)
        try:
            await stream.read_head()
        except BaseException:
            stream.close()
            raise
        return stream

    def close(self) -> None:
        """Close the connection (calls in flight fail with ConnectionFailed)."""
        if self.transport is not None:
            self.transport.close()


class ReplyStream:
    """The reply to one call, taken as its bytes arrive and never held whole: after
    :meth:`read_head`, :meth:`read` returns the next bytes of its body (b"" at its end).

    At most :data:`STREAM_HIGH_WATER` bytes wait for the reader; past that the connection
    stops reading until the reader has taken half of them, so a slow reader slows the
    sender down (TCP flow control) instead of filling memory.
    """

    def __init__(self, conn: RpcConnection, xid: int, timeout: float) -> None:
        self._conn = conn
        self._xid = xid
        self.timeout = timeout
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._ended = False
        self._closed = False
        self._paused = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- from the connection -------------------------------------------------------------

    def feed(self, piece: bytes, end: bool) -> None:
        """More of the reply (*end*: its last bytes)."""
        if self._closed:
            return   # abandoned: the rest of the record is dropped as it arrives
        if piece:
            self._chunks.append(piece)
            self._held += len(piece)
            transport = self._conn.transport
            if self._held > STREAM_HIGH_WATER and not self._paused and transport is not None:
                transport.pause_reading()
                self._paused = True
        if end:
            self._ended = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """The connection failed before the reply ended."""
        if not self._ended:
            self._exc = exc
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- for the reader ------------------------------------------------------------------

    async def _more(self) -> None:
        """Until bytes are held, the reply ended or the connection failed."""
        while not self._chunks and not self._ended and self._exc is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._waiter
            except TimeoutError:
                raise Timeout(f"no more of the reply within {self.timeout} s") from None
            finally:
                self._waiter = None
        if self._exc is not None:
            raise self._exc

    def _take(self, limit: int) -> bytes:
        chunk = self._chunks[0]
        if len(chunk) > limit:
            self._chunks[0] = chunk[limit:]
            chunk = chunk[:limit]
        else:
            self._chunks.popleft()
        self._held -= len(chunk)
        if self._paused and self._held <= STREAM_HIGH_WATER // 2:
            self._paused = False
            transport = self._conn.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        return chunk

    async def read_head(self) -> None:
        """Read the RPC reply header (spec §1.2); what follows is the body.

        :raises RpcError: the call was refused. :raises WireError: not a reply.
        """
        head = b""
        while len(head) < _REPLY_HEAD_MAX:
            await self._more()
            if not self._chunks:
                break   # the whole reply is shorter than the longest header
            head += self._take(_REPLY_HEAD_MAX - len(head))
        _, u = rpc.decode_reply(head)
        rest = head[u.pos:]
        if rest:
            self._chunks.appendleft(rest)
            self._held += len(rest)

    async def read(self, limit: int = STREAM_READ) -> bytes:
        """The body's next bytes, at most *limit*; b"" once it has ended.

        :raises ConnectionFailed: the connection failed first. :raises Timeout: nothing
            came for ``timeout`` seconds.
        """
        await self._more()
        return self._take(limit) if self._chunks else b""

    def close(self) -> None:
        """Stop taking the reply: what is left of it is dropped as it arrives (the
        connection stays usable for other calls)."""
        self._closed = True
        self._chunks.clear()
        self._held = 0
        self._conn.streams.pop(self._xid, None)
        if self._paused:
            self._paused = False
            transport = self._conn.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()


async def open_tcp(host: str, port: int, privileged: bool | None = None,
                   timeout: float = READ_TIMEOUT) -> RpcConnection:
    """Connect; from a reserved source port when *privileged* (default: when root).

    A reserved source port is what makes a local root caller the superuser (spec §10.2).

    :raises ConnectionFailed: refused, unreachable, reset. :raises Timeout:.
    """
    try:
        return await _connect(host, port, privileged, timeout)
    except TimeoutError:
        raise Timeout(f"cannot connect to {format_host_port(host, port)} within {timeout} s") \
            from None
    except OSError as e:
        raise _failed(f"cannot connect to {format_host_port(host, port)}", e) from e


async def _connect(host: str, port: int, privileged: bool | None,
                   timeout: float) -> RpcConnection:
    loop = asyncio.get_running_loop()
    if privileged is None:
        privileged = os.geteuid() == 0
    async with asyncio.timeout(timeout):
        if privileged:
            for port_try in random.sample(RESERVED, 40):
                sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
                sock.setblocking(False)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("", port_try))
                    await loop.sock_connect(sock, (host, port))
                except OSError as e:
                    sock.close()
                    if isinstance(e, ConnectionRefusedError):
                        raise
                    continue
                _, proto = await loop.create_connection(RpcConnection, sock=sock)
                return proto
        _, proto = await loop.create_connection(RpcConnection, host, port)
        return proto


class _UdpCall(asyncio.DatagramProtocol):
    """Waits for the one datagram answering *xid*."""

    def __init__(self, xid: int) -> None:
        self.xid = xid
        self.reply: asyncio.Future[tuple[bytes, tuple]] = \
            asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            if rpc.reply_xid(data) == self.xid and not self.reply.done():
                self.reply.set_result((data, addr))
        except WireError:
            pass

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable arrives as ConnectionRefusedError: nobody listens there.
        if not self.reply.done():
            self.reply.set_exception(_failed("UDP call refused", exc)
                                     if isinstance(exc, ConnectionError) else exc)


def _udp_socket(host: str, privileged: bool) -> socket.socket:
    """A UDP socket, bound to a reserved port when *privileged* and possible."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    if privileged:
        for port in random.sample(RESERVED, 40):
            try:
                sock.bind(("", port))
                break
            except OSError:
                continue
    sock.setblocking(False)
    return sock


async def udp_call(host: str, port: int, prog: int, vers: int, proc: int, args: bytes = b"",
                   auth: rpc.AuthUnix | None = None, timeout: float = READ_TIMEOUT,
                   retries: int = 3, privileged: bool | None = None) -> Unpacker:
    """One call over UDP with retransmission; returns an unpacker at the results.

    With *privileged* (default: when root) the call leaves from a reserved port, which
    nibindd requires of REGISTER and friends (spec §6.2).

    :raises Timeout: no reply; :raises RpcError: refused; :raises ConnectionFailed:
        nobody listens (ICMP port unreachable); :raises OSError: no route.
    """
    loop = asyncio.get_running_loop()
    xid = new_xid()
    msg = rpc.encode_call(xid, prog, vers, proc, args, auth)
    if privileged is None:
        privileged = os.geteuid() == 0
    sock = _udp_socket(host, privileged)
    try:
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    transport, proto = await loop.create_datagram_endpoint(lambda: _UdpCall(xid), sock=sock)
    try:
        wait = timeout / (retries + 1)
        for _ in range(retries + 1):
            transport.sendto(msg)
            try:
                async with asyncio.timeout(wait):
                    data, _ = await asyncio.shield(proto.reply)
                return rpc.decode_reply(data)[1]
            except TimeoutError:
                continue
        raise Timeout(f"no UDP reply from {host}:{port} within {timeout} s")
    finally:
        transport.close()


__all__ = ["READ_TIMEOUT", "WRITE_TIMEOUT", "RESERVED", "new_xid", "RpcConnection",
           "ReplyStream", "open_tcp", "udp_call"]
