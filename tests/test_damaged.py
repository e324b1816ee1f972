"""A damaged value inside a stored directory (issue 18, finding N20).

SQLite's ``quick_check`` sees pages, not values: a ``dirs`` row whose XDR proplist is cut
short or followed by garbage passed it, and a master sent the bytes as they were in every
READALL, breaking each clone's copy. Now such a directory is refused when read (NI_SERIAL,
spec §3) with one log line naming it and how to repair the domain; the rest is served; a
READALL fails cleanly (the record is cut) so a clone keeps its old copy; and the check at
open names the damaged directories without refusing the domain.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time

import pytest

from netinfo.errors import DamagedDirectory, NiError, Status, WireError
from netinfo.model import NiId
from netinfo.server.database import open_database
from netinfo.server.service import SUPERUSER
from netinfo.wire.proplist import check_proplist, decode_proplist, encode_proplist

from .conftest import Netinfod, Wire
from .test_clone_copy import clone_with, make_master

USERS = 200


def damage(path, oid: int, how: str) -> None:
    """Write a damaged proplist into row *oid* of the file, behind the store's back."""
    with sqlite3.connect(path) as c:
        (blob,) = c.execute("SELECT props FROM dirs WHERE id = ?", (oid,)).fetchone()
        bad = blob[:-3] if how == "cut" else blob + b"\0\0\0\1zz"
        c.execute("UPDATE dirs SET props = ? WHERE id = ?", (bad, oid))


def user_id(directory, name: str) -> tuple[int, int]:
    with open_database(directory, "net") as db:
        svc = db.service_for_tests()
        users = svc.proc_lookup(SUPERUSER, NiId(0, 0), "name", "users")[0][0]
        return users, svc.proc_lookup(SUPERUSER, NiId(users, 0), "name", name)[0][0]


@pytest.fixture
def damaged_master(tmp_path):
    d = tmp_path / "m"
    make_master(d, USERS)
    users, victim = user_id(d, "user7")
    damage(d / "net.nidb" / "netinfo.sqlite", victim, "cut")
    return d, users, victim


def test_check_proplist_refuses_what_decode_refuses():
    good = encode_proplist([("name", ["a", "bb"]), ("x", [])])
    check_proplist(good)
    for bad in (good[:-1], good[:-4], good + b"\0\0\0\0", b"", b"\0\0\0\2",
                b"\xff\xff\xff\xff" + good[4:]):
        with pytest.raises(Exception) as e1:
            decode_proplist(bad)
        with pytest.raises(type(e1.value)):
            check_proplist(bad)


def damaged(rnd: random.Random, data: bytes) -> bytearray:
    """*data* cut short, grown, or with a word overwritten (now and then unchanged)."""
    out = bytearray(data)
    how = rnd.randrange(4)
    if how == 0 and out:
        del out[rnd.randrange(len(out)):]
    elif how == 1:
        out += bytes(rnd.randrange(1, 9))
    elif how == 2 and len(out) >= 4:
        at = rnd.randrange(len(out) // 4) * 4
        out[at:at + 4] = rnd.choice((0, 1, 2, 5, 255, 256, 65535, 1 << 31)).to_bytes(4, "big")
    return out


def test_check_proplist_agrees_with_decode_on_damaged_bytes():
    """The word walk of check_proplist and the decoder accept exactly the same bytes:
    random cuts, growths and overwritten words of real proplists (several values,
    none, long names), each refused with a WireError saying why."""
    rnd = random.Random(20)
    for _ in range(3000):
        props = [(f"p{i}" * rnd.randrange(1, 4),
                  [("v" * rnd.randrange(0, 9)) for _ in range(rnd.choice((0, 1, 1, 2, 3)))])
                 for i in range(rnd.randrange(0, 6))]
        data = damaged(rnd, encode_proplist(props))
        try:
            decode_proplist(bytes(data))
        except WireError:
            with pytest.raises(WireError):
                check_proplist(bytes(data))
        else:
            check_proplist(bytes(data))


@pytest.mark.parametrize("how", ["cut", "garbage after"])
def test_a_damaged_directory_is_refused_and_the_rest_served(tmp_path, how, caplog):
    d = tmp_path / "m"
    make_master(d, 20)
    users, victim = user_id(d, "user7")
    damage(d / "net.nidb" / "netinfo.sqlite", victim, how)
    with open_database(d, "net") as db:
        # the check at open names it, and the domain is served all the same
        assert len(db.store.found_damaged) == 1
        assert f"directory {victim} is damaged" in db.store.found_damaged[0]
        # a READ of it, bytes in and bytes out through the server's Dispatcher, is
        # answered NI_SERIAL, twice, and logged once
        wire = Wire(db, "net", caller=SUPERUSER)

        async def read_twice() -> list[int]:
            c = wire.client()
            got = []
            for _ in range(2):
                with pytest.raises(NiError) as e:
                    await c.read(victim)
                got.append(e.value.status)
            await c.close()
            return got
        assert asyncio.run(read_twice()) == [Status.SERIAL] * 2
        assert [reply[-4:] for _, reply in wire.records] == [Status.SERIAL.to_bytes(4, "big")] * 2
        assert sum("is damaged" in r.getMessage() for r in caplog.records) == 2
        svc = db.service_for_tests()
        other = svc.proc_lookup(SUPERUSER, NiId(users, 0), "name", "user8")[0][0]
        assert svc.proc_read(SUPERUSER, NiId(other, 0))[1][0] == ("name", ["user8"])
        # never sent on as stored: READALL's pieces fail at it
        with pytest.raises(DamagedDirectory) as e:
            for _ in db.readall(SUPERUSER, 0):
                pass
        assert e.value.oid == victim


def _drain(srv: Netinfod, lines: list[str]) -> None:
    assert srv.proc is not None and srv.proc.stderr is not None
    stream = srv.proc.stderr
    threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")),
                     daemon=True).start()


