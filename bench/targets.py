"""Issue 10's targets in one table, from one run of ``bench/run.py``.

``bench/run.py`` measures the peers (lookups, RSS, start, p99) itself; the other targets
belong to the scripts beside it, which it runs here one after another, each as a
subprocess writing JSON, on loopback in the host's network namespace (none of them
talks to another address):

* ``bench_scale.py``: start until the first LOOKUP, RSS idle and during a READALL,
  shutdown, LOOKUP p99 at N users against 1,000, a small READ beside a streamed LIST,
  LISTALL and READALL (its own domain of N users, written straight into SQLite);
* ``bench_niload.py``: ``niload passwd`` of 100,000 users (new, replaced, merged, dumped)
  and, at 1,000,000, ``niload passwd`` and ``nidump passwd``, with the tools' peak RSS
  and both ends' CPU time;
* ``bench_replication.py``: a fresh clone's copy of N users (time, both ends' RSS);
* ``bench_coldstart.py``: ``niutil -read . /`` as a new process.

:func:`table` turns the results (and run.py's own) into rows of target, measured and
verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
MB = 1.048576   # MiB -> MB


def _run(log: Callable[[str], None], work: Path, name: str, argv: list[str],
         timeout: float) -> dict | None:
    """``python bench/<argv> --json FILE``; its JSON, or None (logged) when it failed."""
    out = work / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETINFO_")}
    env["PYTHONPATH"] = str(SRC)
    t = time.monotonic()
    log(f"targets: {name}: {' '.join(argv)}")
    try:
        r = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(out)],
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"targets: {name}: no result within {timeout:.0f} s")
        return None
    (work / f"{name}.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0 or not out.exists():
        log(f"targets: {name} failed ({r.returncode}); see {work / (name + '.log')}")
        return None
    log(f"targets: {name}: {time.monotonic() - t:.0f} s")
    return json.loads(out.read_text())


def run_all(work: Path, users: int, log: Callable[[str], None]) -> dict:
    """Every script's results, keyed by name (None for one that failed)."""
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"users": users}
    res["scale"] = _run(log, work, "scale", ["bench_scale.py", "--users", str(users)], 3600)
    small = min(users, 100_000)
    res["niload"] = _run(log, work, "niload", ["bench_niload.py", "-n", str(small)], 3600)
    if users > small:
        res["niload_big"] = _run(log, work, "niload_big",
                                 ["bench_niload.py", "-n", str(users), "--steps", "load,dump"],
                                 7200)
    res["replication"] = _run(log, work, "replication",
                              ["bench_replication.py", "--sizes", str(users), "--rounds", "1"],
                              3600)
    res["coldstart"] = _run(log, work, "coldstart", ["bench_coldstart.py"], 600)
    return res


