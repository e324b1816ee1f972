"""The change history (issue 24) over the real wire: a real netinfod on loopback, its
history program read by ``nihistory`` as a subprocess.

Every write procedure is journalled once with its caller and path; ``--at`` gives back a
directory exactly as it was after any change; a revert of a DESTROY restores the number,
properties, their order and the position; a revert over a later change refuses and
names it; journal rows and their writes survive or vanish together under SIGKILLs;
retention trims by age and size; an anonymous caller reads nothing. Each runs on the
SQLite engine and on the PostgreSQL engine (a scratch cluster, tests/pgcluster.py;
skipped with the reason where PostgreSQL or psycopg is missing); the journal contract
itself also on the memory engine.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import threading
import time

import pytest

from netinfo.client.core import Client
from netinfo.client.history import entries, query
from netinfo.errors import NiError, Status
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.passwords import hash_password
from netinfo.wire.history import NO_DIR, Query, decode_entry, encode_entry
from netinfo.wire.proplist import decode_proplist

from .conftest import ROOT_USER, Netinfod, env_with_src, free_port, needs_privilege_rule

TAG = "hist"


def domain(d: Netinfod) -> str:
    return f"{d.tag}@127.0.0.1:{d.port}"


def run(coro):
    return asyncio.run(coro)


async def connect(d: Netinfod, privileged: bool | None = None) -> Client:
    return await Client.connect("127.0.0.1", d.port, d.tag, privileged=privileged)


async def last_seq(c: Client) -> int:
    page = await query(c, Query(limit=1))
    return page.entries[0].seq if page.entries else 0


def history(run_tool, d: Netinfod, *args: str, env=None):
    r = run_tool("nihistory", domain(d), *args, env=env)
    return r


def history_json(run_tool, d: Netinfod, *args: str):
    r = history(run_tool, d, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Engine:
    """The engine under test: netinfod's flags for a domain of its own (:meth:`flags`),
    on SQLite (its file in the test's directory) or in the suite's scratch PostgreSQL
    cluster (tests/pgcluster.py: skipped, with the reason, where there is none), and the
    rows of a table of the domain netinfod last served, read straight from the store."""

    def __init__(self, name: str, directory, cluster=None) -> None:
        self.name, self.directory, self.cluster = name, directory, cluster
        self.url: str | None = None
        self.tag = ""

    def flags(self, tag: str = TAG) -> tuple[str, ...]:
        self.tag = tag
        if self.cluster is None:
            return ()
        self.url = self.cluster.url()
        return ("--store", self.url)

    def __call__(self) -> tuple[str, ...]:
        return self.flags()

    def rows(self, *queries: str) -> list[list[tuple]]:
        """The rows of each of *queries*, all read in one transaction (one snapshot)."""
        if self.cluster is None:
            c = sqlite3.connect(self.directory / f"{self.tag}.nidb" / "netinfo.sqlite")
            try:
                c.execute("BEGIN")
                return [c.execute(sql).fetchall() for sql in queries]
            finally:
                c.close()
        import psycopg

        from netinfo.storage.postgres import SCHEMA_PREFIX, split_url
        assert self.url is not None
        with psycopg.connect(self.cluster.conninfo(), autocommit=True) as c:
            c.execute(f'SET search_path TO "{SCHEMA_PREFIX}{split_url(self.url)[1]}"')
            c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            return [[tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                     for r in c.execute(sql).fetchall()] for sql in queries]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """Each engine in turn (:class:`Engine`)."""
    if request.param == "sqlite":
        return Engine("sqlite", tmp_path)
    return Engine("postgresql", tmp_path, request.getfixturevalue("pg_cluster"))


@pytest.fixture
def master(netinfod, engine):
    return netinfod(TAG, "-m", "--populate", *engine())


# -- every write procedure, once, with its caller and path ---------------------------------------

def test_every_write_procedure_is_journalled_once_with_caller_and_path(master, run_tool):
    async def writes() -> tuple[int, int]:
        c = await connect(master)
        try:
            start = await last_seq(c)
            users = await c.pathsearch("/users")
            bob, _ = await c.create(await c.self_id(users), [("name", ["bob"])])
            bob = await c.write(bob, [("name", ["bob"]), ("uid", ["501"])])
            bob = await c.createprop(bob, "shell", ["/bin/sh"], NI_INDEX_NULL)
            bob = await c.writeprop(bob, 2, ["/bin/zsh"])
            bob = await c.renameprop(bob, 2, "loginshell")
            bob = await c.createname(bob, 2, "/bin/ksh", NI_INDEX_NULL)
            bob = await c.writename(bob, 2, 1, "/bin/csh")
            bob = await c.destroyname(bob, 2, 1)
            bob = await c.destroyprop(bob, 2)
            await c.destroy(await c.self_id(users), bob)
            return start, bob.object
        finally:
            await c.close()
    start, bob = run(writes())
    got = history_json(run_tool, master, "--since", f"#{start}")
    got.reverse()   # oldest first
    assert [e["procedure"] for e in got] == [
        "CREATE", "WRITE", "CREATEPROP", "WRITEPROP", "RENAMEPROP", "CREATENAME",
        "WRITENAME", "DESTROYNAME", "DESTROYPROP", "DESTROY"]
    assert [e["seq"] for e in got] == list(range(start + 1, start + 11))
    for e in got:
        assert e["path"] == "/users/bob"
        assert e["dir"] == bob
        assert e["address"] == "127.0.0.1"
        assert e["user"] == "root" and e["superuser"]
    # the list, one line each: seq, time, who, procedure, path
    lines = history(run_tool, master, "/users/bob").stdout.splitlines()
    assert len(lines) == 10
    seq, _, who, proc, path = lines[0].split("\t")
    assert (seq, who, proc, path) == (str(start + 10), "root@127.0.0.1", "DESTROY",
                                      "/users/bob")


@needs_privilege_rule
def test_an_authenticated_users_write_carries_its_name(master, run_tool):
    async def main() -> int:
        c = await connect(master)
        try:
            users = await c.pathsearch("/users")
            await c.create(await c.self_id(users), [
                ("name", ["alice"]), ("uid", ["1201"]),
                ("passwd", [hash_password("secret")])])
            root = await c.self_id(0)
            await c.create(root, [("name", ["alicedir"]), ("_writers", ["alice"])])
            start = await last_seq(c)
        finally:
            await c.close()
        a = await connect(master, privileged=False)
        try:
            a.set_password("secret", 1201)
            d = await a.pathsearch("/alicedir")
            await a.createprop(await a.self_id(d), "color", ["blue"], NI_INDEX_NULL)
        finally:
            await a.close()
        return start
    start = run(main())
    got = history_json(run_tool, master, "--since", f"#{start}")
    assert len(got) == 1
    assert got[0]["procedure"] == "CREATEPROP" and got[0]["path"] == "/alicedir"
    assert got[0]["user"] == "alice" and not got[0]["superuser"]
    assert history_json(run_tool, master, "--user", "alice")[0]["seq"] == got[0]["seq"]


# -- --at ---------------------------------------------------------------------------------------

def test_at_gives_back_a_directory_exactly_as_it_was_after_every_change(master, run_tool):
    """After each write the directory and its children are read over NETINFO; ``--at
    #SEQ`` must give the same proplists (names, values, order) and child lists."""
    seen: dict[int, dict] = {}

    async def snapshot(c: Client, seq: int, path: str) -> None:
        d = await c.pathsearch(path)
        _, props = await c.read(d)
        kids = (await c.children(d))[0]
        kid_props = [list((await c.read(k))[1]) for k in kids]
        seen[seq] = {"props": [[k, list(v)] for k, v in props], "kids": list(kids),
                     "kid_props": [[[k, list(v)] for k, v in p] for p in kid_props]}

    async def main() -> None:
        c = await connect(master)
        try:
            users = await c.pathsearch("/users")
            await c.create(await c.self_id(users), [("name", ["dora"]), ("uid", ["77"])])
            await snapshot(c, await last_seq(c), "/users/dora")
            dora = await c.pathsearch("/users/dora")
            rnd = random.Random(24)
            made: list[int] = []
            for i in range(10):
                d = await c.self_id(dora)
                step = rnd.choice(["prop", "kid", "drop", "order", "value"])
                if step == "prop":
                    await c.createprop(d, f"p{i}", [f"v{i}", "x"], rnd.randint(0, 3))
                elif step == "kid" or (step == "drop" and not made):
                    kid, _ = await c.create(d, [("name", [f"k{i}"]), ("n", [str(i)])],
                                            rnd.randint(0, len(made)))
                    made.append(kid.object)
                elif step == "drop":
                    k = made.pop(rnd.randrange(len(made)))
                    await c.destroy(d, await c.self_id(k))
                elif step == "order":
                    _, props = await c.read(d)
                    await c.write(d, list(reversed(props)))
                else:
                    await c.createname(d, 0, f"alias{i}", NI_INDEX_NULL)
                await snapshot(c, await last_seq(c), "/users/dora")
        finally:
            await c.close()
    run(main())
    for seq, want in seen.items():
        got = history_json(run_tool, master, "--at", f"#{seq}", "/users/dora", "-r")
        top = got[0]
        assert [[p["name"], p["values"]] for p in top["properties"]] == want["props"], seq
        assert top["children"] == want["kids"], seq
        assert [[[p["name"], p["values"]] for p in k["properties"]] for k in got[1:]] \
            == want["kid_props"], seq
    # the plain form: one "name: values" line per property, in order
    seq = max(seen)
    r = history(run_tool, master, "--at", f"#{seq}", "/users/dora")
    assert r.stdout.splitlines() == [f"{k}: {' '.join(v)}".rstrip()
                                     for k, v in seen[seq]["props"]]


# -- revert -------------------------------------------------------------------------------------

def test_revert_of_a_destroy_restores_number_properties_order_and_position(master, run_tool):
    props = [("uid", ["900"]), ("name", ["carol"]), ("shell", ["/bin/sh", "/bin/zsh"]),
             ("home", ["/home/carol"])]

    async def before() -> tuple[int, list[int], int]:
        c = await connect(master)
        try:
            users = await c.pathsearch("/users")
            for n in ("c1", "c2"):
                await c.create(await c.self_id(users), [("name", [n])])
            carol, _ = await c.create(await c.self_id(users), props, 1)
            kids = (await c.children(users))[0]
            await c.destroy(await c.self_id(users), carol)
            return carol.object, kids, await last_seq(c)
        finally:
            await c.close()
    carol, kids, seq = run(before())
    r = history(run_tool, master, "--revert", str(seq))
    assert r.returncode == 0, r.stderr

    async def after():
        c = await connect(master)
        try:
            users = await c.pathsearch("/users")
            nid, got = await c.read(carol)
            return nid, list(got), (await c.children(users))[0], await last_seq(c)
        finally:
            await c.close()
    nid, got, kids_now, last = run(after())
    assert nid.object == carol
    assert got == [(k, list(v)) for k, v in props]
    assert kids_now == kids
    # the revert is itself a write in the journal: a CREATE of the old number
    e = history_json(run_tool, master, "--show", str(last))
    assert e["procedure"] == "CREATE" and e["dir"] == carol


def test_a_revert_over_a_later_change_refuses_and_names_it(master, run_tool):
    async def main() -> tuple[int, int, int]:
        c = await connect(master)
        try:
            users = await c.pathsearch("/users")
            ed, _ = await c.create(await c.self_id(users), [("name", ["ed"])])
            ed = await c.createprop(ed, "uid", ["5"], NI_INDEX_NULL)
            first = await last_seq(c)
            await c.writeprop(ed, 1, ["6"])
            return ed.object, first, await last_seq(c)
        finally:
            await c.close()
    ed, first, later = run(main())
    r = history(run_tool, master, "--revert", str(first))
    assert r.returncode == 1
    assert f"change {later} " in r.stderr and "nothing was reverted" in r.stderr

    async def props():
        c = await connect(master)
        try:
            return list((await c.read(ed))[1])
        finally:
            await c.close()
    assert props_now(run(props())) == [("name", ["ed"]), ("uid", ["6"])]
    r = history(run_tool, master, "--revert", str(first), "--force")
    assert r.returncode == 0, r.stderr
    assert props_now(run(props())) == [("name", ["ed"])]


def props_now(props):
    return [(k, list(v)) for k, v in props]


def test_revert_after_a_time_puts_a_subtree_back(master, run_tool):
    async def main():
        c = await connect(master)
        try:
            root = await c.self_id(0)
            top, _ = await c.create(root, [("name", ["proj"]), ("owner", ["x"])])
            for n in ("a", "b", "c"):
                await c.create(await c.self_id(top), [("name", [n]), ("v", [n * 2])])
            mark = await last_seq(c)
            snap = await tree(c, top.object)
            p = await c.self_id(top)
            await c.writeprop(p, 1, ["y"])
            for k in (await c.children(top))[0]:
                await c.destroy(await c.self_id(top), await c.self_id(k))
            await c.destroy(await c.self_id(0), await c.self_id(top))
            return top.object, mark, snap
        finally:
            await c.close()

    async def tree(c, oid):
        _, props = await c.read(oid)
        kids = (await c.children(oid))[0]
        return (props_now(props), [await tree(c, k) for k in kids], list(kids))
    top, mark, snap = run(main())
    r = history(run_tool, master, "--revert-after", f"#{mark}")
    assert r.returncode == 0, r.stderr

    async def now():
        c = await connect(master)
        try:
            return await tree(c, top)
        finally:
            await c.close()
    assert run(now()) == snap


# -- who may read -------------------------------------------------------------------------------

@needs_privilege_rule
def test_anonymous_callers_read_nothing_and_users_read_what_they_may_write(master, run_tool):
    async def main():
        c = await connect(master)
        try:
            users = await c.pathsearch("/users")
            await c.create(await c.self_id(users), [
                ("name", ["fay"]), ("uid", ["1301"]), ("passwd", [hash_password("pw")])])
            root = await c.self_id(0)
            await c.create(root, [("name", ["faydir"]), ("_writers", ["fay"])])
            await c.create(await c.self_id(0), [("name", ["other"])])
        finally:
            await c.close()
        anon = await connect(master, privileged=False)
        try:
            with pytest.raises(NiError) as e:
                await query(anon, Query())
            assert e.value.status == Status.PERM
            anon.set_password("pw", 1301)
            seen = [e async for e in entries(anon, Query())]
        finally:
            await anon.close()
        return seen
    seen = run(main())
    # fay's own directory, and those anyone may write (the template's /printers: "*"),
    # never the others
    paths = {e.path for e in seen}
    assert "/faydir" in paths and not paths & {"/other", "/users/fay", "/users"}
    assert all(any("*" in dict(s.props).get("_writers", []) or "fay" in dict(s.props).get(
        "_writers", []) for t in e.touched for s in (t.before, t.after) if s) for e in seen)
    env = env_with_src() | {"NETINFO_PRIVILEGED": "0"}
    r = run_tool("nihistory", domain(master), env=env)
    assert r.returncode == 104 and r.stdout == "" and "permission denied" in r.stderr


# -- retention ----------------------------------------------------------------------------------

def test_retention_trims_by_size_and_by_age(netinfod, engine):
    small = netinfod("small", "-m", "--history-max-mb", "0.004", *engine())
    brief = netinfod("brief", "-m", "--history-days", str(3 / 86400), *engine())

    async def writes(d: Netinfod, n: int, tag: str) -> None:
        c = await connect(d)
        try:
            for i in range(n):
                await c.create(await c.self_id(0), [("name", [f"{tag}{i}"]),
                                                    ("pad", ["x" * 200])])
        finally:
            await c.close()

    async def kept(d: Netinfod) -> list:
        c = await connect(d)
        try:
            return [e async for e in entries(c, Query(oldest_first=True))]
        finally:
            await c.close()
    run(writes(small, 60, "s"))
    got = run(kept(small))
    total = sum(len(encode_entry(e)) for e in got)
    assert got[0].seq > 1 and got[-1].path == "/s59"
    assert 4 <= len(got) < 60 and total <= 0.004 * 1024 * 1024
    run(writes(brief, 5, "old"))
    assert len(run(kept(brief))) >= 5
    time.sleep(3.5)
    t0 = time.monotonic()
    run(writes(brief, 1, "new"))
    assert time.monotonic() - t0 < 5   # the trim never stalls a write
    got = run(kept(brief))
    assert [e.path for e in got] == ["/new0"]


# -- crash safety -------------------------------------------------------------------------------

KILLS = 20


@pytest.mark.slow
def test_journal_rows_and_their_writes_survive_or_vanish_together(tmp_path, engine):
    """SIGKILL netinfod 20 times while a writer keeps pipelined writes in flight; after
    each kill and at the end, the store's journal is exactly its writes (SQLite: the
    file; PostgreSQL: the domain's schema, the killed writer's session ended by the
    server): entries 1..change_seq with no gap, and every directory's last journalled
    after-state is its stored state (instance and proplist), every destroyed one's last
    entry a DESTROY."""
    flags = ("-m",) if ROOT_USER else ("-m", "--trust-local")
    port = free_port()
    d = Netinfod(tmp_path, "crash", *flags, *engine.flags("crash"), port=port).start()
    stop = threading.Event()

    def writer() -> None:
        async def main() -> None:
            rnd = random.Random(7)
            while not stop.is_set():
                try:
                    c = await Client.connect("127.0.0.1", port, "crash", timeout=2)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                try:
                    while not stop.is_set():
                        root = await c.self_id(0)
                        kids = (await c.children(0))[0]
                        # every id asked first: a coroutine is made only to be awaited
                        # (the server's SIGKILL fails a self_id, never a made call)
                        gone = (await c.self_id(rnd.choice(kids))
                                if kids and rnd.random() < 0.3 else None)
                        prop = (await c.self_id(rnd.choice(kids))
                                if kids and rnd.random() < 0.7 else None)
                        if gone is not None:
                            calls = [c.destroy(root, gone)]
                        else:
                            calls = [c.create(root, [("name", [f"n{rnd.random()}"])])]
                        if prop is not None:
                            calls.append(c.createprop(prop, "p", ["v" * rnd.randint(1, 50)],
                                                      NI_INDEX_NULL))
                        await asyncio.gather(*calls, return_exceptions=True)
                except Exception:
                    pass
                finally:
                    await c.close()
        asyncio.run(main())

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    rnd = random.Random(24)
    try:
        for _ in range(KILLS):
            time.sleep(rnd.uniform(0.1, 0.5))
            d.stop(signal.SIGKILL)
            check_journal(engine)
            d.start()
    finally:
        stop.set()
        t.join(30)
        d.stop(signal.SIGKILL)
    n = check_journal(engine)
    assert n > KILLS   # writes were made between the kills
    assert (tmp_path / "crash.nidb").exists() == (engine.name == "sqlite")


def check_journal(engine: Engine) -> int:
    """The invariant above on the store *engine* last served; the number of entries."""
    # PostgreSQL: the killed writer's session may outlive it by a moment (the server
    # sees the socket close); its open transaction, if any, is never committed
    history, top, dirs = engine.rows("SELECT seq, entry FROM history ORDER BY seq",
                                     "SELECT value FROM meta WHERE key = 'change_seq'",
                                     "SELECT id, instance, props FROM dirs")
    seqs = [r[0] for r in history]
    assert seqs == list(range(1, (top[0][0] if top else 0) + 1))
    last: dict[int, object] = {}
    for _, blob in history:
        e = decode_entry(blob)
        for t in e.touched:
            last[t.id] = t.after
    stored = {oid: (inst, decode_proplist(props)) for oid, inst, props in dirs}
    for oid, after in last.items():
        if after is None:
            assert oid not in stored, oid
        else:
            assert stored[oid][0] == after.instance, oid
            assert list(stored[oid][1]) == list(after.props), oid
    return len(seqs)


def test_the_journal_answers_by_directory_and_path(master):
    async def main():
        c = await connect(master)
        try:
            users = await c.pathsearch("/users")
            g, _ = await c.create(await c.self_id(users), [("name", ["gus"])])
            await c.createprop(g, "uid", ["8"], NI_INDEX_NULL)
            by_dir = [e async for e in entries(c, Query(dir=g.object))]
            by_path = [e async for e in entries(c, Query(path="/users/gus"))]
            every = [e async for e in entries(c, Query(dir=NO_DIR))]
            return by_dir, by_path, every, g
        finally:
            await c.close()
    by_dir, by_path, every, g = run(main())
    assert [e.seq for e in by_dir] == [e.seq for e in by_path]
    assert len(by_dir) == 2 and by_dir[0].dir == g.object
    assert len(every) > 2 and [e.seq for e in every] == sorted(
        (e.seq for e in every), reverse=True)


def test_nihistory_refuses_bad_arguments(run_tool):
    r = run_tool("nihistory", ".", "--at", "yesterday-ish", "/x")
    assert r.returncode == 1 and "not a time" in r.stderr
    r = run_tool("nihistory", ".", "--show", "1", "--revert", "2")
    assert r.returncode == 1


__all__ = ["NiId"]


# -- the journal of each engine, under the owner (memory, SQLite, PostgreSQL) -----------------

def test_each_engine_keeps_pages_and_trims_the_same_journal(store_url):
    """The store contract's journal (storage/journal.py, storage/sql_journal.py) on every
    engine of conftest's STORE_LOCATIONS: one entry per write with its path, pages by
    cursor in both orders past a read chunk (sql_journal.CHUNK), filters, kept across a
    reopen, a copied entry kept as it came, trims by size and by age."""
    from netinfo.server.database import Database
    from netinfo.server.service import SUPERUSER
    from netinfo.storage import open_store
    from netinfo.storage.sql_journal import CHUNK
    from netinfo.wire.protocol import Proc

    n = CHUNK + 44
    db = Database(open_store(store_url))
    journal = db.store.journal
    assert journal is not None
    root = db.call(Proc.ROOT, SUPERUSER, ())
    made, ids = 0, []
    while made < n:
        for _ in range(10):
            new, root = db.call(Proc.CREATE, SUPERUSER,
                                (root, [("name", [f"d{made}"]), ("v", ["x" * made])],
                                 NI_INDEX_NULL, None))
            ids.append(new)
            made += 1
        db.commit()
    d7 = ids[7]
    d7 = db.call(Proc.CREATEPROP, SUPERUSER, (db.call(Proc.SELF, SUPERUSER, (d7,)),
                                              ("uid", ["7"]), NI_INDEX_NULL))
    db.commit()
    assert journal.last_seq() == n + 1 and journal.size()[0] == n + 1

    def every(q: Query) -> list:
        got, cursor = [], 0
        while True:
            page, blobs = journal.query(q._replace(cursor=cursor))
            assert [encode_entry(e) for e in page.entries] == blobs
            got += page.entries
            if not page.more:
                return got
            cursor = page.cursor
    newest = every(Query(limit=100))
    assert [e.seq for e in newest] == list(range(n + 1, 0, -1))
    assert newest[0].path == "/d7" and newest[-1].path == "/d0"
    oldest = every(Query(oldest_first=True, limit=33))
    assert oldest == newest[::-1]
    assert [e.seq for e in every(Query(dir=d7.object))] == [n + 1, 8]
    assert [e.seq for e in every(Query(path="/d7"))] == [n + 1, 8]
    assert [e.seq for e in every(Query(min_seq=5, max_seq=9, oldest_first=True))] == [
        5, 6, 7, 8, 9]
    assert every(Query(user="nobody-here")) == []
    db.close()
    # kept with the domain (the memory engine: for the process)
    db = Database(open_store(store_url))
    journal = db.store.journal
    assert journal is not None and journal.last_seq() == n + 1
    assert journal.stored(8) == encode_entry(newest[-8])
    # a clone's copy of another journal: kept as it came, past the last only
    journal.insert([newest[0]._replace(seq=n + 2), newest[1]])
    assert journal.last_seq() == n + 2 and journal.stored(n + 2) == encode_entry(
        newest[0]._replace(seq=n + 2))
    # by size: the oldest go until the rest fit, a bounded number at a time
    count, nbytes = journal.size()
    assert count == n + 2 and nbytes == sum(len(encode_entry(e)) for e in newest) + len(
        encode_entry(newest[0]))
    journal.configure(None, nbytes / 2 / 1024 / 1024)
    assert journal.trim_now(10) == 10
    while journal.trim_now(64):
        pass
    count, left = journal.size()
    assert left <= nbytes / 2 and count < n
    kept = every(Query(oldest_first=True, limit=1000))
    assert [e.seq for e in kept] == list(range(n + 3 - count, n + 3))
    # by age: everything is older than a day from now on
    later = time.time() + 2 * 86400
    journal.clock = lambda: later
    journal.configure(1, None)
    while journal.trim_now(100):
        pass
    assert journal.size() == (0, 0) and journal.last_seq() == 0
    db.close()


def test_names_that_are_not_utf8_are_journalled_and_kept_as_they_are(master, run_tool):
    """A NeXT domain's ISO 8859-1 names are bytes that are not UTF-8: writing one is
    journalled (its path with ``\\xNN`` for those bytes: the stores' text columns take
    only Unicode) and the directory keeps its bytes exactly. Each engine refused the
    commit before (NI_NOSPACE), so such a domain could not be loaded with history on."""
    latin = b"M\xfcller".decode("utf-8", "surrogateescape")

    async def writes() -> tuple[int, int, list]:
        c = await connect(master)
        try:
            start = await last_seq(c)
            users = await c.pathsearch("/users")
            made, _ = await c.create(await c.self_id(users),
                                     [("name", [latin]), ("realname", [latin + " x"])])
            made = await c.write(made, [("name", [latin]), ("uid", ["601"])])
            _, props = await c.read(made)
            return start, made.object, props
        finally:
            await c.close()
    start, made, props = run(writes())
    assert props == [("name", [latin]), ("uid", ["601"])]
    got = history_json(run_tool, master, "--since", f"#{start}")
    assert [(e["procedure"], e["path"], e["dir"]) for e in reversed(got)] == [
        ("CREATE", "/users/M\\xfcller", made), ("WRITE", "/users/M\\xfcller", made)]
