"""Replication under attack (issue 18, findings N5, N8, N9, N13, N18; docs/security.md).

Each test stages the attack on loopback, with real servers and real sockets: a master
and its replicator in this process, the "clone" or the "other master" a real netinfod
or a scripted peer. What a second host would add (another address) is played by a
/machines entry at 127.0.0.1 with another tag, which spec §9.1 counts as another server;
binding.getregister is pointed at the peer's port (no portmapper needed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from netinfo.client import binding
from netinfo.client.core import Client
from netinfo.facts import Peer
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import open_database
from netinfo.server.netinfod import NetInfoServer, ServerConfig
from netinfo.server.replicator import COPY_INTERVAL_MIN, Replicator
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import add_serves, create_master, ensure_dir
from netinfo.storage.sqlite import COPY_SUFFIX, SqliteStore
from netinfo.wire.protocol import Proc

from .conftest import ROOT_USER, free_port
from .test_clone_copy import FakeMaster, _until, clone_with, new_tree, stream_of


def _users(svc, n: int, prefix: str) -> None:
    u = NiId(ensure_dir(svc, "users"), 0)
    for i in range(n):
        u = svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, u),
                            [("name", [f"{prefix}{i}"]), ("uid", [str(1000 + i)])],
                            NI_INDEX_NULL)[1]


def _count_users(svc, prefix: str) -> int:
    users = svc.proc_lookup(SUPERUSER, NiId(0), "name", "users")[0][0]
    names, _ = svc.proc_list(SUPERUSER, NiId(users), "name")
    return sum(1 for _, vals in names if vals and vals[0].startswith(prefix))


def _master_db(directory: Path, tag: str, users: int, prefix: str, serves=(),
               latency: str | None = None):
    """A master of *tag* by host ``bench`` (127.0.0.1), which also serves ``./T`` for each
    T in *serves* (another server at that address: spec §9.1), with *users* users."""
    db = open_database(directory, tag, create=True)
    svc = db.service_for_tests()
    create_master(svc, tag, "bench", ["127.0.0.1"])
    for t in serves:
        add_serves(svc, "bench", f"./{t}")
    _users(svc, users, prefix)
    if latency is not None:
        svc.proc_createprop(SUPERUSER, svc.proc_root(SUPERUSER), ("update_latency", [latency]),
                            NI_INDEX_NULL)
    db.commit()
    return db


async def _serve_master(db, tag: str, strict: bool = False):
    """*db* served on loopback with its replicator started as a master."""
    server = NetInfoServer(db, ServerConfig(tag, "127.0.0.1", free_port(),
                                            trust_local=not ROOT_USER and not strict),
                           ["127.0.0.1"])
    if strict:   # callers of this process's uid are not its owner's superuser either:
        server.dispatcher.owner = None   # they stand for another uid's (issue 17)
    await server.start()
    rep = Replicator(db, tag, lambda a: a == "127.0.0.1")
    server.dispatcher.replicator = rep
    rep.start()
    return server, rep


# -- N5: a master never demotes itself on a peer's word ------------------------------------

def test_a_restarted_master_ignores_a_peer_claiming_to_be_master(tmp_path, monkeypatch,
                                                                 netinfod, caplog):
    # The attack: whoever answers at a listed clone's address says "master". Here that is
    # a real netinfod, master of ./evil (5 users), listed in the master's /machines.
    evil_dir = tmp_path / "evil"
    with _master_db(evil_dir, "evil", 5, "evil"):
        pass
    evil = netinfod("evil", directory=evil_dir)

    async def getregister(addr, tag, timeout=3.0):
        if tag != "evil":
            raise OSError("no such server")
        return evil.port, evil.port
    monkeypatch.setattr(binding, "getregister", getregister)
    caplog.set_level(logging.INFO, "netinfo")
    db = _master_db(tmp_path / "m", "net", 300, "real", serves=["evil"])
    aside_dir = tmp_path / "m" / "net.nidb"

    async def main():
        server, rep = await _serve_master(db, "net")
        try:
            assert Peer("bench", "127.0.0.1", "evil") in rep.clones
            await asyncio.wait_for(_until(lambda: "says it is the master" in caplog.text), 20)
            await asyncio.sleep(1.0)     # what the old code did next: READALL from evil
            # still the master, with its own 300 users and nothing kept aside
            assert not db.info.clone and not rep.is_clone
            assert _count_users(db.service_for_tests(), "real") == 300
            assert not list(aside_dir.glob("*.mastered-*"))
            assert "niutil -createprop . / master bench/evil" in caplog.text

            # The operator's demotion: root master written here (a superuser's write on
            # the master itself) names the other master. The database it mastered is
            # kept aside before the copy replaces it.
            root = db.service_for_tests().proc_root(SUPERUSER)
            db.call(Proc.WRITEPROP, SUPERUSER, (root, 0, ["bench/evil"]))
            db.commit()
            assert db.info.clone
            svc = db.service_for_tests()
            await asyncio.wait_for(_until(lambda: _count_users(svc, "evil") == 5), 30)
            assert _count_users(db.service_for_tests(), "real") == 0
            kept = list(aside_dir.glob("netinfo.sqlite.mastered-*"))
            assert len(kept) == 1 and f"kept as {kept[0]}" in caplog.text
            store = SqliteStore(str(kept[0]))
            try:
                img = store.load()
            finally:
                store.close()
            assert sum(1 for r in img.records.values()
                       if any(v[:1] and v[0].startswith("real") for k, v in r.props
                              if k == "name")) == 300
        finally:
            await rep.close()
            await server.close()

    try:
        asyncio.run(main())
    finally:
        db.close()


# -- N9: the master's bookkeeping needs the clone's address and a reserved port -------------

def test_a_readall_from_a_clones_address_on_an_ordinary_port_changes_nothing(
        tmp_path, monkeypatch, caplog):
    async def getregister(addr, tag, timeout=3.0):
        raise OSError("no clone here")
    monkeypatch.setattr(binding, "getregister", getregister)
    caplog.set_level(logging.INFO, "netinfo")
    # a clone listed at this address (./copy); updates are held for an hour
    db = _master_db(tmp_path, "net", 20, "u", serves=["copy"], latency="3600")
    peer = Peer("bench", "127.0.0.1", "copy")

    async def readall(port: int, checksum: int) -> bool:
        c = await Client.connect("127.0.0.1", port, "net", privileged=False)
        try:
            t = await c.readall_stream(checksum)
            try:
                current = t.current
                async for _ in t:
                    pass
            finally:
                t.close()
        finally:
            await c.close()
        return current

    async def main():
        # strict: an ordinary port is no superuser, even as an ordinary user
        server, rep = await _serve_master(db, "net", strict=True)
        try:
            st = rep.clones[peer]
            assert st.in_step           # assumed in step at start-up (spec §9.6)
            root = db.service_for_tests().proc_root(SUPERUSER)
            db.call(Proc.CREATEPROP, SUPERUSER, (root, ("probe", ["1"]), NI_INDEX_NULL))
            db.commit()
            assert len(st.queue) == 1
            # the attack: a whole transfer, then a "current" answer, to any user there
            assert not await readall(server.tcp_port, 12345)
            assert await readall(server.tcp_port, db.checksum)
            assert len(st.queue) == 1 and st.in_step
            assert "not taken as the clone's copy" in caplog.text
            # out of date: only a taken transfer from a reserved port puts it in step
            st.in_step, st.queue = False, []
            assert await readall(server.tcp_port, db.checksum)
            assert not await readall(server.tcp_port, 1)
            assert not st.in_step
            if ROOT_USER:
                c = await Client.connect("127.0.0.1", server.tcp_port, "net",
                                         privileged=True)
                try:
                    t = await c.readall_stream(db.checksum)   # "current": nothing
                    t.close()
                    assert not st.in_step
                    t = await c.readall_stream(1)             # a transfer, taken whole
                    async for _ in t:
                        pass
                    t.close()
                finally:
                    await c.close()
                assert st.in_step and st.queue == []
        finally:
            await rep.close()
            await server.close()

    try:
        asyncio.run(main())
    finally:
        db.close()


# -- N8: RESYNCs cannot open a socket each --------------------------------------------------

def test_a_flood_of_resyncs_opens_one_connection_per_clone(tmp_path, monkeypatch, caplog):
    lookups = {"now": 0, "most": 0, "all": 0}

    async def getregister(addr, tag, timeout=3.0):
        # the out-of-date clone does not answer: each attempt holds a socket for a while
        lookups["now"] += 1
        lookups["all"] += 1
        lookups["most"] = max(lookups["most"], lookups["now"])
        try:
            await asyncio.sleep(2.0)
            raise OSError("timed out")
        finally:
            lookups["now"] -= 1
    monkeypatch.setattr(binding, "getregister", getregister)
    caplog.set_level(logging.INFO, "netinfo")
    db = _master_db(tmp_path, "net", 10, "u", serves=["copy"])
    peer = Peer("bench", "127.0.0.1", "copy")

    async def main():
        server, rep = await _serve_master(db, "net")
        try:
            await asyncio.sleep(2.5)            # start-up's CRASHED has given up
            rep.clones[peer].in_step = False    # the clone fell behind
            base = lookups["all"]
            c = await Client.connect("127.0.0.1", server.tcp_port, "net", privileged=False)
            try:
                t0 = time.monotonic()
                for _ in range(4):              # 2,000 anonymous RESYNCs over 2 s
                    await asyncio.gather(*(c.call(Proc.RESYNC) for _ in range(500)))
                    await asyncio.sleep(0.5)
                took = time.monotonic() - t0
            finally:
                await c.close()
            await asyncio.sleep(2.5)
            assert lookups["most"] <= 2, lookups   # a RESYNC and the nudge's look, at most
            # one fan-out per RESYNC_INTERVAL, and the nudges: a handful of attempts
            assert lookups["all"] - base <= 4 + took / 2, lookups
            lines = [r for r in caplog.records if "RESYNC to clone" in r.getMessage()]
            assert len(lines) <= 1, [r.getMessage() for r in lines]
        finally:
            await rep.close()
            await server.close()

    try:
        asyncio.run(main())
    finally:
        db.close()


# -- N13: no copies back to back --------------------------------------------------------------

def test_resyncs_do_not_keep_a_clone_copying(tmp_path, monkeypatch):
    tree = new_tree(2000)
    body = stream_of(tree, checksum=sum((d.id.object + 1) * d.id.instance for d in tree))
    fake = FakeMaster([body])      # every READALL answered with a whole new tree

    async def check(db, port, rep):
        await asyncio.wait_for(_until(lambda: rep.in_step), 30)
        assert fake.calls == 1
        # "write + RESYNC" again and again: each RESYNC would start another copy
        c = await Client.connect("127.0.0.1", port, "copy", privileged=False)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4.0:
                await c.call(Proc.RESYNC)
                await asyncio.sleep(0.1)
        finally:
            await c.close()
        assert fake.calls == 1, fake.calls      # the next no sooner than the interval
        assert COPY_INTERVAL_MIN > 4.0

    asyncio.run(clone_with(fake, tmp_path, monkeypatch, check))


# -- N18: a copy is bounded in size -----------------------------------------------------------

def test_a_copy_larger_than_the_bound_is_abandoned(tmp_path, monkeypatch, caplog):
    tree = new_tree(20000)
    body = stream_of(tree, checksum=sum((d.id.object + 1) * d.id.instance for d in tree))
    assert len(body) > 1024 * 1024
    half = len(body) // 2
    fake = FakeMaster([body[:half], body[half:]])
    caplog.set_level(logging.INFO, "netinfo")

    async def check(db, port, rep):
        rep.max_copy = 256 * 1024          # before the copy starts (as --max-copy-mb)
        await asyncio.wait_for(_until(lambda: "netinfod --max-copy-mb" in caplog.text), 30)
        await asyncio.sleep(0.5)
        assert not rep.in_step
        svc = db.service_for_tests()
        assert svc.proc_lookup(SUPERUSER, NiId(0), "name", "users")   # the old tree
        assert _count_users(svc, "old") == 50 and _count_users(svc, "new") == 0
        assert not list((tmp_path / "copy.nidb").glob("*" + COPY_SUFFIX + "*"))

    asyncio.run(clone_with(fake, tmp_path, monkeypatch, check))


def test_netinfod_takes_the_copy_bound(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "netinfo.cli.netinfod", "--max-copy-mb", "0",
                        "--dir", str(tmp_path), "x"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "not a positive number" in r.stderr
    r = subprocess.run([sys.executable, "-m", "netinfo.cli.netinfod", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert "--max-copy-mb" in r.stdout and "default 2048" in r.stdout
