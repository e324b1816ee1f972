"""The NIS front door against ypserv (issue 21, "Measure"): MATCH on passwd.byname, and ALL
of passwd with writes answered meanwhile.

Usage (as root, on Debian with ypserv, rpcbind, rpcsvc-proto, libtirpc-dev, libnsl-dev, gcc):

    python3 bench/bench_nis.py                   # 10,000 and 1,000,000 users
    python3 bench/bench_nis.py --users 10000     # one population
    python3 bench/bench_nis.py --seconds 2 --reps 1

Everything runs inside one network namespace it creates and deletes (bench/run.py's
``Namespace``); ypserv gets its own rpcbind, NIS domain name and /var/yp in a private
mount and UTS namespace (``Bench.start_rpcbind``), so the host's are never touched.

* ``netinfod --nis-domain nibench`` serves a domain whose /users holds N users (written
  straight into its SQLite store, ``run.build_netinfo``);
* ``ypserv`` serves the same N users as a ``passwd.byname`` map made by ``makedbm``
  (``run.build_nis``).

Before the rounds netinfod is loaded until it has read passwd.byname into memory
(``server/nisresident.py``: what a busy map does in its first seconds of use; the time it
took is reported, as ``makedbm``'s is for ypserv's map).

The load client is the C ``ypload`` of bench/peers (rpcgen stubs from yp.x over libtirpc):
YPPROC_MATCH(nibench, passwd.byname, userK) for random K over TCP, one call in flight per
connection, 1 and 4 connections (threads), rates summed; medians of ``--reps`` rounds
that alternate the two servers. Then ALL of passwd.byname from netinfod over TCP, read as
it arrives (nothing kept), while another connection creates users: the stream's time,
the server's resident memory before and at its peak, and the writes' latency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as peers  # bench/run.py: the namespace, the populations, the C clients

SRC = peers.SRC
PORTS = {"netinfod": 9611, "ypserv": 9613}
CLIENTS = (1, 4)


def netinfod_nis(b: peers.Bench, directory: Path, port: int, loop: str = "auto"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETINFO_")}
    env.update(PYTHONPATH=str(SRC), NETINFO_BROADCAST="off",
               NETINFO_PORTMAPPER="127.0.0.1:9619")   # nothing there: unregistered
    argv = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(directory),
            "--bind", "127.0.0.1", "--port", str(port), "-n", "--event-loop", loop,
            "--nis-domain", peers.NIS_DOMAIN, peers.TAG]
    return lambda: b.ns.spawn(argv, b.netinfod_log(port), env)


def all_while_writing(ns: peers.Namespace, port: int, pid: int, users: int) -> dict:
    """ALL of passwd.byname from netinfod, read as it arrives, while a second connection
    creates users; run inside the namespace (a helper process), results as JSON."""
    code = f"""
