"""nistore at scale: time and peak RSS of copy and check between SQLite and PostgreSQL.

Usage: python bench/bench_nistore.py [--users N] [--src DIR] [--keep DIR]

Builds a SQLite domain of N users (default 1,000,000) the fast way
(``bench_scale.build``), starts a scratch PostgreSQL cluster (tests/pgcluster.py), then
runs, each as a subprocess of its own, timed, its peak RSS taken from ``wait4`` (the
kernel's VmHWM of that process):

* ``nistore copy`` SQLite → PostgreSQL, ``nistore check`` of each, ``nistore info``;
* ``nistore copy`` PostgreSQL → SQLite, and ``nistore check`` of that copy.

``--src`` runs another source tree's nistore (e.g. /work/main/src: the measurement
before streaming); the domain is built with that tree's schema.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_scale import build  # noqa: E402

from tests.pgcluster import Cluster, missing  # noqa: E402


def run(src: Path, *args: str) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """``nistore`` through ``/usr/bin/time -f %M`` (peak RSS in KiB, the child's own)."""
    env = dict(os.environ, PYTHONPATH=str(src))
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m",
                        "netinfo.cli.nistore", *args], env=env, capture_output=True,
                       text=True)
    seconds = time.perf_counter() - t0
    lines = p.stderr.strip().splitlines()
    peak = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan")
    return seconds, peak, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--src", type=Path, default=ROOT / "src",
                    help="the source tree whose nistore runs")
    ap.add_argument("--keep", type=Path, help="keep the files in this directory")
    args = ap.parse_args()
    why = missing()
    if why:
        sys.exit(why)
    if not Path("/usr/bin/time").exists():
        sys.exit("/usr/bin/time is needed (peak RSS of each run)")
    top = args.keep or Path(tempfile.mkdtemp(prefix="ni-bench-nistore-"))
    top.mkdir(parents=True, exist_ok=True)
    cluster = Cluster()
    cluster.init()
    try:
        t = build(top / "lite", "big", args.users, args.src)
        print(f"SQLite domain of {args.users:,} users built in {t:.1f} s", flush=True)
        src = str(top / "lite" / "big.nidb")
        url = cluster.url("big")
        back = top / "back.nidb"
        back.mkdir()
        steps = [("copy SQLite -> PostgreSQL", ("copy", src, url)),
                 ("check SQLite", ("check", src)),
                 ("check PostgreSQL", ("check", url)),
                 ("info PostgreSQL", ("info", url)),
                 ("copy PostgreSQL -> SQLite", ("copy", url, str(back))),
                 ("check the SQLite copy", ("check", str(back)))]
        for name, argv in steps:
            seconds, peak, p = run(args.src, *argv)
            status = "" if p.returncode == 0 else f"  FAILED {p.returncode}: {p.stderr[-300:]}"
            print(f"nistore {name}: {seconds:.1f} s, peak RSS {peak:.0f} MiB{status}",
                  flush=True)
    finally:
        cluster.remove()
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
