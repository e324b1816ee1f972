"""The domain owner: Database commits, reports changes, notifies subscribers, replaces the
whole tree atomically, and keeps a second writer out (issue "one owner per domain").

The contract runs on both engines; a failing commit is provoked for real on SQLite (a
value longer than a NetInfo name) and through a store whose commit fails on the memory
engine. The lock is checked across real processes: netinfod, nicl -raw, nibindd --init.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from netinfo.client.core import SyncClient
from netinfo.errors import NiError, Status, StorageError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import (
    Change,
    Database,
    DatabaseInUse,
    LocalChannel,
    open_database,
)
from netinfo.server.service import SUPERUSER, DirectoryService
from netinfo.storage import Image, Record, Store, open_store
from netinfo.storage.changes import SEQ_KEY, Caller
from netinfo.storage.sqlite import SqliteStore
from netinfo.wire.protocol import PROCEDURES, RESULT_KINDS, Kind, Proc

from .conftest import SRC, env_with_src

ALICE = Caller("127.0.0.5", 4000, user="alice")


class FlakyStore(Store):
    """An engine store whose next commit can be made to fail (nothing applied)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.scheme = inner.scheme
        self.fail_next = False

    def load(self) -> Image:
        return self.inner.load()

    def commit(self, ops, checksum, changes=()) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StorageError("disk full (test)")
        self.inner.commit(ops, checksum, changes)

    def exists(self) -> bool:
        return self.inner.exists()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def url(store_url) -> str:
    """A new domain of each engine under test (conftest: ``NETINFO_TEST_STORES``)."""
    return store_url


@pytest.fixture
def db(url):
    d = Database(FlakyStore(open_store(url)))
    yield d
    d.close()


def root(db: Database) -> NiId:
    return db.call(Proc.ROOT, SUPERUSER, ())


def create(db: Database, parent: NiId, name: str, caller: Caller = SUPERUSER) -> NiId:
    child, _ = db.call(Proc.CREATE, caller, (parent, [("name", [name])], NI_INDEX_NULL, None))
    return child


def durable(db: Database, url: str) -> Image:
    """What is on disk now: the store opened again (SQLite: a new connection; a named
    memory store: the engine's image); without the change sequence number (kept by the
    database, not the service's image: test_changes.py checks it)."""
    if url == "memory:":        # an anonymous memory store cannot be opened again
        image = db.store.load()
    else:
        s = open_store(url)
        try:
            image = s.load()
        finally:
            s.close()
    image.meta.pop(SEQ_KEY, None)
    return image


# -- the tables ---------------------------------------------------------------------------------

def test_every_procedure_row_names_a_service_method():
    for proc, row in PROCEDURES.items():
        assert callable(getattr(DirectoryService, row.method, None)), (proc, row.method)
    assert set(RESULT_KINDS) == set(Kind)


def test_handlers_are_bound_once(db):
    h = db._handlers
    assert set(h) == set(PROCEDURES)
    assert all(getattr(fn, "__self__", None) is db.service_for_tests() for fn in h.values())


# -- changes ------------------------------------------------------------------------------------

def test_changes_come_out_once_in_order_with_their_facts(db):
    r = root(db)
    child, parent_after = db.call(Proc.CREATE, SUPERUSER,
                                  (r, [("name", ["users"])], NI_INDEX_NULL, None))
    assert parent_after.instance == r.instance + 1
    w = db.call(Proc.CREATEPROP, SUPERUSER, (child, ("uid", ["7"]), NI_INDEX_NULL))
    db.call(Proc.READ, SUPERUSER, (child,))                      # reads are no changes
    with pytest.raises(NiError):                                  # a failed write neither
        db.call(Proc.WRITEPROP, SUPERUSER, (child, 9, ["x"]))
    changes = db.commit()
    assert [c.proc for c in changes] == [Proc.CREATE, Proc.CREATEPROP]
    first, second = changes
    assert first.args == (r, [("name", ["users"])], NI_INDEX_NULL, None)  # as sent
    assert first.result == (child, parent_after)
    assert first.instance == parent_after.instance                # the parent's, after
    assert first.caller.superuser
    assert second.args[0] == child                                # pre-write instance
    assert second.result == w and second.instance == w.instance == child.instance + 1
    assert db.commit() == []                                      # once


