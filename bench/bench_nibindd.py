"""What one netinfod child per tag costs: start-up time and memory (issue: measure the
choice between child processes and in-process servers).

Usage: python bench/bench_nibindd.py [--tags N]
Creates N databases, starts nibindd on a private portmapper port, and reports the time
until every tag is registered and the resident memory of nibindd and of each netinfod.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from netinfo.client import binding  # noqa: E402
from netinfo.server.database import open_database  # noqa: E402
from netinfo.server.templates import create_master, populate_standard  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tags", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.tags):
            db = open_database(Path(d), f"t{i}", create=True)
            svc = db.service_for_tests()
            create_master(svc, f"t{i}", "bench", ["127.0.0.1"])
            populate_standard(svc)
            db.close()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"),
                   NETINFO_PORTMAPPER=f"127.0.0.1:{port}", NETINFO_BROADCAST="off")
        os.environ.update(NETINFO_PORTMAPPER=env["NETINFO_PORTMAPPER"])
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", d,
                              "--portmapper", "embedded", "--bind", "127.0.0.1"], env=env,
                             stderr=subprocess.DEVNULL)
        want = {f"t{i}" for i in range(args.tags)}
        while True:
            try:
                regs = {r.tag for r in asyncio.run(binding.listreg("127.0.0.1", timeout=1))}
            except Exception:
                regs = set()
            if want <= regs:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                              text=True).stdout.split()
        child_rss = [rss_kib(int(k)) for k in kids]
        print(f"{args.tags} tags registered {elapsed:.2f} s after nibindd started "
              f"({elapsed / args.tags * 1000:.0f} ms per tag)")
        print(f"nibindd RSS {rss_kib(p.pid) / 1024:.1f} MiB; netinfod RSS "
              f"{sum(child_rss) / len(child_rss) / 1024:.1f} MiB each "
              f"({sum(child_rss) / 1024:.1f} MiB for {len(child_rss)})")
        p.terminate()
        p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
