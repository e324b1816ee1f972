"""Benchmark: the cost of the change history (issue 24) to writes and lookups.

In one process, against a SQLite store in a temporary directory, with the history on
(the default) and off (``--history-days 0``), alternately: N passwd users created under
/users as ``niload passwd`` makes them (one CREATE each, ten properties), committed in
batches of 64 writes as the server commits a pipelined window; then LOOKUP of 20,000
random users by name. Reports the CPU seconds of each (``time.process_time``: the
machine is shared, wall time is not a measure), the ratio on/off, and the journal's
bytes per write. ``--served``: ``niload passwd`` into a real netinfod instead, the
server's CPU seconds (from /proc) and the wall time. ``--store postgresql``: the same
on the PostgreSQL engine, each run a domain of its own in a scratch cluster
(tests/pgcluster.py: initdb in a temporary directory, a unix socket only, fsync on), the
size being the domain's tables'. Usage: ``python bench/bench_history.py [-n 100000]
[--rounds 2] [--served] [--store sqlite|postgresql]``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from netinfo.model import NI_INDEX_NULL, NiId  # noqa: E402
from netinfo.server.database import open_database  # noqa: E402
from netinfo.server.service import SUPERUSER  # noqa: E402
from netinfo.wire.proplist import decode_proplist, encode_proplist  # noqa: E402
from netinfo.wire.protocol import Proc  # noqa: E402

BATCH = 64
#: the scratch PostgreSQL cluster of ``--store postgresql`` (None: SQLite)
CLUSTER = None


def _stat(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def pg_cpu() -> float:
    """CPU seconds the scratch cluster has used so far: the postmaster's, its reaped
    children's (a backend's, once its session ended) and its live children's."""
    if CLUSTER is None:
        return 0.0
    with open(os.path.join(CLUSTER.data, "postmaster.pid")) as f:
        pm = int(f.readline())
    ticks = sum(int(v) for v in _stat(pm)[11:15])
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = _stat(d)
            except OSError:
                continue
            if int(st[1]) == pm:
                ticks += int(st[11]) + int(st[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pg_settle(drop: str | None = None) -> None:
    """Drop the domain of URL *drop* (a run's), then CHECKPOINT and VACUUM: the next run
    pays for nothing an earlier one left (autovacuum, dirty pages)."""
    if CLUSTER is None:
        return
    import psycopg  # noqa: PLC0415

    from netinfo.storage.postgres import SCHEMA_PREFIX, split_url  # noqa: PLC0415
    with psycopg.connect(CLUSTER.conninfo(), autocommit=True) as c:
        if drop:
            c.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA_PREFIX}{split_url(drop)[1]}" CASCADE')
        c.execute("VACUUM")
        c.execute("CHECKPOINT")


def pg_size(url: str) -> int:
    """The bytes of a PostgreSQL domain's tables and indexes."""
    import psycopg  # noqa: PLC0415

    from netinfo.storage.postgres import SCHEMA_PREFIX, split_url  # noqa: PLC0415
    assert CLUSTER is not None
    with psycopg.connect(CLUSTER.conninfo(), autocommit=True) as c:
        return int(c.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (SCHEMA_PREFIX + split_url(url)[1],)).fetchone()[0])


def user(i: int) -> list[tuple[str, list[str]]]:
    """A user's proplist as the server receives it (its wire bytes kept, as a call's)."""
    return decode_proplist(encode_proplist([
        ("name", [f"user{i:06d}"]), ("passwd", ["$1$salt$abcdefghijklmnopqrstuv"]),
        ("uid", [str(10000 + i)]), ("gid", ["20"]), ("change", ["0"]),
        ("expire", ["0"]), ("realname", [f"User Number {i}"]),
        ("home", [f"/Users/user{i:06d}"]), ("shell", ["/bin/zsh"]), ("class", [""])]))


