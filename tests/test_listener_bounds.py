"""``server.peers.PeerBounds`` is one piece any listener uses, RPC or not (issue 19 item
3): here a minimal line protocol — the shape of a future LDAP door, an asyncio Protocol
with no RPC in it — bounds its peers with the same admit / active / account / queued /
forget / sweep calls netinfod's and the binder's servers make, over real loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
import time

from netinfo.server.peers import PeerBounds, PeerLimits

LIMITS = PeerLimits(total=8, per_address=2, per_network=100, partial_total=100,
                    partial_timeout=1.5, idle_timeout=0.6, stall=30.0)
SWEEP = 0.05


class LineServer:
    """Answers each line ``x`` with ``ok x``; a request is a line (its incomplete tail
    is what the bounds count)."""

    def __init__(self) -> None:
        self.bounds: PeerBounds[LineConn] = PeerBounds(LIMITS, self._drop, lambda c: c.idle)
        self.dropped: list[str] = []

    def _drop(self, conn: LineConn, why: str) -> None:
        self.dropped.append(why)
        conn.transport.abort()

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP)
            self.bounds.sweep(time.monotonic(), LineConn.measure)


class LineConn(asyncio.Protocol):
    def __init__(self, server: LineServer) -> None:
        self.server = server
        self.buf = b""
        self.written = 0
        self.transport: asyncio.Transport

    @property
    def idle(self) -> bool:
        return not self.transport.get_write_buffer_size()

    def measure(self) -> tuple[int, int]:
        queued = self.transport.get_write_buffer_size()
        return queued, self.written - queued

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        addr = transport.get_extra_info("peername")[0]
        if self.server.bounds.admit(self, addr, time.monotonic()) is not None:
            transport.close()

    def data_received(self, data: bytes) -> None:
        bounds, now = self.server.bounds, time.monotonic()
        bounds.active(self, now)
        *lines, self.buf = (self.buf + data).split(b"\n")
        if not bounds.account(self, len(self.buf), now, fresh=bool(lines)):
            return
        for line in lines:
            out = b"ok " + line + b"\n"
            self.transport.write(out)
            self.written += len(out)
        bounds.queued(self, *self.measure(), now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.bounds.forget(self)


async def _open(port: int, source: str):
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _closed(reader: asyncio.StreamReader, within: float = 3.0) -> bool:
    """True when the server closed the connection within *within* seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                if not await reader.read(1024):
                    return True
    except (TimeoutError, ConnectionError):
        return False


async def _ask(reader, writer, line: bytes) -> bytes:
    writer.write(line + b"\n")
    async with asyncio.timeout(3):
        return await reader.readline()


def test_a_listener_without_rpc_uses_the_same_bounds():
    async def body() -> None:
        ls = LineServer()
        srv = await asyncio.get_running_loop().create_server(
            lambda: LineConn(ls), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        sweeper = asyncio.ensure_future(ls.sweep())
        bounds = ls.bounds
        try:
            # answered, then closed once idle for idle_timeout
            r, w = await _open(port, "127.0.0.2")
            assert await _ask(r, w, b"hello") == b"ok hello\n"
            assert await _closed(r) and bounds.stats.dropped_idle == 1
            w.close()

            # an incomplete request not completed in time is dropped
            r, w = await _open(port, "127.0.0.2")
            w.write(b"half")
            assert await _closed(r) and bounds.stats.dropped_partial == 1
            w.close()

            # a peer whose every write completes a request and begins the next (a bulk
            # load's window) always holds an incomplete one, yet each is completed in
            # time: it stays, past partial_timeout (issue 20 item 4: netinfod dropped
            # niload after 30 s of streaming)
            r, w = await _open(port, "127.0.0.2")
            w.write(b"s0")
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < LIMITS.partial_timeout * 2:
                w.write(b"\ns" + str(n + 1).encode())
                assert await asyncio.wait_for(r.readline(), 1.0) == b"ok s%d\n" % n
                n += 1
                await asyncio.sleep(0.1)
            assert bounds.stats.dropped_partial == 1 and len(bounds) == 1
            w.close()
            await _until(lambda: len(bounds) == 0)

            # per address: two connections each holding half a request (never idle);
            # a third from the same address is refused, one from another let in
            held = []
            for _ in range(2):
                r, w = await _open(port, "127.0.0.3")
                w.write(b"x" * 10)
                held.append((r, w))
            await _until(lambda: bounds.partial_bytes == 20)
            r3, w3 = await _open(port, "127.0.0.3")
            assert await _closed(r3, 1.0) and bounds.stats.refused == 1
            w3.close()
            r4, w4 = await _open(port, "127.0.0.4")
            assert await _ask(r4, w4, b"other") == b"ok other\n"

            # the budget of incomplete requests for all connections: the one holding
            # the most goes, the others are answered
            w4.write(b"y" * 85)   # 20 + 85 > 100
            await _until(lambda: bounds.stats.dropped_partial == 2)
            assert await _closed(r4, 1.0)
            assert any("incomplete requests" in why for why in ls.dropped)
            r, w = held[0]
            assert await _ask(r, w, b"") == b"ok xxxxxxxxxx\n"
            for _, w in held:
                w.close()
            w4.close()
            await _until(lambda: len(bounds) == 0)
            assert bounds.partial_bytes == 0 and bounds.queued_bytes == 0
        finally:
            sweeper.cancel()
            srv.close()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
    asyncio.run(body())


async def _until(cond, within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not cond():
            await asyncio.sleep(0.01)
