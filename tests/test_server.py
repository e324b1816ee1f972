"""End to end: the client library against a real netinfod subprocess on loopback.

The tests that write and read the store (every one of the 29 procedures, pipelined
writes, a restart) run on each engine netinfod can serve from (``engine_netinfod``:
SQLite and PostgreSQL, conftest.SERVED_ENGINES)."""

from __future__ import annotations

import asyncio
import shutil
import socket

import pytest

from netinfo.client.core import Client, SyncClient
from netinfo.client.transport import udp_call
from netinfo.errors import NiError, RpcError, Status
from netinfo.model import NiId, addr_to_uint
from netinfo.wire import rpc
from netinfo.wire.proplist import unpack_proplist
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, Proc

from .conftest import FIXTURES, ROOT_USER


def run(coro):
    return asyncio.run(coro)


def checksum_of(objs) -> int:
    return sum((o.id.object + 1) * o.id.instance for o in objs) & 0xFFFFFFFF


def test_master_layout_of_dash_m(engine_netinfod):
    d = engine_netinfod("eng", "-m")
    with SyncClient.connect("127.0.0.1", d.port, "eng") as c:
        _, root = c.read(0)
        host = socket.gethostname().split(".")[0]
        assert root == [("master", [f"{host}/eng"])]
        mid = c.pathsearch(f"/machines/{host}")
        _, props = c.read(mid)
        assert dict(props)["serves"] == ["./eng"]
        assert dict(props)["ip_address"]


def test_every_procedure_over_tcp(engine_netinfod):
    d = engine_netinfod("test", "-m")

    async def go():
        async with await Client.connect("127.0.0.1", d.port, "test") as c:
            await c.ping()
            stats = await c.statistics()
            assert stats[0][0] == "checksum"
            root = await c.root()
            assert await c.self_id(0) == root
            assert await c.parent(0) == (0, root)
            people, root = await c.create(root, [("name", ["people"])])
            alice, people = await c.create(people, [("name", ["alice"]), ("uid", ["501"])])
            assert (await c.read(alice))[1] == [("name", ["alice"]), ("uid", ["501"])]
            alice = await c.write(alice, [("name", ["alice"]), ("uid", ["502"])])
            assert (await c.children(people))[0] == [alice.object]
            assert (await c.lookup(people, "uid", "502"))[0] == [alice.object]
            assert (await c.list(people, "name"))[0] == [(alice.object, ["alice"])]
            alice = await c.createprop(alice, "shell", ["/bin/sh"])
            alice = await c.destroyprop(alice, 2)
            assert (await c.readprop(alice, 1))[0] == ["502"]
            alice = await c.writeprop(alice, 1, ["503", "504"])
            alice = await c.renameprop(alice, 1, "gid")
            assert (await c.listprops(alice))[0] == ["name", "gid"]
            alice = await c.createname(alice, 0, "ally")
            alice = await c.destroyname(alice, 1, 0)
            assert await c.readname(alice, 0, 1) == (alice, "ally")
            alice = await c.writename(alice, 0, 1, "al")
            with pytest.raises(NiError) as ei:
                await c.rparent()
            assert ei.value.status == Status.NETROOT
            sid, lists = await c.listall(people)
            assert sid == await c.self_id(people) and lists == [
                [("name", ["alice", "al"]), ("gid", ["504"])]]
            assert await c.bind("child", addr_to_uint("10.1.2.3")) is False
            cks, highest, objs = await c.readall(0)
            assert cks == checksum_of(objs) == int((await c.statistics())[0][1][0])
            assert highest == max(o.id.object for o in objs) + 1
            assert [o.id.object for o in objs][:1] == [0]
            assert await c.readall(cks) == (0, 0, [])
            await c.crashed(cks)
            assert await c.resync() == Status.OK
            sid, props = await c.lookupread(people, "name", "al")
            assert sid == await c.self_id(people) and props[0] == ("name", ["alice", "al"])
            with pytest.raises(NiError) as ei:
                await c.write(NiId(alice.object, alice.instance - 1), [])
            assert ei.value.status == Status.STALE
            people = await c.self_id(people)
            await c.destroy(people, alice)
            with pytest.raises(NiError) as ei:
                await c.read(alice)
            assert ei.value.status == Status.BADID
    run(go())


def test_bind_answers_only_for_listed_children(engine_netinfod):
    d = engine_netinfod("network", "-m")
    with SyncClient.connect("127.0.0.1", d.port, "network") as c:
        m = c.pathsearch("/machines")
        c.create(m, [("name", ["child"]), ("ip_address", ["10.0.0.7"]),
                     ("serves", ["child/local"])])
        assert c.bind("local", addr_to_uint("10.0.0.7")) is True
        assert c.bind("other", addr_to_uint("10.0.0.7")) is False
        assert c.bind("local", addr_to_uint("10.0.0.8")) is False

    # and over UDP, where nibindd sends it (spec §6.3): success = empty reply
    async def udp_bind(tag, addr):
        from netinfo.wire.protocol import PROCEDURES, encode_args
        args = encode_args(PROCEDURES[Proc.BIND], tag, addr_to_uint(addr))
        try:
            await udp_call("127.0.0.1", d.port, NETINFO_PROG, NETINFO_VERS, Proc.BIND, args,
                           timeout=2, retries=1)
            return True
        except RpcError as e:
            assert e.stat == rpc.AcceptStat.SYSTEM_ERR
            return False
    assert run(udp_bind("local", "10.0.0.7")) is True
    assert run(udp_bind("local", "10.0.0.9")) is False