def one(n: int, on: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = CLUSTER.url() if CLUSTER is not None else None
        db = open_database(Path(tmp), "bench", create=True, store=url)
        journal = db.store.journal
        assert journal is not None
        journal.configure(90.0 if on else 0.0, 1 << 20)
        root = db.call(Proc.SELF, SUPERUSER, (NiId(0, 0),))
        users, _ = db.call(Proc.CREATE, SUPERUSER, (root, [("name", ["users"])],
                                                      NI_INDEX_NULL, None))
        db.commit()
        made = [user(i) for i in range(n)]
        pg_settle()
        pg0, w0 = pg_cpu(), time.monotonic()
        t0 = time.process_time()
        for i in range(n):
            users = db.call(Proc.SELF, SUPERUSER, (NiId(users.object, 0),))
            db.call(Proc.CREATE, SUPERUSER, (users, made[i], NI_INDEX_NULL, None))
            if i % BATCH == BATCH - 1:
                db.commit()
        db.commit()
        write = time.process_time() - t0
        wall, pg = time.monotonic() - w0, pg_cpu() - pg0
        entries, nbytes = journal.size()
        rnd = random.Random(1)
        t0 = time.process_time()
        for _ in range(20_000):
            db.call(Proc.LOOKUP, SUPERUSER, (NiId(users.object, 0), "name",
                                             f"user{rnd.randrange(n):06d}"))
        lookup = time.process_time() - t0
        db.close()
        size = pg_size(url) if url else (Path(tmp) / "bench.nidb" / "netinfo.sqlite"
                                         ).stat().st_size
        if url:
            pg_settle(url)
    return {"write": write, "lookup": lookup, "entries": entries, "bytes": nbytes,
            "file": size, "wall": wall, "pg": pg}


def served(n: int, on: bool) -> dict[str, float]:
    """``niload passwd`` of *n* users into a real netinfod (history on or off): the
    server's CPU seconds (utime + stime from /proc) and the wall time."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_niload as bn  # noqa: PLC0415 - the niload benchmark's helpers
    with tempfile.TemporaryDirectory() as tmp:
        port = bn.free_port()
        url = CLUSTER.url() if CLUSTER is not None else None
        pg_settle()
        proc = bn.start_server(tmp, port, ([] if on else ["--history-days", "0"])
                               + (["--store", url] if url else []))
        pg0 = pg_cpu()
        try:
            wall, _ = bn.timed(["netinfo.cli.niload", "passwd", "-t",
                                f"127.0.0.1:{port}/{bn.TAG}"], bn.passwd_lines(n))
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        finally:
            proc.terminate()
            proc.wait(30)
        time.sleep(0.5)   # the server's backend gone and reaped
        pg = pg_cpu() - pg0
        size = pg_size(url) if url else (Path(tmp) / f"{bn.TAG}.nidb" / "netinfo.sqlite"
                                         ).stat().st_size
        if url:
            pg_settle(url)
    return {"cpu": cpu, "wall": wall, "file": size, "pg": pg}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--served", action="store_true",
                    help="niload passwd into a real netinfod instead (its CPU and wall)")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the engine (postgresql: a scratch cluster of its own)")
    a = ap.parse_args()
    if a.store == "postgresql":
        global CLUSTER
        from tests.pgcluster import Cluster, missing  # noqa: PLC0415
        why = missing()
        if why:
            print(f"bench_history: {why}", file=sys.stderr)
            return 1
        CLUSTER = Cluster()
        CLUSTER.init()
        try:
            return run(a)
        finally:
            CLUSTER.remove()
    return run(a)


def run(a: argparse.Namespace) -> int:
    print(f"engine: {a.store}", flush=True)
    if a.served:
        for r in range(a.rounds):
            for on in (False, True):
                got = served(a.n, on)
                print(f"round {r + 1} history {'on ' if on else 'off'}: niload passwd "
                      f"{a.n}: netinfod {got['cpu']:7.2f} s CPU, "
                      + (f"postgres {got['pg']:7.2f} s CPU, " if CLUSTER else "")
                      + f"wall {got['wall']:7.2f} s, file {got['file'] / 2**20:6.1f} MiB",
                      flush=True)
        return 0
    for r in range(a.rounds):
        for on in (False, True):
            got = one(a.n, on)
            per = got["bytes"] / got["entries"] if got["entries"] else 0
            print(f"round {r + 1} history {'on ' if on else 'off'}: {a.n} creates "
                  f"{got['write']:7.2f} s CPU"
                  + (f" + postgres {got['pg']:6.2f} s" if CLUSTER else "")
                  + f" (wall {got['wall']:6.2f} s), 20,000 lookups {got['lookup']:5.2f} s CPU, "
                  f"journal {got['entries']} entries {got['bytes'] / 2**20:6.1f} MiB "
                  f"({per:.0f} B/write), file {got['file'] / 2**20:6.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
