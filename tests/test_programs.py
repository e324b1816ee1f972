"""netinfod's program table (issue 19 item 3): one row per program, the RPC prologue
decoded once (``server.rpc.prologue``), each row's UDP policy and portmapper
registration, and the batch boundary the owner keeps (``Database.batch``).

A small program is added as one row and called over real TCP and UDP on loopback; its
registration goes to a portmapper run here (nibindd's embedded one, found through
``NETINFO_PORTMAPPER`` as every tool finds it)."""

from __future__ import annotations

import asyncio

import pytest

from netinfo.client import binding
from netinfo.client.transport import open_tcp, udp_call
from netinfo.errors import NiError, RpcError, Status, StorageError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import Database
from netinfo.server.netinfod import Dispatcher, NetInfoServer, ServerConfig, bind_pair
from netinfo.server.nibindd import PortmapperProgram
from netinfo.server.rpc import Program, RpcServer
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import create_master
from netinfo.storage import open_store
from netinfo.storage.changes import Caller
from netinfo.wire import rpc
from netinfo.wire.portmap import IPPROTO_TCP, IPPROTO_UDP
from netinfo.wire.protocol import NETINFO_PROG, Proc
from netinfo.wire.xdr import Packer, Unpacker

from .conftest import ROOT_USER

#: a program number of the user-defined range (RFC 5531 §8.3)
TALLY = 0x20000777
#: its procedures: NULL; COUNT (how many properties the root holds, args echoed back);
#: ADD (a root property named by the argument, written through the owner)
NULL, COUNT, ADD = 0, 1, 2
#: what ADD answers when its batch could not be made durable
REFUSED = 0xDEAD


def tally_program(disp: Dispatcher) -> Program:
    """A row of netinfod's table: versions 1 and 2, COUNT and NULL over UDP (ADD only
    over TCP), registered with the portmapper."""
    db = disp.db

    def handle(call: rpc.Call, caller: Caller, udp: bool) -> bytes:
        if call.proc == NULL:
            return rpc.reply_success(call.xid)
        if call.proc == COUNT:
            p = Packer()
            p.pack_uint(len(db.root_props()))
            p.pack_uint(call.vers)
            p.pack_opaque(call.args)
            return rpc.reply_success(call.xid, p.get_buffer())
        name = Unpacker(call.args).unpack_string()   # ADD; a bad argument: GARBAGE_ARGS
        root = db.call(Proc.ROOT, SUPERUSER, ())
        db.call(Proc.CREATEPROP, SUPERUSER, (root, (name, ["1"]), NI_INDEX_NULL))
        p = Packer()
        p.pack_uint(0)
        return rpc.reply_success(call.xid, p.get_buffer())

    def refused(reply: bytes) -> bytes:
        p = Packer()
        p.pack_uint(REFUSED)
        return reply[:24] + p.get_buffer()

    return Program(TALLY, 1, 2, handle, procs=frozenset({NULL, COUNT, ADD}),
                   udp=frozenset({NULL, COUNT}), register=True, on_failure=refused)


def _string(s: str) -> bytes:
    p = Packer()
    p.pack_string(s)
    return p.get_buffer()


@pytest.fixture
def portmapper(monkeypatch):
    """nibindd's embedded portmapper on loopback, named by NETINFO_PORTMAPPER."""
    async def start() -> RpcServer:
        pm = PortmapperProgram(["127.0.0.1"])
        srv = RpcServer([pm.program()])
        t, u = bind_pair("127.0.0.1", (None, None))
        await srv.start(t, u)
        monkeypatch.setenv(binding.PORTMAPPER_VAR, f"127.0.0.1:{srv.udp_port}")
        return srv
    return start


def _db() -> Database:
    db = Database(open_store("memory:"))
    create_master(db.procedures, "tally", "localhost", ["127.0.0.1"])
    db.commit()
    return db


