"""Replication between engines (issue 23, spec §9), on loopback: a master and a clone,
each a real netinfod registered with one nibindd (its own portmapper), the clone on the
same host under another tag (spec §9.1). Run for SQLite clones of a PostgreSQL master (a
domain of its own in the suite's scratch cluster, tests/pgcluster.py) and a clone whose
store is PostgreSQL of a SQLite master.

The clone makes its first copy with READALL (spec §9.4, §9.5; on PostgreSQL the copy is
streamed into a schema beside the live one, then swapped in by one transaction:
``PostgresCopy``, never an image held in memory), then receives every write the master commits
(spec §9.2): after each step both serve the same ``nidump -r /`` and checksum; restarted,
the clone serves what it stored.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from netinfo.netif import hostname

from .conftest import Netinfod, Nibindd, tool_process

TAG, CLONE = "net", "copy"

#: SQLite clones of a PostgreSQL master, and a PostgreSQL clone of a SQLite master
#: (SQLite to SQLite: test_replication; the same code serves PostgreSQL to PostgreSQL).
PAIRS = [("postgresql", "sqlite"), ("sqlite", "postgresql")]


def _flags(request, engine: str) -> tuple[str, ...]:
    if engine == "sqlite":
        return ()
    return ("--store", request.getfixturevalue("pg_cluster").url())


def _tool(nb: Nibindd, *argv: str, ok: bool = True):
    p = tool_process(*argv, env=nb.env, input=None)
    if ok:
        assert p.returncode == 0, (argv, p.stdout, p.stderr)
    return p


def _load(nb: Nibindd, dom: str, prefix: str, n: int) -> None:
    """``niload passwd`` of *n* users PREFIX0, PREFIX1, ..."""
    p = tool_process("niload", "passwd", "-t", dom, env=nb.env, input="".join(
        f"{prefix}{i}:*:{600 + i}:20::0:0:{prefix} {i}:/Users/{prefix}{i}:/bin/sh\n"
        for i in range(n)))
    assert p.returncode == 0, p.stderr


def _state(nb: Nibindd, tag: str) -> tuple[str, str]:
    dump = _tool(nb, "nidump", "-r", "/", "-t", f"127.0.0.1/{tag}").stdout
    stats = _tool(nb, "niutil", "-statistics", "-t", f"127.0.0.1/{tag}").stdout
    found = re.search(r"^checksum: (\d+)", stats, re.M)
    assert found, stats
    return dump, found.group(1)


def _converged(nb: Nibindd, timeout: float = 60.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        want, got = _state(nb, TAG), _state(nb, CLONE)
        if want == got:
            return want
        assert time.monotonic() < deadline, f"the clone did not converge:\n{want}\n{got}"
        time.sleep(0.3)


@pytest.mark.parametrize(("master_engine", "clone_engine"), PAIRS,
                         ids=[f"{m}-to-{c}" for m, c in PAIRS])
def test_a_clone_copies_its_master_and_follows_it(request, tmp_path: Path, monkeypatch,
                                                  master_engine, clone_engine):
    master_flags = _flags(request, master_engine)
    clone_flags = _flags(request, clone_engine)
    nb = Nibindd(tmp_path / "nibindd")
    (tmp_path / "nibindd").mkdir()
    monkeypatch.setenv("NETINFO_PORTMAPPER", nb.env["NETINFO_PORTMAPPER"])
    monkeypatch.setenv("NETINFO_BROADCAST", "off")
    nb.start(tags=())
    master = clone = None
    try:
        master = Netinfod(tmp_path / "m", TAG, *master_flags, "-m", "--populate")
        (tmp_path / "m").mkdir()
        master.start()
        nb.wait_for((TAG,))
        dom = f"127.0.0.1/{TAG}"
        host = hostname()
        _tool(nb, "niutil", "-appendprop", "-t", dom, f"/machines/{host}", "serves",
              f"./{CLONE}")
        _tool(nb, "niutil", "-createprop", "-t", dom, "/", "update_latency", "0")
        _load(nb, dom, "u", 30)
        clone = Netinfod(tmp_path / "c", CLONE, *clone_flags, "-c", host, "127.0.0.1", TAG)
        (tmp_path / "c").mkdir()
        clone.start()
        log: list[str] = []
        assert clone.proc is not None and clone.proc.stderr is not None
        threading.Thread(target=log.extend, args=(clone.proc.stderr,), daemon=True).start()
        nb.wait_for((CLONE,))
        first = _converged(nb)
        assert "u29" in first[0]
        if clone_engine == "postgresql":
            # the streamed copy, swapped in (PostgresStore.adopt), not an image
            deadline = time.monotonic() + 10
            while not any("swapped in a copy of" in line for line in log):
                assert time.monotonic() < deadline, "".join(log)
                time.sleep(0.1)
        # the master's writes reach the clone: creates, property changes, a destroy
        _load(nb, dom, "p", 20)
        _tool(nb, "niutil", "-createprop", "-t", dom, "/users/u3", "shell", "/bin/zsh")
        _tool(nb, "niutil", "-destroy", "-t", dom, "/users/u4")
        _tool(nb, "niutil", "-create", "-t", dom, "/users/reuses-u4")   # spec §5.3
        state = _converged(nb)
        assert "p19" in state[0] and "/bin/zsh" in state[0] and '"u4"' not in state[0]
        assert state != first
        # restarted, the clone serves what it stored
        clone.stop()
        clone = Netinfod(tmp_path / "c", CLONE, *clone_flags)
        clone.start()
        nb.wait_for((CLONE,))
        assert _state(nb, CLONE) == state
        if clone_engine == "postgresql":
            assert not (tmp_path / "c" / f"{CLONE}.nidb").exists()
    finally:
        for d in (clone, master):
            if d is not None:
                d.stop()
        nb.stop()
