"""Crash safety of the stores (SQLite, PostgreSQL): SIGKILL netinfod while writes are in flight.

One writer keeps a window of pipelined write calls (CREATE under one directory, WRITEPROP and
CREATEPROP on the children it already knows) in flight on one TCP connection, while the test
SIGKILLs the server at random moments and restarts it on the same database and port. After
every restart the database must hold

* every acknowledged write (DESIGN "Performance principles" / server.py: a reply is sent only
  once its write is durable);
* a *prefix* of the writes that were sent: the server processes one connection's calls in order
  and commits them in atomic batches, so the state on disk is exactly "the first k writes"
  for some k ≥ the number acknowledged, never a partial write (a child listed by its parent
  but unreadable, a property half written, an instance bumped without its change);
* a consistent tree (every listed child exists and names its parent; no orphan) whose
  checksum is Σ (object+1)×instance mod 2³² (spec §5.6), equal in STATISTICS, in READALL's own
  checksum field and when recomputed from READALL's objects.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.wire import rpc
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc, encode_args

from .conftest import Netinfod, free_port

pytestmark = pytest.mark.slow

TAG = "crash"
KILLS = 24
#: ... of a netinfod serving a PostgreSQL domain (each restart loads it whole)
PG_KILLS = 20
#: Write calls kept in flight on the writer's connection.
WINDOW = 24
#: Upper bound of the random delay between a restart and the next SIGKILL.
MAX_DELAY = 0.45
MASK32 = 0xFFFFFFFF
CALL_TIMEOUT = 20.0


def server_flags() -> tuple[str, ...]:
    # As root the client binds a reserved source port and is the local superuser; otherwise
    # the server must trust local callers for the writes to be allowed.
    return ("-m",) if os.geteuid() == 0 else ("-m", "--trust-local")


def drain(proc) -> list[str]:
    """Keep reading the server's stderr so a chatty server can never block on a full pipe."""
    lines: list[str] = []

    def run() -> None:
        try:
            for line in proc.stderr:
                lines.append(line)
        except (ValueError, OSError):
            pass
    threading.Thread(target=run, daemon=True).start()
    return lines


# -- the model of what the writer did ---------------------------------------------------------

@dataclass
class Kid:
    oid: int | None
    instance: int
    props: list[tuple[str, list[str]]]


@dataclass
class Model:
    """The crash directory as the writer believes it is after some prefix of its writes."""

    parent_oid: int
    parent_instance: int
    order: list[str] = field(default_factory=list)  # child names in child-list order
    kids: dict[str, Kid] = field(default_factory=dict)


@dataclass
class Op:
    """One write call sent by the writer."""

    proc: Proc
    kid: str  # the child created or modified (by name)
    index: int = 0  # WRITEPROP: property index
    prop: tuple[str, list[str]] | None = None  # CREATEPROP: the new property
    values: list[str] | None = None  # WRITEPROP values
    props: list[tuple[str, list[str]]] | None = None  # CREATE: full proplist
    expect: int = 0  # the instance the reply must report (child's or, for CREATE, parent's)
    fut: asyncio.Future | None = None
    acked: bool = False
    result: object = None


def apply(m: Model, op: Op) -> None:
    """Apply one write to the model exactly as spec §4.4/§5.3 say the server does."""
    if op.proc is Proc.CREATE:
        assert op.props is not None
        oid = op.result[0].object if op.acked else None  # type: ignore[index]
        m.kids[op.kid] = Kid(oid, 1, copy.deepcopy(op.props))
        m.order.append(op.kid)
        m.parent_instance += 1
        return
    k = m.kids[op.kid]
    if op.proc is Proc.WRITEPROP:
        assert op.values is not None
        name = k.props[op.index][0]
        k.props[op.index] = (name, list(op.values))
    elif op.proc is Proc.CREATEPROP:
        assert op.prop is not None
        k.props.append((op.prop[0], list(op.prop[1])))
    else:  # pragma: no cover
        raise AssertionError(op.proc)
    k.instance += 1


