"""The short path for hot reads (issue 20, ``server.fastpath``): its replies are the
normal path's, byte for byte, through writes that change what it keeps; and over the
real wire a write is seen by the next read."""

from __future__ import annotations

import asyncio
import random
import struct

import pytest

from netinfo.client.core import Client
from netinfo.errors import Status
from netinfo.model import NiId
from netinfo.server.database import open_database
from netinfo.server.fastpath import FAST_PROCS, FastPath
from netinfo.server.netinfod import Dispatcher, ServerConfig
from netinfo.storage.cached import BIG_KIDS, INDEX_AFTER, CachedSource, IndexJob
from netinfo.storage.changes import Caller
from netinfo.wire import rpc
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc, encode_args

ROOT = Caller("127.0.0.1", 600, superuser=True, user="root")
ANON = Caller("127.0.0.1", 40000)
USERS = 60


def _call(xid: int, proc: int, args: bytes, auth: rpc.AuthUnix | None = None) -> bytes:
    return rpc.encode_call(xid, NETINFO_PROG, NETINFO_VERS, proc, args, auth)


class Domain:
    """A SQLite domain with /users of USERS users, served by two dispatchers: the normal
    path alone and with the short path."""

    def __init__(self, tmp_path, users: int = USERS, cache: int | None = None) -> None:
        self.db = open_database(tmp_path, "fp", create=True, cache=cache)
        self.normal = Dispatcher(self.db, ServerConfig("fp", fast_path=False), ["127.0.0.1"])
        self.fast = Dispatcher(self.db, ServerConfig("fp"), ["127.0.0.1"])
        root = self.db.call(Proc.ROOT, ROOT, ())
        self.users, _ = self.db.call(Proc.CREATE, ROOT, (root, [("name", ["users"])], -1,
                                                         None))
        for i in range(users):
            self.create_user(i)
        self.db.commit()
        self.xid = 0

    def create_user(self, i: int) -> None:
        users = self.db.call(Proc.SELF, ROOT, (NiId(self.users.object, 0),))
        self.db.call(Proc.CREATE, ROOT, (users, [
            ("name", [f"u{i}"]), ("uid", [str(500 + i % 7)]), ("shell", ["/bin/sh"])],
            -1, None))

    def ids(self) -> list[int]:
        return [self.users.object, *self.db.call(Proc.CHILDREN, ROOT,
                                                 (NiId(self.users.object, 0),))[0]]

    def exchange(self, disp: Dispatcher, record: bytes, caller: Caller = ANON) -> bytes:
        with self.db.batch() as batch:
            disp.handle(record, caller, udp=False, batch=batch)
        reply = batch.replies[0]
        assert isinstance(reply, bytes)
        return reply


def random_call(rnd: random.Random, xid: int, ids: list[int], users: int) -> bytes:
    """A read of the short path's procedures with arguments that hit and miss: ids that
    exist and do not (NI_BADID), keys and values found and not (NI_NODIR), property
    indexes past the end (NI_NOPROP), any instance (reads ignore it), malformed
    arguments (GARBAGE_ARGS), now and then a credential (the normal path's)."""
    proc = rnd.choice(FAST_PROCS)
    oid = rnd.choice(ids) if rnd.random() < 0.85 else rnd.randrange(10_000)
    nid = NiId(oid, rnd.choice((0, 1, 2, 7)))
    info = PROCEDURES[proc]
    if proc in (Proc.LOOKUP, Proc.LOOKUPREAD):
        key = rnd.choice(("name", "uid", "shell", "nokey"))
        value = {"name": f"u{rnd.randrange(users + 5)}", "uid": str(500 + rnd.randrange(9)),
                 "shell": "/bin/sh", "nokey": "x"}[key]
        args = encode_args(info, nid, key, value)
    elif proc is Proc.READPROP:
        args = encode_args(info, nid, rnd.randrange(5))
    elif proc is Proc.LIST:
        args = encode_args(info, nid, rnd.choice(("name", "uid", "none")))
    else:
        args = encode_args(info, nid)
    r = rnd.random()
    if r < 0.03:
        args = args[:-2]                       # truncated
    elif r < 0.06:
        args += b"\0\0\0\1"                    # trailing bytes
    auth = rpc.AuthUnix(1, b"h", 501, 20, []) if rnd.random() < 0.05 else None
    return _call(xid, proc, args, auth)


