"""The PostgreSQL engine (issue 23), against a scratch cluster (tests/pgcluster.py).

The store contract suite runs over it too (tests/test_storage.py's ``engine`` fixture);
here: the engine against the memory reference on random batches, its row reader, the
writer's advisory lock and a standby's takeover, and end to end: netinfod serving a
PostgreSQL domain to niutil and nidump subprocesses exactly as it serves SQLite, a lost
connection, PostgreSQL restarted under netinfod (writes refused, then stored again), a
standby waiting through that restart, and ``nistore copy`` SQLite → PostgreSQL → SQLite.
Elsewhere: the SIGKILL of netinfod during writes (test_crash, on each engine), the
failover to a streaming standby (test_postgres_ha), the end-to-end suites on each engine
(``engine_netinfod``: test_server, test_niload, ...; test_engine_replication). Every test
skips, with the reason, without PostgreSQL or psycopg.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings

from netinfo.errors import StorageError
from netinfo.storage import RESET, Free, KidDel, KidIns, Meta, Put, open_store
from netinfo.storage.memory import MemoryStore
from netinfo.storage.postgres_source import PgReader
from netinfo.storage.sqlite import SqliteStore

from .conftest import Netinfod, env_with_src, free_port, tool_process
from .pgcluster import pg_cluster  # noqa: F401 - the session's scratch cluster
from .test_crash import drain as crash_drain
from .test_storage import batches


def put(oid, inst=1, parent=0, props=()):
    return Put(oid, inst, parent, list(props))


# -- the engine ------------------------------------------------------------------------------

@pytest.mark.parametrize("tiny_keys", [False, True], ids=["default-keys", "tiny-keys"])
def test_postgres_matches_memory_engine(pg_cluster, tiny_keys):  # noqa: F811
    @settings(max_examples=40, deadline=None, suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(data=batches())
    def run(data):
        url = pg_cluster.url()
        pg, ref = open_store(url), MemoryStore()
        if tiny_keys:   # ordinal keys run out constantly: renumbering on most inserts
            pg.gap, pg.limit = 1, 48
        try:
            for checksum, ops in enumerate(data):
                pg.commit(ops, checksum)
                ref.commit(ops, checksum)
                assert pg.load() == ref.load()
        finally:
            pg.close()
        pg = open_store(url)
        assert pg.load() == ref.load()
        pg.close()
    run()


def test_row_reader(pg_cluster):  # noqa: F811
    s = open_store(pg_cluster.url())
    try:
        ops = [put(0, 2, 0, [("name", [])]), put(1, 1, 0, [("name", ["users"])])]
        for i in range(2, 12):
            ops += [put(i, i, 1, [("name", [f"u{i}"]), ("uid", [str(100 + i % 3)]),
                                  ("name", ["shadowed"])]), KidIns(1, 0, i)]
        ops += [KidIns(0, 0, 1), Free(20, 4), Meta("quota", 9)]
        s.commit(ops, 77)
        rows = PgReader(s, s._conn)
        assert rows.row(1)[:2] == (1, 0) and rows.row(1)[3] is True
        assert rows.row(5)[3] is False and rows.row(99) is None
        order = rows.children(1)
        assert order == list(range(11, 1, -1))   # each inserted at the front
        assert rows.kids(1).tolist() == order and not rows.kids(5)
        got, kids = rows.fetch([1, 2, 3, 99], True)
        assert sorted(r[0] for r in got) == [1, 2, 3] and kids[1].tolist() == order
        assert all(isinstance(r[3], bytes) for r in got) and set(kids) == {1}
        assert rows.lookup_first(1, b"uid", b"101")[0] == 10
        assert rows.lookup_first(1, b"uid", b"999") is None
        assert rows.has(5) and not rows.has(99) and rows.highest([11]) == 10
        assert rows.gaps() == [] and sorted(rows.ids()) == list(range(12))
        # LOOKUP: the first "name" only, in child-list order (spec §4.4)
        assert rows.lookup(1, b"uid", b"101") == [i for i in order if i % 3 == 1] \
            == [10, 7, 4]
        assert rows.lookup(1, b"name", b"shadowed") == []
        assert rows.lookup(1, b"name", b"u7") == [7]
        assert (rows.count(), rows.max_id(), rows.freed()) == (12, 11, {20: 4})
        assert (rows.meta("checksum"), rows.meta("quota"), rows.meta("none")) == (77, 9, None)
        # the index follows a Put that renames and a Free
        s.commit([put(7, 8, 1, [("name", ["seven"])]), KidDel(1, 3), Free(3, 3)], 78)
        assert rows.lookup(1, b"name", b"u7") == [] and rows.lookup(1, b"name", b"seven") == [7]
        assert rows.lookup(1, b"name", b"u3") == []
        assert 3 not in rows.children(1)
    finally:
        s.close()


def test_bad_urls_and_no_server(pg_cluster, tmp_path):  # noqa: F811
    with pytest.raises(StorageError, match="bad domain name"):
        open_store(pg_cluster.url("no/slash"))
    with pytest.raises(StorageError, match="cannot connect"):
        open_store(f"postgresql://ni@/netinfo?host={tmp_path}&domain=x")


def test_failed_batch_is_refused_whole_and_names_the_domain(pg_cluster):  # noqa: F811
    s = open_store(pg_cluster.url())
    try:
        s.commit([put(0, 1, 0, [("name", [])])], 1)
        before = s.load()
        with pytest.raises(StorageError, match=r"postgresql domain t\d+: batch not applied"):
            s.commit([put(4), KidIns(0, 0, 4), put(5, "one")], 2)
        assert s.load() == before
        s.commit([RESET], 0)
        assert not s.exists()
    finally:
        s.close()


# -- one writer ------------------------------------------------------------------------------

def test_advisory_lock_refuses_a_second_writer_and_a_standby_takes_over(pg_cluster):  # noqa: F811
    url = pg_cluster.url()
    a = open_store(url)
    a.claim()
    a.commit([put(0, 1, 0, [("name", [])])], 1)
    b = open_store(url)
    with pytest.raises(StorageError, match=rf"in use by netinfo store pid {os.getpid()} "):
        b.claim()
    with pytest.raises(StorageError, match="in use"):
        b.commit([put(0, 2, 0, [("name", [])])], 2)   # an unclaimed commit claims first
    # reading needs no lock
    assert b.load().checksum == 1
    told: list[str] = []
    took: list[float] = []
    t = threading.Thread(target=lambda: (b.claim(wait=True, announce=told.append),
                                         took.append(time.monotonic())))
    t.start()
    time.sleep(0.5)
    assert not took and told and "waiting to take over" in told[0]
    gone = time.monotonic()
    a.close()
    t.join(10)
    assert took and took[0] - gone < 2.0
    b.commit([put(0, 2, 0, [("name", [])])], 2)
    assert b.load().checksum == 2
    b.close()


# -- end to end ------------------------------------------------------------------------------

def _flags() -> tuple[str, ...]:
    return ("-m", "--populate")


def _dom(d: Netinfod) -> str:
    return f"127.0.0.1:{d.port}/{d.tag}"


def tool(name: str, *args: str, ok: bool = True, stdin: str | None = None
         ) -> subprocess.CompletedProcess:
    p = tool_process(name, *args, env=env_with_src(), input=stdin, timeout=120)
    if ok:
        assert p.returncode == 0, (name, args, p.stdout, p.stderr)
    return p


WRITES = [
    ("-create", "/users/ann"), ("-createprop", "/users/ann", "uid", "501"),
    ("-createprop", "/users/ann", "shell", "/bin/sh", "/bin/zsh"),
    ("-create", "/users/bob"), ("-createprop", "/users/bob", "uid", "502"),
    ("-create", "/machines/h1"), ("-createprop", "/machines/h1", "ip_address", "10.0.0.1"),
    ("-appendprop", "/users/ann", "shell", "/bin/bash"),
    ("-destroy", "/users/bob"), ("-create", "/users/cat"),   # reuses bob's number (§5.3)
    ("-mergeprop", "/users/cat", "uid", "503"), ("-destroyprop", "/users/ann", "shell"),
    ("-create", "/groups/staff"), ("-createprop", "/groups/staff", "users", "ann", "cat"),
]


def _state(dom: str) -> tuple[str, str]:
    dump = tool("nidump", "-r", "/", "-t", dom).stdout
    stats = tool("niutil", "-statistics", "-t", dom).stdout
    checksum = re.search(r"^checksum: (\d+)", stats, re.M)
    assert checksum, stats
    return dump, checksum.group(1)


def test_netinfod_serves_postgres_exactly_as_sqlite(pg_cluster, tmp_path):  # noqa: F811
    url = pg_cluster.url()
    lite = Netinfod(tmp_path / "lite", "e2e", *_flags()).start()
    pg = Netinfod(tmp_path / "pg", "e2e", "--store", url, *_flags()).start()
    try:
        for args in WRITES:
            for d in (lite, pg):
                tool("niutil", *args[:1], "-t", _dom(d), *args[1:])
        state = _state(_dom(lite))
        assert _state(_dom(pg)) == state
        assert "ann" in state[0] and "cat" in state[0] and "bob" not in state[0]
        # LOOKUP through the persisted index, and LIST, as SQLite answers them
        for d in (lite, pg):
            p = tool("nifind", "-p", "/users/cat", "-t", _dom(d), ok=False)
            assert p.returncode in (0, 1)
        assert tool("niutil", "-list", "-t", _dom(pg), "/users").stdout == \
            tool("niutil", "-list", "-t", _dom(lite), "/users").stdout
        assert tool("niutil", "-read", "-t", _dom(pg), "/users/cat").stdout == \
            tool("niutil", "-read", "-t", _dom(lite), "/users/cat").stdout
        # the domain is in PostgreSQL, not in a file: restarted, it is the same
        pg.stop()
        pg = Netinfod(tmp_path / "pg", "e2e", "--store", url).start()
        assert _state(_dom(pg)) == state
        assert not (tmp_path / "pg" / "e2e.nidb").exists()
    finally:
        lite.stop()
        pg.stop()


def _pids_of(pg_cluster, pid: int) -> list[int]:  # noqa: F811
    import psycopg
    with psycopg.connect(pg_cluster.conninfo(), autocommit=True) as c:
        return [r[0] for r in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"netinfo store pid {pid} on {os.uname().nodename}",))]


def test_second_netinfod_refused_and_standby_takes_over(pg_cluster, tmp_path):  # noqa: F811
    url = pg_cluster.url()
    first = Netinfod(tmp_path, "ha", "--store", url, *_flags()).start()
    second = standby = None
    try:
        tool("niutil", "-create", "-t", _dom(first), "/users/before")
        # without --standby: refused at once, one line naming the holder
        p = subprocess.run(
            [*_netinfod_cmd(tmp_path, "ha", url, free_port())], capture_output=True,
            text=True, env=env_with_src(), timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 2
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and f"in use by netinfo store pid {first.proc.pid} " in lines[0]
        # with --standby: waits, then serves within 10 s of the writer's SIGKILL
        standby = Netinfod(tmp_path, "ha", "--store", url, "--standby")
        standby_cmd = _netinfod_cmd(tmp_path, "ha", url, standby.port, "--standby")
        proc = subprocess.Popen(standby_cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, env=env_with_src(), text=True)
        standby.proc = proc
        line = proc.stderr.readline()
        assert "standby for postgresql domain" in line and "waiting to take over" in line, line
        killed = time.monotonic()
        first.stop(signal.SIGKILL)
        deadline = killed + 10
        serving = None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if line.startswith("netinfod: serving ha "):
                serving = time.monotonic()
                break
        assert serving is not None, "the standby did not take over within 10 s"
        print(f"\ntakeover: {serving - killed:.2f} s")
        # writable, with the writer's data
        tool("niutil", "-create", "-t", _dom(standby), "/users/after")
        names = tool("niutil", "-list", "-t", _dom(standby), "/users").stdout
        assert "before" in names and "after" in names
    finally:
        first.stop()
        if second is not None:
            second.stop()
        if standby is not None:
            standby.stop()


def _netinfod_cmd(directory, tag: str, url: str, port: int, *extra: str) -> list[str]:
    import sys

    from .conftest import TRUST
    return [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(directory), "--bind",
            "127.0.0.1", "--port", str(port), *TRUST, "--store", url, *extra, tag]


def _write_until_acknowledged(dom: str, path: str, within: float = 10.0) -> float:
    """niutil -create *path* again and again until a write is acknowledged; how long
    that took."""
    t0 = time.monotonic()
    while True:
        p = tool("niutil", "-create", "-t", dom, path, ok=False)
        if p.returncode == 0:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < within, p.stderr
        time.sleep(0.1)


def _wait_for_line(log: list[str], text: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not any(text in line for line in log):
        assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(log)[-3000:]}"
        time.sleep(0.05)


def test_a_terminated_session_is_replaced(pg_cluster, tmp_path):  # noqa: F811
    """The writer's session is killed on the server (pg_terminate_backend): the lock
    went with it; the next batch finds the connection closed, reconnects, takes the
    lock again, finds the domain as it left it, and is stored."""
    url = pg_cluster.url()
    d = Netinfod(tmp_path, "lost", "--store", url, *_flags()).start()
    log = crash_drain(d.proc)
    try:
        tool("niutil", "-create", "-t", _dom(d), "/users/kept")
        backends = _pids_of(pg_cluster, d.proc.pid)
        import psycopg
        with psycopg.connect(pg_cluster.conninfo(), autocommit=True) as c:
            for pid in backends:
                c.execute("SELECT pg_terminate_backend(%s)", (pid,))
        tool("niutil", "-create", "-t", _dom(d), "/users/next")
        assert not set(_pids_of(pg_cluster, d.proc.pid)) & set(backends)
        d.stop()
        assert "reconnected to PostgreSQL; writes are stored again" in "".join(log)
        d = Netinfod(tmp_path, "lost", "--store", url).start()
        names = tool("niutil", "-list", "-t", _dom(d), "/users").stdout
        assert "kept" in names and "next" in names
    finally:
        d.stop()


def test_postgresql_restarted_under_a_running_netinfod(pg_cluster, tmp_path):  # noqa: F811
    """While the server is down netinfod serves reads and refuses every write at once
    (NI_NOSPACE), saying why; once the server is back, writes are stored again, by the
    same netinfod; nothing durable is lost and nothing refused is stored."""
    url = pg_cluster.url()
    d = Netinfod(tmp_path, "restart", "--store", url, *_flags()).start()
    log = crash_drain(d.proc)
    try:
        tool("niutil", "-create", "-t", _dom(d), "/users/before")
        pg_cluster.stop()
        try:
            # said at once, before any write (netinfod looks every second)
            _wait_for_line(log, "the connection to PostgreSQL is lost", 10)
            assert "writes are refused until it is back" in "".join(log)
            for i in range(3):
                p = tool("niutil", "-create", "-t", _dom(d), f"/users/during{i}", ok=False)
                assert p.returncode != 0, "a write was acknowledged with the server down"
                # refused (NI_NOSPACE), or its reads already failed: what the cache does
                # not hold is read from the server (SYSTEM_ERR)
                assert "No space available" in p.stderr \
                    or "Communication failure" in p.stderr, p.stderr
            # reads of what is not cached fail as well while it is down (the domain is
            # read on demand), and never show a refused write
            listed = tool("niutil", "-list", "-t", _dom(d), "/users", ok=False).stdout
            assert "during" not in listed
        finally:
            pg_cluster.start()
        back = time.monotonic()
        # ... and back by itself, without a write
        _wait_for_line(log, "reconnected to PostgreSQL; writes are stored again", 10)
        print(f"\nreconnected {time.monotonic() - back:.2f} s after the server was back")
        tool("niutil", "-create", "-t", _dom(d), "/users/after")
        d.stop()
        d = Netinfod(tmp_path, "restart", "--store", url).start()
        names = tool("niutil", "-list", "-t", _dom(d), "/users").stdout
        assert "before" in names and "after" in names and "during" not in names
    finally:
        d.stop()


def test_a_standby_waits_through_a_server_restart(pg_cluster, tmp_path):  # noqa: F811
    """A standby netinfod whose connection goes with a restart of the server connects
    again and waits on; the writer, back too, keeps the domain; the writer's death then
    hands it to the standby."""
    url = pg_cluster.url()
    first = Netinfod(tmp_path, "wait", "--store", url, *_flags()).start()
    standby = Netinfod(tmp_path, "wait", "--store", url, "--standby")
    try:
        tool("niutil", "-create", "-t", _dom(first), "/users/before")
        standby.proc = subprocess.Popen(
            _netinfod_cmd(tmp_path, "wait", url, standby.port, "--standby"),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env=env_with_src(), text=True)
        assert "waiting to take over" in standby.proc.stderr.readline()
        log = crash_drain(standby.proc)
        pg_cluster.stop()
        pg_cluster.start()
        _write_until_acknowledged(_dom(first), "/users/restarted")
        time.sleep(1.0)
        assert standby.proc.poll() is None, "".join(log)
        assert not any(line.startswith("netinfod: serving") for line in log)
        first.stop(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not any(line.startswith("netinfod: serving wait ") for line in log):
            assert time.monotonic() < deadline, "".join(log)
            time.sleep(0.05)
        tool("niutil", "-create", "-t", _dom(standby), "/users/after")
        names = tool("niutil", "-list", "-t", _dom(standby), "/users").stdout
        assert all(n in names for n in ("before", "restarted", "after"))
    finally:
        first.stop()
        standby.stop()


def test_nistore_copy_sqlite_postgres_sqlite(pg_cluster, tmp_path):  # noqa: F811
    d = Netinfod(tmp_path, "orig", *_flags()).start()
    try:
        for args in WRITES:
            tool("niutil", *args[:1], "-t", _dom(d), *args[1:])
        want = _state(_dom(d))
    finally:
        d.stop()
    src = tmp_path / "orig.nidb"
    url = pg_cluster.url()
    p = tool("nistore", "copy", str(src), url)
    assert p.stdout.startswith("copied ") and want[1] in p.stdout
    # refused without -f, replaced with it
    p = tool("nistore", "copy", str(src), url, ok=False)
    assert p.returncode == 2 and "already holds a domain" in p.stderr
    tool("nistore", "copy", "-f", str(src), url)
    back = tmp_path / "back.nidb"
    back.mkdir()
    tool("nistore", "copy", url, str(back))
    a, b = SqliteStore(str(src / "netinfo.sqlite")), SqliteStore(str(back / "netinfo.sqlite"))
    try:
        assert a.load() == b.load()
        assert a.index_rows() == b.index_rows()
    finally:
        a.close()
        b.close()
    for spec in (str(src), url, str(back)):
        p = tool("nistore", "check", spec)
        assert "are whole" in p.stdout
        info = tool("nistore", "info", spec).stdout
        assert f"checksum: {want[1]}" in info
    assert "domains in the database: " in tool("nistore", "info", url).stdout
    # served from each copy: byte-identical to the original
    for extra in (("--store", url), ()):
        tag = "back" if not extra else "copy"
        d = Netinfod(tmp_path, tag, *extra).start()
        try:
            assert _state(_dom(d)) == want
        finally:
            d.stop()
    # check finds a damaged index, and a serving writer keeps copies out
    import psycopg
    from netinfo.storage.postgres import split_url
    with psycopg.connect(pg_cluster.conninfo(), autocommit=True) as c:
        c.execute(f'DELETE FROM "ni_{split_url(url)[1]}".keys WHERE value = %s', (b"ann",))
    p = tool("nistore", "check", url, ok=False)
    assert p.returncode == 1 and "LOOKUP index lacks 2 rows" in p.stdout   # /users/ann, staff
    d = Netinfod(tmp_path, "copy", "--store", url).start()
    try:
        p = tool("nistore", "copy", "-f", str(src), url, ok=False)
        assert p.returncode == 2 and "in use by" in p.stderr
    finally:
        d.stop()


def test_nistore_streams_an_exact_copy_through_postgres(pg_cluster, tmp_path):  # noqa: F811
    """SQLite → PostgreSQL → SQLite of a domain with freed numbers, children out of
    number order, lists longer than a chunk, non-UTF-8 bytes and counters: the rows of
    the copy back are the original's (tests/test_nistore.py); check finds a cycle and a
    missing index row in PostgreSQL."""
    from .test_nistore import build_domain, rows
    src = tmp_path / "src.sqlite"
    checksum = build_domain(src)
    want = rows(src)
    url = pg_cluster.url()
    p = tool("nistore", "copy", str(src), url)
    assert p.stdout == f"copied {len(want['dirs'])} directories, checksum {checksum}\n"
    back = tmp_path / "back.sqlite"
    p = tool("nistore", "copy", url, str(back))
    assert p.stdout == f"copied {len(want['dirs'])} directories, checksum {checksum}\n"
    assert rows(back) == want
    info = tool("nistore", "info", url).stdout
    assert "freed numbers: 4\n" in info and "counter anon_writes: 17\n" in info
    p = tool("nistore", "check", url, ok=False)
    assert p.stdout == f"{url}: stored checksum {checksum} differs from the computed " \
                       f"{_computed(want)}\n"
    import psycopg
    from netinfo.storage.postgres import split_url
    schema = f'"ni_{split_url(url)[1]}"'
    with psycopg.connect(pg_cluster.conninfo(), autocommit=True) as c:
        c.execute(f"UPDATE {schema}.meta SET value = %s WHERE key = 'checksum'",
                  (_computed(want),))
        c.execute(f"DELETE FROM {schema}.kids WHERE child IN (3, 4)")
        c.execute(f"UPDATE {schema}.dirs SET parent = 4 WHERE id = 3")
        c.execute(f"UPDATE {schema}.dirs SET parent = 3 WHERE id = 4")
        c.execute(f"INSERT INTO {schema}.kids VALUES (3, 0, 4), (4, 0, 3)")
        c.execute(f"DELETE FROM {schema}.keys WHERE child = 20")
    p = tool("nistore", "check", url, ok=False)
    assert p.returncode == 1
    assert f"{url}: 2 directories are not reachable from the root: [3, 4]\n" in p.stdout
    # 20's three rows (the second "name" property gives none), and 3 and 4 now
    # name new parents: their three rows each under the old ones are extra, and
    # those under the new ones missing
    assert f"{url}: the LOOKUP index lacks 9 rows, e.g. (1, b'name', b'u17', 20)\n" \
        in p.stdout
    assert f"{url}: the LOOKUP index has 6 rows no property gives, e.g. " \
           f"(1, b'name', b'u0', 3)\n" in p.stdout


def _computed(want) -> int:
    return sum((r[0] + 1) * r[1] for r in want["dirs"]) & 0xFFFFFFFF


def test_nistore_never_loads_a_postgres_domain(pg_cluster, tmp_path, monkeypatch,  # noqa: F811
                                               capsys):
    from netinfo.cli import nistore
    from netinfo.storage import Store
    from netinfo.storage.postgres import PostgresStore

    from .test_nistore import build_domain, rows

    def refused(self):
        raise AssertionError(f"{type(self).__name__}.load called")

    for cls in (Store, SqliteStore, PostgresStore, MemoryStore):
        monkeypatch.setattr(cls, "load", refused)
    src = tmp_path / "src.sqlite"
    build_domain(src)
    url = pg_cluster.url()
    back = tmp_path / "back.sqlite"
    assert nistore.main(["copy", str(src), url]) == 0
    assert nistore.main(["copy", url, str(back)]) == 0
    assert nistore.main(["info", url]) == 0
    assert nistore.main(["check", url]) == 1   # build_domain's checksum is made up
    assert rows(back) == rows(src)
    assert "directories: 17001" in capsys.readouterr().out


def test_nistore_copy_cut_short_is_never_a_postgres_domain(pg_cluster, tmp_path):  # noqa: F811
    import psycopg

    from netinfo.storage.postgres import split_url

    from .test_nistore import build_domain, crashing_copy, rows, small
    src = tmp_path / "src.sqlite"
    build_domain(src)
    url = pg_cluster.url()
    schema = f"ni_{split_url(url)[1]}"

    def schemas() -> list[str]:
        with psycopg.connect(pg_cluster.conninfo(), autocommit=True) as c:
            return [r[0] for r in c.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1",
                (schema + "%",))]

    p = crashing_copy(str(src), url)
    assert p.returncode == 9, p.stderr
    assert schemas() == [schema, schema + "~copy"]     # what the copy had written
    assert "directories: 0\n" in tool("nistore", "info", url).stdout
    tool("nistore", "copy", str(src), url)             # no -f needed: it holds nothing
    assert schemas() == [schema]
    back = tmp_path / "back.sqlite"
    tool("nistore", "copy", url, str(back))
    assert rows(back) == rows(src)
    # cut short while replacing the domain: the old one stays whole
    other = tmp_path / "other.sqlite"
    small(other)
    p = crashing_copy("-f", str(other), url)
    assert p.returncode == 9, p.stderr
    assert "directories: 17001\n" in tool("nistore", "info", url).stdout
