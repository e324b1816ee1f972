"""Where one hot read's time goes inside netinfod (issue 20 item 1), step by step.

Usage: python bench/bench_steps.py [--users N ...] [--calls C] [--dir D]

Builds a domain of N users (``bench/run.py``'s builder: straight into the SQLite store),
opens it as netinfod does (``open_database``, ``Dispatcher``) and times, for LOOKUPREAD,
LOOKUP and READ of random users, each step between the received record and the framed
reply: RPC prologue, argument decode, ``Database.call`` (the service and the store),
result encode, reply header, frame; then ``Dispatcher.handle`` whole inside a batch, and
the short path (``server.fastpath``): a first pass of misses, then of hits.
Microseconds per call, medians of 3.
The socket write is not here: ``bench/bench_read.py`` and ``py-spy`` on the server see it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import run as peers  # noqa: E402
from netinfo.model import NiId  # noqa: E402
from netinfo.server.database import open_database  # noqa: E402
from netinfo.server.netinfod import Dispatcher, ServerConfig  # noqa: E402
from netinfo.server.rpc import prologue  # noqa: E402
from netinfo.storage.changes import Caller  # noqa: E402
from netinfo.wire import rpc  # noqa: E402
from netinfo.wire.protocol import (NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc,  # noqa: E402
                                   decode_args, encode_args)


def records(proc: Proc, users_oid: int, users: int, first: int, n: int,
            seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    info = PROCEDURES[proc]
    out = []
    for x in range(n):
        i = rnd.randrange(users)
        if proc is Proc.READ:
            args = encode_args(info, NiId(first + i, 0))
        else:
            args = encode_args(info, NiId(users_oid, 0), "name", f"user{i}")
        out.append(rpc.encode_call(x + 1, NETINFO_PROG, NETINFO_VERS, proc, args))
    return out


def time_steps(disp: Dispatcher, fast: Dispatcher | None,
               recs: list[bytes]) -> dict[str, float]:
    db = disp.db
    caller = Caller("127.0.0.1", 40000)
    pc = time.perf_counter_ns
    steps = dict.fromkeys(("prologue", "args", "db.call", "encode", "header", "frame"), 0)
    for rec in recs:
        t0 = pc()
        call, _row = prologue(rec, disp.programs)
        t1 = pc()
        info = PROCEDURES[call.proc]
        args = decode_args(info, call.args)
        t2 = pc()
        value = db.call(info.proc, caller, args)
        t3 = pc()
        prow, encode, _ = db._answers[info.proc]
        body = encode(prow, value)
        t4 = pc()
        reply = rpc.reply_success(call.xid, body)
        t5 = pc()
        rpc.frame(reply)
        t6 = pc()
        for k, a, b in (("prologue", t0, t1), ("args", t1, t2), ("db.call", t2, t3),
                        ("encode", t3, t4), ("header", t4, t5), ("frame", t5, t6)):
            steps[k] += b - a
    n = len(recs)
    out = {k: v / n / 1000 for k, v in steps.items()}
    out["sum"] = sum(out.values())
    # The whole of it as a TCP connection does it: one batch per record here.
    t0 = pc()
    for rec in recs:
        with db.batch() as batch:
            disp.handle(rec, caller, udp=False, batch=batch)
        rpc.frame(batch.replies[0])
    out["handle+batch+frame"] = (pc() - t0) / n / 1000
    if fast is not None:
        # The short path: the first pass fills its table (misses), the second hits.
        for label in ("fast miss", "fast hit"):
            t0 = pc()
            for rec in recs:
                with db.batch() as batch:
                    fast.handle(rec, caller, udp=False, batch=batch)
                rpc.frame(batch.replies[0])
            out[label] = (pc() - t0) / n / 1000
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--dir", help="keep the domains here (built once)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(a.dir or tmp)
        for users in a.users:
            d = base / f"u{users}"
            if not (d / f"{peers.TAG}.nidb").exists():
                d.mkdir(parents=True, exist_ok=True)
                t = time.perf_counter()
                peers.build_netinfo(d, users)
                print(f"built {users} users in {time.perf_counter() - t:.1f} s")
            with open_database(d, peers.TAG) as db:
                disp = Dispatcher(db, ServerConfig(peers.TAG, bind="127.0.0.1",
                                                   fast_path=False), ["127.0.0.1"])
                svc = db.service_for_tests()
                root = svc.proc_root(Caller())
                users_oid = svc.proc_lookup(Caller(), root, "name", "users")[0][0]
                first = svc.proc_lookup(Caller(), NiId(users_oid, 0), "name",
                                        "user0")[0][0]
                for proc in (Proc.LOOKUPREAD, Proc.LOOKUP, Proc.READ):
                    fast = Dispatcher(db, ServerConfig(peers.TAG, bind="127.0.0.1"),
                                      ["127.0.0.1"])
                    runs = [time_steps(disp, fast, records(proc, users_oid, users, first,
                                                           a.calls, seed))
                            for seed in (1, 2, 3)]
                    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    print(f"{users:>9} users {proc.name:<10} " +
                          "  ".join(f"{k} {v:.1f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
