"""Cold start of a tool (issue 10: ``niutil -read . /`` in at most 100 ms wall).

Usage: python bench/bench_coldstart.py [--runs 25] [--json FILE]

Installs this tree into a fresh virtual environment in a temporary directory (``pip
install --no-deps``: a user's installation, without the editable-install finder), starts
``nibindd --init`` there on a private portmapper port (the README's quick start, loopback
only), then runs each command ``--runs`` times as a new process and reports the wall
time's minimum, median and 90th percentile:

* ``python -c pass`` (the interpreter alone);
* ``python -c "import asyncio"``;
* ``python -c "import netinfo.cli.niutil"``;
* ``niutil -read . /`` (import, find the local domain through nibindd, connect, READ,
  print).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import free_port

ROOT = Path(__file__).resolve().parent.parent


def timings(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return {"min_ms": ts[0] * 1e3, "median_ms": statistics.median(ts) * 1e3,
            "p90_ms": ts[int(len(ts) * 0.9)] * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--json", help="also write the results to FILE")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = str(venv / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(ROOT)], check=True,
                       stdout=subprocess.DEVNULL)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("NETINFO_", "PYTHON"))}
        env.update(NETINFO_PORTMAPPER=f"127.0.0.1:{free_port()}", NETINFO_BROADCAST="off",
                   HOME=tmp)
        nibindd = subprocess.Popen([str(venv / "bin" / "nibindd"), "--init", "--dir",
                                    str(Path(tmp) / "netinfo")], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            niutil = [str(venv / "bin" / "niutil"), "-read", ".", "/"]
            deadline = time.monotonic() + 60
            while subprocess.run(niutil, env=env, capture_output=True).returncode != 0:
                if time.monotonic() > deadline or nibindd.poll() is not None:
                    raise RuntimeError("the local domain did not come up")
                time.sleep(0.2)
            out = {
                "python": timings([py, "-c", "pass"], env, a.runs),
                "import_asyncio": timings([py, "-c", "import asyncio"], env, a.runs),
                "import_niutil": timings([py, "-c", "import netinfo.cli.niutil"], env, a.runs),
                "niutil_read": timings(niutil, env, a.runs),
                "runs": a.runs, "python_version": sys.version.split()[0],
                "loadavg": os.getloadavg(),
            }
        finally:
            os.killpg(nibindd.pid, signal.SIGTERM)
            nibindd.wait(30)
    for k in ("python", "import_asyncio", "import_niutil", "niutil_read"):
        r = out[k]
        print(f"{k:<16} min {r['min_ms']:6.1f}  median {r['median_ms']:6.1f}  "
              f"p90 {r['p90_ms']:6.1f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