def test_fast_replies_equal_normal_replies_through_writes(tmp_path):
    d = Domain(tmp_path)
    rnd = random.Random(20)
    fast_row = d.fast.programs[NETINFO_PROG].fast
    assert fast_row is not None
    table: FastPath = fast_row.__self__   # the row's short path (a bound method)
    n_users = USERS
    for step in range(4000):
        if step % 97 == 96:
            # a write between reads: a new property, a new user, a user destroyed
            ids = d.ids()
            kind = rnd.randrange(3)
            with d.db.batch():
                if kind == 0:
                    child = d.db.call(Proc.SELF, ROOT, (NiId(rnd.choice(ids[1:]), 0),))
                    d.db.call(Proc.CREATEPROP, ROOT, (child, ("uid", ["999"]), 0))
                elif kind == 1:
                    d.create_user(n_users)
                    n_users += 1
                else:
                    users = d.db.call(Proc.SELF, ROOT, (NiId(d.users.object, 0),))
                    child = d.db.call(Proc.SELF, ROOT, (NiId(rnd.choice(ids[1:]), 0),))
                    d.db.call(Proc.DESTROY, ROOT, (users, child))
        rec = random_call(rnd, step + 1, d.ids(), n_users)
        assert d.exchange(d.fast, rec) == d.exchange(d.normal, rec), (step, rec.hex())
    assert table.hits > 200 and table.misses > 500   # both ways were taken
    assert len(table) > 0


def test_lookupread_misses_from_stored_bytes_equal_normal_replies(tmp_path):
    """A LOOKUPREAD miss answered from a resident index and the child's stored bytes
    (FastPath._stored: no node built, the reply made around the bytes) is the normal
    path's reply byte for byte: found, not found, two holders, through writes that
    rename, add and destroy users."""
    users = BIG_KIDS + 40
    d = Domain(tmp_path, users=users, cache=16)   # children rarely resident
    src = d.db.source
    assert isinstance(src, CachedSource)
    jobs: list[IndexJob] = []
    src.index_runner = jobs.append                # built by hand below
    info = PROCEDURES[Proc.LOOKUPREAD]

    def lookupread(xid: int, name: str) -> bytes:
        return _call(xid, Proc.LOOKUPREAD,
                     encode_args(info, NiId(d.users.object, 3), "name", name))
    for i in range(INDEX_AFTER):
        d.exchange(d.normal, lookupread(i + 1, f"u{i}"))
    (job,) = jobs
    job.run()
    job.install()
    assert (d.users.object, "name") in src.indexes
    table: FastPath = d.fast.programs[NETINFO_PROG].fast.__self__
    rnd = random.Random(21)
    n_users = users
    for step in range(3000):
        if step % 101 == 100:
            ids = d.ids()
            with d.db.batch():
                child = d.db.call(Proc.SELF, ROOT, (NiId(rnd.choice(ids[1:]), 0),))
                kind = rnd.randrange(3)
                if kind == 0:
                    d.db.call(Proc.WRITEPROP, ROOT, (child, 0, ["dup"]))
                elif kind == 1:
                    d.create_user(n_users)
                    n_users += 1
                else:
                    parent = d.db.call(Proc.SELF, ROOT, (NiId(d.users.object, 0),))
                    d.db.call(Proc.DESTROY, ROOT, (parent, child))
        name = rnd.choice((f"u{rnd.randrange(n_users + 5)}", "dup", "none"))
        rec = lookupread(step + 1000, name)
        assert d.exchange(d.fast, rec) == d.exchange(d.normal, rec), (step, name)
        table.clear()                             # every call a miss
    assert table.stored > 1000                    # the stored bytes' way was taken