def test_an_added_program_is_served_over_tcp_and_udp_and_registered(portmapper):
    async def body() -> None:
        pm = await portmapper()
        db = _db()
        server = NetInfoServer(db, ServerConfig("tally", "127.0.0.1",
                                                trust_local=not ROOT_USER),
                               ["127.0.0.1"], programs=[tally_program])
        await server.start()
        try:
            # registered: both versions, both transports; NETINFO is not (spec §1.1)
            for vers in (1, 2):
                assert await binding.pmap_getport(None, TALLY, vers, IPPROTO_UDP) == \
                    server.udp_port
                assert await binding.pmap_getport(None, TALLY, vers, IPPROTO_TCP) == \
                    server.tcp_port
            assert await binding.pmap_getport(None, NETINFO_PROG, 2) == 0
            props = len(db.root_props())

            # UDP: COUNT is answered, ADD refused "use TCP" (the row's UDP policy)
            u = await udp_call("127.0.0.1", server.udp_port, TALLY, 2, COUNT, b"abcd")
            assert (u.unpack_uint(), u.unpack_uint(), u.unpack_opaque()) == (props, 2, b"abcd")
            with pytest.raises(RpcError) as ei:
                await udp_call("127.0.0.1", server.udp_port, TALLY, 1, ADD, _string("x"))
            assert (ei.value.kind, ei.value.stat, ei.value.detail) == (
                "reject", rpc.RejectStat.AUTH_ERROR, (rpc.AuthStat.TOOWEAK,))
            # the prologue, once for every row: versions, programs, procedures
            with pytest.raises(RpcError) as ei:
                await udp_call("127.0.0.1", server.udp_port, TALLY, 3, NULL)
            assert (ei.value.stat, ei.value.detail) == (rpc.AcceptStat.PROG_MISMATCH, (1, 2))
            with pytest.raises(RpcError) as ei:
                await udp_call("127.0.0.1", server.udp_port, TALLY + 1, 1, NULL)
            assert ei.value.stat == rpc.AcceptStat.PROG_UNAVAIL
            with pytest.raises(RpcError) as ei:
                await udp_call("127.0.0.1", server.udp_port, NETINFO_PROG, 3, 0)
            assert (ei.value.stat, ei.value.detail) == (rpc.AcceptStat.PROG_MISMATCH, (2, 2))

            # TCP: ADD writes through the owner and is committed with its batch;
            # NETINFO (the first row) answers on the same connection
            conn = await open_tcp("127.0.0.1", server.tcp_port)
            try:
                for name in ("a", "b"):
                    u = await conn.call(TALLY, 1, ADD, _string(name), None, 5.0)
                    assert u.unpack_uint() == 0
                u = await conn.call(TALLY, 1, COUNT, b"", None, 5.0)
                assert u.unpack_uint() == props + 2
                with pytest.raises(RpcError) as ei:
                    await conn.call(TALLY, 1, 9, b"", None, 5.0)
                assert ei.value.stat == rpc.AcceptStat.PROC_UNAVAIL
                with pytest.raises(RpcError) as ei:
                    await conn.call(TALLY, 1, ADD, b"\0\0", None, 5.0)
                assert ei.value.stat == rpc.AcceptStat.GARBAGE_ARGS
                u = await conn.call(NETINFO_PROG, 2, Proc.ROOT, b"", None, 5.0)
                assert u.unpack_int() == Status.OK
                # a batch whose commit fails: the row's own failure reply, nothing kept
                real = db.store.commit

                def failing(*a, **k):
                    raise StorageError("disk full (test)")
                db.store.commit = failing
                try:
                    u = await conn.call(TALLY, 1, ADD, _string("c"), None, 5.0)
                    assert u.unpack_uint() == REFUSED
                finally:
                    db.store.commit = real
                u = await conn.call(TALLY, 1, COUNT, b"", None, 5.0)
                assert u.unpack_uint() == props + 2
            finally:
                conn.close()
            assert [k for k, _ in db.root_props()][-2:] == ["a", "b"]
        finally:
            await server.close()
            # unregistered when the server stops
            assert await binding.pmap_getport(None, TALLY, 1, IPPROTO_UDP) == 0
            await pm.close()
            db.close()
    asyncio.run(body())


def test_a_batch_commits_once_and_replaces_the_replies_of_failed_writes():
    db = _db()
    commits = []
    real = db.store.commit

    def counting(*a, **k):
        commits.append(len(a[2]) if len(a) > 2 else 0)
        return real(*a, **k)
    db.store.commit = counting

    def add(name: str) -> None:
        root = db.call(Proc.ROOT, SUPERUSER, ())
        db.call(Proc.CREATEPROP, SUPERUSER, (root, (name, ["1"]), NI_INDEX_NULL))
    with db.batch() as batch:
        batch.add(b"read", lambda r: b"lost")        # a read: kept whatever happens
        add("x")
        batch.add(b"write1", lambda r: b"lost")
        add("y")
        batch.add(b"write2", None)                   # a door with no failure reply
        with pytest.raises(NiError):                 # a failed write is no write
            db.call(Proc.CREATEPROP, SUPERUSER, (NiId(0, 999), ("z", []), NI_INDEX_NULL))
        batch.add(b"failed write", lambda r: b"lost")
        assert db.dirty
    assert commits == [2] and not db.dirty and not batch.failed
    assert batch.replies == [b"read", b"write1", b"write2", b"failed write"]

    def failing(*a, **k):
        raise StorageError("disk full (test)")
    db.store.commit = failing
    with db.batch() as batch:
        batch.add(b"read", lambda r: b"lost")
        add("z")
        batch.add(b"write", lambda r: r + b" lost")
    assert batch.failed and batch.replies == [b"read", b"write lost"]
    assert "z" not in [k for k, _ in db.root_props()]   # rolled back
    db.store.commit = real
    db.close()


def test_owner_events_tell_outcomes_not_bytes():
    """What parent search and replication learn: the value or the NiError of a call
    (``Database.watch_calls``), the master's pushed updates, READALL when fixed."""
    db = _db()
    heard: list[tuple[int, object]] = []
    stop = db.watch_calls(lambda p, c, a, o: heard.append((p, o)),
                          frozenset({Proc.RPARENT, Proc.READALL}), pushed=True)
    with pytest.raises(NiError):
        db.call(Proc.RPARENT, SUPERUSER, ())
    db.call(Proc.ROOT, SUPERUSER, ())                  # not watched
    pushed = Caller("127.0.0.1", 700, from_master=True)
    root = db.call(Proc.ROOT, pushed, ())
    with pytest.raises(NiError):
        db.call(Proc.DESTROYPROP, pushed, (root, 999))
    b"".join(db.readall(SUPERUSER, 0))
    stop()
    db.call(Proc.ROOT, pushed, ())                     # no longer heard
    assert [p for p, _ in heard] == [Proc.RPARENT, Proc.ROOT, Proc.DESTROYPROP, Proc.READALL]
    assert isinstance(heard[0][1], NiError) and heard[0][1].status == Status.NETROOT
    assert heard[1][1] == root
    assert isinstance(heard[2][1], NiError) and heard[2][1].status == Status.NOPROP
    assert heard[3][1] is True
    db.close()