def diff(m: Model, objs: dict[int, object]) -> str | None:
    """None when the server's crash directory (from READALL objects) equals the model."""
    p = objs.get(m.parent_oid)
    if p is None:
        return f"parent {m.parent_oid} missing"
    if p.id.instance != m.parent_instance:
        return f"parent instance {p.id.instance} != {m.parent_instance}"
    names = []
    for c in p.children:
        o = objs.get(c)
        if o is None:
            return f"child {c} listed by the parent but absent"
        names.append(o.get("name")[0] if o.get("name") else f"#{c}")
    if names != m.order:
        return f"children {names[-5:]}... ({len(names)}) != {m.order[-5:]}... ({len(m.order)})"
    for c in p.children:
        o = objs[c]
        k = m.kids[o.get("name")[0]]
        if k.oid is not None and k.oid != c:
            return f"{o.get('name')[0]}: object {c} != acknowledged {k.oid}"
        if o.id.instance != k.instance:
            return f"{o.get('name')[0]}: instance {o.id.instance} != {k.instance}"
        if [(n, list(v)) for n, v in o.props] != k.props:
            return f"{o.get('name')[0]}: props {o.props} != {k.props}"
        if o.parent != m.parent_oid:
            return f"{o.get('name')[0]}: parent field {o.parent}"
    return None


# -- talking to the server --------------------------------------------------------------------

def send(client: Client, proc: Proc, *args) -> asyncio.Future:
    """Send one call now (no await: the send order is the call order); future → reply."""
    conn = client.conn
    xid = conn.next_xid()
    rec = rpc.encode_call(xid, NETINFO_PROG, NETINFO_VERS, proc,
                          encode_args(PROCEDURES[proc], *args), None)
    return conn.send(rec, xid)


def decode(proc: Proc, rec: bytes):
    u = rpc.decode_reply(rec)[1]
    status = u.unpack_int()
    if status:
        raise NiError(status)
    value = PROCEDURES[proc].result.unpack(u)  # type: ignore[union-attr]
    u.done()
    return value


async def snapshot(c: Client) -> tuple[int, int, dict[int, object], int]:
    """(READALL checksum, highest_id, objects by number, STATISTICS checksum)."""
    async with asyncio.timeout(CALL_TIMEOUT):
        stats = dict(await c.statistics())
        checksum, highest, objs = await c.readall(0)
    return checksum, highest, {o.id.object: o for o in objs}, int(stats["checksum"][0])


def check_tree(checksum: int, highest: int, objs: dict[int, object], stat_sum: int) -> None:
    """Consistency of the whole database image (spec §5.1, §5.6, §9.4)."""
    recomputed = sum((k + 1) * o.id.instance for k, o in objs.items()) & MASK32
    assert checksum == recomputed, "READALL checksum field != recomputed checksum"
    assert stat_sum == recomputed, "STATISTICS checksum != checksum recomputed from READALL"
    assert highest == max(objs) + 1
    seen: dict[int, int] = {}
    for k, o in objs.items():
        for c in o.children:
            assert c in objs, f"directory {k} lists child {c}, which READALL does not carry"
            assert objs[c].parent == k, f"child {c} of {k} names parent {objs[c].parent}"
            assert c not in seen, f"child {c} listed by {seen.get(c)} and {k}"
            seen[c] = k
    orphans = set(objs) - set(seen) - {0}
    assert not orphans, f"directories in no child list: {sorted(orphans)[:10]}"


