"""The NIS front door's short path (issues 20 and 21, ``NisDoor.fast``): a MATCH taken
before the prologue, its line rendered from the stored bytes of the directory found, its
answer kept until a write — byte for byte the general path's, through writes that move
children, rename them, give them several names, destroy them; FIRST, NEXT and ORDER
alongside."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server import nismaps
from netinfo.server.database import open_database
from netinfo.server.netinfod import Dispatcher, ServerConfig, yp_program
from netinfo.server.nis import HOT_BYTES, NisDoor
from netinfo.storage import cached
from netinfo.storage.changes import Caller
from netinfo.wire import rpc, yp
from netinfo.errors import WireError
from netinfo.wire.proplist import decode_proplist, encode_proplist, stored_first_props
from netinfo.wire.protocol import Proc
from netinfo.wire.yp import YpProc

from .test_damaged import damaged

ROOT = Caller("127.0.0.1", 600, superuser=True, user="root")
DOM = "nifast"
USERS = 40
MAPS = ("passwd.byname", "passwd.byuid", "shadow.byname", "group.byname", "group.bygid",
        "hosts.byaddr", "mail.aliases")


class Domain:
    """A SQLite domain (users, groups, a host, an alias) served by two dispatchers with
    a door each: the general path alone (``--no-fast-path``) and the short path."""

    def __init__(self, tmp_path, cache: int | None = None) -> None:
        self.db = open_database(tmp_path, "nf", create=True, cache=cache)
        self.normal = Dispatcher(self.db, ServerConfig("nf", fast_path=False), ["127.0.0.1"])
        self.fast = Dispatcher(self.db, ServerConfig("nf"), ["127.0.0.1"])
        self.doors = []
        for disp, short in ((self.normal, False), (self.fast, True)):
            door = NisDoor(self.db, [DOM], master="nf", short=short)
            disp.add_program(yp_program(door)(disp))
            self.doors.append(door)
        self.dirs = {}
        root = self.db.call(Proc.ROOT, ROOT, ())
        for name in ("users", "groups", "machines", "aliases"):
            self.dirs[name], _ = self.db.call(Proc.CREATE, ROOT, (
                self.db.call(Proc.SELF, ROOT, (root,)), [("name", [name])], -1, None))
        for i in range(USERS):
            self.create("users", user_props(i, random.Random(i)), -1)
        for g in range(5):
            self.create("groups", [("name", [f"g{g}"]), ("gid", [str(100 + g)]),
                                   ("users", [f"u{g}", f"u{g + 1}"])], -1)
        self.create("machines", [("name", ["h"]), ("ip_address", ["10.0.0.1"])], -1)
        self.create("aliases", [("name", ["postmaster"]), ("members", ["u1"])], -1)
        self.db.commit()

    def create(self, dirname: str, props, where: int) -> None:
        parent = self.db.call(Proc.SELF, ROOT, (NiId(self.dirs[dirname].object, 0),))
        self.db.call(Proc.CREATE, ROOT, (parent, props, where, None))

    def children(self, dirname: str) -> list[int]:
        return list(self.db.call(Proc.CHILDREN, ROOT,
                                 (NiId(self.dirs[dirname].object, 0),))[0])

    def exchange(self, disp: Dispatcher, record: bytes, port: int) -> bytes | None:
        with self.db.batch() as batch:
            disp.handle(record, Caller("127.0.0.1", port), udp=False, batch=batch)
        reply = batch.replies[0] if batch.replies else None
        assert reply is None or isinstance(reply, bytes)
        return reply


def user_props(i: int, rnd: random.Random) -> list[tuple[str, list[str]]]:
    """A user, now and then with two names, a uid others share, no gid (no line), a
    field that breaks the line, the properties in another order or twice."""
    props = [("name", [f"u{i}"] + ([f"u{i + 1}"] if rnd.random() < 0.15 else [])),
             ("passwd", [rnd.choice(("*", "$6$s$h", ""))]),
             ("uid", [str(500 + rnd.randrange(USERS // 2))]),
             ("gid", [rnd.choice(("20", "x", "5"))] if rnd.random() < 0.9 else []),
             ("realname", [rnd.choice(("U", "a:b", "Ünï"))]),
             ("home", [f"/home/u{i}"]), ("shell", ["/bin/sh"])]
    if rnd.random() < 0.2:
        rnd.shuffle(props)
    if rnd.random() < 0.1:
        props.append(("name", [f"other{i}"]))          # a second name property
    if rnd.random() < 0.1:
        props.insert(0, ("uid", []))                    # an empty first uid
    return props


def random_write(d: Domain, rnd: random.Random, users: int) -> int:
    """One write to /users, durable: a user made (at the front now and then), destroyed,
    renamed or given another uid, or a name made again first in the list; returns the
    number of user names used so far."""
    kids = d.children("users")
    kind = rnd.randrange(4)
    with d.db.batch():
        if kind == 0:
            d.create("users", user_props(users, rnd), 0 if rnd.random() < 0.5 else NI_INDEX_NULL)
            users += 1
        elif kind == 1 and len(kids) > 5:
            parent = d.db.call(Proc.SELF, ROOT, (NiId(d.dirs["users"].object, 0),))
            child = d.db.call(Proc.SELF, ROOT, (NiId(rnd.choice(kids), 0),))
            d.db.call(Proc.DESTROY, ROOT, (parent, child))
        elif kind == 2:
            child = d.db.call(Proc.SELF, ROOT, (NiId(rnd.choice(kids), 0),))
            prop = rnd.choice(("name", "uid"))
            d.db.call(Proc.WRITEPROP, ROOT, (child, 0 if prop == "name" else 2,
                                             [f"u{rnd.randrange(users)}"]
                                             if prop == "name" else ["501"]))
        else:
            d.create("users", [("name", [f"u{rnd.randrange(users)}"]), ("uid", ["777"]),
                               ("gid", ["7"])], 0)
    return users


def random_steps(d: Domain, seed: int, steps: int, every: int
                 ) -> Iterator[tuple[int, bytes, int]]:
    """*steps* random YP calls (step, record, source port), with a random write to
    /users before every *every*-th."""
    rnd = random.Random(seed)
    users = USERS
    for step in range(steps):
        if step % every == every - 1:
            users = random_write(d, rnd, users)
        rec, port = random_call(rnd, step + 1, users)
        yield step, rec, port


def random_call(rnd: random.Random, xid: int, users: int) -> tuple[bytes, int]:
    proc = rnd.choice((YpProc.MATCH,) * 8 + (YpProc.FIRST, YpProc.NEXT, YpProc.ORDER))
    name = rnd.choice(MAPS)
    key = rnd.choice((f"u{rnd.randrange(users + 3)}", str(500 + rnd.randrange(USERS // 2 + 2)),
                      f"g{rnd.randrange(6)}", str(100 + rnd.randrange(6)), "10.0.0.1",
                      "postmaster", f"other{rnd.randrange(users)}")).encode()
    domain = DOM if rnd.random() < 0.97 else "elsewhere"
    if proc in (YpProc.MATCH, YpProc.NEXT):
        args = yp.encode_key(domain, name, key)
    else:
        args = yp.encode_nokey(domain, name)
    r = rnd.random()
    if r < 0.03:
        args = args[:-2]                       # truncated: GARBAGE_ARGS
    elif r < 0.05:
        args += b"\0\0\0\1"                    # trailing bytes
    port = 600 if rnd.random() < 0.2 else 40000   # shadow.byname: reserved ports only
    return rpc.encode_call(xid, yp.YPPROG, yp.YPVERS, proc, args), port


@pytest.mark.parametrize("indexed", [False, True])
def test_short_matches_equal_general_matches_through_writes(tmp_path, monkeypatch, indexed):
    """With *indexed*, a cache of 8 directories and resident LOOKUP indexes built at
    once: most MATCH misses read the one child's stored bytes (``stored_first``)."""
    if indexed:
        monkeypatch.setattr(cached, "INDEX_AFTER", 2)
    d = Domain(tmp_path, cache=8 if indexed else None)
    stored = [0]
    if indexed:
        src = d.db.source
        assert isinstance(src, cached.CachedSource)

        def run(job: cached.IndexJob) -> None:
            job.run()
            job.install()
        src.index_runner = run
        real = src.stored_first

        def counted(*args):
            blob = real(*args)
            stored[0] += blob is not None
            return blob
        monkeypatch.setattr(src, "stored_first", counted)
    door = d.doors[1]
    kept = 0
    laned = 0
    for step, rec, port in random_steps(d, 21, 5000, 61):
        # the lane (a connection's lone record) first: when it answers, the same bytes
        lane = d.fast.lane(rpc.frame(rec), Caller("127.0.0.1", port))
        short = d.exchange(d.fast, rec, port)
        want = d.exchange(d.normal, rec, port)
        assert short == want, (step, rec.hex())
        if lane is not None:
            assert want is not None and lane == rpc.frame(want), (step, rec.hex())
            laned += 1
        kept = max(kept, len(door._hot))
        if indexed:
            door._hot.clear()                 # every MATCH a miss
    assert kept > 20 or indexed               # answers were kept between writes
    assert laned > 1000                       # the lane answered MATCHes
    assert stored[0] > 200 or not indexed     # the stored bytes' way was taken
    assert not d.doors[0]._hot                # the general path keeps none


