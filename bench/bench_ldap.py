"""LDAP front door: equality searches per second (issue 22 "Measure").

Usage: python bench/bench_ldap.py [--users 10000] [--seconds 5] [--clients 1 4]
                                 [--cpu-searches 20000] [--py-spy FILE]

Starts ``netinfod -m --ldap`` on loopback with N users (niload passwd), then runs 1 and 4
client processes, each on one connection sending nslcd's search
``(&(objectClass=posixAccount)(uid=NAME))`` for random users, one at a time (a search,
its entry and its result, then the next), for ``--seconds``; prints searches per second
in all; netinfod's own CPU time (utime + stime from /proc/PID/stat) per search, first
for each user once in turn (nothing of it read before), last over ``--cpu-searches``
sequential searches of random users from one connection. Also a subtree scan
(every entry of the domain, paged by 1000) and a simple bind rate. ``--py-spy FILE``
records netinfod (``py-spy record -r 250 -f raw``, py-spy on PATH) during the last rate.
The clients use this project's codec (wire/ldap); slapd comparisons (C clients over
libldap) are for the peers' harness, not here.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from netinfo.wire import ber  # noqa: E402
from netinfo.wire import ldap as L  # noqa: E402

BASE = "dc=bench,dc=netinfo"


def _read_until_done(s: socket.socket, buf: bytearray) -> int:
    entries = 0
    while True:
        n = ber.frame(buf)
        if n is None:
            data = s.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            buf += data
            continue
        m = L.decode_message(bytes(buf[:n]))
        del buf[:n]
        if isinstance(m.op, L.SearchEntry):
            entries += 1
        elif isinstance(m.op, L.Response):
            return entries


def _client(port: int, users: int, seconds: float, out: multiprocessing.Queue) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytearray()
    n = 0
    rng = random.Random(os.getpid())
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        name = f"u{rng.randrange(users)}".encode()
        req = L.Message(n + 1, L.SearchRequest(BASE, 2, 0, 0, 0, False, L.And((
            L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"),
            L.Compare(L.F_EQUAL, "uid", name))), ()))
        s.sendall(L.encode_message(req))
        if _read_until_done(s, buf) != 1:
            raise RuntimeError("lookup missed")
        n += 1
    out.put(n)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of *pid* in clock ticks (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_per_search(pid: int, port: int, users: int, count: int, cold: bool = False) -> float:
    """netinfod's CPU microseconds per equality search, *count* sent one at a time, for
    random users, or (*cold*) each user once in turn."""
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytearray()
    rng = random.Random(1)
    t0 = _cpu_ticks(pid)
    for n in range(count):
        who = n % users if cold else rng.randrange(users)
        req = L.Message(n + 1, L.SearchRequest(BASE, 2, 0, 0, 0, False, L.And((
            L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"),
            L.Compare(L.F_EQUAL, "uid", f"u{who}".encode()))), ()))
        s.sendall(L.encode_message(req))
        if _read_until_done(s, buf) != 1:
            raise RuntimeError("lookup missed")
    used = _cpu_ticks(pid) - t0
    s.close()
    return used / os.sysconf("SC_CLK_TCK") / count * 1e6


def cold_cpu_per_search(pid: int, port: int, users: int, count: int, base: str,
                        name: str = "u{}", seed: int = 1) -> float:
    """netinfod's CPU microseconds per search of *count* distinct random users (none
    asked before on this server: every search misses the kept answers), sent one at a
    time as ``ldapload`` sends them (one level under ``ou=users``, every attribute,
    anonymous), the plain equality and nslcd's filter in turn."""
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytearray()
    who = random.Random(seed).sample(range(users), count)
    reqs = []
    for n, i in enumerate(who):
        f: L.Filter = L.Compare(L.F_EQUAL, "uid", name.format(i).encode())
        if n % 2:
            f = L.And((L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"), f))
        reqs.append(L.encode_message(L.Message(n + 1, L.SearchRequest(
            f"ou=users,{base}", L.Scope.ONE, 0, 0, 0, False, f, ()))))
    t0 = _cpu_ticks(pid)
    for req in reqs:
        s.sendall(req)
        if _read_until_done(s, buf) != 1:
            raise RuntimeError("lookup missed")
    used = _cpu_ticks(pid) - t0
    s.close()
    return used / os.sysconf("SC_CLK_TCK") / count * 1e6


def cold_on(directory: str, users: int, count: int, runs: int, fast: bool) -> None:
    """``--domain DIR``: netinfod on the domain ``bench`` built in DIR by ``run.py``'s
    ``build_netinfo`` (users ``user0``…), its LDAP door's CPU per cold search."""
    port, lport = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    base = "dc=bench,dc=test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", directory, "--port",
         str(port), "--ldap", f"127.0.0.1:{lport}", "--ldap-base", base, "bench"]
        + ([] if fast else ["--no-fast-path"]), env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        while "serving" not in proc.stderr.readline():
            pass
        # the resident LOOKUP index of /users built, the process warmed (not counted)
        cold_cpu_per_search(proc.pid, lport, users, 2000, base, "user{}", seed=99)
        for _ in range(120):   # until the index's thread is done: the process idle
            t = _cpu_ticks(proc.pid)
            time.sleep(1)
            if _cpu_ticks(proc.pid) == t:
                break
        for r in range(runs):
            us = cold_cpu_per_search(proc.pid, lport, users, count, base, "user{}", seed=r)
            print(f"  netinfod CPU per cold search ({count} distinct users, "
                  f"{'short path' if fast else '--no-fast-path'}): {us:.0f} µs")
    finally:
        proc.terminate()
        proc.wait()


def rate(port: int, users: int, seconds: float, clients: int) -> float:
    q: multiprocessing.Queue = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=_client, args=(port, users, seconds, q))
          for _ in range(clients)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total / seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--py-spy", metavar="FILE",
                    help="record netinfod with py-spy (raw format) while the last rate runs")
    ap.add_argument("--cpu-searches", type=int, default=20000,
                    help="sequential searches to measure netinfod's CPU per search (0: none)")
    ap.add_argument("--domain", metavar="DIR",
                    help="only the cold measure, on the domain built in DIR by run.py's "
                         "build_netinfo (--users: how many it holds)")
    ap.add_argument("--cold", type=int, default=10000,
                    help="with --domain: distinct users per cold run")
    ap.add_argument("--runs", type=int, default=3, help="with --domain: cold runs")
    ap.add_argument("--no-fast-path", dest="fast", action="store_false",
                    help="netinfod --no-fast-path (every search by the general path)")
    o = ap.parse_args()
    if o.domain:
        print(f"{o.users} users in {o.domain}")
        cold_on(o.domain, o.users, o.cold, o.runs, o.fast)
        return 0
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "pw").write_text("secret\n")
        port, lport = free_port(), free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", d, "--port", str(port),
             "-m", "--populate", "--root-password-file", str(Path(d) / "pw"), "--ldap",
             f"127.0.0.1:{lport}", "bench"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            while "serving" not in proc.stderr.readline():
                pass
            lines = "".join(f"u{i}:*:{10000 + i}:20::0:0:User {i}:/home/u{i}:/bin/sh\n"
                            for i in range(o.users))
            subprocess.run([sys.executable, "-m", "netinfo.cli.niload", "-u", "root", "-P",
                            "secret", "passwd", f"bench@127.0.0.1:{port}"], input=lines,
                           text=True, env=env, check=True)
            print(f"{o.users} users")
            if o.cpu_searches:
                us = cpu_per_search(proc.pid, lport, o.users, o.users, cold=True)
                print(f"  netinfod CPU per equality search, each user once (cold): "
                      f"{us:.0f} µs")
            for c in o.clients:
                spy = None
                if o.py_spy and c == o.clients[-1]:
                    spy = subprocess.Popen(["py-spy", "record", "-r", "250", "-f", "raw",
                                            "-o", o.py_spy, "-p", str(proc.pid), "-d",
                                            str(int(o.seconds))], stdout=subprocess.DEVNULL)
                per_second = rate(lport, o.users, o.seconds, c)
                if spy is not None:
                    spy.wait()
                print(f"  equality search, {c} client(s): {per_second:,.0f}/s")
            if o.cpu_searches:
                us = cpu_per_search(proc.pid, lport, o.users, o.cpu_searches)
                print(f"  netinfod CPU per equality search: {us:.0f} µs "
                      f"({o.cpu_searches} sequential)")
            s = socket.create_connection(("127.0.0.1", lport))
            t0 = time.perf_counter()
            s.sendall(L.encode_message(L.Message(1, L.SearchRequest(
                BASE, 2, 0, 0, 0, False, L.Present("objectClass"), ()))))
            got = _read_until_done(s, bytearray())
            dt = time.perf_counter() - t0
            print(f"  subtree scan: {got} entries in {dt:.2f} s ({got / dt:,.0f} entries/s)")
            t0 = time.perf_counter()
            for i in range(200):
                s.sendall(L.encode_message(L.Message(10 + i, L.BindRequest(
                    3, f"uid=root,ou=users,{BASE}", b"secret"))))
                buf = bytearray()
                while ber.frame(buf) is None:
                    buf += s.recv(4096)
            print(f"  simple binds (SHA-512 crypt, plain loopback): "
                  f"{200 / (time.perf_counter() - t0):,.0f}/s")
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
