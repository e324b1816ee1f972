"""High availability of a PostgreSQL domain (issue 23 item 5), with a real streaming standby.

A primary and its standby (``pg_basebackup -R``), each a scratch cluster on a unix
socket of its own (tests/pgcluster.py: no TCP). netinfod serves a domain through a
multi-host URL (``host=PRIMARY,STANDBY&target_session_attrs=read-write``) while clients
write; the primary is SIGKILLed with every process of it (its machine died) and the
standby promoted (``pg_ctl promote``). netinfod keeps serving reads throughout, refuses
writes (NI_NOSPACE) while no server accepts them, and writes again once the standby is
promoted, by itself:

* with synchronous replication no acknowledged write is lost (a batch refused while the
  primary died may be there or not: it was never acknowledged);
* without it, the writes the standby had not received are lost although acknowledged:
  netinfod finds the domain is not as it committed it, says so, and serves what the new
  primary holds (docs/postgres.md, "Durability").

Every test skips, with the reason, without PostgreSQL or psycopg.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError, RpcError
from netinfo.model import NiId

from .conftest import Netinfod, env_with_src, tool_process
from .pgcluster import multi_host_url, replicated_pair
from .test_crash import drain

pytestmark = pytest.mark.slow

#: Clients writing at once, each under a directory of its own.
WRITERS = 4
#: Writes each client has acknowledged after the promotion before the test stops them.
AFTER = 5


def _dom(d: Netinfod) -> str:
    return f"127.0.0.1:{d.port}/{d.tag}"


def _tool(*args: str) -> str:
    p = tool_process(*args, env=env_with_src())
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


class Writers:
    """:data:`WRITERS` clients, each creating ``/wK/K-N`` for N = 0, 1, ... one at a
    time; what was acknowledged, and what was tried, by name."""

    def __init__(self, port: int, tag: str) -> None:
        self.port, self.tag = port, tag
        self.tried: set[str] = set()
        self.acked: list[str] = []
        self.refused = 0
        self.stop = False
        #: acknowledged writes counted from the moment this is set (after the promotion)
        self.since: float | None = None
        self.after = [0] * WRITERS
        #: when the first write after the promotion was acknowledged
        self.first = 0.0

    async def one(self, k: int, parent: int) -> None:
        c = await Client.connect("127.0.0.1", self.port, self.tag)
        try:
            n = 0
            while not self.stop:
                name = f"{k}-{n}"
                n += 1
                self.tried.add(name)
                try:
                    p = await c.self_id(parent)
                    await c.create(p, [("name", [name])])
                except (NiError, RpcError):
                    # refused (NI_NOSPACE), or its read failed: a directory the cache does
                    # not hold is read from the server, which is down (SYSTEM_ERR)
                    self.refused += 1
                    await asyncio.sleep(0.02)
                    continue
                self.acked.append(name)
                if self.since is not None:
                    self.after[k] += 1
                    self.first = self.first or time.monotonic()
        finally:
            await c.close()

    async def run(self, parents: list[int]) -> None:
        await asyncio.gather(*(self.one(k, p) for k, p in enumerate(parents)))


async def _parents(port: int, tag: str) -> list[int]:
    async with await Client.connect("127.0.0.1", port, tag) as c:
        root = await c.self_id(0)
        out = []
        for k in range(WRITERS):
            kid, root = await c.create(root, [("name", [f"w{k}"])])
            out.append(kid.object)
    return out


async def _names(port: int, tag: str, parents: list[int]) -> set[str]:
    """Every name under the writers' directories, and the domain's checksum checked
    three ways (STATISTICS, READALL's field, recomputed: spec §5.6)."""
    async with await Client.connect("127.0.0.1", port, tag) as c:
        names: set[str] = set()
        for p in parents:
            names.update(v[0] for _, v in (await c.list(NiId(p), "name"))[0])
        cks, _, objs = await c.readall(0)
        assert cks == sum((o.id.object + 1) * o.id.instance for o in objs) & 0xFFFFFFFF
        assert int(dict(await c.statistics())["checksum"][0]) == cks
    return names


def _failover(primary, standby, d: Netinfod, log: list[str], writers: Writers,
              parents: list[int]) -> dict[str, float]:
    """Writes go on; the primary dies; the standby is promoted; writes go on again.
    The times of each step (seconds from the kill)."""
    times: dict[str, float] = {}

    def operator() -> None:
        time.sleep(1.0)                       # writes flowing
        killed = time.monotonic()
        primary.kill()
        time.sleep(0.5)                       # the operator's tooling notices
        times["killed"] = killed
        standby.promote()
        times["promoted"] = time.monotonic() - killed
        writers.since = time.monotonic()

    async def go() -> None:
        t = threading.Thread(target=operator)
        t.start()
        task = asyncio.ensure_future(writers.run(parents))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                writers.since is not None and min(writers.after) >= AFTER):
            await asyncio.sleep(0.05)
            assert d.proc is not None and d.proc.poll() is None, "netinfod exited"
        writers.stop = True
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(t.join, 60)
        assert writers.since is not None and min(writers.after) >= AFTER, \
            f"netinfod did not write again after the promotion: {writers.after}\n" + \
            "".join(log[-20:])
        times["writing"] = writers.first - times["killed"]
    asyncio.run(go())
    return times