def _v(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(peers: dict, t: dict, rate: Callable[[dict, int], float]) -> list[str]:
    """The target rows: what, target, measured, verdict."""
    users = t.get("users", 0)
    rows = ["| what | target | measured | verdict |", "|---|---|---|---|"]

    def row(what: str, target: str, measured: str, verdict: str) -> None:
        rows.append(f"| {what} | {target} | {measured} | {verdict} |")

    scale, ni = t.get("scale"), peers.get("netinfod")
    if scale:
        idle = max(scale["rss_idle_warm_mib"], ni["rss_mib_idle_after_load"] if ni else 0)
        row(f"server RSS at {users:,} users, idle", "≤ 300 MB",
            f"{scale['rss_idle_start_mib']:.0f} MiB after start, {idle:.0f} MiB with the "
            "cache warm", _v(idle * MB <= 300))
        rd = scale["readall"]
        row("server RSS during a READALL of the domain", "≤ 300 MB",
            f"{rd['rss_peak_mib']:.0f} MiB peak ({rd['bytes'] / 1e6:.0f} MB in "
            f"{rd['seconds']:.1f} s)", _v(rd["rss_peak_mib"] * MB <= 300))
        row("start until the first LOOKUP is answered", "≤ 1 s",
            f"{scale['start_s']:.2f} s", _v(scale["start_s"] <= 1))
        row("clean shutdown (SIGTERM to exit)", "≤ 1 s", f"{scale['stop_s']:.2f} s",
            _v(scale["stop_s"] <= 1))
        ratio = scale["p99_ratio"]
        row(f"p99 LOOKUP at {users:,} users against 1,000", "≤ 2×",
            f"{scale['lookup']['p99_us']:.0f} vs {scale['small_lookup']['p99_us']:.0f} µs "
            f"({ratio:.2f}×)", _v(ratio <= 2))
        worst = max(f["p99_ms"] for f in scale["fairness"].values())
        row("a small READ while a LIST / LISTALL / READALL of the domain streams",
            "≤ 10 ms", "p99 " + " / ".join(f"{f['p99_ms']:.1f}" for f in
                                           scale["fairness"].values())
            + " ms (max " + " / ".join(f"{f['max_ms']:.1f}" for f in
                                       scale["fairness"].values()) + ")",
            _v(worst <= 10))
    nl = t.get("niload")
    for key, n, limit in (("niload", min(users, 100_000), 10 if users >= 100_000 else None),
                          ("niload_big", users, 120 if users >= 1_000_000 else None)):
        r = t.get(key)
        if not r:
            continue
        load = r["runs"]["load"]
        target = f"≤ {limit} s, RSS ≤ 200 MB" if limit else "≤ 200 MB RSS"
        ok = (limit is None or load["seconds"] <= limit) and load["tool_peak_rss_mib"] * MB <= 200
        row(f"`niload passwd` of {n:,} new users", target,
            f"{load['seconds']:.1f} s, {load['tool_peak_rss_mib']:.0f} MiB", _v(ok))
        if "dump" in r["runs"]:
            d = r["runs"]["dump"]
            # issue 20: a million users dumped in 30 s
            most = 30 if n >= 1_000_000 else None
            row(f"`nidump passwd` of {n:,} users",
                f"≤ {most} s, RSS ≤ 200 MB" if most else "bounded memory, no timeout",
                f"{d['seconds']:.1f} s, {d['tool_peak_rss_mib']:.0f} MiB",
                _v((most is None or d["seconds"] <= most)
                   and d["tool_peak_rss_mib"] * MB <= 200))
    if nl and "replace" in nl["runs"]:
        row(f"(for comparison) replace / merge {min(users, 100_000):,} existing users", "–",
            f"{nl['runs']['replace']['seconds']:.1f} / {nl['runs']['merge']['seconds']:.1f} s",
            "–")
    yp, ld = peers.get("ypserv"), peers.get("slapd")
    if ni and yp:
        r1 = rate(ni, 1) / rate(yp, 1)
        row("lookups, 1 client, sequential (C client)", "≥ 1.0× ypserv",
            f"{rate(ni, 1):,.0f}/s, {r1:.2f}× ypserv", _v(r1 >= 1))
        for k in (4, 16):
            ratios = [rate(ni, k) / rate(yp, k)] + ([rate(ni, k) / rate(ld, k)] if ld else [])
            row(f"lookups, {k} clients summed", "≥ 1.0× ypserv and slapd",
                f"{rate(ni, k):,.0f}/s, {ratios[0]:.2f}× ypserv"
                + (f", {ratios[1]:.2f}× slapd" if ld else ""), _v(min(ratios) >= 1))
    rep = t.get("replication")
    if rep:
        r = next(iter(rep["sizes"].values()))
        both = max(r["master_rss_mib_peak"], r.get("clone_rss_mib_peak", r["clone_rss_mib"]))
        row(f"full clone copy of {users:,} users", "≤ 60 s, both ends ≤ 300 MB",
            f"{r['copy_s']:.1f} s; master {r['master_rss_mib_peak']:.0f} MiB, clone "
            f"{r.get('clone_rss_mib_peak', r['clone_rss_mib']):.0f} MiB",
            _v(r["copy_s"] <= 60 and both * MB <= 300))
    cs = t.get("coldstart")
    if cs:
        n = cs["niutil_read"]
        row("`niutil -read . /` cold start", "≤ 100 ms",
            f"median {n['median_ms']:.0f} ms (p90 {n['p90_ms']:.0f}; import of asyncio alone "
            f"{cs['import_asyncio']['median_ms']:.0f})", _v(n["median_ms"] <= 100))
    missing = [k for k in ("scale", "niload", "replication", "coldstart") if not t.get(k)]
    if missing:
        rows.append("")
        rows.append("Not measured in this run (the script failed; see its log): "
                    + ", ".join(missing) + ".")
    return rows
