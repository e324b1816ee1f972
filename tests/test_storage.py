"""The storage contract suite: every engine must pass the same tests.

Engines: every catalog location of ``NETINFO_TEST_STORES`` (tests/conftest.py; by default
the memory reference, ``memory:{name}``, and SQLite, ``sqlite:{tmp}``): the store
contract, and the engine's own methods (one-writer lock, leftovers, catalog). A
randomized test drives SQLite and the memory engine with the same valid op sequences and
compares the loaded images. Spec §5: order and duplicates are preserved everywhere.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netinfo.errors import StorageError
from netinfo.storage import (
    RESET,
    DatabaseInUse,
    Free,
    Image,
    KidDel,
    KidIns,
    Put,
    Record,
    Store,
    apply_ops,
    engine_of,
    open_store,
)
from netinfo.storage.memory import MemoryStore
from netinfo.storage.sqlite import SqliteStore

SRC = Path(__file__).resolve().parents[1] / "src"


class Engine:
    """Opens (and re-opens) one store of one engine under test (conftest's
    ``store_engine``: every engine of ``NETINFO_TEST_STORES``)."""

    def __init__(self, under_test) -> None:
        self.scheme = under_test.scheme
        self.url = under_test.url()

    def open(self) -> Store:
        return open_store(self.url)


@pytest.fixture
def engine(store_engine) -> Engine:
    return Engine(store_engine)


@pytest.fixture
def store(engine):
    s = engine.open()
    yield s
    s.close()


def put(oid, inst=1, parent=0, props=()):
    return Put(oid, inst, parent, list(props))


def small_tree() -> list:
    return [put(0, 3, 0, [("name", [])]), put(1, 1, 0, [("name", ["users"])]),
            put(2, 1, 0, [("name", ["machines"])]),
            KidIns(0, 0, 1), KidIns(0, 1, 2)]


# -- basics --------------------------------------------------------------------------------

# -- the engine's methods: one writer, leftovers, the catalog --------------------------------

def test_catalog_creates_lists_and_destroys_domains(store_engine):
    cat = store_engine.catalog
    assert cat.domains() == [] and not cat.exists("alpha")
    for tag in ("beta", "alpha"):
        s = open_store(store_engine.url(tag))
        s.commit(small_tree(), 5)
        s.close()
    assert cat.domains() == ["alpha", "beta"] and cat.exists("alpha")
    s = open_store(cat.url("beta"))
    assert s.load().checksum == 5   # the URL the catalog gives opens that domain
    s.close()
    cat.destroy("beta")
    cat.destroy("beta")             # twice: nothing to do, no error
    assert cat.domains() == ["alpha"] and not cat.exists("beta")


def test_one_writer_lock(store_engine):
    url = store_engine.url("solo")
    eng, rest = engine_of(url)
    where = store_engine.catalog.where("solo")
    held = eng.lock(rest, where)
    if held is None:
        pytest.skip(f"the {eng.scheme} engine needs no lock")
    with pytest.raises(DatabaseInUse, match=f"database {re.escape(where)} is in use by"):
        eng.lock(rest, where)
    with pytest.raises(DatabaseInUse):
        store_engine.catalog.check_free("solo")
    held.release()
    held.release()                  # idempotent
    store_engine.catalog.check_free("solo")
    eng.lock(rest, where).release()  # free again


def test_leftovers_are_discarded_and_the_domain_kept(store_engine):
    url = store_engine.url("kept")
    eng, rest = engine_of(url)
    s = open_store(url)
    s.commit(small_tree(), 3)
    before = s.load()
    s.close()
    s = open_store(url)
    copy = s.new_copy()                    # an interrupted copy: never finished
    copy.add([])
    s.close()
    leftover = getattr(copy, "path", None)  # a file beside the store (SQLite: FILE.temp)
    assert leftover is None or os.path.exists(leftover)
    eng.discard_leftovers(rest)
    assert leftover is None or not os.path.exists(leftover)
    s = open_store(url)
    assert s.load() == before
    s.close()


def test_empty_store(store):
    assert store.load() == Image()
    assert store.load().checksum is None
    assert not store.exists()


def test_put_round_trip_keeps_order_duplicates_and_bytes(store):
    props = [("name", ["b", "a"]), ("zeta", ["1"]), ("alpha", []), ("name", ["dup"]),
             ("", [""]), ("raw\udcff", ["\udcfe\udc80x", "é"]),
             ("many", [str(i) for i in range(50)])]
    store.commit([put(7, 4, 3, props)], 99)
    image = store.load()
    assert image.records == {7: Record(4, 3, props)}
    assert [name for name, _ in image.records[7].props] == \
        ["name", "zeta", "alpha", "name", "", "raw\udcff", "many"]
    assert image.checksum == 99
    assert store.exists()


def test_put_replaces_record_but_not_children(store):
    store.commit(small_tree(), 1)
    store.commit([put(0, 4, 0, [("name", ["/"])])], 2)
    image = store.load()
    assert image.records[0] == Record(4, 0, [("name", ["/"])])
    assert image.children == {0: [1, 2]}


def test_checksum_is_stored_with_every_batch(store):
    store.commit(small_tree(), 10)
    assert store.load().checksum == 10
    store.commit([], 11)
    assert store.load().checksum == 11
    store.commit([RESET], 0)
    assert store.load().checksum == 0


# -- child lists ---------------------------------------------------------------------------

def test_kid_ins_append_front_and_middle(store):
    ops = [put(0)] + [KidIns(0, i, 10 + i) for i in range(5)]   # 10..14 appended
    ops += [KidIns(0, 0, 1), KidIns(0, 3, 2), KidIns(0, 7, 3)]
    store.commit(ops, 1)
    assert store.load().children == {0: [1, 10, 11, 2, 12, 13, 14, 3]}
    store.commit([KidIns(0, 4, 4)], 2)
    assert store.load().children == {0: [1, 10, 11, 2, 4, 12, 13, 14, 3]}


def test_many_inserts_at_one_spot_keep_order(store):
    store.commit([put(0)] + [KidIns(0, i, i) for i in range(10)], 1)
    expect = list(range(10))
    # One spot, between 4 and 5, 300 times: the ordinal keys run out and get re-spaced.
    for n in range(300):
        store.commit([KidIns(0, 5, 1000 + n)], 1)
        expect.insert(5, 1000 + n)
    # And right behind the front, in one batch.
    ops = []
    for n in range(100):
        ops.append(KidIns(0, 1, 5000 + n))
        expect.insert(1, 5000 + n)
    store.commit(ops, 2)
    assert store.load().children[0] == expect


def test_kid_del_removes_first_occurrence_only(store):
    store.commit([put(0)] + [KidIns(0, i, c) for i, c in enumerate([5, 6, 5, 7])], 1)
    store.commit([KidDel(0, 5)], 2)
    assert store.load().children == {0: [6, 5, 7]}
    store.commit([KidDel(0, 99), KidDel(42, 1)], 3)   # absent: no-op
    assert store.load().children == {0: [6, 5, 7]}
    store.commit([KidDel(0, 6), KidDel(0, 5), KidDel(0, 7)], 4)
    assert store.load().children == {}   # an emptied list disappears
    store.commit([KidIns(0, 0, 8)], 5)
    assert store.load().children == {0: [8]}


def test_negative_index_means_what_list_insert_means(store):
    store.commit([put(0)] + [KidIns(0, i, i) for i in range(3)], 1)
    store.commit([KidIns(0, -1, 9), KidIns(0, -100, 8), KidIns(0, 100, 7)], 2)
    assert store.load().children == {0: [8, 0, 1, 9, 2, 7]}


def test_large_directory_insert_and_delete_in_the_middle(store):
    n = 20_000
    store.commit([put(0)] + [KidIns(0, i, i + 1) for i in range(n)], 1)
    store.commit([KidIns(0, n // 2, 99_999)], 2)
    store.commit([KidDel(0, n // 3)], 3)
    kids = store.load().children[0]
    expect = list(range(1, n + 1))
    expect.insert(n // 2, 99_999)
    expect.remove(n // 3)
    assert kids == expect


# -- free, reset, order within a batch -----------------------------------------------------

def test_free_and_reuse_of_a_number(store):
    store.commit(small_tree() + [KidIns(2, 0, 9)], 1)
    store.commit([KidDel(0, 2), Free(2, 5)], 2)
    image = store.load()
    assert 2 not in image.records
    assert 2 not in image.children       # its own child list went with it
    assert image.freed == {2: 5}
    assert image.children == {0: [1]}
    store.commit([put(2, 6, 0, [("name", ["again"])]), KidIns(0, 1, 2)], 3)
    image = store.load()
    assert image.records[2] == Record(6, 0, [("name", ["again"])])
    assert image.freed == {}
    assert image.children == {0: [1, 2]}


def test_ops_apply_in_order_within_a_batch(store):
    store.commit([put(1, 1, 0, [("a", ["1"])]), Free(1, 1),
                  put(1, 2, 0, [("b", ["2"])]), Free(3, 7),
                  put(4), Free(4, 1)], 5)
    image = store.load()
    assert image.records == {1: Record(2, 0, [("b", ["2"])])}
    assert image.freed == {3: 7, 4: 1}


def test_reset_forgets_everything(store):
    store.commit(small_tree() + [Free(9, 3)], 1)
    store.commit([RESET, put(0, 1, 0, [("name", ["new"])])], 7)
    assert store.load() == Image({0: Record(1, 0, [("name", ["new"])])}, {}, {}, 7)
    store.commit([RESET], 0)
    assert not store.exists()


# -- durability and atomicity --------------------------------------------------------------

def test_reopen_gives_the_same_image(engine):
    s = engine.open()
    s.commit(small_tree() + [Free(5, 2), put(3, 1, 1, [("x", ["\udcff"])]),
                             KidIns(1, 0, 3)], 1234)
    before = s.load()
    s.close()
    s = engine.open()
    assert s.load() == before
    assert s.exists()
    # Appends and middle inserts still land right after a reopen (counts rebuilt).
    s.commit([KidIns(0, 2, 6), KidIns(0, 1, 7)], 1)
    assert s.load().children[0] == [1, 7, 2, 6]
    s.close()


def test_failing_batch_applies_nothing(store):
    store.commit(small_tree(), 1)
    before = store.load()
    with pytest.raises(StorageError):
        store.commit([put(3), KidIns(0, 1, 3), ("no-such-op", 1)], 2)
    assert store.load() == before
    # The store is still usable and its child positions still right.
    store.commit([KidIns(0, 2, 3), KidIns(0, 1, 4)], 3)
    assert store.load().children == {0: [1, 4, 2, 3]}


@pytest.mark.parametrize("bad", [
    pytest.param([put(3, "one")], marks=pytest.mark.skipif(   # instance not an integer
        sqlite3.sqlite_version_info < (3, 37), reason="needs STRICT tables")),
    [put(3, 1, 0, [("name", [1])])],               # value not a string
    [put(3, 1, 0, [("name", ["x" * 70000])])],     # longer than a NetInfo name
    [(0, 0)],                                      # not an op (a bare tuple)
    [Free("x", 1)],
])
def test_sqlite_bad_values_raise_storage_error(tmp_path, bad):
    s = SqliteStore(str(tmp_path / "db.sqlite"))
    s.commit(small_tree(), 1)
    before = s.load()
    with pytest.raises(StorageError):
        s.commit([put(4), KidIns(0, 0, 4)] + bad, 2)
    assert s.load() == before
    s.close()


def test_sqlite_open_errors(tmp_path):
    with pytest.raises(StorageError, match="cannot open"):
        SqliteStore(str(tmp_path / "missing-dir" / "db.sqlite"))
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        SqliteStore(str(junk))
    with pytest.raises(StorageError):
        SqliteStore("")


def test_sqlite_schema_version_and_wal(tmp_path):
    path = str(tmp_path / "db.sqlite")
    SqliteStore(path).close()
    SqliteStore(path).close()   # migrations are not applied twice
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # every numbered migration once, in order (2: the persisted LOOKUP index, 3: the
    # change history)
    assert c.execute("SELECT version FROM schema_version").fetchall() == [(1,), (2,), (3,)]
    c.execute("INSERT INTO schema_version VALUES (99)")
    c.commit()
    c.close()
    with pytest.raises(StorageError, match="newer"):
        SqliteStore(path)


def test_sqlite_sees_another_writer(tmp_path):
    """A change made behind the store's back must not leave it with a wrong child count."""
    path = str(tmp_path / "db.sqlite")
    s = SqliteStore(path)
    s.commit([put(0)] + [KidIns(0, i, i + 1) for i in range(3)], 1)
    s.load()
    other = SqliteStore(path)
    other.commit([KidDel(0, 3)], 2)
    other.close()
    s.commit([KidIns(0, 2, 9)], 3)     # index 2 is now the end of the list
    assert s.load().children == {0: [1, 2, 9]}
    s.close()