def test_a_match_after_a_pending_write_in_its_batch_sees_it(tmp_path):
    d = Domain(tmp_path)
    rec = rpc.encode_call(1, yp.YPPROG, yp.YPVERS, YpProc.MATCH,
                          yp.encode_key(DOM, "passwd.byname", b"new"))
    before = d.exchange(d.fast, rec, 40000)
    assert yp.decode_val(rpc.decode_reply(before)[1].data[24:])[0] == yp.YpStat.NOKEY
    with d.db.batch() as batch:
        d.create("users", [("name", ["new"]), ("uid", ["9"]), ("gid", ["9"])], -1)
        d.fast.handle(rec, Caller("127.0.0.1", 40000), udp=False, batch=batch)
    after = batch.replies[0]
    assert isinstance(after, bytes) and after.endswith(b"\0\0\0\x0cnew:x:9:9:::")
    assert d.exchange(d.fast, rec, 40000) == after == d.exchange(d.normal, rec, 40000)


def test_kept_answers_are_bounded_by_bytes(tmp_path):
    d = Domain(tmp_path)
    door = d.doors[1]
    long_key = b"k" * 1000
    for i in range(200):
        rec = rpc.encode_call(i, yp.YPPROG, yp.YPVERS, YpProc.MATCH,
                              yp.encode_key(DOM, "passwd.byname", long_key + str(i).encode()))
        d.exchange(d.fast, rec, 40000)
        d.exchange(d.fast, rec, 40000)      # kept from its second miss on (Doorkeeper)
    assert 0 < door._hot_bytes <= HOT_BYTES
    assert len(door._hot) == 200


