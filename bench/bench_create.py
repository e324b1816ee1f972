"""Where a bulk CREATE's time goes inside netinfod (issue 20 item 4), in process.

Usage: python bench/bench_create.py [-n 30000] [--batch 256] [--profile FILE]

Opens a new master domain as ``netinfod -m`` does (a SQLite store in a temporary
directory, the master template), then feeds it the CREATE records ``niload passwd``
sends (``user%05d``, 10 properties, each CREATE carrying the instance /users will have)
through ``Dispatcher.handle`` in batches of ``--batch`` records, each batch closed (its
group commit) and its replies framed, as a TCP connection does with one read of its
socket. Prints the process CPU microseconds per CREATE: handling (prologue, decode,
``Database.call``, reply) and the commit, and the wall time. ``--profile FILE`` writes
cProfile's statistics of the run. Replication's subscriber and the socket are not here
(``bench_niload.py`` sees them).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from netinfo.cli.netinfod import GC_YOUNG  # noqa: E402
from netinfo.model import NI_INDEX_NULL, NiId  # noqa: E402
from netinfo.server.database import open_database  # noqa: E402
from netinfo.server.service import ServerInfo  # noqa: E402
from netinfo.server.netinfod import Dispatcher, ServerConfig  # noqa: E402
from netinfo.server.templates import create_master, ensure_dir  # noqa: E402
from netinfo.wire import rpc  # noqa: E402
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc, encode_args  # noqa: E402

TAG = "bench"


def user_props(i: int) -> list[tuple[str, list[str]]]:
    """niload passwd's record of bench_niload's line *i* (in niload's property order)."""
    return [("name", [f"user{i:05d}"]), ("passwd", ["$1$salt$abcdefghijklmnopqrstuv"]),
            ("uid", [str(10000 + i)]), ("gid", ["20"]), ("class", [""]),
            ("change", ["0"]), ("expire", ["0"]), ("realname", [f"User Number {i}"]),
            ("home", [f"/Users/user{i:05d}"]), ("shell", ["/bin/zsh"])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--profile", metavar="FILE")
    a = ap.parse_args()
    info = PROCEDURES[Proc.CREATE]
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp), TAG, ServerInfo(), create=True)
        try:
            door = db.procedures
            create_master(door, TAG, "localhost", ["127.0.0.1"])
            users = ensure_dir(door, "users")
            db.commit()
            disp = Dispatcher(db, ServerConfig(TAG, bind="127.0.0.1"), ["127.0.0.1"])
            caller = disp.caller_for("127.0.0.1", 700)
            svc = db.service_for_tests()
            base = svc.proc_self(caller, NiId(users)).instance
            recs = [rpc.encode_call(i + 1, NETINFO_PROG, NETINFO_VERS, Proc.CREATE,
                                    encode_args(info, NiId(users, base + i), user_props(i),
                                                NI_INDEX_NULL, None))
                    for i in range(a.n)]
            gc.freeze()   # as netinfod serves (cli/netinfod.py)
            gc.set_threshold(GC_YOUNG, 20, 10)
            prof = cProfile.Profile() if a.profile else None
            handle_s = commit_s = 0.0
            cpu = time.process_time
            w0 = time.perf_counter()
            if prof is not None:
                prof.enable()
            for at in range(0, a.n, a.batch):
                t0 = cpu()
                batch = db.batch()
                for rec in recs[at:at + a.batch]:
                    disp.handle(rec, caller, udp=False, batch=batch)
                t1 = cpu()
                batch.close()
                b"".join(rpc.frame(r) for r in batch.replies)
                commit_s += cpu() - t1
                handle_s += t1 - t0
                bad = [r for r in batch.replies if r[24:28] != b"\0\0\0\0"]
                assert not bad, bad[0]
            if prof is not None:
                prof.disable()
                prof.dump_stats(a.profile)
            wall = time.perf_counter() - w0
        finally:
            db.close()
    n = a.n
    print(f"{n} CREATEs, batches of {a.batch}: handle {handle_s / n * 1e6:.1f} µs, "
          f"commit+frame {commit_s / n * 1e6:.1f} µs, total CPU "
          f"{(handle_s + commit_s) / n * 1e6:.1f} µs a CREATE; wall {wall:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
