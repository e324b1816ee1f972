"""The client transports (netinfo.client.transport): a connection that is refused, reset or
closed raises ConnectionFailed, one exception that is both a NetInfoError and a
ConnectionError (so an OSError), whichever root the caller catches."""

from __future__ import annotations

import asyncio
import socket

import pytest

from netinfo.client.core import Client
from netinfo.client.transport import RpcConnection, open_tcp, udp_call
from netinfo.errors import ConnectionFailed, NetInfoError, Timeout


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_failed_is_both_roots():
    e = ConnectionFailed(111, "cannot connect")
    assert isinstance(e, NetInfoError) and isinstance(e, ConnectionError)
    assert isinstance(e, OSError) and e.errno == 111


@pytest.mark.parametrize("privileged", [False, None])
def test_refused_connect_raises_connection_failed(privileged):
    port = _closed_port()

    async def go():
        await open_tcp("127.0.0.1", port, privileged=privileged, timeout=5)
    with pytest.raises(ConnectionFailed) as ei:
        asyncio.run(go())
    assert f"127.0.0.1:{port}" in str(ei.value)
    assert isinstance(ei.value.__cause__, ConnectionRefusedError)
    with pytest.raises(OSError):              # old handlers keep working
        asyncio.run(go())
    with pytest.raises(NetInfoError):         # and the one root catches it
        asyncio.run(Client.connect("127.0.0.1", port, privileged=False, timeout=5))


async def _server(handle) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_server_closing_mid_call_raises_connection_failed():
    async def handle(reader, writer):
        await reader.read(4)     # the call arrives; hang up without answering
        writer.close()

    async def go():
        server, port = await _server(handle)
        async with server:
            conn = await open_tcp("127.0.0.1", port, privileged=False)
            with pytest.raises(ConnectionFailed):
                await conn.call(100000, 2, 0, b"", None, timeout=5)
            await asyncio.sleep(0)
            with pytest.raises(ConnectionFailed):    # a closed connection refuses sends
                conn.send(b"x", conn.next_xid())
    asyncio.run(go())


def test_reset_mid_call_raises_connection_failed():
    async def handle(reader, writer):
        await reader.read(4)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        writer.transport.abort()   # RST

    async def go():
        server, port = await _server(handle)
        async with server:
            conn = await open_tcp("127.0.0.1", port, privileged=False)
            with pytest.raises(ConnectionFailed):
                await conn.call(100000, 2, 0, b"", None, timeout=5)
    asyncio.run(go())


def test_silent_server_is_a_timeout_not_a_connection_failure():
    async def handle(reader, writer):
        await reader.read(100)
        await asyncio.sleep(2)
        writer.close()

    async def go():
        server, port = await _server(handle)
        async with server:
            conn = await open_tcp("127.0.0.1", port, privileged=False)
            assert isinstance(conn, RpcConnection)
            with pytest.raises(Timeout):
                await conn.call(100000, 2, 0, b"", None, timeout=0.2)
            conn.close()
    asyncio.run(go())


def test_udp_to_nobody_raises_connection_failed():
    port = _closed_port()

    async def go():
        await udp_call("127.0.0.1", port, 100000, 2, 0, b"", timeout=2, privileged=False)
    with pytest.raises(ConnectionFailed):
        asyncio.run(go())
