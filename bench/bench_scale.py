"""A netinfod serving a million users: start-up, memory, READALL, shutdown, LOOKUP latency.

Usage: python bench/bench_scale.py [--users N] [--small N] [--src DIR] [--cache N]
                                   [--keep DIR] [--json FILE]

Builds a SQLite domain of N users under /users FAST, by writing the store's tables
directly (niload would take minutes), then starts ``netinfod`` as a subprocess on
127.0.0.1 and measures:

* start: from exec until ``LOOKUP /users name=userK`` (after ``LOOKUP / name=users``)
  is answered, retrying the connection every 5 ms;
* RSS idle after start, and after the LOOKUP/READ workload (cache warm);
* RSS peak while a READALL streams the whole domain (sampled every 20 ms);
* a small READ's latency while LIST /users, LISTALL /users or READALL streams;
* p50/p99 of sequential LOOKUPs of random users, for the N-user domain and a
  ``--small``-user one (the same process layout): the first LOOKUPs after start, and
  the median of three rounds after ``--settle`` seconds;
* SIGTERM to exit.

``--src`` runs another source tree's netinfod (e.g. /work/main/src, to measure the
representation before issue 10); the domain is then built with that tree's schema.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from netinfo.storage.sqlite import key_rows  # noqa: E402
from netinfo.wire import rpc  # noqa: E402
from netinfo.wire.proplist import encode_proplist  # noqa: E402
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, Proc  # noqa: E402
from netinfo.wire.xdr import Packer  # noqa: E402

GAP = 1 << 32
BATCH = 20_000


def user_props(k: int) -> list[tuple[str, list[str]]]:
    return [("name", [f"user{k}"]), ("passwd", ["*"]), ("uid", [str(10000 + k)]),
            ("gid", ["20"]), ("realname", [f"User Number {k}"]), ("home", [f"/Users/user{k}"]),
            ("shell", ["/bin/sh"]), ("_writers_passwd", [f"user{k}"])]


def build(directory: Path, tag: str, users: int, src: Path) -> float:
    """DIR/TAG.nidb/netinfo.sqlite with a root, /users (object 1) and *users* users
    (objects 2..), every instance 1; the schema made by *src*'s own SqliteStore."""
    t0 = time.perf_counter()
    nidb = directory / f"{tag}.nidb"
    nidb.mkdir(parents=True)
    path = nidb / "netinfo.sqlite"
    subprocess.run([sys.executable, "-c", "import sys; from netinfo.storage.sqlite import "
                    "SqliteStore; SqliteStore(sys.argv[1]).close()", str(path)],
                   check=True, env=dict(os.environ, PYTHONPATH=str(src)))
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA synchronous=OFF")
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    with_keys = "keys" in tables
    c.execute("BEGIN")
    c.execute("INSERT INTO dirs VALUES (0, 1, 0, ?)", (encode_proplist([]),))
    users_props = [("name", ["users"])]
    c.execute("INSERT INTO dirs VALUES (1, 1, 0, ?)", (encode_proplist(users_props),))
    c.execute("INSERT INTO kids VALUES (0, 0, 1)")
    if with_keys:
        c.executemany("INSERT INTO keys VALUES (?, ?, ?, ?)", key_rows(1, 0, users_props))
    checksum = 1 + 2
    for start in range(0, users, BATCH):
        dirs, kids, keys = [], [], []
        for k in range(start, min(users, start + BATCH)):
            oid = k + 2
            props = user_props(k)
            dirs.append((oid, 1, 1, encode_proplist(props)))
            kids.append((1, k * GAP, oid))
            if with_keys:
                keys.extend(key_rows(oid, 1, props))
            checksum += oid + 1
        c.executemany("INSERT INTO dirs VALUES (?, ?, ?, ?)", dirs)
        c.executemany("INSERT INTO kids VALUES (?, ?, ?)", kids)
        if with_keys:
            keys.sort()
            c.executemany("INSERT INTO keys VALUES (?, ?, ?, ?)", keys)
    c.execute("INSERT OR REPLACE INTO meta VALUES ('checksum', ?)", (checksum & 0xFFFFFFFF,))
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return time.perf_counter() - t0


# -- a raw RPC client (no imports of the client stack: nothing between us and the server) ----