def test_failover_to_a_synchronous_standby_loses_no_acknowledged_write(tmp_path):
    primary, standby = replicated_pair(synchronous=True)
    d = None
    try:
        url = multi_host_url(primary, standby, domain="ha")
        d = Netinfod(tmp_path, "ha", "--store", url, "-m", "--populate").start()
        log = drain(d.proc)
        parents = asyncio.run(_parents(d.port, "ha"))
        writers = Writers(d.port, "ha")
        times = _failover(primary, standby, d, log, writers, parents)
        served = asyncio.run(_names(d.port, "ha", parents))
        acked = set(writers.acked)
        assert acked <= served, f"acknowledged writes lost: {sorted(acked - served)[:10]}"
        assert served <= writers.tried
        text = "".join(log)
        assert "the connection to PostgreSQL is lost" in text, text[-3000:]
        assert "reconnected to PostgreSQL" in text or "serving what the store holds" in text
        # what the new primary holds, read by a netinfod started afresh
        d.stop()
        d = Netinfod(tmp_path, "ha", "--store", url).start()
        drain(d.proc)
        assert asyncio.run(_names(d.port, "ha", parents)) == served
        print(f"\nsynchronous failover: {len(acked)} writes acknowledged, "
              f"{writers.refused} refused, {len(served - acked)} refused but kept; "
              f"promoted {times['promoted']:.2f} s after the kill, writing again "
              f"{times['writing']:.2f} s after it")
    finally:
        if d is not None:
            d.stop()
        standby.remove()
        primary.remove()


def test_failover_without_synchronous_replication_serves_what_the_standby_has(tmp_path):
    """The standby stops receiving (as a lagging one would), the primary acknowledges
    writes the standby never gets, dies, and the standby is promoted: those writes are
    gone. netinfod notices the domain is not as it committed it, says so, and serves
    (and writes on) what the new primary holds."""
    primary, standby = replicated_pair(synchronous=False)
    d = None
    try:
        url = multi_host_url(primary, standby, domain="lag")
        d = Netinfod(tmp_path, "lag", "--store", url, "-m", "--populate").start()
        log = drain(d.proc)
        dom = _dom(d)
        _tool("niutil", "-create", "-t", dom, "/users/replicated")
        want = primary.sql("SELECT pg_current_wal_lsn()")[0][0]
        deadline = time.monotonic() + 30
        while standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{want}'")[0][0] is not True:
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)
        standby.sql("ALTER SYSTEM SET primary_conninfo = ''")
        standby.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while primary.sql("SELECT count(*) FROM pg_stat_replication")[0][0]:
            assert time.monotonic() < deadline, "the standby still streams"
            time.sleep(0.05)
        _tool("niutil", "-create", "-t", dom, "/users/acknowledged-then-lost")
        assert "acknowledged-then-lost" in _tool("niutil", "-list", "-t", dom, "/users")
        primary.kill()
        standby.promote()
        # the first write after the promotion finds the domain changed under it: refused,
        # and the tree is read again from the new primary
        deadline = time.monotonic() + 20
        while True:
            p = tool_process("niutil", "-create", "-t", dom, "/users/after",
                             env=env_with_src())
            if p.returncode == 0:
                break
            assert time.monotonic() < deadline, "".join(log[-20:])
            time.sleep(0.2)
        names = _tool("niutil", "-list", "-t", dom, "/users")
        assert "replicated" in names and "after" in names
        assert "acknowledged-then-lost" not in names
        text = "".join(log)
        assert "is not as this writer committed it" in text, text[-3000:]
        assert re.search(r"serving what the store holds now \(checksum \d+\)", text)
        d.stop()
        d = Netinfod(tmp_path, "lag", "--store", url).start()
        drain(d.proc)
        assert _tool("niutil", "-list", "-t", _dom(d), "/users") == names
    finally:
        if d is not None:
            d.stop()
        standby.remove()
        primary.remove()
