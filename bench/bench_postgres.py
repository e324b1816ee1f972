"""The PostgreSQL engine against SQLite in one run (issue 23's measurements).

Usage: python bench/bench_postgres.py [--users N] [--niload N] [--seconds S] [--rounds R]
[--no-copy-back] [--no-clone] [--no-niload] [--no-takeover] [--no-lookups]

A scratch PostgreSQL cluster (tests/pgcluster.py: initdb in a temporary directory, a unix
socket only; as root it runs as nobody), fsync on. Builds an N-user SQLite domain the fast
way (bench_scale.build), copies it into PostgreSQL with ``nistore copy`` (timed), reads
both engines' files once (:func:`warm`: both measured from the page cache), then for
each engine: netinfod's start (exec → the first ``LOOKUP /users name=userK`` answered),
its RSS, LOOKUPs/s of random users with 1 client and with 4 client processes (one TCP
connection each, sequential calls; after a warm-up run of 4 clients, medians of
``--rounds``), also for PostgreSQL with ``--store-on-loop`` (every round trip on the
event loop: the control for the store threads, server/storeio.py) and both engines with
``--no-lookup-index`` (every LOOKUP read from the store: the control for the resident
index, storage/keyindex.py), and ``niload
passwd`` of M new users into a fresh ``-m --populate`` domain. Then the takeover: a
writer and a ``--standby`` on the N-user PostgreSQL domain, the writer SIGKILLed, time
until the standby answers a LOOKUP. Last, a clone's copy of the N-user domain in each
engine, through nibindd (``nibindd --store`` for PostgreSQL: the clone is another domain
of the same database): ``nidomain -c`` until the clone's checksum is the master's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_scale import Conn, build, first_answer, free_port, rss_mib  # noqa: E402

from tests.pgcluster import Cluster, missing  # noqa: E402


def env() -> dict[str, str]:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), NETINFO_BROADCAST="off",
                NETINFO_PORTMAPPER=f"127.0.0.1:{port}")


def netinfod(directory: Path, tag: str, *extra: str, port: int | None = None
             ) -> tuple[subprocess.Popen, int]:
    port = port or free_port()
    cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(directory), "--bind",
           "127.0.0.1", "--port", str(port), "--trust-local", "-n", *extra, tag]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=env(), text=True), port


def _lookups(port: int, users: int, seconds: float, seed: int, out) -> None:
    rnd = random.Random(seed)
    c = Conn(port)
    (users_id,) = c.lookup(0, "name", "users")
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        k = rnd.randrange(users)
        assert c.lookup(users_id, "name", f"user{k}") == [k + 2]
        n += 1
    c.close()
    out.put(n / seconds)


def lookups_per_s(port: int, users: int, clients: int, seconds: float = 5.0) -> float:
    q: multiprocessing.Queue = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=_lookups, args=(port, users, seconds, i, q))
          for i in range(clients)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def warm(cluster: Cluster, domain: str, sqlite_file: Path) -> None:
    """Read each engine's files once, so both are measured from the OS page cache: the
    SQLite file was just read whole by ``nistore copy``, but of the PostgreSQL domain only
    what the copy read back (dirs, kids); without this the first lookups of a big domain
    each wait for a disk read of the keys index (3 ms, measured at 1M)."""
    import psycopg
    with psycopg.connect(cluster.conninfo(), autocommit=True) as c:
        files = [r[0] for r in c.execute(
            "SELECT pg_relation_filepath(oid) FROM pg_class WHERE relnamespace = %s::regnamespace"
            " AND relkind IN ('r', 'i')", (f"ni_{domain}",))]
    data = Path(cluster.data)
    for rel in files:
        for f in sorted(data.glob(rel + "*")):
            with open(f, "rb") as fh:
                while fh.read(1 << 20):
                    pass
    with open(sqlite_file, "rb") as fh:
        while fh.read(1 << 20):
            pass


def niload_time(directory: Path, tag: str, n: int, *store: str) -> float:
    p, port = netinfod(directory, tag, *store, "-m", "--populate")
    try:
        while not p.stderr.readline().startswith(f"netinfod: serving {tag}"):
            pass
        text = "".join(f"load{k}:*:{20000 + k}:20::0:0:Load {k}:/Users/load{k}:/bin/sh\n"
                       for k in range(n))
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "netinfo.cli.niload", "passwd", "-t",
                            f"127.0.0.1:{port}/{tag}"], input=text, text=True, env=env(),
                           capture_output=True)
        elapsed = time.perf_counter() - t0
        assert r.returncode == 0, r.stderr
        return elapsed
    finally:
        stop(p)


async def _checksum(tag: str) -> int:
    from netinfo.client import binding
    from netinfo.client.core import Client
    _, port = await binding.getregister("127.0.0.1", tag, timeout=2)
    c = await Client.connect("127.0.0.1", port, tag, privileged=False)
    try:
        return int(dict(await c.statistics())["checksum"][0])
    finally:
        await c.close()


def _peak_mib(directory: Path, tag: str) -> float:
    """The peak RSS (VmHWM) of the netinfod serving *tag* from *directory*, MiB (0:
    none found)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            # netinfod sets its title: "netinfod TAG --dir DIR ..."
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(
                errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if title.startswith(f"netinfod {tag} --dir {directory} ") and "VmHWM" in fields:
            return int(fields["VmHWM"].split()[0]) / 1024
    return 0.0


def clone_copy_time(directory: Path, *store: str, timeout: float = 3600
                    ) -> tuple[float, float]:
    """A clone of ``127.0.0.1/big`` made through nibindd (``nidomain -c copy``) in the
    master's own catalog (a SQLite file beside it, or a domain of the same PostgreSQL
    database with ``--store``): seconds from the call until both checksums agree, and
    the clone netinfod's peak RSS (VmHWM, MiB) then."""
    import asyncio

    from tests.conftest import Nibindd
    nb = Nibindd(directory, *store)
    os.environ["NETINFO_PORTMAPPER"] = nb.env["NETINFO_PORTMAPPER"]
    os.environ["NETINFO_BROADCAST"] = "off"
    nb.start(timeout=600, tags=("big",))
    try:
        master = asyncio.run(_checksum("big"))
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "netinfo.cli.nidomain", "-c", "copy",
                            "127.0.0.1/big"], env=nb.env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        while time.perf_counter() - t0 < timeout:
            try:
                if asyncio.run(_checksum("copy")) == master:
                    took = time.perf_counter() - t0
                    return took, _peak_mib(directory, "copy")
            except Exception:
                pass
            time.sleep(0.1)
        raise TimeoutError("the clone did not converge")
    finally:
        nb.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--niload", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3, help="lookup runs per engine (median)")
    ap.add_argument("--no-niload", action="store_true", help="skip the niload runs")
    ap.add_argument("--no-takeover", action="store_true", help="skip the takeover")
    ap.add_argument("--no-lookups", action="store_true",
                    help="skip the servers' start, RSS and lookup rates")
    ap.add_argument("--no-copy-back", action="store_true",
                    help="skip nistore copy PostgreSQL -> SQLite (minutes at 1M)")
    ap.add_argument("--no-clone", action="store_true", help="skip the clone copies")
    args = ap.parse_args()
    why = missing()
    if why:
        sys.exit(why)
    users = args.users
    cluster = Cluster()
    cluster.init()
    top = Path(tempfile.mkdtemp(prefix="ni-bench-pg-"))
    try:
        t = build(top / "lite", "big", users, ROOT / "src")
        print(f"SQLite domain of {users:,} users built in {t:.1f} s", flush=True)
        url = cluster.url("big")
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "netinfo.cli.nistore", "copy",
                            str(top / "lite" / "big.nidb"), url], env=env(),
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        print(f"nistore copy SQLite -> PostgreSQL: {time.perf_counter() - t0:.1f} s",
              flush=True)
        if not args.no_copy_back:
            back = top / "back.nidb"
            back.mkdir()
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "netinfo.cli.nistore", "copy", url,
                                str(back)], env=env(), capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            print(f"nistore copy PostgreSQL -> SQLite: {time.perf_counter() - t0:.1f} s",
                  flush=True)
        warm(cluster, "big", top / "lite" / "big.nidb" / "netinfo.sqlite")
        rates: dict[str, tuple[float, float]] = {}
        for name, store in () if args.no_lookups else (
                            ("sqlite", ()), ("postgresql", ("--store", url)),
                            # the controls: each round trip on the event loop (as before
                            # the store threads, server/storeio.py); every LOOKUP read
                            # from the store (no resident index: storage/keyindex.py)
                            ("postgresql --store-on-loop", ("--store", url,
                                                            "--store-on-loop")),
                            ("sqlite --no-lookup-index", ("--no-lookup-index",)),
                            ("postgresql --no-lookup-index", ("--store", url,
                                                              "--no-lookup-index"))):
            t0 = time.perf_counter()
            p, port = netinfod(top / "lite", "big", *store)
            try:
                start = first_answer(p, port, users, t0)
                rss = rss_mib(p.pid)
                # a warm-up run first (each engine's caches and netinfod's reply table
                # filled as a running server's are), then medians of args.rounds, 1 and 4
                # clients alternating
                lookups_per_s(port, users, 4, args.seconds)
                ones, fours = [], []
                for _ in range(args.rounds):
                    ones.append(lookups_per_s(port, users, 1, args.seconds))
                    fours.append(lookups_per_s(port, users, 4, args.seconds))
                one, four = statistics.median(ones), statistics.median(fours)
                rates[name] = (one, four)
                lite = rates["sqlite"]
                print(f"{name}: start to first answer {start:.2f} s, RSS {rss:.0f} MiB "
                      f"({rss_mib(p.pid):.0f} MiB after the lookups), "
                      f"lookups/s 1 client {one:,.0f} ({one / lite[0]:.2f}x SQLite), "
                      f"4 clients {four:,.0f} ({four / lite[1]:.2f}x SQLite); "
                      f"medians of {args.rounds}", flush=True)
            finally:
                stop(p)
        for name, store in (() if args.no_niload else (
                ("sqlite", ()), ("postgresql", ("--store", cluster.url("load"))))):
            t = niload_time(top / name, "load", args.niload, *store)
            print(f"{name}: niload passwd of {args.niload:,} users: {t:.1f} s", flush=True)
        if not args.no_takeover:
            writer, wport = netinfod(top / "ha", "big", "--store", url)
            t0 = time.perf_counter()
            first_answer(writer, wport, users, t0)
            standby, sport = netinfod(top / "ha", "big", "--store", url, "--standby")
            line = standby.stderr.readline()
            assert "waiting to take over" in line, line
            killed = time.perf_counter()
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            took = first_answer(standby, sport, users, killed)
            print(f"takeover: SIGKILL of the writer -> the standby's first answer: {took:.2f} s",
                  flush=True)
            stop(standby)
        if not args.no_clone:
            # a clone in each engine's catalog, copied from the master of the same engine
            for name, where, store in (
                    ("sqlite", top / "lite", ()),
                    ("postgresql", top / "pgnib", ("--store", cluster.conninfo()))):
                where.mkdir(exist_ok=True)
                t, peak = clone_copy_time(where, *store)
                print(f"{name}: clone copy of {users:,} users (nidomain -c, until the "
                      f"checksums agree): {t:.1f} s, the clone's peak RSS {peak:.0f} MiB",
                      flush=True)
    finally:
        cluster.remove()
        subprocess.run(["rm", "-rf", str(top)])


if __name__ == "__main__":
    main()