def test_a_read_after_a_pending_write_in_its_batch_sees_it(tmp_path):
    d = Domain(tmp_path)
    uid = d.ids()[1]
    rec = _call(1, Proc.READ, struct.pack(">II", uid, 0))
    before = d.exchange(d.fast, rec)
    assert d.exchange(d.fast, rec) == before              # kept
    with d.db.batch() as batch:
        child = d.db.call(Proc.SELF, ROOT, (NiId(uid, 0),))
        d.db.call(Proc.CREATEPROP, ROOT, (child, ("home", ["/h"]), -1))
        d.fast.handle(rec, ANON, udp=False, batch=batch)
        d.normal.handle(rec, ANON, udp=False, batch=batch)
    fast, normal = batch.replies
    assert fast == normal != before
    assert d.exchange(d.fast, rec) == normal               # durable now, and kept


def test_reads_without_a_change_record_drop_everything(tmp_path):
    """A write made around Database.call (no Change says where): the table is dropped
    at its commit (Database.read_state)."""
    d = Domain(tmp_path)
    uid = d.ids()[1]
    rec = _call(1, Proc.READ, struct.pack(">II", uid, 0))
    before = d.exchange(d.fast, rec)
    svc = d.db.service_for_tests()
    svc.proc_createprop(ROOT, svc.proc_self(ROOT, NiId(uid, 0)), ("x", ["y"]), -1)
    d.db.commit()
    after = d.exchange(d.fast, rec)
    assert after != before and after == d.exchange(d.normal, rec)


def test_the_table_is_bounded(tmp_path):
    d = Domain(tmp_path)
    table = FastPath(d.db, d.db.info.counters, lambda r, c: d.normal.answer(r, c)[0],
                     max_entries=10)
    for i, oid in enumerate(d.ids()):
        rec = _call(i, Proc.READ, struct.pack(">II", oid, 0))
        assert table.answer(rec, ANON) == d.exchange(d.normal, rec)
        assert len(table) == min(10, i)     # each kept from its second miss on
        assert table.answer(rec, ANON) == d.exchange(d.normal, rec)
    assert len(table) == 10
    assert sum(len(k) for k in table._by_dir.values()) == 10
    assert table.bytes < table.max_bytes


def test_a_reply_is_kept_from_its_second_miss_on(tmp_path):
    """The doorkeeper (admission.Doorkeeper): a read asked once is answered and not
    kept; asked again it is kept; a window of first sightings forgets them all when
    full, so reads spread over more keys than it holds are never kept."""
    d = Domain(tmp_path)
    table = FastPath(d.db, d.db.info.counters, lambda r, c: d.normal.answer(r, c)[0],
                     max_entries=8)
    ids = d.ids()
    recs = [_call(i, Proc.READ, struct.pack(">II", oid, 0)) for i, oid in enumerate(ids)]
    table.answer(recs[0], ANON)
    assert len(table) == 0 and table.door.refused == 1
    table.answer(recs[0], ANON)
    assert len(table) == 1 and table.door.admitted == 1
    table.answer(recs[0], ANON)
    assert table.hits == 1
    # more distinct reads than the window, round and round: none is ever kept
    for _ in range(3):
        for rec in recs[1:20]:
            table.answer(rec, ANON)
    assert len(table) == 1 and len(table.door) <= 8


def test_udp_and_the_masters_updates_take_the_normal_path(tmp_path):
    d = Domain(tmp_path)
    fast_row = d.fast.programs[NETINFO_PROG].fast
    table: FastPath = fast_row.__self__
    rec = _call(1, Proc.READ, struct.pack(">II", 0, 0))
    d.fast.handle(rec, ANON, udp=True)          # READ over UDP: AUTH_TOOWEAK, spec §1.4
    d.fast.handle(rec, Caller("127.0.0.1", 700, from_master=True), udp=False)
    assert table.hits == table.misses == 0
    reply = d.fast.handle(rec, ANON, udp=True)
    assert isinstance(reply, bytes) and reply == rpc.reply_auth_error(1, rpc.AuthStat.TOOWEAK)


