"""Replication costs (issue "replication"): how long a fresh clone takes to copy a domain,
how long a write takes to reach a clone at each ``update_latency``, and the memory of the
master while it streams the copy and of the clone while it writes it.

Usage: python bench/bench_replication.py [--sizes 100000 [1000000]] [--rounds 5]
                                         [--py-spy FILE.svg]

One nibindd on a private portmapper port serves a master ``net`` with N users; ``nidomain
-c copy 127.0.0.1/net`` makes a clone on the same host (its tag differs, so it is a clone,
spec §9.1), which copies the domain with READALL at once. Run as root (the copy and the
pushes leave from reserved ports). Prints a table; numbers for docs/benchmarks.md.

``copy_s`` runs from ``nidomain -c`` until both checksums agree (the clone's start-up,
its READALL and the swap). ``master_rss_mib_peak`` and ``clone_rss_mib_peak`` are each
process's peak resident set (the kernel's ``VmHWM``: every page it ever held at once,
not a sample), read once the copy is done; ``clone_rss_mib`` is the clone's RSS then.
``clone_copy_s`` is what the clone logs (``copied N directories ... in X s``: from the
stream's head to the swap). ``read_ms_p50/p99/max`` are the latencies of a READ of the
clone's root sent every 10 ms from another process while it copies (the old copy serves).
``--py-spy`` records the clone with py-spy during the copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from netinfo.client import binding  # noqa: E402
from netinfo.client.core import Client  # noqa: E402
from netinfo.model import NI_INDEX_NULL, NiId  # noqa: E402
from netinfo.server.database import open_database  # noqa: E402
from netinfo.server.service import SUPERUSER  # noqa: E402
from netinfo.server.templates import create_master, ensure_dir, populate_standard  # noqa: E402


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """*pid*'s resident set (``VmHWM``: its peak) in KiB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def netinfod_pid(directory: Path, tag: str) -> int:
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                args = (p / "cmdline").read_bytes().replace(b"\0", b" ").split()
            except OSError:
                continue
            # the daemon shows as "netinfod TAG ARGS..." (proctitle)
            if args[:2] == [b"netinfod", tag.encode()] and str(directory).encode() in args:
                return int(p.name)
    return 0


def make_master(directory: Path, users: int) -> None:
    with open_database(directory, "net", create=True) as db:
        svc = db.service_for_tests()
        create_master(svc, "net", "bench", ["127.0.0.1"])
        # the clone this host will also serve, listed as the master's clones are (A12)
        from netinfo.server.templates import add_serves
        add_serves(svc, "bench", "./copy")
        populate_standard(svc)
        u = NiId(ensure_dir(svc, "users"), 0)
        for i in range(users):
            u = svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, u),
                                [("name", [f"user{i}"]), ("uid", [str(10000 + i)]),
                                 ("gid", ["20"]), ("home", [f"/Users/user{i}"]),
                                 ("shell", ["/bin/sh"])], NI_INDEX_NULL)[1]
            if i % 50000 == 49999:
                db.commit()


async def checksum(tag: str) -> int:
    _, port = await binding.getregister("127.0.0.1", tag, timeout=2)
    c = await Client.connect("127.0.0.1", port, tag, privileged=False)
    try:
        return int(dict(await c.statistics())["checksum"][0])
    finally:
        await c.close()


def wait_same(timeout: float) -> float:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        try:
            if asyncio.run(checksum("copy")) == asyncio.run(checksum("net")):
                return time.monotonic() - t
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError("the clone did not converge")


async def one_write(latency: str) -> float:
    """Set update_latency, write once on the master, time until the clone has it."""
    _, mport = await binding.getregister("127.0.0.1", "net")
    m = await Client.connect("127.0.0.1", mport, "net", privileged=True)
    root, props = await m.read(0)
    names = [k for k, _ in props]
    if "update_latency" in names:
        root = await m.writeprop(root, names.index("update_latency"), [latency])
    else:
        root = await m.createprop(root, "update_latency", [latency])
    await asyncio.sleep(3)  # let that change itself reach the clone
    _, cport = await binding.getregister("127.0.0.1", "copy")
    c = await Client.connect("127.0.0.1", cport, "copy", privileged=False)
    t = time.monotonic()
    await m.createprop(root, "probe", [str(t)])
    want = int(dict(await m.statistics())["checksum"][0])
    while int(dict(await c.statistics())["checksum"][0]) != want:
        await asyncio.sleep(0.01)
    took = time.monotonic() - t
    await m.close()
    await c.close()
    return took


