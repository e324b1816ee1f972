"""Read capacity with and without read workers (issue 20 item 3: cores).

Usage: python bench/bench_cores.py [--users N] [--workers 0 1 2] [--clients 4]
       [--depth 16] [--seconds 5] [--reps 3]

Builds a domain of N users (bench/run.py's ``build_netinfo``) and serves it with
``netinfod --read-workers W`` for each W asked, on 127.0.0.1. Each of ``--clients``
client processes holds one TCP connection with ``--depth`` random LOOKUPREADs of
``/users`` in flight (pipelined raw records: a client costs far less per call than the
server, so the server's capacity is what is measured, not the clients'), for
``--seconds``. Prints calls/s and the server's CPU per call (the owner and its workers),
medians of ``--reps``, with the machine's load before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from netinfo.model import NiId  # noqa: E402
from netinfo.wire import rpc  # noqa: E402
from netinfo.wire.protocol import (  # noqa: E402
    NETINFO_PROG,
    NETINFO_VERS,
    PROCEDURES,
    Proc,
    encode_args,
)


#: Distinct lookups each client draws from.
KEYS = 100_000


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def children(pid: int) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                f = Path(f"/proc/{e}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[1]) == pid:
                out.append(int(e))
    return out


def cpu(pid: int) -> float:
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def client(port: int, users: int, parent: int, depth: int, seconds: float,
           q: mp.Queue) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pid = NiId(parent, 0)
    # distinct users: at most the reply table's 100,000 of them hit at 1M (a miss pays
    # the store), as with run.py's random users
    head = rpc.encode_call(1, NETINFO_PROG, NETINFO_VERS, int(Proc.LOOKUPREAD),
                           encode_args(PROCEDURES[Proc.LOOKUPREAD], pid, "name", ""))[:-4]

    def rec(name: bytes) -> bytes:
        pad = b"\0" * (-len(name) % 4)
        body = head + struct.pack(">I", len(name)) + name + pad
        return struct.pack(">I", 0x80000000 | len(body)) + body
    recs = [rec(b"user%d" % random.randrange(users)) for _ in range(KEYS)]
    buf = b""
    unpack = struct.Struct(">I").unpack_from
    n = 0
    out = 0
    end = time.monotonic() + seconds
    for _ in range(depth):
        s.sendall(random.choice(recs))
        out += 1
    while time.monotonic() < end:
        data = s.recv(1 << 16)
        if not data:
            break
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= 4:
            ln = unpack(buf, pos)[0] & 0x7FFFFFFF
            if size < pos + 4 + ln:
                break
            if buf[pos + 28:pos + 32] != b"\0\0\0\0":
                raise SystemExit("a lookup failed")
            pos += 4 + ln
            n += 1
            out -= 1
        buf = buf[pos:]
        more = depth - out
        if more:
            s.sendall(b"".join(random.choice(recs) for _ in range(more)))
            out += more
    q.put(n)


def measure(port: int, pid: int, users: int, parent: int, clients: int, depth: int,
            seconds: float) -> tuple[float, float]:
    q: mp.Queue = mp.Queue()
    ps = [mp.Process(target=client, args=(port, users, parent, depth, seconds, q))
          for _ in range(clients)]
    c0 = cpu(pid)
    for p in ps:
        p.start()
    calls = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    used = cpu(pid) - c0
    return calls / seconds, used * 1e6 / max(1, calls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    import run  # noqa: PLC0415 - bench/run.py's domain builder
    work = Path(tempfile.mkdtemp(prefix="nicores-"))
    load0 = os.getloadavg()
    try:
        run.build_netinfo(work, args.users)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETINFO_")}
        env.update(PYTHONPATH=str(ROOT / "src"), NETINFO_BROADCAST="off",
                   NETINFO_PORTMAPPER="127.0.0.1:9")
        rows = []
        for w in args.workers:
            port = free_port()
            p = subprocess.Popen(
                [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(work), "--bind",
                 "127.0.0.1", "--port", str(port), "-n", "--read-workers", str(w),
                 run.TAG], stderr=subprocess.PIPE, text=True, env=env)
            assert p.stderr is not None
            for line in p.stderr:
                if line.startswith("netinfod: serving"):
                    break
            try:
                from netinfo.client.core import SyncClient  # noqa: PLC0415
                with SyncClient.connect("127.0.0.1", port, run.TAG) as c:
                    parent = c.pathsearch("/users")[0]
                measure(port, p.pid, args.users, parent, args.clients, args.depth, 1.0)
                runs = [measure(port, p.pid, args.users, parent, args.clients, args.depth,
                                args.seconds) for _ in range(args.reps)]
            finally:
                p.terminate()
                p.wait(30)
            rate = statistics.median(r[0] for r in runs)
            per = statistics.median(r[1] for r in runs)
            rows.append((w, rate, per, [round(r[0]) for r in runs]))
            print(f"read workers {w}: {rate:,.0f} lookups/s, server CPU {per:.1f} µs/lookup "
                  f"(runs {[round(r[0]) for r in runs]})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.users:,} users, {args.clients} clients x {args.depth} in flight, "
          f"{os.cpu_count()} cores, load {load0[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    base = rows[0][1] if rows else 1
    for w, rate, per, _ in rows:
        print(f"| {w} | {rate:,.0f} | {rate / base:.2f}× | {per:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
