"""A clone's full copy into a PostgreSQL store (issue 23, spec §9.5): written from the
READALL stream into the schema ``ni_NAME~copy`` beside the live one, a batch at a time on
a connection of its own (storage/postgres.py, ``PostgresCopy``), then swapped in by one
transaction on the writer's connection (``PostgresStore.adopt``).

At the storage level: the copy is, row for row and index for index, what
``Database.replace`` of the same tree writes; a damaged tree is refused and the old domain
stays; the swap keeps the change history, the writer's lock (a second writer, a second
netinfod, are still refused) and serves the new tree to readers that prepared their
statements before it; a discarded copy and a copy a crash left are dropped, never listed
as a domain. Over the wire: tests/test_engine_replication.py (a PostgreSQL clone of a
SQLite master, through this path) and the SIGKILL of a clone netinfod while it copies
into PostgreSQL, here.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from netinfo.errors import StorageError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import open_database
from netinfo.server.service import SUPERUSER
from netinfo.storage import engine_of, open_store, postgres
from netinfo.storage.postgres import COPY_SUFFIX, PostgresCopy, StoreInUse, domains
from netinfo.storage.postgres_source import PgReader
from netinfo.wire.protocol import Proc

from .conftest import env_with_src, free_port
from .pgcluster import pg_cluster  # noqa: F401 - the session's scratch cluster
from .test_clone_copy import (  # noqa: F401 - master: the module's nibindd fixture
    DAMAGES, TRUST_FLAGS, WIRE_USERS, checksum, copy_into, damaged_stream, master, preorder,
    tool, tree_image, wait_for, whole_or_before, wire_objects,
)


def _sql(cluster, sql: str, args=()) -> list[tuple]:
    import psycopg
    with psycopg.connect(cluster.conninfo(), autocommit=True) as c:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in c.execute(sql, args)]


def _schema(url: str) -> str:
    return "ni_" + url.rsplit("domain=", 1)[1]


def _rows(cluster, schema: str) -> dict[str, list]:
    out = {t: sorted(_sql(cluster, f'SELECT * FROM "{schema}".{t}'))
           for t in ("dirs", "kids", "keys", "freed", "meta", "schema_version")}
    out["columns"] = _sql(cluster, "SELECT table_name, column_name, data_type, is_nullable,"
                          " ordinal_position FROM information_schema.columns"
                          " WHERE table_schema = %s ORDER BY 1, 5", (schema,))
    out["indexes"] = _sql(cluster, "SELECT tablename, indexname,"
                          " replace(indexdef, %s, 'S') FROM pg_indexes"
                          " WHERE schemaname = %s ORDER BY 1, 2", (f'"{schema}"', schema))
    out["indexes"] = [(t, i, d.replace(schema, "S")) for t, i, d in out["indexes"]]
    return out


def _schemas(cluster) -> set[str]:
    return {n for (n,) in _sql(cluster, "SELECT nspname FROM pg_namespace")}


def test_a_streamed_copy_is_row_for_row_what_replace_writes(pg_cluster, tmp_path,  # noqa: F811
                                                            monkeypatch):
    # small pieces: every COPY is sent in many, rows cut nowhere
    monkeypatch.setattr(postgres, "_COPY_CHUNK", 100)
    image = tree_image(300, seed=8)
    ua, ub = pg_cluster.url(), pg_cluster.url()
    with open_database(tmp_path, "a", create=True, store=ua) as a:
        a.replace(image)
        want = a.checksum
    with open_database(tmp_path, "b", create=True, store=ub) as b:
        copy = b.new_copy()
        assert isinstance(copy, PostgresCopy) and copy.image is None
        objs = wire_objects(preorder(image))
        for i in range(0, len(objs), 7):
            copy.add(objs[i:i + 7])
        # written beside the live schema, which serves on meanwhile; never a domain
        assert _schema(ub) + COPY_SUFFIX in _schemas(pg_cluster)
        assert all(COPY_SUFFIX not in d for d in domains(pg_cluster.conninfo()))
        copy.finish()
        (change,) = b.adopt(copy)
        assert b.checksum == want == change.result
        svc = b.service_for_tests()
        assert svc.source.lazy
        assert svc.proc_lookup(SUPERUSER, NiId(1), "name", "u5")[0] == [20]
    assert _schema(ub) + COPY_SUFFIX not in _schemas(pg_cluster)
    got, expect = _rows(pg_cluster, _schema(ub)), _rows(pg_cluster, _schema(ua))
    assert got == expect
    assert len(got["kids"]) > 300 and len(got["keys"]) > 900


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_copy_is_refused_and_the_old_tree_stays(pg_cluster, tmp_path,  # noqa: F811
                                                          damage):
    objs = damaged_stream(damage)
    url = pg_cluster.url()
    with open_database(tmp_path, "d", create=True, store=url) as db:
        db.replace(tree_image(5, seed=1))
        before = db.service_for_tests().image()
        copy = db.new_copy()
        with pytest.raises(StorageError):
            if objs:
                copy.add(wire_objects(objs))
            copy.finish()
        with pytest.raises(StorageError):
            db.store.adopt(copy)    # an unfinished copy is never swapped in
        copy.discard()
        assert db.service_for_tests().image() == before
        assert _schema(url) + COPY_SUFFIX not in _schemas(pg_cluster)


def _write(db, name: str) -> None:
    root = db.call(Proc.SELF, SUPERUSER, (NiId(0),))
    db.call(Proc.CREATE, SUPERUSER, (root, [("name", [name])], NI_INDEX_NULL))
    db.commit()


def test_the_swap_keeps_the_history_and_the_writers_lock(pg_cluster, tmp_path):  # noqa: F811
    url = pg_cluster.url()
    schema = _schema(url)
    with open_database(tmp_path, "h", create=True, store=url) as db:
        db.replace(tree_image(40, seed=2))
        for i in range(5):
            _write(db, f"before{i}")
        history = _sql(pg_cluster, f'SELECT seq, "user", path FROM "{schema}".history')
        size = _sql(pg_cluster, f'SELECT bytes FROM "{schema}".history_size')
        assert len(history) == 6
        # a reader that prepared its statements on the old tables (the store threads')
        side = PgReader.side(db.store)
        for _ in range(8):
            assert side.row(0) is not None and side.kids(1)
        new = tree_image(30, seed=4)
        copy_into(db, wire_objects(preorder(new)), batch=11)
        after = _sql(pg_cluster, f'SELECT seq, "user", path FROM "{schema}".history')
        assert set(history) < set(after) and len(after) == len(history) + 1
        assert _sql(pg_cluster, f'SELECT bytes FROM "{schema}".history_size')[0][0] >= \
            size[0][0]
        # the reader reads the new tree through the statements it prepared before
        assert side.kids(1).tolist() == new.children[1]
        side.close()
        # still the writer: another writer is refused; this one writes on, numbered on
        other = open_store(url)
        try:
            with pytest.raises(StoreInUse):
                other.claim()
        finally:
            other.close()
        _write(db, "after")
        last = _sql(pg_cluster, f'SELECT max(seq) FROM "{schema}".history')[0][0]
        assert last == len(history) + 2
        img = db.service_for_tests().image()
        names = {v for k in img.children[0] for n, vs in img.records[k].props if n == "name"
                 for v in vs}
        assert "after" in names and "before0" not in names
    with open_database(tmp_path, "h", store=url) as db:
        assert db.checksum == db.service_for_tests().checksum
        assert len(db.service_for_tests().image().records) == 30 + 3 + 1


def test_a_copy_left_behind_is_dropped_and_never_served(pg_cluster, tmp_path):  # noqa: F811
    url = pg_cluster.url()
    left = _schema(url) + COPY_SUFFIX
    objs = wire_objects(preorder(tree_image(50, seed=5)))
    db = open_database(tmp_path, "l", create=True, store=url)
    try:
        db.replace(tree_image(10, seed=6))
        want = db.checksum
        # discarded: dropped
        copy = db.new_copy()
        copy.add(objs[:20])
        copy.discard()
        assert left not in _schemas(pg_cluster)
        # interrupted (the process gone before finish): left behind, never a domain
        copy = db.new_copy()
        copy.add(objs[:20])
        assert left in _schemas(pg_cluster)
        assert not [d for d in domains(url) if COPY_SUFFIX in d]
        # the writer's copy in progress is left alone by anyone else's cleanup
        eng, rest = engine_of(url)
        eng.discard_leftovers(rest)
        assert left in _schemas(pg_cluster)
        # a new copy starts afresh over it
        copy2 = db.new_copy()
        copy2.add(objs)
        copy2.finish()
        assert left in _schemas(pg_cluster)
        assert copy._conn is not None
        copy._conn.close()
        copy._conn = None
        copy2.discard()
        copy = db.new_copy()
        copy.add(objs[:20])
        copy._conn.close()     # as a crash leaves it
    finally:
        db.close()
    assert left in _schemas(pg_cluster)
    eng.discard_leftovers(rest)    # at the next start, before the store opens
    assert left not in _schemas(pg_cluster)
    # and by a writer as it claims the domain (a standby, which cannot before)
    with open_database(tmp_path, "l", store=url) as db:
        copy = db.new_copy()
        copy.add(objs[:5])
        copy._conn.close()
    assert left in _schemas(pg_cluster)
    st = open_store(url)
    try:
        st.claim()
        assert left not in _schemas(pg_cluster)
    finally:
        st.close()
    with open_database(tmp_path, "l", store=url) as db:
        assert db.checksum == want


def test_a_second_netinfod_is_refused_after_the_swap(pg_cluster, tmp_path):  # noqa: F811
    url = pg_cluster.url()
    with open_database(tmp_path, "n", create=True, store=url) as db:
        db.replace(tree_image(10, seed=1))
        copy_into(db, wire_objects(preorder(tree_image(20, seed=2))))
        from .conftest import TRUST
        p = subprocess.run(
            [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(tmp_path), "--bind",
             "127.0.0.1", "--port", str(free_port()), *TRUST, "--store", url, "n"],
            capture_output=True, text=True, env=env_with_src(), timeout=60,
            stdin=subprocess.DEVNULL)
        assert p.returncode == 2, p.stderr
        assert "is in use by netinfo store pid" in p.stderr
        _write(db, "still-mine")


# -- over the wire ----------------------------------------------------------------------------

def _pg_checksum(cluster, schema: str) -> int | None:
    try:
        rows = _sql(cluster, f"SELECT value FROM \"{schema}\".meta WHERE key = 'checksum'")
    except Exception:
        return None
    return rows[0][0] if rows else None


def _pg_count(cluster, schema: str) -> int:
    try:
        return _sql(cluster, f'SELECT count(*) FROM "{schema}".dirs')[0][0]
    except Exception:
        return 0


@pytest.mark.slow
def test_killing_the_clone_while_it_copies_into_postgresql(master, pg_cluster,  # noqa: F811
                                                          tmp_path):
    # A clone netinfod of our own on a PostgreSQL domain, behind its master at every
    # start, SIGKILLed at random moments while its copy is written beside the live
    # schema: the domain holds the old tree or the new, the copy is never served, and
    # left alone the clone converges.
    env = dict(master.env)
    url = pg_cluster.url()
    schema = _schema(url)
    left = schema + COPY_SUFFIX
    rng = random.Random(23)
    killed_mid_copy = 0

    def start():
        cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(tmp_path),
               "--bind", "127.0.0.1", "--port", str(free_port()), *TRUST_FLAGS,
               "--store", url, "-c", "bench", "127.0.0.1", "net", "copy2"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def copying() -> bool:
        return _pg_count(pg_cluster, left) > 0

    for i in range(4):
        r = tool(master, "niutil", "-createprop", "-t", "127.0.0.1/net", "/", f"k{i}", "x")
        assert r.returncode == 0, r.stderr
        want = checksum(master, "net")
        before = _pg_checksum(pg_cluster, schema)    # None: no domain yet
        proc = start()
        try:
            deadline = time.monotonic() + 60
            # a leftover of the last run is dropped first: wait for this run's copy
            while not (copying() or _pg_checksum(pg_cluster, schema) == want
                       or proc.poll() is not None):
                assert time.monotonic() < deadline, "no copy within 60 s"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.5))
            killed_mid_copy += copying()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        whole_or_before(open_store(url), want, before)
        assert not [d for d in domains(url) if COPY_SUFFIX in d]
    assert killed_mid_copy >= 1
    proc = start()      # left alone, it copies and converges; the leftover is dropped
    try:
        want = checksum(master, "net")
        wait_for(lambda: _pg_checksum(pg_cluster, schema) == want
                 and left not in _schemas(pg_cluster), 180, "converged copy")
        store = open_store(url)
        try:
            assert len(store.load().records) > WIRE_USERS
        finally:
            store.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_failed_batch_leaves_the_writers_prepared_reads_working(pg_cluster,  # noqa: F811
                                                                  tmp_path):
    # psycopg deallocates every prepared statement of a connection after a ROLLBACK
    # there (as after the swap's DROP and ALTER): the lazy source's hot reads on the
    # writer's connection prepare theirs again
    from netinfo.storage import Meta
    url = pg_cluster.url()
    with open_database(tmp_path, "r", create=True, store=url) as db:
        st = db.store
        for i in range(8):      # often enough for psycopg to prepare the statement
            st.commit([Meta("k", i)], 0)
        reader = PgReader(st, st._conn)
        assert reader.row(0) is not None
        with pytest.raises(StorageError, match="out of range"):
            st.commit([Meta("k", 1 << 70)], 0)
        assert reader.row(0) is not None
