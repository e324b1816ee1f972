"""Readers never hold writers, and bounds per peer (issue 18, second round: findings N1,
N2, N3).

N1: a READALL, a LISTALL of 6,000 children and a LIST of them, each sent on a raw socket
that never reads, made the master answer every write NI_MASTERBUSY for as long as they
stayed open (661 s seen). Now each stream reads a snapshot taken when it begins, and a
stream whose peer takes nothing is closed after a bounded time.
N2: 1,024 connections that were never idle locked every newcomer out. Now connections
are capped per address and per network, and at the global cap the one holding the most
loses one.
N3: each non-reading connection held about 4 MiB of replies, with no bound in all. Now
queued replies are bounded per connection and in total.

The first test runs a real netinfod (SQLite); the others serve a database in this
process (both engines), on loopback, with the bounds made small so that they are reached
in a second, and look at the server's counters.
"""

from __future__ import annotations

import asyncio
import errno
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError, Status, StorageError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server import database
from netinfo.server import netinfod as server
from netinfo.server.database import Database, open_database
from netinfo.server.netinfod import NetInfoServer, ServerConfig
from netinfo.server.peers import PeerBounds, PeerLimits, network_of
from netinfo.server.service import SUPERUSER
from netinfo.storage import open_store
from netinfo.wire import protocol, rpc
from netinfo.wire.protocol import PROCEDURES, RESULT_KINDS, Proc, encode_args
from netinfo.wire.readall import decode_readall
from netinfo.wire.xdr import Unpacker

from .conftest import ROOT_USER, free_port

KIDS = 6000
PAD = "p" * 1000    # 6 MB per stream: more than the socket buffers and the 1 MiB mark take
#: 15 MB per stream: more than the socket buffers and the old 4 MiB mark took, so that
#: the streams stay open without a reader on the code before the fix as well
BIG_PAD = "p" * 2500


def _populate(db: Database, pad: str = PAD) -> int:
    """/big with KIDS children; its number."""
    svc = db.service_for_tests()
    big, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER), [("name", ["big"])],
                             NI_INDEX_NULL)
    for i in range(KIDS):
        svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, big),
                        [("name", [f"k{i}"]), ("pad", [pad])], NI_INDEX_NULL)
    db.commit()
    return big.object


def _call(proc: Proc, xid: int, *args) -> bytes:
    return rpc.frame(rpc.encode_call(xid, protocol.NETINFO_PROG, protocol.NETINFO_VERS, proc,
                                     encode_args(PROCEDURES[proc], *args), None))


