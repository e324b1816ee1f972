"""Where one hot read's time goes inside netinfod (issue 20 item 1), step by step.

Usage: python bench/bench_steps.py [--users N ...] [--calls C] [--dir D]

Builds a domain of N users (``bench/run.py``'s builder: straight into the SQLite store),
opens it as netinfod does (``open_database``, ``Dispatcher``) and times, for LOOKUPREAD,
LOOKUP and READ of random users, each step between the received record and the framed
reply: RPC prologue, argument decode, ``Database.call`` (the service and the store),
result encode, reply header, frame; then ``Dispatcher.handle`` whole inside a batch, and
the short path (``server.fastpath``): a first pass of misses, then of hits. Then NIS
MATCH of passwd.byname (``server.nis``) through a dispatcher with the YP row, the general
path (``--no-fast-path``) and the short one (misses, then hits), beside LOOKUPREAD's
short path on other random users (misses): process CPU time, so that other work on the
machine counts less. Microseconds per call, medians of 3.
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
from netinfo.server.netinfod import Dispatcher, ServerConfig, yp_program  # noqa: E402
from netinfo.server.nis import NisDoor  # noqa: E402
from netinfo.server.rpc import prologue  # noqa: E402
from netinfo.storage.changes import Caller  # noqa: E402
from netinfo.wire import rpc, yp  # noqa: E402
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


def time_match(db, users_oid: int, users: int, n: int, seed: int) -> dict[str, float]:
    """MATCH misses by the general path, then by the short one, its hits, and
    LOOKUPREAD misses by the short path (other users): CPU µs per call."""
    caller = Caller("127.0.0.1", 40000)
    rnd = random.Random(seed)
    names = [f"user{rnd.randrange(users)}" for _ in range(3 * n)]
    info = PROCEDURES[Proc.LOOKUPREAD]

    def match(i: int, name: str) -> bytes:
        return rpc.encode_call(i + 1, yp.YPPROG, yp.YPVERS, yp.YpProc.MATCH,
                               yp.encode_key(peers.NIS_DOMAIN, "passwd.byname",
                                             name.encode()))
    out = {}
    for label, short, recs in (
            ("MATCH general", False, [match(i, u) for i, u in enumerate(names[:n])]),
            ("MATCH short miss", True, [match(i, u) for i, u in enumerate(names[n:2 * n])]),
            ("MATCH short hit", True, None),
            ("LOOKUPREAD short miss", True, [
                rpc.encode_call(i + 1, NETINFO_PROG, NETINFO_VERS, Proc.LOOKUPREAD,
                                encode_args(info, NiId(users_oid, 0), "name", u))
                for i, u in enumerate(names[2 * n:])])):
        if recs is None:   # the same calls again: kept now
            recs = [match(i, u) for i, u in enumerate(names[n:2 * n])]
        else:
            disp = Dispatcher(db, ServerConfig(peers.TAG, bind="127.0.0.1", fast_path=short),
                              ["127.0.0.1"])
            disp.add_program(yp_program(NisDoor(db, [peers.NIS_DOMAIN], short=short))(disp))
        t0 = time.process_time()
        for rec in recs:
            with db.batch() as batch:
                disp.handle(rec, caller, udp=False, batch=batch)
            rpc.frame(batch.replies[0])
        out[label] = (time.process_time() - t0) / n * 1e6
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
                runs = [time_match(db, users_oid, users, a.calls, seed) for seed in (4, 5, 6)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(f"{users:>9} users NIS " +
                      "  ".join(f"{k} {v:.1f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