def test_udp_ping_and_refusal(netinfod):
    d = netinfod("test", "-m")

    async def go():
        await udp_call("127.0.0.1", d.port, NETINFO_PROG, NETINFO_VERS, Proc.PING)
        with pytest.raises(RpcError) as ei:
            await udp_call("127.0.0.1", d.port, NETINFO_PROG, NETINFO_VERS, Proc.ROOT)
        assert (ei.value.kind, ei.value.stat, ei.value.detail) == ("reject", 1, (5,))
    run(go())


def test_lenient_udp_answers_reads(netinfod):
    d = netinfod("test", "-m", "--lenient-udp")

    async def go():
        u = await udp_call("127.0.0.1", d.port, NETINFO_PROG, NETINFO_VERS, Proc.ROOT)
        assert u.unpack_int() == 0 and u.unpack_uint() == 0
        u = await udp_call("127.0.0.1", d.port, NETINFO_PROG, NETINFO_VERS, Proc.STATISTICS)
        assert unpack_proplist(u)[0][0] == "checksum"
    run(go())


def test_statistics_checksum_only_shortcut(engine_netinfod):
    d = engine_netinfod("test", "-m")

    async def go():
        async with await Client.connect("127.0.0.1", d.port, "test") as c:
            full = await c.statistics()
            assert [k for k, _ in full][:3] == ["checksum", "server_version", "tag"]
            assert ("tag", ["test", "master", "0"]) in full
            per_proc = dict(full)
            assert per_proc["read"][0] == "7" and per_proc["lookupread"][0] == "28"
            c.set_password("checksum", uid=0)
            only = await c.statistics()
            assert only == [full[0]]
    run(go())


def test_pipelining_many_calls_on_one_connection(engine_netinfod):
    d = engine_netinfod("test", "-m", "--populate")

    async def go():
        async with await Client.connect("127.0.0.1", d.port, "test") as c:
            root = await c.pathsearch("/users/uid=0")
            results = await asyncio.gather(*(c.read(root) for _ in range(2000)))
            assert len({repr(r) for r in results}) == 1
            # writes pipelined too: answered in order, so the k-th create can name the
            # parent instance the (k-1)-th one leaves behind (spec §5.3: +1 per write)
            grp = await c.pathsearch("/groups")
            made = await asyncio.gather(*(c.create(NiId(grp.object, grp.instance + k),
                                                   [("name", [f"g{k}"])])
                                          for k in range(200)))
            assert [p.instance for _, p in made] == list(range(grp.instance + 1,
                                                               grp.instance + 201))
    run(go())


def test_anonymous_writes_need_writers_star(engine_netinfod):
    """A strict server (no --trust-local). As root the server is root's, and a caller
    without a reserved port is anonymous. As an ordinary user the test runs the server
    itself, so it is the server's owner and its superuser (docs/security.md); an
    anonymous caller of another uid is tested in test_owner.py (as root)."""
    d = engine_netinfod("test", "-m", "--populate", strict=True)

    async def go():
        async with await Client.connect("127.0.0.1", d.port, "test", privileged=False) as c:
            users = await c.pathsearch("/users")
            if ROOT_USER:
                with pytest.raises(NiError) as ei:
                    await c.create(users, [("name", ["mallory"])])
                assert ei.value.status == Status.PERM
            else:
                await c.create(users, [("name", ["by the owner"])])
            printers = await c.pathsearch("/printers")  # _writers = *
            child, _ = await c.create(printers, [("name", ["lp"])])
            assert (await c.read(child))[1] == [("name", ["lp"])]
    run(go())


def test_data_survives_restart(engine_netinfod, tmp_path):
    d = engine_netinfod("test", "-m")
    with SyncClient.connect("127.0.0.1", d.port, "test") as c:
        kid, _ = c.create(c.root(), [("name", ["kept"]), ("v", ["1", "2"])])
        before = c.readall(0)
    d.stop()
    d.start()
    with SyncClient.connect("127.0.0.1", d.port, "test") as c:
        assert c.readall(0) == before
        assert c.read(kid)[1] == [("name", ["kept"]), ("v", ["1", "2"])]


def test_next_collection_is_converted_and_served(netinfod, tmp_path):
    src = FIXTURES / "next-local-source.nidb" / "collection"
    if not src.exists():
        pytest.skip("NeXT fixture not available")
    (tmp_path / "local.nidb").mkdir()
    shutil.copy(src, tmp_path / "local.nidb" / "collection")
    d = netinfod("local")
    with SyncClient.connect("127.0.0.1", d.port, "local") as c:
        cks, _highest, objs = c.readall(0)
        assert cks == 42693 == checksum_of(objs)
        assert len(objs) == 137
        assert c.statistics()[0] == ("checksum", ["42693"])
        assert c.root() == NiId(0, 15)
        assert c.read(0)[1] == [("master", ["localhost/local"])]
        uid0 = c.pathsearch("/users/uid=0")
        assert c.lookupprop(uid0, "name") == ["root"]
        assert c.lookupprop(c.pathsearch("/rpcs/netinfobind"), "number") == ["200100001"]


def test_syncclient_refuses_a_running_loop(netinfod):
    d = netinfod("test", "-m")

    async def inside():
        with pytest.raises(RuntimeError):
            SyncClient.connect("127.0.0.1", d.port, "test")
    run(inside())
