"""Benchmark: ``niload passwd`` of 10,000 users into a real netinfod, and dumping them back.

Starts ``netinfod -m`` on a free loopback port (a fresh database in a temporary
directory), then times, each as a real subprocess reached with ``-t 127.0.0.1:PORT/TAG``:

* ``niload passwd`` of N generated 10-field lines into an empty /users (creates);
* the same ``niload passwd`` again (every record found: replacements);
* ``niload -m passwd`` again (merges);
* ``nidump passwd`` and ``nidump -r /users``.

Prints the seconds (wall clock, Python start-up included) and checks that the dump gives
back the N users. Usage: ``python bench/bench_niload.py [-n 10000] [--steps load,dump]
[--json FILE] [--server-arg ARG]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = "bench"


def free_port() -> int:
    for _ in range(100):
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        return port
    raise RuntimeError("no free port")


def passwd_lines(n: int) -> str:
    """N distinct 10-field master.passwd lines."""
    return "".join(f"user{i:05d}:$1$salt$abcdefghijklmnopqrstuv:{10000 + i}:20::0:0:"
                   f"User Number {i}:/Users/user{i:05d}:/bin/zsh\n" for i in range(n))


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e["NETINFO_BROADCAST"] = "off"
    return e


def start_server(directory: str, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", directory, "--bind",
           "127.0.0.1", "--port", str(port), "-m", *extra, TAG]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=env(), text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"netinfod exited with {proc.wait()}")
        if line.startswith(f"netinfod: serving {TAG} "):
            # Keep draining its log so it never blocks on a full pipe.
            import threading
            threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
            return proc
    proc.kill()
    raise RuntimeError("netinfod did not start")


#: the tool's own peak RSS (MiB) of the last :func:`timed` run
PEAK: list[float] = []
#: GNU time reports the peak of a process it forked itself: a child forked from this
#: script would count this script's own memory (the input it holds) in its maxrss,
#: as Linux carries a process's high-water mark across fork and exec.
GNU_TIME = "/usr/bin/time"


def timed(args: list[str], stdin: str | None = None) -> tuple[float, str]:
    """Run ``python -m <args>`` with *stdin*; wall seconds and stdout. The tool's peak
    RSS goes to :data:`PEAK` (GNU time's %M, else this child's rusage, which is at
    least this script's size)."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
            tempfile.TemporaryFile() as ferr, tempfile.NamedTemporaryFile("r") as fmax:
        fin.write((stdin or "").encode())
        fin.seek(0)
        wrap = ([GNU_TIME, "-q", "-f", "%M", "-o", fmax.name]
                if os.access(GNU_TIME, os.X_OK) else [])
        t0 = time.perf_counter()
        p = subprocess.Popen([*wrap, sys.executable, "-m", *args], stdin=fin, stdout=fout,
                             stderr=ferr, env=env())
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        peak = fmax.read().strip().splitlines()
        if wrap and peak and peak[-1].isdigit():
            usage_kib = int(peak[-1])
        else:
            usage_kib = usage.ru_maxrss
        p.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read().decode(), ferr.read().decode()
    PEAK.append(usage_kib / 1024)
    if p.returncode != 0:
        raise RuntimeError(f"{args} exited {p.returncode}: {err}")
    return dt, out


def python_startup() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import netinfo.cli.niload"], env=env(), check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="number of users (10000)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra netinfod argument (repeatable)")
    ap.add_argument("--steps", default="load,replace,merge,dump,dumpraw",
                    help="which runs, comma-separated (default: all five)")
    ap.add_argument("--json", help="also write the results to FILE")
    a = ap.parse_args()
    steps = set(a.steps.split(","))
    text = passwd_lines(a.n)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(tmp, port, a.server_arg)
        dom = f"127.0.0.1:{port}/{TAG}"
        try:
            startup = python_startup()
            rows = []
            # the first load always runs: the others need its users
            dt, _ = timed(["netinfo.cli.niload", "passwd", "-t", dom], text)
            rows.append(("load", f"niload passwd ({a.n} new users)", dt, PEAK[-1]))
            if "replace" in steps:
                dt, _ = timed(["netinfo.cli.niload", "passwd", "-t", dom], text)
                rows.append(("replace", f"niload passwd ({a.n} existing: replace)", dt,
                             PEAK[-1]))
            if "merge" in steps:
                dt, _ = timed(["netinfo.cli.niload", "-m", "passwd", "-t", dom], text)
                rows.append(("merge", f"niload -m passwd ({a.n} existing: merge)", dt,
                             PEAK[-1]))
            if "dump" in steps:
                dt, out = timed(["netinfo.cli.nidump", "passwd", "-t", dom])
                rows.append(("dump", f"nidump passwd ({a.n} users)", dt, PEAK[-1]))
                got = [ln for ln in out.splitlines() if ln.startswith("user")]
                assert len(got) == a.n, f"dumped {len(got)} users, expected {a.n}"
                del out, got
            if "dumpraw" in steps:
                dt, out = timed(["netinfo.cli.nidump", "-r", "/users", "-t", dom])
                rows.append(("dumpraw", f"nidump -r /users ({a.n} users)", dt, PEAK[-1]))
                got_r = len(re.findall(r'"name" = \( "user\d', out))
                assert got_r == a.n, f"nidump -r gave {got_r} users, expected {a.n}"
                del out
        finally:
            server.terminate()
            server.wait(15)
    print(f"python start-up + import: {startup:.3f} s")
    for _, label, dt, peak in rows:
        print(f"{label:<45} {dt:7.3f} s   ({a.n / dt:>9,.0f} records/s)  tool peak RSS "
              f"{peak:6.0f} MiB")
    if a.json:
        Path(a.json).write_text(json.dumps(
            {"users": a.n, "startup_s": startup,
             "runs": {k: {"seconds": dt, "tool_peak_rss_mib": peak}
                      for k, _, dt, peak in rows}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