def test_change_names_the_authenticated_caller(db):
    r = root(db)
    d = create(db, r, "printers")
    d = db.call(Proc.CREATEPROP, SUPERUSER, (d, ("_writers", ["*"]), NI_INDEX_NULL))
    db.commit()
    create(db, d, "lp", caller=ALICE)
    (c,) = db.commit()
    assert (c.caller.user, c.caller.addr, c.caller.port, c.caller.superuser) == \
        ("alice", "127.0.0.5", 4000, False)


def test_subscribers_hear_each_batch_after_it_is_on_disk(db, url):
    heard: list[tuple[list[Change], Image]] = []
    db.subscribe(lambda changes: heard.append((changes, durable(db, url))))
    a = create(db, root(db), "a")
    first = db.commit()
    create(db, root(db), "b")
    create(db, a, "c")
    second = db.commit()
    db.commit()                                       # nothing pending: nobody is told
    assert [h[0] for h in heard] == [first, second]
    # each time, the disk already held what the batch did
    assert {rec.props[0][1][0] for rec in heard[0][1].records.values() if rec.props} == {"a"}
    assert {rec.props[0][1][0] for rec in heard[1][1].records.values() if rec.props} == \
        {"a", "b", "c"}
    assert heard[1][1].checksum == db.checksum


def test_a_failing_subscriber_does_not_undo_the_commit(db):
    told = []
    db.subscribe(lambda changes: 1 / 0)
    unsubscribe = db.subscribe(told.append)
    create(db, root(db), "a")
    assert len(db.commit()) == 1 and len(told) == 1
    unsubscribe()
    create(db, root(db), "b")
    db.commit()
    assert len(told) == 1


def test_a_failed_commit_rolls_back_and_reports_nothing(db, url):
    told = []
    db.subscribe(told.append)
    create(db, root(db), "kept")
    db.commit()
    before = db.service_for_tests().image()
    create(db, root(db), "lost")
    db.store.fail_next = True
    with pytest.raises(StorageError):
        db.commit()
    assert db.service_for_tests().image() == before == durable(db, url)
    assert not db.dirty and db.commit() == []
    assert len(told) == 1
    # and the database goes on working
    create(db, root(db), "after")
    assert [c.proc for c in db.commit()] == [Proc.CREATE]


def test_a_real_storage_failure_on_sqlite(tmp_path):
    """A value longer than a NetInfo name passes the service but not the engine."""
    d = Database(open_store(f"sqlite:{tmp_path / 'x.sqlite'}"))
    child = create(d, root(d), "a")
    d.commit()
    before = d.service_for_tests().image()
    told = []
    d.subscribe(told.append)
    d.call(Proc.CREATEPROP, SUPERUSER, (child, ("big", ["x" * 70000]), NI_INDEX_NULL))
    with pytest.raises(StorageError):
        d.commit()
    assert d.service_for_tests().image() == before and told == []
    d.close()


def test_replace_swaps_the_whole_tree(db, url):
    create(db, create(db, root(db), "old"), "deep")
    db.commit()
    told = []
    db.subscribe(told.append)
    new = Image(records={0: Record(4, 0, [("master", ["h/t"])]),
                         1: Record(2, 0, [("name", ["fresh"])])},
                children={0: [1]})
    (c,) = db.replace(new)
    assert db.checksum == (0 + 1) * 4 + (1 + 1) * 2             # spec §5.6
    assert c.proc is None and c.args == () and c.result == db.checksum
    assert told == [[c]]
    img = durable(db, url)
    assert set(img.records) == {0, 1} and img.children == {0: [1]}
    assert img.checksum == db.checksum


REPLACER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {src!r})
    from netinfo.server.database import Database
    from netinfo.storage import Image, Record, open_store

    def tree(n, tag):
        recs = {{0: Record(1, 0, [("name", [tag])])}}
        for i in range(1, n):
            recs[i] = Record(1, 0, [("name", [f"{{tag}}{{i}}"])])
        return Image(records=recs, children={{0: list(range(1, n))}})

    db = Database(open_store({url!r}))
    a, b = tree(3000, "A"), tree(1000, "B")
    print("ready", flush=True)
    n = 0
    while True:
        db.replace(a if n % 2 else b)
        n += 1