class Writer:
    """The writer's state across kills: the model and the ops of the current epoch."""

    def __init__(self, base: Model, seed: int) -> None:
        self.base = base  # durable state at the start of the epoch
        self.sent = copy.deepcopy(base)  # state after every op sent so far
        self.ops: list[Op] = []
        self.rng = random.Random(seed)
        self.seq = 0
        self.stats = {"acked": 0, "sent": 0, "unacked_applied": 0, "unacked_lost": 0,
                      "rounds_with_inflight": 0}

    def next_op(self) -> Op:
        rng = self.rng
        s = self.sent
        known = [n for n in s.order if s.kids[n].oid is not None]
        r = rng.random()
        self.seq += 1
        n = self.seq
        if r < 0.4 or not known:
            name = f"k{n:06d}"
            props = [("name", [name]), ("seq", [str(n)]), ("val", ["init"]),
                     ("blob", ["x" * rng.randrange(0, 300)])]
            return Op(Proc.CREATE, name, props=props, expect=s.parent_instance + 1)
        name = rng.choice(known)
        k = s.kids[name]
        if r < 0.8 or len(k.props) >= 10:
            idx = rng.randrange(2, len(k.props))
            vals = [f"w{n}"] * rng.randrange(0, 4)
            return Op(Proc.WRITEPROP, name, index=idx, values=vals, expect=k.instance + 1)
        return Op(Proc.CREATEPROP, name, prop=(f"p{n}", [str(n), "z" * rng.randrange(50)]),
                  expect=k.instance + 1)

    def issue(self, c: Client) -> Op:
        op = self.next_op()
        s = self.sent
        if op.proc is Proc.CREATE:
            op.fut = send(c, Proc.CREATE, NiId(s.parent_oid, s.parent_instance), op.props,
                          NI_INDEX_NULL, None)
        else:
            k = s.kids[op.kid]
            d = NiId(k.oid, k.instance)  # type: ignore[arg-type]
            if op.proc is Proc.WRITEPROP:
                op.fut = send(c, Proc.WRITEPROP, d, op.index, op.values)
            else:
                op.fut = send(c, Proc.CREATEPROP, d, op.prop, NI_INDEX_NULL)
        apply(s, op)
        self.ops.append(op)
        return op

    def acknowledge(self, op: Op, rec: bytes) -> None:
        value = decode(op.proc, rec)  # NiError here is a test failure: nothing may fail
        op.acked = True
        op.result = value
        if op.proc is Proc.CREATE:
            child, parent = value
            assert parent.object == self.sent.parent_oid and parent.instance == op.expect
            assert child.instance == 1, "a never-used object number starts at instance 1"
            self.sent.kids[op.kid].oid = child.object
        else:
            assert value == NiId(self.sent.kids[op.kid].oid, op.expect)

    async def run(self, c: Client) -> None:
        """Keep WINDOW writes in flight until the connection dies (the server was killed)."""
        inflight: list[Op] = []
        try:
            while True:
                while len(inflight) < WINDOW:
                    inflight.append(self.issue(c))
                op = inflight.pop(0)
                async with asyncio.timeout(CALL_TIMEOUT):
                    rec = await op.fut  # type: ignore[misc]
                self.acknowledge(op, rec)
        except (ConnectionError, OSError):
            pass
        # Replies that arrived before the connection died are acknowledgements too.
        for op in inflight:
            f = op.fut
            if f is not None and f.done() and not f.cancelled() and f.exception() is None:
                self.acknowledge(op, f.result())

    def reconcile(self, objs: dict[int, object]) -> None:
        """After a restart: the durable state must be the model after the first k ops."""
        ops = self.ops
        acked = [i for i, op in enumerate(ops) if op.acked]
        n_acked = len(acked)
        assert acked == list(range(n_acked)), "acknowledgements are not a prefix of the calls"
        m = copy.deepcopy(self.base)
        matches = []
        first_diff = None
        for k in range(len(ops) + 1):
            if k:
                apply(m, ops[k - 1])
            d = diff(m, objs)
            if d is None:
                matches.append((k, copy.deepcopy(m)))
            elif k == n_acked:
                first_diff = d
        assert matches, (f"state after restart is no prefix of the {len(ops)} writes sent "
                         f"({n_acked} acknowledged); vs the acknowledged state: {first_diff}")
        k, m = matches[0]
        assert k >= n_acked, (f"only {k} writes durable but {n_acked} were acknowledged: "
                              f"{ops[k].proc.name} {ops[k].kid} was lost")
        # Children created by unacknowledged but durable CREATEs: learn their numbers.
        parent = objs[m.parent_oid]
        for c in parent.children:
            m.kids[objs[c].get("name")[0]].oid = c
        self.stats["acked"] += n_acked
        self.stats["sent"] += len(ops)
        self.stats["unacked_applied"] += k - n_acked
        self.stats["unacked_lost"] += len(ops) - k
        if len(ops) > n_acked:
            self.stats["rounds_with_inflight"] += 1
        self.base = m
        self.sent = copy.deepcopy(m)
        self.ops = []


