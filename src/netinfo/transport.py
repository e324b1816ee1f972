"""ONC RPC transports of the client side: TCP record-marked and pipelined, UDP with
retransmission.

Everything that owns a socket on the calling side lives here, below :mod:`netinfo.client`
(the NETINFO procedures) and :mod:`netinfo.binding` (portmapper and nibindd calls), which
both import it and nothing of each other's.

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

from . import rpc
from .errors import ConnectionFailed, Timeout, WireError
from .model import format_host_port
from .xdr import Unpacker

#: Default timeouts (spec §7.1: 5 s for reads, 60 s for writes).
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 60.0
#: Source ports tried by a privileged caller (spec §10.2: a reserved port makes root).
RESERVED = range(600, 1024)


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
    """A TCP connection carrying record-marked RPC calls; many calls in flight at once."""

    def __init__(self) -> None:
        self.reader = rpc.RecordReader(rpc.MAX_REPLY_RECORD)
        self.transport: asyncio.Transport | None = None
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._xid = new_xid()
        # Calls issued in one turn of the event loop leave in one write (one segment
        # rather than one per call), so pipelined calls reach the server together.
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            records = self.reader.feed(data)
        except WireError as e:
            self._fail(e)
            return
        for rec in records:
            try:
                xid = rpc.reply_xid(rec)
            except WireError:
                continue
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
        if self.transport is not None:
            self.transport.abort()

    def next_xid(self) -> int:
        """The next transaction id on this connection."""
        self._xid = (self._xid + 1) & 0xFFFFFFFF
        return self._xid

    def send(self, record: bytes, xid: int) -> asyncio.Future[bytes]:
        """Send one call record; the future gets the reply record.

        :raises ConnectionFailed: the connection is closed.
        """
        if self.transport is None or self.transport.is_closing():
            raise _failed("connection is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.waiting[xid] = fut
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(rpc.frame(record))
        return fut

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

    def close(self) -> None:
        """Close the connection (calls in flight fail with ConnectionFailed)."""
        if self.transport is not None:
            self.transport.close()


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
           "open_tcp", "udp_call"]
