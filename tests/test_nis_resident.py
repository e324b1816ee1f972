"""NIS maps read whole into memory (issue 21, ``server/nisresident.py``): a MATCH of a
busy map answered from the map read once from a snapshot, byte for byte what the domain
answers, through writes that create, destroy, rename and duplicate users while the map is
being read and after; and a real netinfod answering a million-user-style map from
memory over TCP, a write through niutil seen by the next MATCH."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server import nis
from netinfo.server.nisresident import ResidentMap, TooBig, entry_bytes, xdr_key
from netinfo.server.residents import anonymous_memory
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import create_master, ensure_dir
from netinfo.storage.changes import Caller
from netinfo.wire import rpc, yp
from netinfo.wire.yp import YpProc, YpStat

from .conftest import TRUST, env_with_src, free_port
from .test_nis_fast import DOM, Domain, random_steps

# -- the map itself ----------------------------------------------------------------------------


def _pieces(entries: list[tuple[bytes, bytes]], per: int) -> list[bytes]:
    return [b"".join(entry_bytes(k, v) for k, v in entries[i:i + per])
            for i in range(0, len(entries), per)]


@pytest.mark.parametrize("expected", [0, 10, 5000])
def test_a_map_answers_the_first_holder_of_each_key_and_nothing_forgotten(expected):
    """Against a dict: the first entry of a key answers until a second holder comes (then
    the key is the domain's), forgotten keys and keys never fed answer None; the table
    doubles when it is made too small (*expected* 0 and 10)."""
    rnd = random.Random(expected)
    entries = [(f"k{rnd.randrange(3000)}".encode(), rnd.randbytes(rnd.randrange(0, 60)))
               for _ in range(4000)]
    m = ResidentMap(1 << 30, memory=anonymous_memory)
    m.reserve(expected)
    first: dict[bytes, bytes] = {}
    twice: set[bytes] = set()
    for piece in _pieces(entries, 37):
        m.feed(piece)
    for k, v in entries:
        if k in first:
            twice.add(k)
        first.setdefault(k, v)
    gone = set(rnd.sample(sorted(first), 300))
    m.forget(gone)
    for n in range(3100):
        k = f"k{n}".encode()
        want = None if k in twice or k in gone else first.get(k)
        assert m.body(k) == want, k
    assert m.entries == len(entries)
    assert m.hits == sum(1 for k in first if k not in twice and k not in gone)
    assert m.forgotten == {xdr_key(k) for k in twice | gone}


def test_a_map_answers_while_it_is_fed_and_keeps_its_bound():
    m = ResidentMap(2000, memory=anonymous_memory)
    m.reserve(100)
    m.feed(entry_bytes(b"alice", b"\0\0\0\1\0\0\0\3a:x\0"))
    assert m.body(b"alice") == b"\0\0\0\1\0\0\0\3a:x\0"
    assert m.body(b"alic") is None and m.body(b"alice\0") is None
    with pytest.raises(TooBig):
        m.feed(entry_bytes(b"bob", b"x" * 3000))
    with pytest.raises(ValueError):
        m.feed(entry_bytes(b"carol", b"12345")[:-1])
    assert not m.too_changed()
    m.forget(f"u{i}".encode() for i in range(5000))
    assert m.too_changed()


def test_a_map_is_asked_with_whole_xdr_keys_only():
    """answer() takes the key as a call carries it: a prefix of a key, the key with bytes
    after it (here: the body's own first bytes), with padding that is not zero, or with
    another length word is not that key; a key an XDR string holds is."""
    body = b"\0\0\0\1\0\0\0\3a:x\0"
    m = ResidentMap(1 << 20, memory=anonymous_memory)
    m.feed(entry_bytes(b"alice", body) + entry_bytes(b"bob", body))
    x = xdr_key(b"alice")
    assert x == b"\0\0\0\5alice\0\0\0"
    assert m.answer(x) == body == m.body(b"alice")
    assert m.answer(xdr_key(b"bob")) == body
    for bad in (x[:-1], x[:-3], x + body[:4], x + body, x[:-1] + b"\1",
                b"\0\0\1\5" + x[4:], b"\0\0\0\6alice\0\0\0", b"", x[:4]):
        assert m.answer(bad) is None, bad
    assert m.hits == 3


def test_a_table_in_the_memory_given_grows_there(monkeypatch):
    """A table from HUGE_FROM bytes on is a view of the memory given (huge pages in the
    server), not an array: made so by reserve, and reached by growing from an array;
    every entry answers through both."""
    monkeypatch.setattr("netinfo.server.nisresident.HUGE_FROM", 1 << 10)
    entries = [(b"k%d" % i, b"v%d" % i) for i in range(4000)]
    for expected in (10, 5000):
        m = ResidentMap(1 << 30, memory=anonymous_memory)
        m.reserve(expected)
        assert isinstance(m._slots, memoryview) == (expected > 10)
        for piece in _pieces(entries, 50):
            m.feed(piece)
        assert isinstance(m._slots, memoryview) and len(m._slots) >= 8000
        assert all(m.body(k) == v for k, v in entries) and m.body(b"k4000") is None


def test_a_map_past_one_region_is_kept_in_several(monkeypatch):
    """Entries are copied to regions of memory that double from 64 KiB up to a bound
    (32 MiB: a place is 25 bits; 1 MiB here): a piece is cut between entries where a
    region ends, an entry bigger than the bound has a region of its own; every entry
    still answers, and the table grows over the regions."""
    monkeypatch.setattr("netinfo.server.nisresident.REGION_MAX", 1 << 20)
    big = [(f"u{i}".encode(), bytes([i % 251]) * (60_000 if i % 7 else 200))
           for i in range(300)]
    m = ResidentMap(1 << 30, memory=anonymous_memory)
    m.feed(b"".join(entry_bytes(k, v) for k, v in big[:250]))
    m.feed(entry_bytes(b"huge", b"h" * 0xFFFF))
    m.feed(b"".join(entry_bytes(k, v) for k, v in big[250:]))
    sizes = [len(r) for r in m._regions[1:]]
    assert sizes[:5] == [1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20]
    assert max(sizes) == 1 << 20 and len(sizes) > 12
    assert all(m.body(k) == v for k, v in big) and m.body(b"huge") == b"h" * 0xFFFF
    assert m.nbytes >= 250 * 60_000
    with pytest.raises(ValueError):
        entry_bytes(b"k" * 0x10000, b"")


# -- the door, in process: the domain's answers through writes -----------------------------------


def test_resident_matches_equal_general_matches_through_writes(tmp_path, monkeypatch):
    """test_nis_fast's random calls and writes, every MATCH missing the kept answers:
    the maps are read (in several turns of several pieces) after a few misses, answer
    meanwhile, forget what the writes touch, are dropped when too changed and read
    again; every reply equals the general path's."""
    monkeypatch.setattr(nis, "RESIDENT_AFTER", 3)
    monkeypatch.setattr(nis, "RESIDENT_BATCH", 4)
    monkeypatch.setattr(nis, "RESIDENT_TURN", 0.0)          # a piece per turn
    monkeypatch.setattr(nis, "RESIDENT_COOLDOWN", 0)
    monkeypatch.setattr("netinfo.server.nisresident.FORGOTTEN_MIN", 6)
    d = Domain(tmp_path)
    door = d.doors[1]
    reads = []
    real_read = door._resident._read

    def counted(name, state, make):
        reads.append(name)
        real_read(name, state, make)
    monkeypatch.setattr(door._resident, "_read", counted)

    async def run() -> tuple[int, int]:
        hits = laned = 0
        for step, rec, port in random_steps(d, 22, 4000, 53):
            # the lane (a connection's lone record) from memory too: the same bytes
            door._hot.clear()
            lane = d.fast.lane(rpc.frame(rec), Caller("127.0.0.1", port))
            door._hot.clear()
            before = sum(m.hits for m in door._resident.maps.values())
            short = d.exchange(d.fast, rec, port)
            hits += sum(m.hits for m in door._resident.maps.values()) > before
            want = d.exchange(d.normal, rec, port)
            assert short == want, (step, rec.hex())
            if lane is not None:
                assert want is not None and lane == rpc.frame(want), (step, rec.hex())
                laned += 1
            door._hot.clear()
            await asyncio.sleep(0)          # the maps' reading turns
        return hits, laned

    hits, laned = asyncio.run(run())
    assert hits > 150                        # answered from memory
    assert laned > 150                       # by the lane too
    assert len(reads) > len(set(reads))      # dropped (too changed) and read again
    assert {"passwd.byname", "passwd.byuid", "shadow.byname"} <= set(reads)
    assert not d.doors[0]._resident          # --no-fast-path keeps none


def test_a_copy_swapped_in_drops_the_maps(tmp_path, monkeypatch):
    """The tree replaced without a write record (``read_state`` moves): the map goes."""
    monkeypatch.setattr(nis, "RESIDENT_AFTER", 1)
    d = Domain(tmp_path)
    d.create("users", [("name", ["zed"]), ("uid", ["900"]), ("gid", ["9"])], -1)
    d.db.commit()
    door = d.doors[1]
    key = yp.encode_key(DOM, "passwd.byname", b"zed")
    rec = rpc.encode_call(1, yp.YPPROG, yp.YPVERS, YpProc.MATCH, key)

    async def run() -> None:
        first = d.exchange(d.fast, rec, 40000)
        for _ in range(50):
            await asyncio.sleep(0)
        assert "passwd.byname" in door._resident.maps and not door._resident.reading()
        door._hot.clear()
        assert d.exchange(d.fast, rec, 40000) == first
        assert door._resident.maps["passwd.byname"].hits == 1
        d.db._generation += 1               # what adopting a copy does to read_state
        door._hot.clear()
        assert d.exchange(d.fast, rec, 40000) == first
        assert "passwd.byname" not in door._resident.maps
    asyncio.run(run())


def test_a_big_map_read_whole_lets_the_kept_answers_go(tmp_path, monkeypatch):
    """The answers kept while a map was being read (the doorkeeper's) are let go once a
    map too big to be kept among them is read whole: every later MATCH of it would ask
    that table first and miss. The answers stay the same; a map that fits keeps them."""
    monkeypatch.setattr(nis, "RESIDENT_AFTER", 1)
    d = Domain(tmp_path)
    door = d.doors[1]
    keys = [b"u%d" % i for i in range(12)]

    def ask(name: str) -> list[bytes | None]:
        return [d.exchange(d.fast, rpc.encode_call(
            7, yp.YPPROG, yp.YPVERS, YpProc.MATCH, yp.encode_key(DOM, name, k)), 40000)
            for k in keys]

    async def read(name: str, hot_max: int) -> list[bytes | None]:
        monkeypatch.setattr(nis, "HOT_MAX", hot_max)
        first = ask(name)
        for _ in range(50):
            await asyncio.sleep(0)
        assert name in door._resident.maps and not door._resident.reading()
        return first

    async def run() -> None:
        before = await read("passwd.byuid", 1000)     # fits: its answers are kept
        assert ask("passwd.byuid") == before and door._hot
        kept = len(door._hot)
        big = await read("passwd.byname", 3)          # too big: the table is let go
        assert not door._hot and kept > 3
        assert ask("passwd.byname") == big
        # kept again: only the answers the map does not hold (no such key)
        assert door._hot and all(v[:4] != b"\0\0\0\1" for v in door._hot.values())
        assert sum(b is not None and b[24:28] == b"\0\0\0\1" for b in big) > 3
    asyncio.run(run())


# -- a real netinfod -------------------------------------------------------------------------------


def _exchange(s: socket.socket, reader: rpc.RecordReader, xid: int, key: bytes,
              name: str = "passwd.byname") -> tuple[int, bytes]:
    s.sendall(rpc.frame(rpc.encode_call(xid, yp.YPPROG, 2, YpProc.MATCH,
                                        yp.encode_key(DOM, name, key))))
    while True:
        data = s.recv(65536)
        assert data, "connection closed"
        records = reader.feed(data)
        if records:
            _, u = rpc.decode_reply(records[0])
            return yp.decode_val(u.data[u.pos:])


def users_domain(tmp_path: Path, n: int, *more: tuple[str, list[str]]) -> None:
    """Domain "test" in *tmp_path* (a master on localhost) whose /users holds u0..u{n-1}
    (uid 10000 + i, gid 100, shell /bin/sh, and the properties *more*)."""
    from netinfo.server.database import open_database
    with open_database(tmp_path, "test", create=True) as db:
        create_master(db.procedures, "test", "localhost", ["127.0.0.1"])
        users = ensure_dir(db.procedures, "users")
        for i in range(n):
            db.procedures.proc_create(
                SUPERUSER, db.procedures.proc_self(SUPERUSER, NiId(users)),
                [("name", [f"u{i}"]), ("uid", [str(10000 + i)]), ("gid", ["100"]),
                 ("shell", ["/bin/sh"]), *more], NI_INDEX_NULL)
        db.commit()


def _said(log: Path, text: str, timeout: float) -> bool:
    """Has the server's log a line holding *text* (waiting up to *timeout* s)?"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("flags", [(), ("--event-loop", "asyncio"), ("--nis-resident-mb", "0")],
                         ids=["resident", "resident-asyncio", "none-kept"])
def test_netinfod_answers_a_busy_map_and_sees_writes(tmp_path, monkeypatch, flags):
    """By default the map is read into memory and answers from there (on uvloop's event
    loop, the default, or on asyncio's own); with
    ``--nis-resident-mb 0`` nothing is read: the same answers, the same writes seen."""
    n = 3000
    users_domain(tmp_path, n)
    monkeypatch.setenv("NETINFO_PORTMAPPER", "127.0.0.1:1")   # served unregistered
    log = tmp_path / "netinfod.log"
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "netinfo.cli.netinfod", "--dir",
                                 str(tmp_path), "--bind", "127.0.0.1", "--port", str(port),
                                 *TRUST, *flags, "--nis-domain", DOM, "test"],
                                stdout=subprocess.DEVNULL, stderr=out,
                                stdin=subprocess.DEVNULL, env=env_with_src())
    try:
        assert _said(log, "netinfod: serving NIS domain", 30), log.read_text()
        _served(port, log, n, resident="0" not in flags)
    finally:
        proc.terminate()
        proc.wait(30)
    assert ("kept in memory" in log.read_text()) is ("0" not in flags)


def _served(port: int, log: Path, n: int, resident: bool) -> None:
    rnd = random.Random(3)
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        reader = rpc.RecordReader(1 << 20)
        for xid in range(n):                  # each user once: none kept
            i = xid * 7 % n
            assert _exchange(s, reader, xid, f"u{i}".encode()) == (
                YpStat.TRUE, f"u{i}:x:{10000 + i}:100:::/bin/sh".encode())
            if xid > nis.RESIDENT_AFTER and _said(log, "NIS: passwd.byname kept in memory: "
                                                       "3000 entries", 0):
                break
        assert _said(log, "NIS: passwd.byname kept in memory: 3000 entries",
                     10 if resident else 1) \
            is resident, log.read_text()
        for xid in range(1000, 1200):
            i = rnd.randrange(n)
            assert _exchange(s, reader, xid, f"u{i}".encode()) == (
                YpStat.TRUE, f"u{i}:x:{10000 + i}:100:::/bin/sh".encode())
        assert _exchange(s, reader, 2000, b"nobody")[0] == YpStat.NOKEY
        # a write through NetInfo: the next MATCH sees it (the key is forgotten)
        env = env_with_src()
        for argv in (["-createprop", f"test@127.0.0.1:{port}", "/users/u7", "shell",
                      "/bin/zsh"],
                     ["-createprop", f"test@127.0.0.1:{port}", "/users/u8", "name", "eve"],
                     ["-destroy", f"test@127.0.0.1:{port}", "/users/u9"]):
            r = subprocess.run([sys.executable, "-m", "netinfo.cli.niutil", *argv],
                               capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 0, r.stderr
        assert _exchange(s, reader, 2001, b"u7") == (
            YpStat.TRUE, b"u7:x:10007:100:::/bin/zsh")
        assert _exchange(s, reader, 2002, b"u8")[0] == YpStat.NOKEY
        assert _exchange(s, reader, 2003, b"eve") == (YpStat.TRUE, b"eve:x:10008:100:::/bin/sh")
        assert _exchange(s, reader, 2004, b"u9")[0] == YpStat.NOKEY
        assert _exchange(s, reader, 2005, b"u10") == (
            YpStat.TRUE, b"u10:x:10010:100:::/bin/sh")
