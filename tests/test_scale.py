"""The lean representation (issue 10): a domain served from its SQLite file on demand.

* over the wire: a real netinfod with a cache of 4 directories (evictions all the time)
  answers LOOKUP/LOOKUPREAD/LIST/LISTALL/CHILDREN/READALL exactly as a brute-force walk
  does, also for reads pipelined behind writes of the same batch (pending, uncommitted:
  the pinned overlay), and again after a restart (the persisted LOOKUP index);
* opening does not read the whole domain; the cache stays bounded through LOOKUPs, READs
  and a READALL;
* migration 2 builds the LOOKUP index of a database made before it;
* a large file's integrity check runs after start-up and stops a server on damage.

The per-procedure semantics on the lazy source are test_service.py's contract suite
(``lazy`` parameter, cache of 3).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError, Status, StorageError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import Database
from netinfo.server.service import SUPERUSER
from netinfo.storage import open_store
from netinfo.storage.changes import Caller
from netinfo.storage.sqlite import SqliteStore
from netinfo.storage.sqlite_source import SqliteSource


def run(coro):
    return asyncio.run(coro)


async def brute_lookup(c: Client, d: int, key: str, value: str) -> list[int]:
    """LOOKUP from CHILDREN + READ (spec §4.4: first property, any value, child order)."""
    kids, _ = await c.children(d)
    reads = await asyncio.gather(*(c.read(k) for k in kids))
    out = []
    for k, (_, props) in zip(kids, reads, strict=True):
        for name, vals in props:
            if name == key:
                if value in vals:
                    out.append(k)
                break
    return out


async def lookup(c: Client, d: int, key: str, value: str) -> list[int]:
    try:
        return list((await c.lookup(d, key, value))[0])
    except NiError as e:
        assert e.status == Status.NODIR
        return []


def test_lazy_server_over_the_wire(netinfod, tmp_path):
    d = netinfod("lean", "-m", "--cache", "4")
    probes = [("name", f"u{i}") for i in (0, 1, 7, 150, 299, 300)] + [
        ("name", "dup"), ("name", "new"), ("uid", "1007"), ("gid", "20"), ("gid", "x"),
        ("shell", "")]

    async def check(c: Client, users: int) -> None:
        for key, value in probes:
            want = await brute_lookup(c, users, key, value)
            assert await lookup(c, users, key, value) == want, (key, value)
            if want:
                sid, props = await c.lookupread(users, key, value)
                assert sid == await c.self_id(users)
                assert props == (await c.read(want[0]))[1]
        kids, _ = await c.children(users)
        reads = await asyncio.gather(*(c.read(k) for k in kids))
        _, lists = await c.listall(users)
        assert lists == [p for _, p in reads]
        entries, _ = await c.list(users, "uid")
        assert [e[0] for e in entries] == kids
        cks, highest, objs = await c.readall(0)
        assert cks == int((await c.statistics())[0][1][0])
        assert cks == sum((o.id.object + 1) * o.id.instance for o in objs) & 0xFFFFFFFF
        assert highest == max(o.id.object for o in objs) + 1
        assert [o.id.object for o in objs if o.parent == users] == kids

    async def build() -> int:
        async with await Client.connect("127.0.0.1", d.port, "lean") as c:
            root = await c.root()
            users, root = await c.create(root, [("name", ["users"])])
            # pipelined: each CREATE predicts the parent's instance (+1 a write, §5.3)
            made = await asyncio.gather(*(
                c.create(NiId(users.object, users.instance + i),
                         [("name", [f"u{i}"]), ("uid", [str(1000 + i)]),
                                 ("gid", ["20"]), ("shell", [""] if i % 5 else [])])
                for i in range(300)))
            assert len({m[0].object for m in made}) == 300
            users = await c.self_id(users)
            # duplicates in the middle and at the front: LOOKUP keeps child-list order
            users = (await c.create(users, [("name", ["dup"])], 120))[1]
            users = (await c.create(users, [("name", ["dup", "u7"])], 0))[1]
            await check(c, users.object)
            # reads pipelined behind writes of the same batch see them (pending writes)
            kids, users = await c.children(users)
            victim = await c.self_id(kids[10])
            renamed = await c.self_id(kids[20])
            got = await asyncio.gather(
                c.create(users, [("name", ["new"]), ("uid", ["1007"])], 50),
                c.lookup(users.object, "name", "new"),
                c.write(renamed, [("name", ["dup"]), ("gid", ["x"])]),
                c.lookup(users.object, "name", "dup"),
                c.lookup(users.object, "uid", "1007"),
                return_exceptions=True)
            new = got[0][0].object
            assert got[1][0] == [new]
            assert got[3][0] == await brute_lookup(c, users.object, "name", "dup")
            assert renamed.object in got[3][0]
            assert got[4][0] == await brute_lookup(c, users.object, "uid", "1007")
            users = await c.self_id(users)
            victim = await c.self_id(victim)
            vname = (await c.read(victim))[1][0][1][0]
            await asyncio.gather(c.destroy(users, victim),
                                 c.lookup(users.object, "name", vname),
                                 return_exceptions=True)
            assert await lookup(c, users.object, "name", vname) == await brute_lookup(
                c, users.object, "name", vname)
            # the freed number is the lowest unused one (spec §5.2) and comes back
            again, users = await c.create(await c.self_id(users), [("name", ["again"])])
            assert again.object == victim.object and again.instance == victim.instance + 1
            await check(c, users.object)
            return users.object

    users = run(build())
    before = run(_snapshot(d.port))
    d.stop()
    d2 = netinfod("lean", "--cache", "4", port=d.port)

    async def after() -> None:
        async with await Client.connect("127.0.0.1", d2.port, "lean") as c:
            # the first LOOKUP after start: answered from the persisted index
            assert await lookup(c, users, "name", "u150") == await brute_lookup(
                c, users, "name", "u150")
            await check(c, users)

    run(after())
    assert run(_snapshot(d2.port)) == before


async def _snapshot(port: int) -> tuple:
    async with await Client.connect("127.0.0.1", port, "lean") as c:
        cks, highest, objs = await c.readall(0)
        return cks, highest, [(o.id, o.props, o.parent, list(o.children)) for o in objs]


# -- in process: what is resident --------------------------------------------------------------

def _domain(path, users: int) -> tuple[int, list[int]]:
    with Database(open_store(f"sqlite:{path}")) as db:
        svc = db.service_for_tests()
        u, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER), [("name", ["users"])],
                               NI_INDEX_NULL)
        ids = []
        for i in range(users):
            c, _ = svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, u),
                                   [("name", [f"u{i}"]), ("uid", [str(i % 50)])], NI_INDEX_NULL)
            ids.append(c.object)
        db.commit()
        return u.object, ids


def test_opening_reads_no_domain_and_the_cache_stays_bounded(tmp_path, monkeypatch):
    path = tmp_path / "d.sqlite"
    users, ids = _domain(path, 2000)
    monkeypatch.setattr(SqliteStore, "load", lambda self: pytest.fail("load() at open"))
    db = Database(open_store(f"sqlite:{path}"), cache=50)
    try:
        svc = db.service_for_tests()
        src = svc.source
        assert isinstance(src, SqliteSource)
        assert not src._cache and not src._big  # nothing read yet but the root check
        anon = Caller()
        for i in range(0, 2000, 7):
            assert svc.proc_lookup(anon, NiId(users), "name", f"u{i}")[0] == [ids[i]]
            assert svc.proc_read(anon, NiId(ids[i]))[1][0] == ("name", [f"u{i}"])
        assert len(src._cache) <= 50
        assert svc.proc_lookup(anon, NiId(users), "uid", "7")[0] == ids[7::50]
        # LOOKUP needs no child list; once read, a big one stays resident, compactly
        assert not src._big
        assert list(svc.proc_children(anon, NiId(users))[0]) == ids
        assert list(src._big) == [users] and src._big[users].children.itemsize == 4
        cached = dict(src._cache)
        objs = list(svc.proc_readall(SUPERUSER, 0).objects)
        assert len(objs) == 2002 and [o.id.object for o in objs[2:]] == ids
        # a whole-domain read leaves the working set (only the root comes in)
        assert set(src._cache) <= set(cached) | {0} and len(src._cache) <= 50
        assert len(svc) == 2002 and svc.highest_id() == max(ids) + 1
        assert svc.checksum == svc.compute_checksum()
    finally:
        db.close()


def test_replace_serves_from_the_store_again(tmp_path):
    path = tmp_path / "d.sqlite"
    _domain(path, 40)
    with Database(open_store(f"sqlite:{path}"), cache=8) as db:
        image = db.service_for_tests().image()
        image.records[0].props = [("name", ["replaced"])]
        db.replace(image)
        assert db.service_for_tests().source.lazy
        assert db.service_for_tests().proc_read(Caller(), NiId(0))[1] == [("name", ["replaced"])]
        assert db.service_for_tests().checksum == db.service_for_tests().compute_checksum()


def test_failed_commit_leaves_the_lazy_source_at_the_durable_state(tmp_path, monkeypatch):
    path = tmp_path / "d.sqlite"
    users, ids = _domain(path, 100)
    with Database(open_store(f"sqlite:{path}"), cache=8) as db:
        svc = db.service_for_tests()
        before = svc.image()
        svc.proc_write(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[3])),
                       [("name", ["changed"])])
        svc.proc_destroy(SUPERUSER, svc.proc_self(SUPERUSER, NiId(users)),
                         svc.proc_self(SUPERUSER, NiId(ids[5])))
        assert svc.proc_lookup(Caller(), NiId(users), "name", "changed")[0] == [ids[3]]

        def fail(*a):
            raise StorageError("disk full")
        monkeypatch.setattr(db.store, "commit", fail)
        with pytest.raises(StorageError):
            db.commit()
        monkeypatch.undo()
        assert svc.image() == before
        with pytest.raises(NiError):
            svc.proc_lookup(Caller(), NiId(users), "name", "changed")
        assert svc.proc_lookup(Caller(), NiId(users), "name", "u5")[0] == [ids[5]]


# -- migration 2: the persisted LOOKUP index -----------------------------------------------------

def test_migration_builds_the_lookup_index(tmp_path):
    path = tmp_path / "d.sqlite"
    users, ids = _domain(path, 300)
    c = sqlite3.connect(path)
    rows = c.execute("SELECT count(*) FROM keys").fetchone()[0]
    assert rows == 300 * 2 + 1  # every user's name and uid, /users' name
    c.execute("DROP TABLE keys")  # as a database made before migration 2 (and so 3)
    for table in ("history", "history_dirs", "history_size"):
        c.execute(f"DROP TABLE {table}")
    c.execute("DELETE FROM schema_version WHERE version >= 2")
    c.commit()
    c.close()
    with Database(open_store(f"sqlite:{path}"), cache=8) as db:
        svc = db.service_for_tests()
        assert svc.proc_lookup(Caller(), NiId(users), "uid", "3")[0] == ids[3::50]
    c = sqlite3.connect(path)
    assert c.execute("SELECT count(*) FROM keys").fetchone()[0] == rows
    c.close()


# -- the integrity check of large files ---------------------------------------------------------

def test_large_files_are_checked_after_start(tmp_path, monkeypatch):
    path = tmp_path / "d.sqlite"
    _domain(path, 300)
    monkeypatch.setattr(SqliteStore, "inline_check_max", 0)
    st = SqliteStore(str(path))
    assert st.deferred_check and st.verify() is None
    st.close()
    data = bytearray(path.read_bytes())
    for off in range(4096 + 100, len(data), 4096):
        data[off] ^= 0x10
    path.write_bytes(bytes(data))
    try:
        st = SqliteStore(str(path))
    except StorageError:
        return  # damage in the schema pages: refused at open, as before
    try:
        problem = st.verify()
        assert problem is not None and "restore it from a dump" in problem

        # netinfod stops serving it (exit status 2) when the check fails
        from netinfo.cli.netinfod import _verify

        class Db:
            store = st
        stop, damaged = asyncio.Event(), []

        async def go():
            await _verify(Db, stop, damaged)  # type: ignore[arg-type]
        run(go())
        assert stop.is_set() and damaged == [problem]
    finally:
        st.close()
    assert os.path.exists(path)


def test_readall_pieces_are_the_encoded_preorder(tmp_path):
    """The lazy source's READALL pieces, cut from the stored XDR, are byte for byte the
    encoding of its pre-order walk, pending (pinned) changes included (spec §9.4)."""
    from netinfo.wire.readall import encode_readall_object
    path = tmp_path / "d.sqlite"
    _users, ids = _domain(path, 600)
    with Database(open_store(f"sqlite:{path}"), cache=8) as db:
        svc = db.service_for_tests()
        _sub, _ = svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[4])),
                                  [("name", ["sub"]), ("x", ["\udcff", ""])], NI_INDEX_NULL)
        svc.proc_write(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[9])), [("name", [])])
        ra = svc.proc_readall(SUPERUSER, 0)
        assert ra.pieces is not None
        assert b"".join(ra.pieces) == b"".join(encode_readall_object(d) for d in ra.objects)
        db.commit()
        ra = svc.proc_readall(SUPERUSER, 0)
        want = [encode_readall_object(d) for d in svc.iter_preorder()]
        assert list(ra.pieces) == want and len(want) == 603


def test_unused_numbers_below_the_highest(tmp_path):
    """The lazy source's gaps() (spec §5.2: lowest unused number first), whether the ids
    are dense, have only destroyed holes (listed in freed), or never-used ones too."""
    from netinfo.storage import Free, Image, KidIns, Put, Record
    from netinfo.storage.nodes import MemorySource
    st = open_store(f"sqlite:{tmp_path / 'd.sqlite'}")
    try:
        ops = [Put(i, 1, 0, [("name", [str(i)])]) for i in range(10)]
        ops += [KidIns(0, i, i) for i in range(1, 10)]
        st.commit(ops, 0)
        assert st.source().gaps() == []
        st.commit([Free(3, 1), Free(7, 1)], 0)
        assert st.source().gaps() == [3, 7]
        st.commit([Put(15, 1, 0, []), Put(12, 1, 0, [])], 0)  # never-used 10, 11, 13, 14
        src = st.source()
        img = Image(records={i: Record(1, 0, []) for i in (0, 1, 2, 4, 5, 6, 8, 9, 12, 15)})
        assert src.gaps() == MemorySource(img).gaps() == [3, 7, 10, 11, 13, 14]
        del src[12]  # a destroyed number not yet committed is unused too
        assert src.gaps() == [3, 7, 10, 11, 12, 13, 14] and src.highest() == 15
    finally:
        st.close()


def test_listall_frames_the_stored_proplists(tmp_path):
    """LISTALL on the lazy source hands the stored XDR to the encoder (no decoding), with
    pending changes encoded from memory: the reply is byte for byte the decoded one's."""
    from netinfo.wire.proplist import StoredProplists
    from netinfo.wire.protocol import LISTALL_RES
    from netinfo.wire.xdr import Packer
    path = tmp_path / "d.sqlite"
    users, ids = _domain(path, 300)
    with Database(open_store(f"sqlite:{path}"), cache=8) as db:
        svc = db.service_for_tests()
        svc.proc_write(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[5])), [("name", ["w"])])
        sid, lists = svc.proc_listall(Caller(), NiId(users))
        assert isinstance(lists, StoredProplists) and len(lists) == 300
        plain = [svc.proc_read(Caller(), NiId(c))[1] for c in ids]
        assert lists == plain and lists[5] == [("name", ["w"])] and lists[:2] == plain[:2]
        a, b = Packer(), Packer()
        LISTALL_RES.pack(a, (sid, lists))
        LISTALL_RES.pack(b, (sid, plain))
        assert a.get_buffer() == b.get_buffer()


