"""Resident LOOKUP indexes (storage/keyindex.py, server/indexer.py; issue 23).

A big directory asked again and again for one key gets the store's LOOKUP index of that
key in memory, built off the loop and kept equal to what is durable. Checked here: the
pure index against a brute force (colliding hashes included), the source's use of it
through writes, destroys and duplicates on both engines, and over the wire: a real
netinfod builds one (STATISTICS shows it) and every LOOKUP and LOOKUPREAD answers what
CHILDREN and READ say, through writes.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import Database
from netinfo.server.service import SUPERUSER
from netinfo.storage import cached, keyindex, open_store
from netinfo.storage.cached import BIG_KIDS, INDEX_AFTER, CachedSource, IndexJob
from netinfo.storage.changes import Caller
from netinfo.storage.keyindex import KeyIndex, TooBig
from netinfo.wire.proplist import StoredProplist, decode_proplist, encode_proplist

from .test_scale import brute_lookup, lookup

# -- the index alone -----------------------------------------------------------------------------


def _brute(pairs: dict[int, tuple[bytes, ...]], value: bytes) -> list[int]:
    return sorted(c for c, vals in pairs.items() if value in vals)


def _check(index: KeyIndex, now: dict[int, tuple[bytes, ...]], values: list[bytes]) -> None:
    for v in values:
        want = _brute(now, v)
        got = index.find(v)
        if len(want) > 1:
            assert got is None, v       # two or more: the store orders them
        else:
            assert got == want, v


@pytest.mark.parametrize("colliding", [False, True])
def test_the_index_answers_as_a_brute_force(monkeypatch, colliding):
    if colliding:
        # every value in a few hash buckets: the value itself decides, never the hash
        monkeypatch.setattr(keyindex, "hash", lambda v: len(v) % 3, raising=False)
    rnd = random.Random(7)
    now = {c: (f"v{rnd.randrange(400)}".encode(),) for c in range(2, 1000)}
    now[5] = (b"", b"two")
    now[6] = ("\udcff".encode("utf-8", "surrogateescape"),)
    index = KeyIndex([(v, c) for c, vals in now.items() for v in vals])
    assert index.entries == 1000 - 2 + 1
    probes = [f"v{i}".encode() for i in range(410)] + [b"", b"two", b"none", now[6][0]]
    _check(index, now, probes)
    # changes since the build win over it
    for _ in range(300):
        c = rnd.randrange(2, 1100)
        now[c] = () if rnd.random() < 0.2 else (f"v{rnd.randrange(400)}".encode(),)
        index.set(c, now[c])
        now = {k: v for k, v in now.items() if v}
    _check(index, now, probes)
    assert not index.too_changed()
    for c in range(10_000, 10_000 + keyindex.CHANGED_MIN + 1):
        index.set(c, ())
    assert index.too_changed()


def test_an_index_past_its_bound_is_not_built():
    pairs = ((b"x" * 100, c) for c in range(1000))
    with pytest.raises(TooBig):
        KeyIndex(pairs, max_bytes=10_000)


# -- the source's use of it, on each engine -----------------------------------------------------

USERS = BIG_KIDS + 76


def _build(svc) -> tuple[int, list[int]]:
    u, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER), [("name", ["users"])],
                           NI_INDEX_NULL)
    ids = []
    for i in range(USERS):
        name = "dup" if i in (10, 600) else f"u{i}"
        c, _ = svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, u),
                               [("name", [name]), ("uid", [str(i % 50)])], NI_INDEX_NULL)
        ids.append(c.object)
    return u.object, ids


def _brute_svc(svc, users: int, key: str, value: str) -> list[int]:
    anon = Caller()
    out = []
    for c in svc.proc_children(anon, NiId(users))[0]:
        for name, vals in svc.proc_read(anon, NiId(c))[1]:
            if name == key:
                if value in vals:
                    out.append(c)
                break
    return out


def _lookup_svc(svc, users: int, key: str, value: str) -> list[int]:
    try:
        return list(svc.proc_lookup(Caller(), NiId(users), key, value)[0])
    except Exception:
        return []


def test_the_source_answers_from_its_index_through_writes(store_url):
    with Database(open_store(store_url)) as db:
        svc = db.service_for_tests()
        users, ids = _build(svc)
        db.commit()
        src = svc.source
        if not isinstance(src, CachedSource):
            pytest.skip("an engine that keeps the whole tree in memory has no store index")
        jobs: list[IndexJob] = []
        src.index_runner = jobs.append        # run by hand below
        anon = Caller()
        for i in range(INDEX_AFTER):
            assert _lookup_svc(svc, users, "name", f"u{i + 20}") == [ids[i + 20]]
        assert [(j.oid, j.key) for j in jobs] == [(users, "name")]
        # durable meanwhile: the build's snapshot misses it, the source applies it
        svc.proc_write(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[30])),
                       [("name", ["renamed"])])
        db.commit()
        jobs[0].run()
        jobs[0].install()
        assert jobs[0].error is None and (users, "name") in src.indexes
        index = src.indexes[users, "name"]
        probes = ["u0", "u1", "u30", "renamed", "dup", f"u{USERS - 1}", "none", "new", "u7"]

        def check() -> None:
            for p in probes:
                assert _lookup_svc(svc, users, "name", p) == _brute_svc(svc, users, "name", p), p
                _, hit = src.lookup_first(users, src.get(users), "name", p)
                want = _brute_svc(svc, users, "name", p)
                if not want:
                    assert hit is None
                else:
                    props = svc.proc_read(anon, NiId(want[0]))[1]
                    got = hit if isinstance(hit, StoredProplist) else hit.props
                    assert list(got) == props, p
                # the short path's (fastpath.FastPath._stored): the one child's stored
                # bytes, or None (none, several, pinned or resident: the usual way)
                blob = src.stored_first(users, "name", p.encode())
                if blob is not None:
                    assert len(want) == 1, p
                    assert decode_proplist(blob) == svc.proc_read(anon, NiId(want[0]))[1], p
                # the LDAP door's read (ldap.LdapServer.quick): LOOKUP's children and the
                # first one's node or stored bytes alone; None while children are pinned
                stored = src.lookup_stored(users, "name", p)
                if stored is None:
                    assert src._dirty.get(users)
                    continue
                assert stored[0] == want, p
                if want:
                    row = stored[1]
                    assert row is not None
                    data = row if isinstance(row, bytes) else encode_proplist(row.props)
                    assert decode_proplist(data) == svc.proc_read(anon, NiId(want[0]))[1], p
                else:
                    assert stored[1] is None

        hits = index.hits
        src._cache.clear()                # nothing resident: the stored bytes answer
        assert src.stored_first(users, "name", b"u1") is not None
        check()
        assert index.hits > hits
        # pending (pinned) and then durable: a new user, a rename, a destroy, a duplicate
        svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(users)),
                        [("name", ["new"])], NI_INDEX_NULL)
        svc.proc_write(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[7])),
                       [("name", ["u1"])])
        svc.proc_destroy(SUPERUSER, svc.proc_self(SUPERUSER, NiId(users)),
                         svc.proc_self(SUPERUSER, NiId(ids[0])))
        check()
        db.commit()
        assert src.indexes.get((users, "name")) is index and index.changed
        check()
        # a destroyed directory drops its index
        rows = list(svc.proc_children(anon, NiId(users))[0])
        for c in rows:
            svc.proc_destroy(SUPERUSER, svc.proc_self(SUPERUSER, NiId(users)),
                             svc.proc_self(SUPERUSER, NiId(c)))
        svc.proc_destroy(SUPERUSER, svc.proc_root(SUPERUSER),
                         svc.proc_self(SUPERUSER, NiId(users)))
        db.commit()
        assert not src.indexes


def test_a_copy_swapped_in_stops_a_build(tmp_path):
    with Database(open_store(f"sqlite:{tmp_path / 'd.sqlite'}")) as db:
        svc = db.service_for_tests()
        users, _ = _build(svc)
        db.commit()
        src = svc.source
        jobs: list[IndexJob] = []
        src.index_runner = jobs.append
        for i in range(INDEX_AFTER):
            _lookup_svc(svc, users, "name", f"u{i}")
        src.drop_indexes()         # as Database.adopt does before the swap
        jobs[0].run()              # stops at its first chunk, its snapshot closed
        assert jobs[0].error == "cancelled" and jobs[0].index is None
        jobs[0].install()
        assert not src.indexes


# -- over the wire -------------------------------------------------------------------------------

async def _add_users(c: Client, users: NiId, numbers: range) -> None:
    """Users ``uK`` (``dup`` for 500) under *users*, 200 pipelined CREATEs at a time."""
    for start in range(numbers.start, numbers.stop, 200):
        users = await c.self_id(users)
        await asyncio.gather(*(
            c.create(NiId(users.object, users.instance + i),
                     [("name", ["dup" if k == 500 else f"u{k}"]), ("uid", [str(k)])])
            for i, k in enumerate(range(start, min(numbers.stop, start + 200)))))


async def _built(c: Client, uid: int) -> str:
    """LOOKUPs of /users by name until STATISTICS lists its resident index: the entry."""
    for i in range(INDEX_AFTER + 20):
        assert await lookup(c, uid, "name", f"u{i + 1}") != []
    deadline = time.monotonic() + 30
    while True:
        stats = dict(await c.statistics())
        if "lookup_indexes" in stats:
            (entry,) = stats["lookup_indexes"]
            return entry
        assert time.monotonic() < deadline, "no index built"
        await c.lookup(uid, "name", "u3")
        await asyncio.sleep(0.1)


async def _users_indexed(c: Client) -> tuple[int, str]:
    """/users with USERS users made through *c*, once the server has built its index of
    their names: the directory's number and the index's STATISTICS entry."""
    root = await c.root()
    users, root = await c.create(root, [("name", ["users"])])
    await _add_users(c, users, range(USERS))
    return users.object, await _built(c, users.object)


def test_netinfod_builds_an_index_and_answers_as_before(engine_netinfod):
    d = engine_netinfod("big", "-m")

    async def go() -> None:
        async with await Client.connect("127.0.0.1", d.port, "big") as c:
            uid, entry = await _users_indexed(c)
            assert entry.split()[:3] == [str(uid), "name", str(USERS)]
            probes = ["u0", "u9", "dup", f"u{USERS - 1}", "none", "new", "u1"]

            async def check() -> None:
                for p in probes:
                    want = await brute_lookup(c, uid, "name", p)
                    assert await lookup(c, uid, "name", p) == want, p
                    if want:
                        _, props = await c.lookupread(uid, "name", p)
                        assert props == (await c.read(want[0]))[1]
            await check()
            users = await c.self_id(uid)
            kids, users = await c.children(users)
            await c.create(users, [("name", ["new"])], 3)
            await c.write(await c.self_id(kids[1]), [("name", ["dup"])])
            users = await c.self_id(uid)
            users = (await c.destroy(users, await c.self_id(kids[9])))
            await check()
            stats = dict(await c.statistics())
            (entry,) = stats["lookup_indexes"]
            assert int(entry.split()[4]) > 0     # answered lookups, still resident

    asyncio.run(go())


def test_lookupread_over_tcp_reads_the_stored_bytes_the_index_names(engine_netinfod):
    """A real netinfod with a cache of 16 directories: once the index is built, most
    LOOKUPREADs of random users find a child that is not in memory, whose stored bytes
    the short path sends (``FastPath._stored``) — each answer is the searched
    directory's id and what READ says of the user, through renames, a new holder of a
    name (two holders: the store orders them) and a destroy, each seen by the next
    read (the held read transaction ends at every write)."""
    d = engine_netinfod("big", "-m", "--cache", "16")
    rnd = random.Random(23)

    async def go() -> None:
        async with await Client.connect("127.0.0.1", d.port, "big") as c:
            uid, _ = await _users_indexed(c)

            async def check(names: list[str]) -> None:
                for name in names:
                    want = await brute_lookup(c, uid, "name", name)
                    me = await c.self_id(uid)
                    if not want:
                        with pytest.raises(NiError):
                            await c.lookupread(uid, "name", name)
                        continue
                    got_id, props = await c.lookupread(uid, "name", name)
                    assert got_id == me, name
                    assert props == (await c.read(want[0]))[1], name
            await check([f"u{rnd.randrange(USERS)}" for _ in range(60)] + ["dup", "none"])
            kids, users = await c.children(await c.self_id(uid))
            await c.write(await c.self_id(kids[3]), [("name", ["renamed"])])
            await c.create(users, [("name", ["u7"])], 0)       # a second u7, first
            users = await c.self_id(uid)
            await c.destroy(users, await c.self_id(kids[9]))
            await check(["renamed", "u3", "u7", "u9", *[f"u{rnd.randrange(USERS)}"
                                                        for _ in range(30)]])

    asyncio.run(go())


def test_no_index_without_a_runner(tmp_path):
    # the tools' sources (no runner) never build one, however often they look up
    with Database(open_store(f"sqlite:{tmp_path / 'd.sqlite'}")) as db:
        svc = db.service_for_tests()
        users, _ = _build(svc)
        db.commit()
        for i in range(INDEX_AFTER * 2):
            _lookup_svc(svc, users, "name", f"u{i}")
        assert not svc.source.indexes and cached.INDEX_AFTER == INDEX_AFTER


def test_an_index_changed_past_its_bound_is_dropped_and_built_again(netinfod):
    # more users made than keyindex.CHANGED_MIN (the index holds fewer than four times
    # that): the index goes, LOOKUPs are answered from the store, then it comes back
    d = netinfod("big", "-m")
    more = keyindex.CHANGED_MIN + 1

    async def go() -> None:
        async with await Client.connect("127.0.0.1", d.port, "big") as c:
            users, _ = await c.create(await c.root(), [("name", ["users"])])
            await _add_users(c, users, range(USERS))
            uid = users.object
            assert (await _built(c, uid)).split()[2] == str(USERS)
            await _add_users(c, await c.self_id(uid), range(USERS, USERS + more))
            assert "lookup_indexes" not in dict(await c.statistics())
            for k in (0, USERS - 1, USERS, USERS + more - 1):
                assert await lookup(c, uid, "name", f"u{k}") == await brute_lookup(
                    c, uid, "name", f"u{k}")
            assert (await _built(c, uid)).split()[2] == str(USERS + more)
            assert await lookup(c, uid, "name", f"u{USERS + more - 1}") == await brute_lookup(
                c, uid, "name", f"u{USERS + more - 1}")

    asyncio.run(go())


def test_a_ninth_index_takes_the_place_of_the_least_used(tmp_path):
    # INDEX_MAX indexes in use: one more asked for evicts the least used, never one that
    # answers often
    keys = [f"k{i}" for i in range(cached.INDEX_MAX + 1)]
    with Database(open_store(f"sqlite:{tmp_path / 'd.sqlite'}")) as db:
        svc = db.service_for_tests()
        u, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER), [("name", ["t"])],
                               NI_INDEX_NULL)
        for i in range(20):
            svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, u),
                            [(k, [f"{k}-{i}"]) for k in keys], NI_INDEX_NULL)
        db.commit()
        src = svc.source

        def run(job: IndexJob) -> None:
            job.run()
            job.install()
        src.index_runner = run

        def ask(key: str, times: int) -> None:
            for n in range(times):
                assert _lookup_svc(svc, u.object, key, f"{key}-{n % 20}") != []
        for k in keys[:-1]:
            ask(k, INDEX_AFTER)
        assert sorted(k for _, k in src.indexes) == keys[:-1]
        ask(keys[0], 4 * INDEX_AFTER)          # answered from its index: used
        ask(keys[-1], INDEX_AFTER)
        assert len(src.indexes) == cached.INDEX_MAX
        assert (u.object, keys[-1]) in src.indexes and (u.object, keys[0]) in src.indexes