""")


@pytest.mark.slow
def test_replace_is_atomic_under_sigkill(tmp_path):
    path = tmp_path / "r.sqlite"
    url = f"sqlite:{path}"
    rng = random.Random(7)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", REPLACER.format(src=str(SRC), url=url)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        s = SqliteStore(str(path))
        img = s.load()
        s.close()
        if not img.records:
            continue  # killed before the first replace committed
        tag = img.records[0].props[0][1][0]
        n = {"A": 3000, "B": 1000}[tag]
        assert len(img.records) == n and img.children[0] == list(range(1, n))
        assert all(r.props[0][1][0] == f"{tag}{i}" for i, r in img.records.items() if i)
        assert DirectoryService(img).checksum == img.checksum


# -- rollback: a failed commit takes the batch back in memory, exactly ------------------------

WRITE_KINDS = ["create", "create", "destroy", "createprop", "writeprop", "destroyprop",
               "renameprop", "createname", "destroyname", "writename", "write"]


def random_writes(db: Database, rng: random.Random, n: int) -> list[str]:
    """*n* random writes (every write procedure), each valid for the current tree."""
    done = []
    for _ in range(n):
        svc = db.service_for_tests()
        ids = [d.id for d in svc.iter_preorder()]
        kind = rng.choice(WRITE_KINDS)
        target = rng.choice(ids)
        cur = svc.directory(target.object)
        props = cur.props
        try:
            if kind == "create":
                db.call(Proc.CREATE, SUPERUSER, (target, [("name", [f"n{rng.randrange(99)}"])],
                                                 rng.choice([0, 1, NI_INDEX_NULL]), None))
            elif kind == "destroy":
                leaves = [i for i in ids if i.object and not svc.directory(i.object).children]
                if not leaves:
                    continue
                leaf = rng.choice(leaves)
                parent = svc.directory(svc.directory(leaf.object).parent).id
                db.call(Proc.DESTROY, SUPERUSER, (parent, leaf))
            elif kind == "createprop":
                db.call(Proc.CREATEPROP, SUPERUSER, (target, (f"p{rng.randrange(9)}", ["v"]),
                                                     NI_INDEX_NULL))
            elif kind == "write":
                db.call(Proc.WRITE, SUPERUSER, (target, [("name", ["w"]), ("x", ["1", "2"])]))
            elif not props:
                continue
            else:
                idx = rng.randrange(len(props))
                vals = props[idx][1]
                if kind == "writeprop":
                    db.call(Proc.WRITEPROP, SUPERUSER, (target, idx, ["a", "b"]))
                elif kind == "destroyprop":
                    db.call(Proc.DESTROYPROP, SUPERUSER, (target, idx))
                elif kind == "renameprop":
                    db.call(Proc.RENAMEPROP, SUPERUSER, (target, idx, "name"))
                elif kind == "createname":
                    db.call(Proc.CREATENAME, SUPERUSER, (target, idx, "c", 0))
                elif not vals:
                    continue
                elif kind == "destroyname":
                    db.call(Proc.DESTROYNAME, SUPERUSER, (target, idx, 0))
                else:
                    db.call(Proc.WRITENAME, SUPERUSER, (target, idx, 0, "z"))
            done.append(kind)
        except NiError:
            continue
    return done


@pytest.mark.parametrize("seed", range(12))
def test_rollback_restores_exactly_what_the_store_holds(seed):
    rng = random.Random(seed)
    db = Database(FlakyStore(open_store("memory:")))
    for _ in range(3):                      # some committed history first, with LOOKUPs
        random_writes(db, rng, 40)
        db.commit()
    # big enough directories for the LOOKUP index to exist during the failed batch
    for k in range(40):
        create(db, root(db), f"n{k}")
    db.commit()
    try:
        db.call(Proc.LOOKUP, SUPERUSER, (NiId(0), "name", "n3"))
    except NiError:
        pass
    before = db.service_for_tests().image()
    done = random_writes(db, rng, 60)
    assert done
    db.store.fail_next = True
    with pytest.raises(StorageError):
        db.commit()
    assert db.service_for_tests().image() == before
    # and it goes on exactly as a database freshly loaded from the store would
    fresh = Database(open_store("memory:"))
    fresh.replace(db.store.load())
    for d in (db, fresh):
        d.rng = random.Random(seed + 1000)
    a, b = random_writes(db, db.rng, 50), random_writes(fresh, fresh.rng, 50)
    assert a == b and db.service_for_tests().image() == fresh.service_for_tests().image()
    for k in range(40):
        for d in (db, fresh):
            try:
                d.result = d.call(Proc.LOOKUP, SUPERUSER, (NiId(0), "name", f"n{k}"))[0]
            except NiError as e:
                d.result = e.status
        assert db.result == fresh.result
    db.commit()
    assert db.service_for_tests().image() == durable(db, "memory:")


def test_list_limits_refuse_before_any_change(db):
    d = create(db, root(db), "big")
    db.commit()
    props = [(f"p{i}", []) for i in range(65535)]
    d = db.call(Proc.WRITE, SUPERUSER, (d, props))
    db.commit()
    with pytest.raises(NiError) as e:
        db.call(Proc.CREATEPROP, SUPERUSER, (d, ("one-more", []), NI_INDEX_NULL))
    assert e.value.status == Status.NOSPACE and not db.dirty
    d = db.call(Proc.WRITE, SUPERUSER, (d, [("v", [str(i) for i in range(65535)])]))
    with pytest.raises(NiError) as e:
        db.call(Proc.CREATENAME, SUPERUSER, (d, 0, "one-more", NI_INDEX_NULL))
    assert e.value.status == Status.NOSPACE
    assert [c.proc for c in db.commit()] == [Proc.WRITE]


# -- the in-process channel ---------------------------------------------------------------------

def test_local_channel_answers_through_the_tables(tmp_path):
    from netinfo.client.core import Client

    async def go():
        d = open_database(tmp_path, "chan", create=True)
        c = Client(LocalChannel(d, refused=frozenset({Proc.READALL})), "raw", 0, "chan")
        r = await c.root()
        kid, _ = await c.create(r, [("name", ["x"])])
        assert (await c.read(kid))[1] == [("name", ["x"])]
        assert await c.bind("nochild", 0x7F000001) is False       # SYSTEM_ERR → False
        with pytest.raises(NiError) as e:
            await c.lookup(r, "name", "missing")
        assert e.value.status == Status.NODIR
        with pytest.raises(NiError):
            await c.readall(0)
        await c.close()

    import asyncio
    asyncio.run(go())
    again = open_database(tmp_path, "chan")                   # the write was committed
    assert again.call(Proc.LOOKUP, SUPERUSER, (NiId(0), "name", "x"))[0]
    again.close()


# -- one writer per database --------------------------------------------------------------------

def test_second_open_in_one_process_is_refused(tmp_path):
    first = open_database(tmp_path, "one", create=True)
    with pytest.raises(DatabaseInUse) as e:
        open_database(tmp_path, "one")
    assert str(e.value) == f"database {tmp_path / 'one.nidb'} is in use by process {os.getpid()}"
    first.close()
    open_database(tmp_path, "one").close()                     # released on close


def test_store_url_is_locked_too(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.sqlite'}"
    first = open_database(tmp_path, "u", create=True, store=url)
    with pytest.raises(DatabaseInUse):
        open_database(tmp_path, "u", store=url)
    first.close()
    with pytest.raises(FileNotFoundError):
        open_database(tmp_path, "v", store=f"sqlite:{tmp_path / 'v.sqlite'}")
    with pytest.raises(FileNotFoundError):
        open_database(tmp_path, "m", store="memory:")             # nothing there without -m


def _run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env_with_src().items() if not k.startswith("NETINFO_")}
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_second_writer_processes_are_refused(tmp_path, netinfod):
    server = netinfod("busy", "-m", "--populate")
    pid = server.proc.pid
    c = SyncClient.connect("127.0.0.1", server.port, "busy")
    before = c.readall(0)
    nidb = tmp_path / "busy.nidb"
    want = f"database {nidb} is in use by process {pid}"

    r = _run("netinfo.cli.netinfod", "--dir", str(tmp_path), "--bind", "127.0.0.1", "-m",
             "busy")
    assert r.returncode != 0 and r.stderr.strip() == f"netinfod: {want}"
    r = _run("netinfo.cli.nicl", "-raw", str(nidb), "-create", "/users/intruder")
    assert r.returncode != 0 and r.stderr.strip() == f"nicl: {want}"
    r = _run("netinfo.cli.nibindd", "--init", "--dir", str(tmp_path), "--portmapper",
             "embedded")
    assert r.returncode != 0 and r.stderr.strip() == f"nibindd: {want}"

    # the first keeps serving, and nothing changed
    assert c.readall(0) == before
    c.close()
    assert not (tmp_path / "local.nidb").exists() and not (tmp_path / "network.nidb").exists()
    assert server.stop() == 0
    # once it is gone the database opens again
    r = _run("netinfo.cli.nicl", "-raw", str(nidb), "-read", "/users/root", "name")
    assert r.returncode == 0 and r.stdout == "name: root\n", r.stderr