def _raw(port: int, source: str = "127.0.0.1", reserved: bool = False) -> socket.socket:
    """A client socket that reads as little as it can: a 4 KiB receive buffer, from
    *source* (any 127/8 address works on loopback) and, when *reserved*, from a reserved
    port (the superuser, spec §10.2; needs root)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    if reserved:
        for p in range(1023, 600, -1):
            try:
                s.bind((source, p))
                break
            except OSError:
                continue
    else:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _read_record(s: socket.socket, timeout: float = 30.0) -> bytes:
    s.settimeout(timeout)
    out = bytearray()
    while True:
        hdr = b""
        while len(hdr) < 4:
            got = s.recv(4 - len(hdr))
            if not got:
                raise ConnectionError("closed")
            hdr += got
        (h,) = struct.unpack(">I", hdr)
        n, have = h & 0x7FFFFFFF, 0
        while have < n:
            got = s.recv(min(n - have, 1 << 16))
            if not got:
                raise ConnectionError("closed")
            out += got
            have += len(got)
        if h & 0x80000000:
            return bytes(out)


def _union(rec: bytes, proc: Proc, xid: int):
    got, u = rpc.decode_reply(rec)
    assert got == xid
    return RESULT_KINDS[protocol.Kind.UNION].decode(PROCEDURES[proc], u)


async def _timed_create(port: int, parent: int, name: str) -> float:
    async with await Client.connect("127.0.0.1", port, "snap", timeout=10) as c:
        pid = await c.self_id(parent)
        t = time.perf_counter()
        await c.create(pid, [("name", [name])])
        return time.perf_counter() - t


# -- N1 over a real netinfod -----------------------------------------------------------------

def test_writes_go_on_while_a_readall_a_listall_and_a_list_are_held_unread(tmp_path, netinfod):
    """The seams issue's Done-when: while one client holds a READALL, a LISTALL of 6,000
    children and a LIST of them open without reading, a CREATE from another connection
    is answered NI_OK within 1 s; the held replies are each one consistent state."""
    with open_database(tmp_path, "snap", create=True) as db:
        big = _populate(db, BIG_PAD)
    d = netinfod("snap", directory=tmp_path)
    held = {Proc.READALL: _raw(d.port, reserved=ROOT_USER), Proc.LISTALL: _raw(d.port),
            Proc.LIST: _raw(d.port)}
    try:
        held[Proc.READALL].sendall(_call(Proc.READALL, 1, 0))
        held[Proc.LISTALL].sendall(_call(Proc.LISTALL, 2, NiId(big, 0)))
        held[Proc.LIST].sendall(_call(Proc.LIST, 3, NiId(big, 0), "pad"))
        time.sleep(0.5)   # each is streamed until its peer stops taking: all three stall
        took = [asyncio.run(_timed_create(d.port, big, f"new{i}")) for i in range(3)]
        print(f"MEASURE N1 CREATE while 3 streams are held unread: "
              f"{max(took) * 1000:.1f} ms worst")
        assert max(took) < 1.0
        # The held replies are whole, and of the state when they began: no new child.
        nid, everything = _union(_read_record(held[Proc.LISTALL]), Proc.LISTALL, 2)
        assert len(everything) == KIDS and nid.object == big
        assert [dict(p)["name"] for p in everything[:2]] == [["k0"], ["k1"]]
        listed, _ = _union(_read_record(held[Proc.LIST]), Proc.LIST, 3)
        assert len(listed) == KIDS and all(v == [BIG_PAD] for _, v in listed)
        xid, u = rpc.decode_reply(_read_record(held[Proc.READALL]))
        checksum, _, dirs = decode_readall(u)
        assert xid == 1 and len(dirs) == KIDS + 2
        assert not any(dict(x.props).get("name", [""])[0].startswith("new") for x in dirs)
        assert checksum == sum((x.id.object + 1) * x.id.instance for x in dirs) & 0xFFFFFFFF
    finally:
        for s in held.values():
            s.close()

    async def after() -> int:
        async with await Client.connect("127.0.0.1", d.port, "snap") as c:
            return len((await c.children(big))[0])
    assert asyncio.run(after()) == KIDS + 3   # the writes made meanwhile are all there


# -- a server in this process ------------------------------------------------------------------

class Served:
    """A NetInfoServer on its own event loop in a thread, on 127.0.0.1, serving the
    database *url* with /big made (SQLite objects stay in the thread that made them)."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.db = Database(open_store(url))
            self.big = _populate(self.db)
            for _ in range(5):
                self.server = NetInfoServer(self.db, ServerConfig(
                    "snap", "0.0.0.0", self.port, trust_local=True), ["127.0.0.1"])
                try:
                    self.loop.run_until_complete(self.server.start())
                    break
                except OSError as e:   # the free port was taken meanwhile: another one
                    if e.errno != errno.EADDRINUSE:
                        raise
                    self.port = free_port()
            started.set()
            self.loop.run_forever()
            self.db.close()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(60)

    def close(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def until(self, what, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, "not within the time"
            time.sleep(0.05)


@pytest.fixture
def served(store_url, monkeypatch) -> Iterator[tuple[Served, int]]:
    monkeypatch.setattr(server, "SWEEP_PERIOD", 0.1)
    url = store_url   # each engine under test (conftest: NETINFO_TEST_STORES)
    s = Served(url)
    try:
        yield s, s.big
    finally:
        s.close()


def _limits(s: Served, **kw) -> None:
    s.server.bounds.limits = replace(s.server.bounds.limits, **kw)


def test_a_held_stream_is_a_snapshot_and_a_stalled_one_is_closed(served):
    """Both engines: writes go on while a LISTALL is held; the held reply is the state
    when it began; a peer that takes nothing is disconnected after the stall bound (1 s
    here, 30 s by default), which releases its snapshot."""
    s, big = served
    slow = _raw(s.port)
    slow.sendall(_call(Proc.LISTALL, 9, NiId(big, 0)))
    s.until(lambda: s.db.transfers == 1)
    took = asyncio.run(_timed_create(s.port, big, "during"))
    assert took < 1.0
    # taken now, while it is open: the new child is not in it
    nid, everything = _union(_read_record(slow), Proc.LISTALL, 9)
    assert len(everything) == KIDS and nid.object == big
    s.until(lambda: s.db.transfers == 0)
    # Held without reading: closed after the stall bound, its snapshot released.
    _limits(s, stall=1.0)
    held = _raw(s.port)
    held.sendall(_call(Proc.LISTALL, 10, NiId(big, 0)))
    s.until(lambda: s.db.transfers == 1)
    t = time.monotonic()
    s.until(lambda: s.db.transfers == 0, timeout=8)
    print(f"MEASURE N1 a non-reading stream closed after {time.monotonic() - t:.1f} s "
          f"(stall bound 1 s)")
    assert s.server.bounds.stats.dropped_stalled == 1
    with pytest.raises(OSError):
        _read_record(held, timeout=5)
    held.close()
    slow.close()


def test_many_connections_from_one_address_do_not_lock_out_another(served):
    """N2: connections that are never idle (each holds half a record) from one address:
    the cap per address refuses its extra connections, and at the global cap the address
    holding the most loses one to a newcomer, of its own network or another."""
    s, _ = served
    bounds = s.server.bounds
    bounds.limits = PeerLimits(total=24, per_address=16, per_network=1000)
    half = _call(Proc.PING, 1)[:6]

    def hold(source: str, n: int, admitted: bool = True) -> list[socket.socket]:
        """*n* connections from *source*, each holding half a record (never idle), each
        seen by the server before the next (or refused)."""
        out = []
        for _ in range(n):
            before, refused = s.server.partial_bytes, bounds.stats.refused
            c = _raw(s.port, source)
            with contextlib.suppress(OSError):
                c.sendall(half)
            out.append(c)
            if admitted:
                s.until(lambda b=before: s.server.partial_bytes == b + len(half))
            else:
                s.until(lambda r=refused: bounds.stats.refused == r + 1)
        return out

    def answered(source: str) -> bool:
        c = _raw(s.port, source)
        try:
            c.sendall(_call(Proc.PING, 5))
            got, _ = rpc.decode_reply(_read_record(c, timeout=5))
            return got == 5
        except OSError:
            return False
        finally:
            c.close()

    bounds = s.server.bounds
    socks = hold("127.0.0.2", 16)
    try:
        socks += hold("127.0.0.2", 4, admitted=False)   # over the address's cap
        assert bounds.count("127.0.0.2") == 16 and bounds.stats.evicted == 0
        socks += hold("127.0.0.3", 8)   # the global cap: 24
        s.until(lambda: len(bounds) == 24)
        assert answered("127.0.0.4"), "a newcomer of the same network was locked out"
        socks += hold("127.0.0.2", 1)
        s.until(lambda: len(bounds) == 24)
        assert answered("127.1.0.4"), "a newcomer of another network was locked out"
        assert bounds.stats.evicted >= 2
        assert bounds.count("127.0.0.3") == 8   # the biggest holder paid, not them
    finally:
        for c in socks:
            c.close()


def test_replies_nobody_reads_are_bounded_per_connection_and_in_all(served):
    """N3: connections that send many READs and never read their replies: each holds at
    most its bound of queued replies, and past the total the biggest holder is dropped;
    a newcomer is served meanwhile."""
    s, big = served
    _limits(s, queued_per_conn=64 << 10, queued_total=256 << 10)
    calls = b"".join(_call(Proc.READ, i, NiId(big + 1 + i % 50, 0)) for i in range(4000))
    hogs = []
    try:
        for _ in range(12):
            h = _raw(s.port)
            h.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                h.send(calls)
            hogs.append(h)
        bounds = s.server.bounds
        s.until(lambda: bounds.stats.dropped_bytes >= 1)
        assert bounds.queued_bytes <= 256 << 10

        async def ping() -> float:
            t = time.perf_counter()
            async with await Client.connect("127.0.0.1", s.port, "snap", timeout=5) as c:
                await c.ping()
            return time.perf_counter() - t
        assert asyncio.run(ping()) < 1.0
        print(f"MEASURE N3 12 non-reading connections: {bounds.queued_bytes} reply bytes "
              f"queued (bound {256 << 10}), {bounds.stats.dropped_bytes} dropped")
    finally:
        for h in hogs:
            h.close()


def test_snapshot_streams_are_bounded(served, monkeypatch):
    """At most MAX_STREAMS_PER_ADDRESS streams per anonymous address (past it
    NI_MASTERBUSY, which clients retry), and MAX_STREAMS in all: the address holding the
    most loses one to an address with fewer, and any anonymous one to the superuser (or
    a clone), whom anonymous peers cannot keep from copying or dumping the domain."""
    s, big = served
    monkeypatch.setattr(database, "MAX_STREAMS", 3)
    monkeypatch.setattr(database, "MAX_STREAMS_PER_ADDRESS", 3)
    s.server.config.trust_local = False   # callers from unreserved ports are anonymous,
    s.server.dispatcher.owner = None      # also as an ordinary user (not the owner's)
    socks = []

    def listall(source: str, xid: int) -> socket.socket:
        socks.append(_raw(s.port, source))
        socks[-1].sendall(_call(Proc.LISTALL, xid, NiId(big, 0)))
        return socks[-1]

    def holders() -> list[tuple[str, bool]]:
        return sorted((st.addr, st.privileged) for st in s.db._streams)
    try:
        for i in range(3):
            listall("127.0.0.2", i)
            s.until(lambda n=i + 1: s.db.transfers == n)
        with pytest.raises(NiError) as e:
            _union(_read_record(listall("127.0.0.2", 3)), Proc.LISTALL, 3)
        assert e.value.status == Status.MASTERBUSY
        listall("127.0.0.3", 4)   # the cap: one of .2's three makes room
        s.until(lambda: holders() == [("127.0.0.2", False)] * 2 + [("127.0.0.3", False)])
        with pytest.raises(NiError) as e:   # .2 holds 2, .3 would too: no room
            _union(_read_record(listall("127.0.0.3", 5)), Proc.LISTALL, 5)
        assert e.value.status == Status.MASTERBUSY
        s.server.config.trust_local = True   # the superuser: an anonymous one goes
        listall("127.0.0.4", 6)
        s.until(lambda: ("127.0.0.4", True) in holders() and s.db.transfers == 3)
    finally:
        for h in socks:
            h.close()
    s.until(lambda: s.db.transfers == 0)


# -- the bounds themselves -----------------------------------------------------------------------

def test_networks_are_slash_24_and_slash_64():
    assert network_of("10.1.2.3") == "10.1.2.0/24"
    assert network_of("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network_of("not an address") == "not an address"


def test_the_bounds_take_from_the_biggest_holder():
    dropped: list[str] = []
    b: PeerBounds[str] = PeerBounds(PeerLimits(total=6, per_address=4, per_network=5),
                                    lambda c, why: dropped.append(c))
    for i in range(4):
        assert b.admit(f"a{i}", "10.0.0.1", float(i)) is None
    assert b.admit("a4", "10.0.0.1", 5.0) is not None          # per address
    assert b.admit("b0", "10.0.0.2", 6.0) is None
    assert b.admit("b1", "10.0.0.3", 7.0) is not None          # per network (5)
    assert b.admit("c0", "10.9.0.1", 8.0) is None
    assert b.admit("c1", "10.9.0.1", 9.0) is None               # total 6: fairness
    assert dropped == ["a0"] and len(b) == 6
    # queued bytes: past the total the biggest goes
    b.limits = replace(b.limits, queued_total=100)
    assert b.queued("c0", 60, 0, 10.0) and b.queued("c1", 30, 0, 10.0)
    assert not b.queued("c0", 80, 0, 10.0) and dropped[-1] == "c0"
    # time: queued bytes of which the peer takes none for longer than the stall bound
    b.sweep(10.5, lambda c: (30, 0) if c == "c1" else (0, 0))
    b.sweep(41.0, lambda c: (30, 0) if c == "c1" else (0, 0))
    assert dropped[-1] == "c1" and b.stats.dropped_stalled == 1


@pytest.mark.parametrize("engine", ["sqlite", "memory"])
def test_a_stream_reads_one_state_and_releases_it(tmp_path, engine):
    """Writes committed while a LISTALL and a READALL run (a child destroyed, its number
    reused, another's properties changed) are not in them; the snapshot is released
    whether the stream ends, is abandoned or the database closes (SQLite: its read
    connection, which would keep a copy from being swapped in)."""
    db = Database(open_store(f"sqlite:{tmp_path / 'x.sqlite'}" if engine == "sqlite"
                             else "memory:"))
    big = _populate(db)
    svc = db.service_for_tests()
    args = (NiId(big, 0),)

    def listall(body: bytes) -> list:
        return RESULT_KINDS[protocol.Kind.UNION].decode(PROCEDURES[Proc.LISTALL],
                                                        Unpacker(body))[1]

    def readall(body: bytes) -> list:
        return decode_readall(Unpacker(body))[2]
    whole = db.stream(Proc.LISTALL, SUPERUSER, args)
    assert whole is not None
    before = listall(b"".join(whole))
    everything = readall(b"".join(db.readall(SUPERUSER, 0)))
    assert len(before) == KIDS and db.transfers == 0
    part = db.stream(Proc.LISTALL, SUPERUSER, args)
    dump = db.readall(SUPERUSER, 0)
    assert part is not None
    first, first_dump = next(part), next(dump)   # the snapshots are taken
    kids, bid = svc.proc_children(SUPERUSER, NiId(big, 0))
    bid = svc.proc_destroy(SUPERUSER, bid, svc.proc_self(SUPERUSER, NiId(kids[0], 0)))
    svc.proc_create(SUPERUSER, bid, [("name", ["reborn"])], NI_INDEX_NULL)  # reuses it
    svc.proc_createprop(SUPERUSER, svc.proc_self(SUPERUSER, NiId(kids[1], 0)),
                        ("late", ["x"]), NI_INDEX_NULL)
    db.commit()
    assert listall(first + b"".join(part)) == before
    assert readall(first_dump + b"".join(dump)) == everything
    assert db.transfers == 0
    held = db.stream(Proc.LISTALL, SUPERUSER, args)
    assert held is not None
    next(held)
    assert db.transfers == 1
    db.close()
    assert db.transfers == 0
    with pytest.raises(StorageError):
        next(held)


def test_a_copy_is_swapped_in_while_a_stream_is_open(tmp_path):
    """A clone serves streamed LISTALLs too: an open one (a read transaction on the old
    file) is closed when the master's copy is swapped in, which would otherwise fail
    ("write-ahead log is in use"); the stream fails at its next piece (its connection
    is closed), never ending as if whole."""
    from array import array

    from netinfo.wire.proplist import encode_proplist
    from netinfo.wire.readall import WireObject
    db = Database(open_store(f"sqlite:{tmp_path / 'c.sqlite'}"))
    big = _populate(db)
    held = db.stream(Proc.LISTALL, SUPERUSER, (NiId(big, 0),))
    assert held is not None
    next(held)
    copy = db.new_copy()
    copy.add([WireObject(0, 1, encode_proplist([("master", ["localhost/x"])]), 0,
                         array("I"), [])])
    copy.finish()
    db.adopt(copy)
    assert db.transfers == 0 and len(db.service_for_tests()) == 1
    with pytest.raises(StorageError):
        next(held)
    db.close()