def test_over_tcp_a_write_is_seen_by_the_next_read(netinfod):
    """A real netinfod: LOOKUPREAD, LOOKUP, READ, LIST kept; a write on another
    connection; each read answers the new state."""
    srv = netinfod("test", "-m", "--populate")

    async def go():
        async with await Client.connect("127.0.0.1", srv.port, "test") as w, \
                await Client.connect("127.0.0.1", srv.port, "test", privileged=False) as r:
            users = await w.pathsearch("/users")
            ann, users = await w.create(users, [("name", ["ann"]), ("uid", ["601"])])

            async def state():
                return (await r.lookupread(users, "name", "ann"),
                        await r.lookup(users, "uid", "601"),
                        await r.read(ann), await r.list(users, "uid"))
            first = await state()
            assert await state() == first
            ann = await w.createprop(ann, "shell", ["/bin/zsh"])
            second = await state()
            assert second[0][1] == second[2][1] == [("name", ["ann"]), ("uid", ["601"]),
                                                   ("shell", ["/bin/zsh"])]
            ann = await w.write(ann, [("name", ["ann"]), ("uid", ["602"])])
            with pytest.raises(Exception) as e:
                await r.lookup(users, "uid", "601")
            assert getattr(e.value, "status", None) == Status.NODIR
            users = await w.destroy(await r.self_id(users), ann)
            with pytest.raises(Exception) as e:
                await r.read(ann)
            assert getattr(e.value, "status", None) == Status.BADID
    asyncio.run(go())


def test_precompiled_decoding_agrees_with_the_codecs():
    """fastpath.decode_args gives what protocol.decode_args gives, or None (then the
    normal path answers): random and mutated arguments, strings of every length near the
    padding boundaries, bytes that are not UTF-8, lengths past NAME_MAX."""
    from netinfo.errors import WireError
    from netinfo.server.fastpath import decode_args as fast_decode
    from netinfo.wire.protocol import decode_args

    rnd = random.Random(7)
    seen = 0
    for _ in range(20000):
        proc = rnd.choice(FAST_PROCS)
        info = PROCEDURES[proc]
        nid = NiId(rnd.randrange(1 << 32), rnd.randrange(1 << 32))
        if proc in (Proc.LOOKUP, Proc.LOOKUPREAD):
            key = bytes(rnd.randrange(256) for _ in range(rnd.randrange(9))).decode(
                "utf-8", "surrogateescape")
            args = encode_args(info, nid, key, "v" * rnd.randrange(9))
        elif proc is Proc.READPROP:
            args = encode_args(info, nid, rnd.randrange(1 << 32))
        elif proc is Proc.LIST:
            args = encode_args(info, nid, "name")
        else:
            args = encode_args(info, nid)
        b = bytearray(args)
        for _ in range(rnd.choice((0, 0, 1, 2))):
            r = rnd.random()
            if r < 0.3 and b:
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif r < 0.5 and len(b) > 8:
                b[8:12] = struct.pack(">I", rnd.choice((0x10000, 0xFFFF, 0xFFFFFFFF, 3)))
            elif r < 0.75:
                b += bytes(rnd.randrange(1, 6))
            elif b:
                del b[rnd.randrange(len(b)):]
        record = _call(1, proc, bytes(b))
        mine = fast_decode(proc, record)
        try:
            theirs = decode_args(info, bytes(b))
        except (WireError, ValueError):
            theirs = None
        if mine is not None:
            seen += 1
            assert mine == theirs and type(mine[0]) is type(theirs[0])
        elif proc is not Proc.LIST and theirs is not None:
            # only arguments the codecs refuse are left to the normal path
            pytest.fail(f"{proc.name} {bytes(b).hex()} decodes but not here")
    assert seen > 10000
