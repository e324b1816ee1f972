"""``nistore`` copy, check and info streaming a domain (issue 23 item 4), on SQLite.

Real ``nistore`` subprocesses: an exact copy of a domain with freed numbers, children out
of number order, directories with more children than a chunk, non-UTF-8 bytes in values
and counters, compared row by row with the original; ``check`` finding each kind of
damage made by hand in the file (orphans, a cycle, a wrong parent, a directory listed
twice, a listed child that does not exist, a child list of no directory, the root listed,
a bad checksum, index rows missing and extra); a copy whose process dies before the swap
leaves no domain (and a replaced one whole); and in process, that none of the three
ever loads a whole domain (``Store.load``). The same copy through PostgreSQL:
tests/test_postgres.py.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from netinfo.cli import nistore
from netinfo.storage import RESET, Free, KidDel, KidIns, Meta, Put, Store
from netinfo.storage.memory import MemoryStore
from netinfo.storage.sqlite import SqliteStore

from .conftest import tool_process

#: children of /a and /b: more than a chunk of directories (storage.Dump.chunk) and,
#: together, more than a chunk of child list rows (storage.dump.ROWS)
A_KIDS, B_KIDS = 9000, 8000


def build_domain(path: Path) -> int:
    """A domain exercising what an exact copy must keep; its checksum."""
    rng = random.Random(23)
    store = SqliteStore(str(path))
    ops: list = [RESET, Put(0, 4, 0, [("master", ["localhost/test"]), ("trusted_networks", [])]),
                 Put(1, 2, 0, [("name", ["a"])]), Put(2, 5, 0, [("name", ["b"])]),
                 KidIns(0, 0, 2), KidIns(0, 0, 1)]           # / lists b before a
    oid = 3
    a_kids, b_kids = [], []
    for i in range(A_KIDS):
        # non-UTF-8 bytes (surrogateescape), a repeated value, a name given twice
        ops.append(Put(oid, 1 + i % 7, 1, [("name", [f"u{i}", f"x\udcff{i}", f"u{i}"]),
                                           ("uid", [str(i)]), ("name", ["second"])]))
        a_kids.append(oid)
        oid += 1
    for i in range(B_KIDS):
        ops.append(Put(oid, 3, 2, [("name", [f"h{i}"]), ("ip_address", [f"10.0.{i}"])]))
        b_kids.append(oid)
        oid += 1
    a_kids.reverse()            # children out of number order
    rng.shuffle(b_kids)
    ops += [KidIns(1, i, k) for i, k in enumerate(a_kids)]
    ops += [KidIns(2, i, k) for i, k in enumerate(b_kids)]
    # freed numbers: beyond the highest, and holes among the children
    ops += [Free(oid + 10, 9), Free(oid + 11, 1)]
    ops += [KidDel(1, 100), Free(100, 8), KidDel(2, A_KIDS + 50), Free(A_KIDS + 50, 4)]
    ops += [Meta("anon_writes", 17), Meta("seq", 3)]
    checksum = 987654321
    store.commit(ops, checksum)
    store.close()
    return checksum


def rows(path: Path) -> dict[str, list]:
    """Everything a store file holds of its domain, as rows (child lists in order,
    without the ordinal keys, which a copy gives afresh)."""
    c = sqlite3.connect(path)
    try:
        return {
            "dirs": c.execute("SELECT id, instance, parent, props FROM dirs ORDER BY id")
            .fetchall(),
            "kids": c.execute("SELECT parent, child FROM kids ORDER BY parent, ord").fetchall(),
            "freed": c.execute("SELECT id, instance FROM freed ORDER BY id").fetchall(),
            "meta": c.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
            "keys": c.execute("SELECT * FROM keys ORDER BY 1, 2, 3, 4").fetchall(),
        }
    finally:
        c.close()


def tool(*args: str, ok: bool = True):
    p = tool_process("nistore", *args)
    if ok:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def test_copy_is_exact_and_checked(tmp_path):
    src = tmp_path / "src.sqlite"
    checksum = build_domain(src)
    want = rows(src)
    assert len(want["kids"]) > 16384 and len(want["dirs"]) > 2 * 2000
    assert any(b"\xff" in r[3] for r in want["dirs"])
    dst = tmp_path / "dst.sqlite"
    p = tool("copy", str(src), str(dst))
    assert p.stdout == f"copied {len(want['dirs'])} directories, checksum {checksum}\n"
    assert rows(dst) == want
    # refused without -f; replaced whole with it; nothing left beside it
    p = tool("copy", str(src), str(dst), ok=False)
    assert p.returncode == 2 and "already holds a domain" in p.stderr
    tool("copy", "-f", str(src), str(dst))
    assert rows(dst) == want
    assert not (tmp_path / "dst.sqlite.temp").exists()
    info = tool("info", str(dst)).stdout
    assert f"directories: {len(want['dirs'])}\n" in info
    assert f"highest number: {want['dirs'][-1][0]}\n" in info
    assert "freed numbers: 4\n" in info and f"checksum: {checksum}\n" in info
    assert "counter anon_writes: 17\n" in info and "counter seq: 3\n" in info
    # the stored checksum is not the computed one: check says so of both
    for f in (src, dst):
        p = tool("check", str(f), ok=False)
        assert p.returncode == 1 and f"stored checksum {checksum} differs" in p.stdout


def test_copy_refuses_an_empty_source_and_a_missing_file(tmp_path):
    empty = tmp_path / "empty.sqlite"
    SqliteStore(str(empty)).close()
    p = tool("copy", str(empty), str(tmp_path / "x.sqlite"), ok=False)
    assert p.returncode == 2 and "holds no domain" in p.stderr
    p = tool("check", str(tmp_path / "none.sqlite"), ok=False)
    assert p.returncode == 2 and "no SQLite store" in p.stderr


def small(path: Path) -> None:
    """/ → a (1) → x (3), y (4); / → b (2) → z (5); 6 and 7 for the damage."""
    store = SqliteStore(str(path))
    props = {0: [], 1: [("name", ["a"])], 2: [("name", ["b"])], 3: [("name", ["x"])],
             4: [("name", ["y"]), ("uid", ["4"])], 5: [("name", ["z"])],
             6: [("name", ["c"])], 7: [("name", ["d"])]}
    parent = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 0, 7: 0}
    ops: list = [RESET]
    ops += [Put(o, 1, parent[o], p) for o, p in props.items()]
    ops += [KidIns(0, 9, 1), KidIns(0, 9, 2), KidIns(1, 9, 3), KidIns(1, 9, 4),
            KidIns(2, 9, 5), KidIns(0, 9, 6), KidIns(0, 9, 7)]
    store.commit(ops, sum(o + 1 for o in props) & 0xFFFFFFFF)
    store.close()


#: damage done by SQL → what check must say (one line of its output)
DAMAGE = [
    ("DELETE FROM kids WHERE child = 4", "1 directories are in no child list: [4]"),
    # 6 and 7 list each other, away from the root: no orphan, no wrong parent
    ("DELETE FROM kids WHERE child IN (6, 7); UPDATE dirs SET parent = 7 WHERE id = 6;"
     " UPDATE dirs SET parent = 6 WHERE id = 7; INSERT INTO kids VALUES (6, 0, 7), (7, 0, 6)",
     "2 directories are not reachable from the root: [6, 7]"),
    ("UPDATE dirs SET parent = 2 WHERE id = 3", "directory 3 is listed by 1 but names 2"),
    ("INSERT INTO kids VALUES (2, 99, 3)", "directory 3 is listed by 1 and 2"),
    ("INSERT INTO kids VALUES (2, 99, 42)", "directory 2 lists child 42, which does not exist"),
    ("INSERT INTO kids VALUES (40, 0, 3)", "directory 40 has a child list but does not exist"),
    # a cycle through numbers that are no directories, reached from the root: no walk
    ("INSERT INTO kids VALUES (0, 99, 40), (40, 0, 41), (41, 0, 40)",
     "directory 0 lists child 40, which does not exist"),
    ("INSERT INTO kids VALUES (5, 0, 0)", "the root is listed as a child of 5"),
    ("UPDATE meta SET value = 7 WHERE key = 'checksum'",
     "stored checksum 7 differs from the computed 36"),
    ("DELETE FROM keys WHERE child = 4 AND key = CAST('uid' AS BLOB)",
     "the LOOKUP index lacks 1 rows, e.g. (1, b'uid', b'4', 4)"),
    ("INSERT INTO keys VALUES (1, CAST('name' AS BLOB), CAST('q' AS BLOB), 3)",
     "the LOOKUP index has 1 rows no property gives, e.g. (1, b'name', b'q', 3)"),
    ("INSERT INTO keys VALUES (1, CAST('name' AS BLOB), CAST('q' AS BLOB), 77)",
     "the LOOKUP index has 1 rows no property gives, e.g. (1, b'name', b'q', 77)"),
    ("DELETE FROM dirs WHERE id = 0", "no root directory (0)"),
]


@pytest.mark.parametrize(("sql", "said"), DAMAGE, ids=[d[1][:40] for d in DAMAGE])
def test_check_finds_each_damage(tmp_path, sql, said):
    path = tmp_path / "d.sqlite"
    small(path)
    p = tool("check", str(path))
    assert p.stdout == f"{path}: 8 directories, checksum 36: tree, checksum and LOOKUP " \
                       f"index are whole\n"
    c = sqlite3.connect(path)
    c.executescript(sql)
    c.close()
    p = tool("check", str(path), ok=False)
    assert p.returncode == 1, p.stdout
    assert f"{path}: {said}\n" in p.stdout, p.stdout


def test_nothing_loads_a_whole_domain(tmp_path, monkeypatch, capsys):
    """copy, check and info never call Store.load (in process, on SQLite)."""
    src = tmp_path / "src.sqlite"
    build_domain(src)
    want = rows(src)

    def refused(self: Store) -> None:
        raise AssertionError(f"{type(self).__name__}.load called")

    for cls in (Store, SqliteStore, MemoryStore):
        monkeypatch.setattr(cls, "load", refused)
    dst = tmp_path / "dst.sqlite"
    assert nistore.main(["copy", str(src), str(dst)]) == 0
    assert rows(dst) == want
    assert nistore.main(["copy", "-f", str(dst), str(src)]) == 0
    assert nistore.main(["check", str(dst)]) == 1   # the stored checksum is made up
    assert nistore.main(["info", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "stored checksum 987654321 differs" in out and "directories: 17001" in out


def test_memory_stores_go_through_images(tmp_path):
    """The memory engine (no dump, no swap of its own) copies through its image."""
    src = tmp_path / "src.sqlite"
    small(src)
    assert nistore.main(["copy", str(src), "memory:nistore-test"]) == 0
    assert nistore.main(["check", "memory:nistore-test"]) == 0
    back = tmp_path / "back.sqlite"
    assert nistore.main(["copy", "memory:nistore-test", str(back)]) == 0
    want = rows(src)
    got = rows(back)
    assert got == want


#: ``nistore copy`` in a process that dies (SIGKILL-like: ``os._exit``) once everything
#: of the copy is written, before it is finished and swapped in
CRASHING_COPY = """\
import os, sys
from netinfo.cli import nistore
from netinfo.storage.sqlite import SqliteCopy
classes = [SqliteCopy]
try:
    from netinfo.storage.postgres import PostgresCopy
    classes.append(PostgresCopy)