def test_sqlite_key_space_exhaustion_renumbers(tmp_path):
    s = SqliteStore(str(tmp_path / "db.sqlite"))
    s.gap, s.min_step, s.limit = 4, 2, 40   # a tiny key space: every path gets exercised
    expect: list[int] = []
    ops = [put(0)]
    for n in range(60):
        index = [len(expect), 0, len(expect) // 2, 1][n % 4]
        ops.append(KidIns(0, index, n))
        expect.insert(index, n)
        s.commit(ops, n)
        ops = []
    assert s.load().children[0] == expect
    s.close()


@pytest.mark.slow
def test_sqlite_sigkill_loses_no_acknowledged_write(tmp_path):
    path = str(tmp_path / "db.sqlite")
    writer = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        from netinfo.storage import KidIns, Put
        from netinfo.storage.sqlite import SqliteStore
        s = SqliteStore({path!r})
        s.commit([Put(0, 1, 0, [])], 0)
        n = 0
        while True:
            n += 1
            s.commit([Put(n, 1, 0, [("name", [str(n)])]), KidIns(0, n - 1, n)], n)
            print(n, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    acked = 0
    for line in proc.stdout:
        acked = int(line)
        if acked >= 200:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s = SqliteStore(path)
    image = s.load()
    s.close()
    assert image.checksum >= acked
    assert image.children[0] == list(range(1, image.checksum + 1))
    assert set(image.records) == set(range(image.checksum + 1))


# -- the SQLite engine against the reference ------------------------------------------------

@st.composite
def batches(draw):
    """Valid op batches, drawn against a model so indexes and deletes make sense."""
    model = Image()
    out = []
    for _ in range(draw(st.integers(1, 8))):
        ops = []
        for _ in range(draw(st.integers(0, 12))):
            kind = draw(st.sampled_from(["put", "put", "ins", "ins", "ins", "ins", "del",
                                         "free", "reset"]))
            if kind == "put":
                props = draw(st.lists(st.tuples(st.sampled_from(["name", "a", "\udcff", ""]),
                                                st.lists(st.text(max_size=3), max_size=3)),
                                      max_size=4))
                op = put(draw(st.integers(0, 6)), draw(st.integers(0, 9)),
                         draw(st.integers(0, 6)), props)
            elif kind == "ins":
                parent = draw(st.integers(0, 3))
                size = len(model.children.get(parent, []))
                op = KidIns(parent, draw(st.integers(0, size)), draw(st.integers(0, 9)))
            elif kind == "del":
                present = [(p, c) for p, kids in model.children.items() for c in kids]
                if not present:
                    continue
                op = KidDel(*draw(st.sampled_from(present)))
            elif kind == "free":
                op = Free(draw(st.integers(0, 6)), draw(st.integers(0, 9)))
            else:
                if draw(st.integers(0, 5)):
                    continue   # keep resets rare
                op = RESET
            apply_ops(model, [op])
            ops.append(op)
        out.append(ops)
    return out


@pytest.mark.parametrize("tiny_keys", [False, True], ids=["default-keys", "tiny-keys"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=batches())
def test_sqlite_matches_memory_engine(tiny_keys, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "db.sqlite")
        sql, ref = SqliteStore(path), MemoryStore()
        if tiny_keys:   # ordinal keys run out constantly: re-spacing on most inserts
            sql.gap, sql.min_step, sql.limit = 1, 1, 48
        for checksum, ops in enumerate(data):
            sql.commit(ops, checksum)
            ref.commit(ops, checksum)
            assert sql.load() == ref.load()
        sql.close()
        sql = SqliteStore(path)
        assert sql.load() == ref.load()
        sql.close()