def test_lookupread_of_a_directory_not_in_memory_sends_its_stored_bytes(tmp_path):
    """LOOKUPREAD on the lazy source answers a child that is not resident with its
    stored proplist, undecoded (StoredProplist); it reads as the proplist, the reply is
    byte for byte the decoded one's, and a resident or changed child is answered from
    memory."""
    from netinfo.wire.proplist import StoredProplist
    from netinfo.wire.protocol import PROCEDURES, RESULT_KINDS, Proc
    path = tmp_path / "d.sqlite"
    users, ids = _domain(path, 50)
    row = PROCEDURES[Proc.LOOKUPREAD]
    encode = RESULT_KINDS[row.kind].encode
    with Database(open_store(f"sqlite:{path}"), cache=8) as db:
        svc = db.service_for_tests()
        name = "u7"  # _domain's name of ids[7], not read yet
        sid, props = svc.proc_lookupread(Caller(), NiId(users), "name", name)
        assert type(props) is StoredProplist and props._props is None
        assert props == svc.proc_read(Caller(), NiId(ids[7]))[1] and props._props is not None
        assert list(props) == list(svc.proc_read(Caller(), NiId(ids[7]))[1])
        assert props.wire == svc.proc_read(Caller(), NiId(ids[7]))[1].wire
        assert encode(row, (sid, props)) == encode(row, (sid, list(props)))
        # resident now (the READs above cached it): answered from memory
        assert type(svc.proc_lookupread(Caller(), NiId(users), "name", name)[1]) \
            is not StoredProplist
        # a pending write is seen at once
        svc.proc_write(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[9])), [("name", ["new"])])
        got = svc.proc_lookupread(Caller(), NiId(users), "name", "new")[1]
        assert got == [("name", ["new"])]