import asyncio, json, socket, struct, sys, threading, time
sys.path.insert(0, {str(SRC)!r})
from netinfo.wire import rpc, yp
from netinfo.client.core import Client
from netinfo.model import NiId
PORT, PID = {port}, {pid}
def rss():
    for line in open(f"/proc/{{PID}}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
done = threading.Event()
peak = [rss()]
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
lat = []
async def writer():
    c = await Client.connect("127.0.0.1", PORT, {peers.TAG!r}, privileged=True)
    users = await c.pathsearch("/users")
    i = 0
    while not done.is_set():
        t = time.perf_counter()
        users = await c.self_id(users)
        await c.create(users, [("name", [f"w{{i}}"]), ("uid", [str(900000 + i)]),
                               ("gid", ["20"])])
        lat.append(time.perf_counter() - t)
        i += 1
        await asyncio.sleep(0.05)
    await c.close()
def writes():
    asyncio.run(writer())
before = rss()
s = socket.create_connection(("127.0.0.1", PORT))
s.sendall(rpc.frame(rpc.encode_call(1, yp.YPPROG, 2, 8, yp.encode_nokey({peers.NIS_DOMAIN!r},
                                                                        "passwd.byname"))))
t0 = time.perf_counter()
w = threading.Thread(target=writes); w.start()
total, last, tail = 0, False, b""
buf = b""
while not last:
    while len(buf) < 4:
        buf += s.recv(1 << 16)
    (mark,) = struct.unpack(">I", buf[:4]); buf = buf[4:]
    n, last = mark & 0x7FFFFFFF, bool(mark >> 31)
    got = 0
    while got < n:
        if not buf:
            buf = s.recv(1 << 16)
        take = buf[:n - got]; buf = buf[len(take):]; got += len(take)
        tail = (tail + take)[-32:]
    total += n
took = time.perf_counter() - t0
done.set(); w.join()
s.close()
lat.sort()
print(json.dumps({{"all_s": round(took, 2), "bytes": total,
                  "ended": tail[-4:] == b"\\0\\0\\0\\0",
                  "rss_mib_before": round(before, 1), "rss_mib_peak": round(peak[0], 1),
                  "writes_during": len(lat),
                  "write_ms_median": round(1000 * lat[len(lat) // 2], 2) if lat else None,
                  "write_ms_max": round(1000 * lat[-1], 2) if lat else None}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETINFO_")}
    env.update(PYTHONPATH=str(SRC))
    r = subprocess.run(ns.cmd([sys.executable, "-c", code]), capture_output=True, text=True,
                       timeout=3600, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"ALL client failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def measure(args: argparse.Namespace, users: int, work: Path, bins: dict) -> dict:
    ns = peers.Namespace()
    try:
        b = peers.Bench(args, ns, work, bins)
        ypdir = work / f"yp-{users}"
        if not (ypdir / peers.NIS_DOMAIN / "passwd.byname").exists():
            t = time.monotonic()
            peers.build_nis(ypdir, users)
            peers.log(f"NIS map of {users:,} users: {time.monotonic() - t:.1f} s")
        b.start_rpcbind(ypdir)
        d = work / f"netinfo-{users}"
        shutil.rmtree(d, ignore_errors=True)
        t = time.monotonic()
        peers.build_netinfo(d, users)
        peers.log(f"NetInfo domain of {users:,} users: {time.monotonic() - t:.1f} s")
        servers = [
            peers.Server("ypserv", PORTS["ypserv"], users, bins["ypload"],
                         [peers.NIS_DOMAIN, "passwd.byname"], b.ypserv(PORTS["ypserv"]), 60,
                         CLIENTS),
            peers.Server("netinfod", PORTS["netinfod"], users, bins["ypload"],
                         [peers.NIS_DOMAIN, "passwd.byname"],
                         netinfod_nis(b, d, PORTS["netinfod"], args.event_loop),
                         120 + 900 * users / 1e6,
                         CLIENTS,
                         # loaded until passwd.byname is read into memory (a map asked
                         # RESIDENT_AFTER times is read once, on the event loop in turns,
                         # answering meanwhile): ypserv's counterpart is makedbm, before
                         warm=(b.netinfod_log(PORTS["netinfod"]),
                               "NIS: passwd.byname kept in memory")),
        ]
        saved = peers.CLIENTS
        peers.CLIENTS = CLIENTS
        try:
            b.start_all(servers)
            b.load_all(servers)
        finally:
            peers.CLIENTS = saved
        out = {s.name: s.results for s in servers}
        out["resident_read_s"] = servers[1].results.get("warm_s")
        ni = servers[1]
        assert ni.proc is not None
        out["all"] = all_while_writing(ns, ni.port, ni.proc.pid, users)
        peers.log(f"ALL of {users:,} users: {out['all']}")
        for s in servers:
            if s.proc is not None:
                ns.stop(s.proc, timeout=120)
        return out
    finally:
        ns.close()


def report(results: dict) -> str:
    rows = ["| users | clients | netinfod MATCH/s | ypserv MATCH/s | ratio | netinfod p99 µs "
            "| ypserv p99 µs |", "|---|---|---|---|---|---|---|"]
    for users, res in results.items():
        for k in CLIENTS:
            ni = [x for x in res["netinfod"]["load"][k]]
            yp = [x for x in res["ypserv"]["load"][k]]
            rn = statistics.median(x["rate"] for x in ni)
            ry = statistics.median(x["rate"] for x in yp)
            rows.append(f"| {int(users):,} | {k} | {rn:,.0f} | {ry:,.0f} | {rn / ry:.2f}× | "
                        f"{statistics.median(x['p99_us'] for x in ni):,.0f} | "
                        f"{statistics.median(x['p99_us'] for x in yp):,.0f} |")
    rows += ["", "| users | ALL time | bytes | server RSS before → peak | writes during "
             "| write latency median / max |", "|---|---|---|---|---|---|"]
    for users, res in results.items():
        a = res["all"]
        rows.append(f"| {int(users):,} | {a['all_s']} s | {a['bytes']:,} | "
                    f"{a['rss_mib_before']} → {a['rss_mib_peak']} MiB | {a['writes_during']} "
                    f"| {a['write_ms_median']} / {a['write_ms_max']} ms |")
    rows += ["", "| users | passwd.byname in netinfod's memory after (s of load) |",
             "|---|---|"]
    for users, res in results.items():
        rows.append(f"| {int(users):,} | {res.get('resident_read_s')} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--event-loop", choices=("asyncio", "uvloop", "auto"), default="auto",
                    help="netinfod's event loop (netinfod --event-loop)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--workdir", help="keep the populations and logs here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_nis.py: needs root (network namespace, rpcbind, ypserv)", file=sys.stderr)
        return 2
    missing = [m for m in peers.check_tools() if m != "slapd"]   # LDAP is not measured
    if missing:
        print("bench_nis.py: missing packages: " + " ".join(missing), file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ninisbench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    try:
        with peers.signals_raise():
            bins = peers.build_clients(work)
            for n in args.users:
                results[str(n)] = measure(args, n, work, bins)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