#: Run beside the copy: READ the clone's root every 10 ms until killed; one latency (ms)
#: per line (the first from when the clone answers at all).
READER = textwrap.dedent("""
    import asyncio, sys, time
    sys.path.insert(0, SRC)
    from netinfo.client import binding
    from netinfo.client import Client
    async def main():
        while True:
            try:
                _, port = await binding.getregister("127.0.0.1", "copy", timeout=1)
                c = await Client.connect("127.0.0.1", port, "copy", privileged=False)
                break
            except Exception:
                await asyncio.sleep(0.05)
        while True:
            t = time.perf_counter()
            await c.read(0)
            print(f"{(time.perf_counter() - t) * 1000:.3f}", flush=True)
            await asyncio.sleep(0.01)
    asyncio.run(main())
""")


def run_size(users: int, rounds: int, py_spy: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        t = time.monotonic()
        make_master(directory, users)
        out["build_s"] = time.monotonic() - t
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = dict(os.environ, NETINFO_PORTMAPPER=f"127.0.0.1:{port}", NETINFO_BROADCAST="off",
                   PYTHONPATH=str(ROOT / "src"))
        os.environ.update(NETINFO_PORTMAPPER=env["NETINFO_PORTMAPPER"])
        log = open(directory / "nibindd.log", "w+")  # noqa: SIM115 - closed below
        nb = subprocess.Popen([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", d,
                               "--portmapper", "embedded"], env=env, stderr=log)
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    asyncio.run(checksum("net"))
                    break
                except Exception:
                    time.sleep(0.2)
            master = netinfod_pid(directory, "net")
            reader = subprocess.Popen(
                [sys.executable, "-c", READER.replace("SRC", repr(str(ROOT / "src")))],
                env=env, stdout=subprocess.PIPE, text=True)
            t = time.monotonic()
            subprocess.run([sys.executable, "-m", "netinfo.cli.nidomain", "-c", "copy",
                            "127.0.0.1/net"], env=env, check=True, capture_output=True)
            spy = None
            if py_spy:
                while not netinfod_pid(directory, "copy"):
                    time.sleep(0.01)
                spy = subprocess.Popen(["py-spy", "record", "-o", py_spy, "--pid",
                                        str(netinfod_pid(directory, "copy"))],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while True:
                try:
                    if asyncio.run(checksum("copy")) == asyncio.run(checksum("net")):
                        break
                except Exception:
                    pass
                if time.monotonic() - t > 1800:
                    raise TimeoutError("no copy within 30 min")
                time.sleep(0.05)
            out["copy_s"] = time.monotonic() - t
            reader.terminate()
            lat = sorted(float(x) for x in reader.communicate()[0].split())
            if spy is not None:
                spy.send_signal(2)   # SIGINT: py-spy writes its flame graph
                spy.wait(60)
            log.seek(0)
            took = re.findall(r"INFO copied \d+ directories .* in ([0-9.]+) s", log.read())
            out["clone_copy_s"] = float(took[-1]) if took else float("nan")
            if lat:
                out["read_ms_p50"] = lat[len(lat) // 2]
                out["read_ms_p99"] = lat[min(len(lat) - 1, len(lat) * 99 // 100)]
                out["read_ms_max"] = lat[-1]
                out["reads"] = len(lat)
            clone = netinfod_pid(directory, "copy")
            out["master_rss_mib_peak"] = rss_kib(master, "VmHWM") / 1024
            out["clone_rss_mib_peak"] = rss_kib(clone, "VmHWM") / 1024
            out["clone_rss_mib"] = rss_kib(clone) / 1024
            for latency in ("0", "1", "2"):
                out[f"propagation_s_latency_{latency}"] = statistics.median(
                    asyncio.run(one_write(latency)) for _ in range(rounds))
        finally:
            nb.terminate()
            nb.wait(60)
            log.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--py-spy", metavar="SVG", help="profile the clone's copy with py-spy")
    ap.add_argument("--json", help="also write the results to FILE (bench/targets.py)")
    args = ap.parse_args()
    sizes = {}
    for n in args.sizes:
        r = sizes[n] = run_size(n, args.rounds, args.py_spy)
        print(f"users={n} " + " ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