except ImportError:
    pass
for cls in classes:
    cls.finish = lambda self: os._exit(9)
sys.exit(nistore.main(sys.argv[1:]))
"""


def crashing_copy(*args: str):
    import subprocess
    import sys

    from .conftest import env_with_src
    return subprocess.run([sys.executable, "-c", CRASHING_COPY, "copy", *args],
                          env=env_with_src(), capture_output=True, text=True, timeout=120)


def test_a_copy_cut_short_is_never_a_domain(tmp_path):
    src = tmp_path / "src.sqlite"
    build_domain(src)
    dst = tmp_path / "dst.sqlite"
    p = crashing_copy(str(src), str(dst))
    assert p.returncode == 9, p.stderr
    assert (tmp_path / "dst.sqlite.temp").exists()     # what the copy had written
    assert "directories: 0\n" in tool("info", str(dst)).stdout
    tool("copy", str(src), str(dst))                   # no -f needed: it holds nothing
    assert rows(dst) == rows(src)
    assert not (tmp_path / "dst.sqlite.temp").exists()
    # cut short while replacing a domain: the old one stays whole
    small(src)
    p = crashing_copy("-f", str(src), str(dst))
    assert p.returncode == 9, p.stderr
    assert "directories: 17001\n" in tool("info", str(dst)).stdout
