"""Benchmark: ``niload passwd`` of 10,000 users into a real netinfod, and dumping them back.

Starts ``netinfod -m`` on a free loopback port (a fresh database in a temporary
directory), then times, each as a real subprocess reached with ``-t 127.0.0.1:PORT/TAG``:

* ``niload passwd`` of N generated 10-field lines into an empty /users (creates);
* the same ``niload passwd`` again (every record found: replacements);
* ``niload -m passwd`` again (merges);
* ``nidump passwd`` and ``nidump -r /users``.

Prints the seconds (wall clock, Python start-up included), the tool's peak RSS and CPU
time, and netinfod's CPU time during each run (from ``/proc/PID/stat``), and checks that
the dump gives back the N users. ``--profile DIR`` also records py-spy samples of both
processes for each run, as folded stacks (``DIR/<step>-niload.folded``,
``DIR/<step>-netinfod.folded``: flamegraph.pl's input; py-spy must be on PATH; it
samples at 100 Hz, which slows both a little).

Usage: ``python bench/bench_niload.py [-n 10000] [--steps load,dump] [--json FILE]
[--server-arg ARG] [--profile DIR]``.
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
#: the tool's own CPU seconds (user + system) of the last :func:`timed` run
CPU: list[float] = []
#: py-spy recordings: (output file prefix, netinfod's pid), set by main() for --profile
PROFILE: list[tuple[str, int]] = []


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process *pid* has used so far (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spy(pid: int, out: str) -> subprocess.Popen:
    """py-spy sampling *pid* at 100 Hz into *out* (folded stacks, flamegraph.pl's input)."""
    return subprocess.Popen(["py-spy", "record", "-r", "100", "-f", "raw", "-o", out,
                             "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
        wrap = ([GNU_TIME, "-q", "-f", "%M %U %S", "-o", fmax.name]
                if os.access(GNU_TIME, os.X_OK) else [])
        t0 = time.perf_counter()
        p = subprocess.Popen([*wrap, sys.executable, "-m", *args], stdin=fin, stdout=fout,
                             stderr=ferr, env=env())
        spies = []
        if PROFILE:
            prefix, server_pid = PROFILE[0]
            time.sleep(0.3)   # the tool's interpreter, not GNU time, once it has exec'd
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split() \
                if wrap else [str(p.pid)]
            spies = [_spy(server_pid, f"{prefix}-netinfod.folded")]
            if kids:
                spies.append(_spy(int(kids[0]), f"{prefix}-{args[0].rsplit('.', 1)[-1]}.folded"))
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        for spy in spies:
            spy.send_signal(2)   # SIGINT: py-spy writes its flame graph and exits
            spy.wait(60)
        peak = fmax.read().strip().splitlines()
        got = peak[-1].split() if wrap and peak else []
        if len(got) == 3 and got[0].isdigit():
            usage_kib = int(got[0])
            CPU.append(float(got[1]) + float(got[2]))
        else:
            usage_kib = usage.ru_maxrss
            CPU.append(usage.ru_utime + usage.ru_stime)
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


#: the runs: step → (label, tool arguments after ``-m``, whether it reads *text*)
RUNS = {
    "load": ("niload passwd ({n:,} new users)", ["netinfo.cli.niload", "passwd"], True),
    "replace": ("niload passwd ({n:,} existing: replace)", ["netinfo.cli.niload", "passwd"],
                True),
    "merge": ("niload -m passwd ({n:,} existing: merge)",
              ["netinfo.cli.niload", "-m", "passwd"], True),
    "dump": ("nidump passwd ({n:,} users)", ["netinfo.cli.nidump", "passwd"], False),
    "dumpraw": ("nidump -r /users ({n:,} users)", ["netinfo.cli.nidump", "-r", "/users"],
                False),
}


def check(step: str, out: str, n: int) -> None:
    """The dumps give back the N users."""
    if step == "dump":
        got = sum(1 for ln in out.splitlines() if ln.startswith("user"))
    elif step == "dumpraw":
        got = len(re.findall(r'"name" = \( "user\d', out))
    else:
        return
    assert got == n, f"{step} gave {got} users, expected {n}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="number of users (10000)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra netinfod argument (repeatable)")
    ap.add_argument("--steps", default="load,replace,merge,dump,dumpraw",
                    help="which runs, comma-separated (default: all five)")
    ap.add_argument("--json", help="also write the results to FILE")
    ap.add_argument("--profile", metavar="DIR",
                    help="record py-spy samples of both processes into DIR")
    a = ap.parse_args()
    # the first load always runs: the others need its users
    steps = ["load"] + [s for s in RUNS if s != "load" and s in a.steps.split(",")]
    text = passwd_lines(a.n)
    if a.profile:
        os.makedirs(a.profile, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(tmp, port, a.server_arg)
        dom = f"127.0.0.1:{port}/{TAG}"
        try:
            startup = python_startup()
            rows = []
            for step in steps:
                label, args, reads = RUNS[step]
                if a.profile:
                    PROFILE[:] = [(os.path.join(a.profile, step), server.pid)]
                before = cpu_seconds(server.pid)
                dt, out = timed([*args, "-t", dom], text if reads else None)
                server_cpu = cpu_seconds(server.pid) - before
                check(step, out, a.n)
                del out
                rows.append((step, label.format(n=a.n), dt, PEAK[-1], CPU[-1], server_cpu))
        finally:
            server.terminate()
            server.wait(15)
    print(f"python start-up + import: {startup:.3f} s")
    for _, label, dt, peak, cpu, server_cpu in rows:
        print(f"{label:<45} {dt:7.3f} s  ({a.n / dt:>9,.0f} records/s)  tool peak RSS "
              f"{peak:4.0f} MiB, CPU {cpu:6.1f} s; netinfod CPU {server_cpu:6.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(
            {"users": a.n, "startup_s": startup,
             "runs": {k: {"seconds": dt, "tool_peak_rss_mib": peak, "tool_cpu_s": cpu,
                          "server_cpu_s": server_cpu}
                      for k, _, dt, peak, cpu, server_cpu in rows}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