class Conn:
    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.xid = 0

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return bytes(buf)

    def record(self) -> bytes:
        parts = []
        while True:
            (hdr,) = struct.unpack(">I", self._recv(4))
            parts.append(self._recv(hdr & 0x7FFFFFFF))
            if hdr & 0x80000000:
                return b"".join(parts)

    def call(self, proc: int, args: bytes) -> bytes:
        self.xid += 1
        self.s.sendall(rpc.frame(rpc.encode_call(self.xid, NETINFO_PROG, NETINFO_VERS, proc,
                                                 args)))
        _, u = rpc.decode_reply(self.record())
        return u.data[u.pos:]

    def lookup(self, oid: int, key: str, value: str) -> list[int]:
        p = Packer()
        p.pack_uint(oid)
        p.pack_uint(0)
        p.pack_string(key)
        p.pack_string(value)
        body = self.call(Proc.LOOKUP, p.get_buffer())
        status, n = struct.unpack(">II", body[:8])
        if status != 0:
            raise RuntimeError(f"LOOKUP status {status}")
        return list(struct.unpack(f">{n}I", body[8:8 + 4 * n]))

    def close(self) -> None:
        self.s.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(directory: Path, tag: str, src: Path, cache: int | None, users: int
          ) -> tuple[subprocess.Popen, int, float]:
    """netinfod on a free port; (process, port, seconds from exec to the first LOOKUP
    of a user answered)."""
    port = free_port()
    dead = socket.socket()   # a portmapper port nothing serves: no nibindd, no waiting
    dead.bind(("127.0.0.1", 0))
    env = dict(os.environ, PYTHONPATH=str(src), NETINFO_BROADCAST="off",
               NETINFO_PORTMAPPER=f"127.0.0.1:{dead.getsockname()[1]}")
    cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(directory),
           "--bind", "127.0.0.1", "--port", str(port), "--trust-local", "-n", tag]
    if cache is not None:
        cmd[-1:-1] = ["--cache", str(cache)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    elapsed = first_answer(p, port, users, t0)
    dead.close()
    return p, port, elapsed


def first_answer(p: subprocess.Popen, port: int, users: int, t0: float,
                 timeout: float = 600) -> float:
    """Seconds from *t0* until netinfod *p* on *port* answers a LOOKUP of user N/2 of
    its *users* (the probe retries every 5 ms)."""
    want = f"user{users // 2}"
    while time.perf_counter() - t0 < timeout:
        if p.poll() is not None:
            why = p.stderr.read() if p.stderr is not None else ""
            raise RuntimeError(f"netinfod exited with {p.returncode}: {why}")
        try:
            c = Conn(port)
        except OSError:
            time.sleep(0.005)
            continue
        try:
            (users_id,) = c.lookup(0, "name", "users")
            found = c.lookup(users_id, "name", want)
        except (OSError, ConnectionError):
            time.sleep(0.005)
            continue
        finally:
            c.close()
        assert found == [users // 2 + 2], found
        return time.perf_counter() - t0
    raise RuntimeError("no answer")


def latencies(port: int, users: int, n: int, seed: int = 1) -> dict[str, float]:
    rnd = random.Random(seed)
    c = Conn(port)
    (users_id,) = c.lookup(0, "name", "users")
    for _ in range(200):  # warm-up
        c.lookup(users_id, "name", f"user{rnd.randrange(users)}")
    out = []
    for _ in range(n):
        k = rnd.randrange(users)
        t = time.perf_counter()
        found = c.lookup(users_id, "name", f"user{k}")
        out.append(time.perf_counter() - t)
        assert found == [k + 2]
    c.close()
    out.sort()
    return {"p50_us": out[len(out) // 2] * 1e6, "p99_us": out[int(len(out) * 0.99)] * 1e6,
            "mean_us": sum(out) / len(out) * 1e6}


def reads(port: int, users: int, n: int, seed: int = 2) -> None:
    """READ random users (fills the server's cache, as a working set would)."""
    rnd = random.Random(seed)
    c = Conn(port)
    for _ in range(n):
        c.call(Proc.READ, struct.pack(">II", rnd.randrange(users) + 2, 0))
    c.close()


def readall(pid: int, port: int) -> dict[str, float]:
    peak = [rss_mib(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak.append(rss_mib(pid))

    th = threading.Thread(target=sample)
    th.start()
    t0 = time.perf_counter()
    c = Conn(port)
    body = c.call(Proc.READALL, struct.pack(">I", 12345))
    elapsed = time.perf_counter() - t0
    c.close()
    done.set()
    th.join()
    return {"seconds": elapsed, "bytes": len(body), "rss_peak_mib": max(peak)}


def fairness(port: int, big: str) -> dict[str, float]:
    """A small READ's latency while one big reply streams (issue 10: <= 10 ms): one
    connection asks *big* (LIST /users name, LISTALL /users or READALL) and reads it as
    fast as it can, while another sends a READ of /users every 2 ms until it is done."""
    args = {"LIST": (Proc.LIST, struct.pack(">II", 1, 0) + _xdr_string("name")),
            "LISTALL": (Proc.LISTALL, struct.pack(">II", 1, 0)),
            "READALL": (Proc.READALL, struct.pack(">I", 12345))}[big]
    small = Conn(port)
    small.call(Proc.READ, struct.pack(">II", 1, 0))
    done = threading.Event()
    got: dict[str, float] = {}

    def reader() -> None:
        c = Conn(port)
        t0 = time.perf_counter()
        got["bytes"] = len(c.call(*args))
        got["seconds"] = time.perf_counter() - t0
        c.close()
        done.set()

    th = threading.Thread(target=reader)
    th.start()
    lat = []
    while not done.is_set():
        t = time.perf_counter()
        small.call(Proc.READ, struct.pack(">II", 1, 0))
        lat.append(time.perf_counter() - t)
        time.sleep(0.002)
    th.join()
    small.close()
    lat.sort()
    return {**got, "reads": len(lat), "p50_ms": lat[len(lat) // 2] * 1e3,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1e3, "max_ms": lat[-1] * 1e3}


def _xdr_string(text: str) -> bytes:
    p = Packer()
    p.pack_string(text)
    return p.get_buffer()


def stop(p: subprocess.Popen) -> float:
    t0 = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    p.wait(120)
    return time.perf_counter() - t0


def steady(port: int, users: int, lookups: int, settle: float) -> dict[str, float]:
    """After *settle* seconds (the deferred integrity check of a large file runs in the
    first seconds), three rounds of LOOKUPs; the round with the median p99."""
    time.sleep(settle)
    rounds = sorted((latencies(port, users, lookups, seed=10 + i) for i in range(3)),
                    key=lambda r: r["p99_us"])
    return rounds[1]


def run(users: int, small: int, src: Path, cache: int | None, keep: str | None,
        lookups: int, prebuilt: str | None = None, settle: float = 8.0) -> dict:
    out: dict = {"users": users, "src": str(src), "cache": cache}
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        d = Path(prebuilt or tmp)
        if not prebuilt:
            out["build_s"] = build(d, "big", users, src)
            out["build_small_s"] = build(d, "small", small, src)
        out["db_mib"] = (d / "big.nidb" / "netinfo.sqlite").stat().st_size / 2**20
        # small domain first: the reference latency
        p, port, t = start(d, "small", src, cache, small)
        out["small_start_s"] = t
        out["small_lookup_first"] = latencies(port, small, lookups)
        out["small_lookup"] = steady(port, small, lookups, settle)
        out["small_stop_s"] = stop(p)
        # the big one
        p, port, t = start(d, "big", src, cache, users)
        out["start_s"] = t
        time.sleep(0.5)
        out["rss_idle_start_mib"] = rss_mib(p.pid)
        out["lookup_first"] = latencies(port, users, lookups)
        out["lookup"] = steady(port, users, lookups, settle)
        reads(port, users, 20_000)
        out["rss_idle_warm_mib"] = rss_mib(p.pid)
        out["readall"] = readall(p.pid, port)
        out["rss_after_readall_mib"] = rss_mib(p.pid)
        # the first touch of /users' child list is once per server (see benchmarks.md)
        out["fairness"] = {big: fairness(port, big) for big in ("LIST", "LISTALL", "READALL")}
        out["stop_s"] = stop(p)
    out["p99_ratio"] = out["lookup"]["p99_us"] / out["small_lookup"]["p99_us"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--src", default=str(ROOT / "src"))
    ap.add_argument("--cache", type=int)
    ap.add_argument("--lookups", type=int, default=5_000)
    ap.add_argument("--keep", help="directory for the databases (default: system temp)")
    ap.add_argument("--json", help="also write the results to FILE")
    ap.add_argument("--settle", type=float, default=8.0,
                    help="seconds to wait before the steady-state LOOKUP rounds")
    ap.add_argument("--prebuilt", metavar="DIR",
                    help="use DIR/big.nidb and DIR/small.nidb as built by an earlier run")
    ap.add_argument("--build-only", metavar="DIR",
                    help="build DIR/big.nidb and DIR/small.nidb and stop")
    a = ap.parse_args()
    if a.build_only:
        d = Path(a.build_only)
        print("big", build(d, "big", a.users, Path(a.src)), "s")
        print("small", build(d, "small", a.small, Path(a.src)), "s")
        return
    res = run(a.users, a.small, Path(a.src), a.cache, a.keep, a.lookups, a.prebuilt,
              a.settle)
    res["machine"] = {"cpus": os.cpu_count(), "load": os.getloadavg(),
                      "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version}
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