def test_stored_first_props_is_first_values():
    """What the renderers see from the stored bytes is what they see in the proplist."""
    rnd = random.Random(5)
    names = ["name", "uid", "gid", "realname", "home", "shell", "passwd", "users", "x"]
    for _ in range(2000):
        props = [(rnd.choice(names), [rnd.choice(("a", "1", "", "é", "b:c"))
                                      for _ in range(rnd.randrange(3))])
                 for _ in range(rnd.randrange(9))]
        wire = encode_proplist(props)
        for spec in nismaps.MAPS.values():
            if spec.reads is None:
                continue
            got = stored_first_props(wire, frozenset(n.encode() for n in spec.reads))
            assert list(spec.entries(got)) == list(spec.entries(props)), props


def test_stored_first_props_on_damaged_bytes():
    """Cut, grown or overwritten proplists: a WireError or, where the whole decodes,
    the decoder's first properties; never another exception (the words are read as
    one array: a trailing part of a word counts as missing)."""
    rnd = random.Random(6)
    names = frozenset({b"name", b"uid", b"users"})
    for _ in range(5000):
        props = [(rnd.choice(("name", "uid", "users", "x", "é")),
                  [rnd.choice(("a", "1", "", "é", "b:c")) for _ in range(rnd.randrange(3))])
                 for _ in range(rnd.randrange(6))]
        data = damaged(rnd, encode_proplist(props))
        try:
            got = stored_first_props(bytes(data), names)
        except WireError:
            continue
        try:
            whole = decode_proplist(bytes(data))
        except WireError:
            continue                       # damaged past the properties read
        seen: set[str] = set()
        first = []
        for name, values in whole:
            if name.encode("utf-8", "surrogateescape") in names and name not in seen:
                seen.add(name)
                first.append((name, values))
        assert got == first, data.hex()
    # a name or a value cut short by the end of the bytes is refused, not shortened
    wire = encode_proplist([("x", ["1"]), ("name", ["alice"])])
    for cut in range(4, 20):        # (fewer: only the padding goes)
        with pytest.raises(WireError):
            stored_first_props(wire[:-cut], names)