async def verify(port: int, writer: Writer | None) -> Client:
    """Connect, check the whole database and reconcile the writer's model; returns the client."""
    c = await Client.connect("127.0.0.1", port, TAG)
    checksum, highest, objs, stat_sum = await snapshot(c)
    check_tree(checksum, highest, objs, stat_sum)
    if writer is not None:
        writer.reconcile(objs)
        # The ordinary read path agrees with READALL for the crash directory.
        m = writer.base
        async with asyncio.timeout(CALL_TIMEOUT):
            kids, self_id = await c.children(m.parent_oid)
            assert self_id == NiId(m.parent_oid, m.parent_instance)
            assert kids == objs[m.parent_oid].children
            for c_oid in kids[-8:]:
                nid, props = await c.read(c_oid)
                assert nid == objs[c_oid].id and props == objs[c_oid].props
    return c


async def one_round(d: Netinfod, writer: Writer, delay: float) -> None:
    c = await verify(d.port, writer)
    task = asyncio.ensure_future(writer.run(c))
    await asyncio.sleep(delay)
    d.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    async with asyncio.timeout(CALL_TIMEOUT):
        await task
    await c.close()


async def setup(port: int) -> Model:
    async with await Client.connect("127.0.0.1", port, TAG) as c:
        root = await c.self_id(0)
        (child, _) = await c.create(root, [("name", ["crash"])])
    return Model(child.object, 1)


def test_sigkill_during_writes_loses_no_acknowledged_write(tmp_path, served_engine):
    """On each engine netinfod serves from (conftest.SERVED_ENGINES): SQLite, and a
    PostgreSQL domain (issue 23: 20 kills at least)."""
    t0 = time.monotonic()
    port = free_port()
    rng = random.Random(int(os.environ.get("CRASH_SEED", time.time_ns())))
    kills = KILLS if served_engine.name == "sqlite" else PG_KILLS
    store = served_engine.flags(TAG)

    def start() -> Netinfod:
        d = Netinfod(tmp_path, TAG, *store, *server_flags(), port=port).start()
        drain(d.proc)
        return d

    d = start()
    sqlite_file = (tmp_path / f"{TAG}.nidb" / "netinfo.sqlite").exists()
    assert sqlite_file == (served_engine.name == "sqlite"), "not the engine under test"
    writer = Writer(asyncio.run(setup(port)), rng.getrandbits(32))
    rcs = []
    for _ in range(kills):
        asyncio.run(one_round(d, writer, rng.uniform(0.0, MAX_DELAY)))
        rcs.append(d.stop())
        d = start()
    try:
        # Last check after the final crash, then a clean stop and one more look.
        asyncio.run(_final(d, writer))
        assert d.stop() == 0
        d = start()
        asyncio.run(_final(d, writer))
    finally:
        d.stop()
    assert rcs == [-signal.SIGKILL] * kills
    st = writer.stats
    print(f"\ncrash test ({served_engine.name}): {kills} kills in "
          f"{time.monotonic() - t0:.1f} s; {st}")
    assert st["acked"] > 5 * kills, "the writer hardly wrote anything"
    assert st["rounds_with_inflight"] >= kills // 2, "kills rarely hit writes in flight"


async def _final(d: Netinfod, writer: Writer) -> None:
    c = await verify(d.port, writer)
    await c.close()