def test_netinfod_refuses_the_damaged_directory_and_serves_the_others(damaged_master):
    from netinfo.client.core import Client
    d, _users, victim = damaged_master
    srv = Netinfod(d, "net").start()
    lines: list[str] = []
    _drain(srv, lines)

    async def go() -> tuple[int, list]:
        async with await Client.connect("127.0.0.1", srv.port, "net") as c:
            try:
                await c.read(victim)
                status = Status.OK
            except NiError as e:
                status = e.status
            others = [(await c.read(await c.pathsearch(f"/users/user{i}")))[1][0]
                      for i in (0, 8, USERS - 1)]
            return status, others
    try:
        status, others = asyncio.run(go())
        assert status == Status.SERIAL
        assert others == [("name", ["user0"]), ("name", ["user8"]),
                          ("name", [f"user{USERS - 1}"])]
    finally:
        srv.stop()
    log = "".join(lines)
    assert f"directory {victim} is damaged" in log and "niload" in log
    assert "Traceback" not in log


def test_a_clone_copying_from_a_damaged_master_keeps_its_copy(damaged_master, tmp_path,
                                                              monkeypatch):
    d, _users, _victim = damaged_master
    srv = Netinfod(d, "net").start()
    lines: list[str] = []
    _drain(srv, lines)

    class RealMaster:
        """clone_with's master: the netinfod above."""

        def __init__(self, port: int) -> None:
            self.port = port
            self.server = self

        async def start(self) -> None:
            return None

        def close(self) -> None:
            return None

    async def check(db, port, rep) -> None:
        deadline = time.monotonic() + 30
        while "met a damaged directory" not in "".join(lines):
            assert time.monotonic() < deadline, "".join(lines)
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        svc = db.service_for_tests()
        assert not rep.in_step
        assert svc.proc_read(SUPERUSER, NiId(0, 0))[1][0] == ("master", ["bench/net"])
        u = svc.proc_lookup(SUPERUSER, NiId(0, 0), "name", "users")[0][0]
        assert svc.proc_lookup(SUPERUSER, NiId(u, 0), "name", "old49")[0]
        with pytest.raises(NiError):
            svc.proc_lookup(SUPERUSER, NiId(u, 0), "name", "user0")

    try:
        asyncio.run(clone_with(RealMaster(srv.port), tmp_path / "c", monkeypatch, check))
    finally:
        srv.stop()
    assert "Traceback" not in "".join(lines)


def test_the_deferred_check_runs_in_a_child_process(tmp_path, monkeypatch):
    """A large file's check after start (SqliteStore.verify) runs quick_check and the
    proplists' scan in a child process, which finds what the check at open finds; where
    no child can answer, the same check runs in this process."""
    from netinfo.storage.sqlite import SqliteStore
    d = tmp_path / "m"
    make_master(d, 20)
    _users, victim = user_id(d, "user7")
    path = d / "net.nidb" / "netinfo.sqlite"
    damage(path, victim, "cut")
    monkeypatch.setattr(SqliteStore, "inline_check_max", 0)

    def not_here(self):
        raise AssertionError("checked in this process")
    with monkeypatch.context() as m:
        m.setattr(SqliteStore, "_verify_here", not_here)
        st = SqliteStore(str(path))
        try:
            assert st.deferred_check and st.found_damaged == []
            assert st.verify() is None
            assert len(st.found_damaged) == 1
            assert f"directory {victim} is damaged" in st.found_damaged[0]
        finally:
            st.close()
    # no interpreter to start: checked here, the same findings
    monkeypatch.setattr("netinfo.storage.sqlite.sys.executable", str(tmp_path / "none"))
    st = SqliteStore(str(path))
    try:
        assert st.verify() is None and len(st.found_damaged) == 1
    finally:
        st.close()
    # a file quick_check refuses: the child's answer is the in-process one's
    data = bytearray(path.read_bytes())
    for off in range(4096 + 100, len(data), 4096):
        data[off] ^= 0x10
    path.write_bytes(bytes(data))
    monkeypatch.undo()
    monkeypatch.setattr(SqliteStore, "inline_check_max", 0)
    try:
        st = SqliteStore(str(path))
    except Exception:
        return  # damage in the schema pages: refused at open
    try:
        here = st._verify_here()
        st._verify_stopped = False
        elsewhere = st.verify()
        assert elsewhere is not None and elsewhere == here
    finally:
        st.close()


def test_interrupting_the_deferred_check_stops_its_child(tmp_path, monkeypatch):
    from netinfo.storage import sqlite as engine
    from netinfo.storage.sqlite import SqliteStore
    d = tmp_path / "m"
    make_master(d, 20)
    monkeypatch.setattr(SqliteStore, "inline_check_max", 0)
    monkeypatch.setattr(engine, "_VERIFY_CHILD", "import time; time.sleep(60)")
    st = SqliteStore(str(d / "net.nidb" / "netinfo.sqlite"))
    out = []
    t = threading.Thread(target=lambda: out.append(st.verify()))
    t.start()
    deadline = time.monotonic() + 10
    while st._verify_child is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child = st._verify_child
    assert child is not None
    t0 = time.monotonic()
    st.interrupt_verify()
    t.join(10)
    assert not t.is_alive() and out == [None] and time.monotonic() - t0 < 5
    assert child.poll() is not None
    st.close()
