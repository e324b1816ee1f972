"""The LDAP door's short path for equality searches (``Connection._quick``,
``LdapServer.quick``, ``wire.ldap.scan_equality_search``, ``ldapview.encode_selected``):
the same bytes as the general path, whatever is asked.

Two doors on one domain, one with the short path and one without (``LdapConfig.quick``,
netinfod's ``--no-fast-path``), each over a real loopback connection, are sent the same
random searches (both filter shapes and others, several bases, scopes, attribute
selections; anonymous, as a user, as root) between random writes (users created,
renamed, deleted, given a password or a second name), and their answers are compared
byte for byte. The scanner of the request shapes is checked against the general
decoder on random and damaged requests."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from netinfo.errors import WireError
from netinfo.model import NiId
from netinfo.passwords import hash_password
from netinfo.server import ldap as door
from netinfo.server.database import Database
from netinfo.server.ldap import LdapConfig, LdapServer
from netinfo.server.ldapentry import user_entry
from netinfo.server.ldapview import encode_selected, evaluate, select
from netinfo.server.rfc2307 import entry_attrs, escape_value
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import populate_standard
from netinfo.storage import cached, open_store
from netinfo.storage.cached import CachedSource, IndexJob
from netinfo.wire import ber
from netinfo.wire import ldap as L
from netinfo.wire.proplist import decode_proplist, encode_proplist
from netinfo.wire.protocol import Proc

BASE = "dc=t,dc=netinfo"
TIMEOUT = 20
ROOT_PW = "root-pw"


def _op_start(raw: bytes) -> int:
    """Where the protocolOp of a whole message begins."""
    n = raw[1]
    p = 2 if n < 0x80 else 2 + (n & 0x7F)
    return p + 2 + raw[p + 1]


def _filter(rng: random.Random, name: str) -> L.Filter:
    uid = L.Compare(L.F_EQUAL, rng.choice(["uid", "UID", "uId"]), name.encode())
    cls = L.Compare(L.F_EQUAL, rng.choice(["objectClass", "objectclass"]),
                    rng.choice([b"posixAccount", b"POSIXACCOUNT", b"posixGroup",
                                b" posixAccount"]))
    return rng.choice([
        uid, uid, L.And((cls, uid)), L.And((cls, uid)), L.And((uid, cls)),
        L.And((uid,)), L.And((uid, L.Compare(L.F_EQUAL, "gidNumber", b"20"))),
        L.And((L.Compare(L.F_EQUAL, "cn", name.encode()), uid)),
        L.Compare(L.F_EQUAL, "cn", name.encode()), L.Present("uid"),
        L.Compare(L.F_GE, "uid", name.encode()),
        L.Or((uid, cls)), L.And((cls, L.Not(uid))),
        L.And((cls, L.Substrings("uid", name.encode()[:1] or b"u", (), None))),
    ])


#: the attributes nslcd asks for (passwd and shadow maps)
_NSLCD = ("uid", "userPassword", "uidNumber", "gidNumber", "cn", "homeDirectory",
          "loginShell", "gecos", "description", "objectClass", "shadowLastChange",
          "shadowMin", "shadowMax", "shadowWarning", "shadowInactive", "shadowExpire",
          "shadowFlag")


def _request(rng: random.Random, msgid: int, names: list[str]) -> bytes:
    """A random search, half of them of the short path's shapes; a quarter of one of a
    few fixed shapes (as one client program asks: nslcd's, SSSD's), their decoys of the
    same lengths included (what ``equality_value_span`` routes must not take)."""
    name = rng.choice(names)
    if rng.random() < 0.25:
        uid = L.Compare(L.F_EQUAL, "uid", name.encode())
        cls = L.Compare(L.F_EQUAL, "objectClass", rng.choice(
            [b"posixAccount"] * 4 + [b"posixGroupXY"]))
        shape = rng.choice([
            (f"ou=users,{BASE}", L.Scope.ONE, L.And((cls, uid)), _NSLCD),
            (BASE, L.Scope.SUB, uid, ("*",)),
            (f"ou=users,{BASE}", L.Scope.ONE, L.And((
                L.Compare(L.F_EQUAL, "uid", b"posixAccount"), cls)), _NSLCD),
            (f"ou=users,{BASE}", L.Scope.ONE, L.And((
                L.Compare(L.F_EQUAL, "cn", name.encode()), uid)), _NSLCD)])
        return L.encode_message(L.Message(msgid, L.SearchRequest(
            shape[0], shape[1], 0, 0, 0, False, shape[2], shape[3])))
    if rng.random() < 0.5:
        f: L.Filter = L.Compare(L.F_EQUAL, "uid", name.encode())
        if rng.random() < 0.5:
            f = L.And((L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"), f))
        return L.encode_message(L.Message(msgid, L.SearchRequest(
            rng.choice([f"ou=users,{BASE}", BASE]), L.Scope.SUB if rng.random() < 0.5
            else L.Scope.ONE, 0, rng.choice([0, 1]), 0, False, f,
            rng.choice([(), (), ("*",), ("uid", "cn"), ("+",), ("userPassword",),
                        ("*", "+"), ("hasSubordinates",), ("1.1",), _NSLCD,
                        ("objectClass", "SN", "netinfoProperty", "gecos", "entryDN")]))))
    base = rng.choice([f"ou=users,{BASE}"] * 6 + [
        BASE, f"OU=Users, {BASE}", f" ou=users,{BASE} ", f"ou=groups,{BASE}",
        f"ou=nothere,{BASE}", f"uid={name},ou=users,{BASE}", "dc=other", "cn=Subschema",
        "", "not a dn", f"ou=users,{BASE.upper()}"])
    scope = rng.choice([L.Scope.ONE] * 4 + [L.Scope.SUB] * 3 + [L.Scope.BASE])
    attrs = rng.choice([(), (), ("*",), ("uid", "uidNumber"), ("+",), ("*", "+"),
                        ("userPassword",), ("1.1",), ("cn", "entryDN", "hasSubordinates"),
                        ("uid", "gidNumber", "homeDirectory", "loginShell", "gecos",
                         "shadowLastChange", "shadowExpire", "userPassword", "cn",
                         "objectClass", "uidNumber", "netinfoProperty", "sn")])
    size = rng.choice([0, 0, 0, 1, 2, 500])
    types_only = rng.random() < 0.05
    controls: tuple[L.Control, ...] = ()
    if rng.random() < 0.05:
        # (not the paged one: its cookies are random)
        controls = (L.Control("1.2.3.4", rng.random() < 0.5, None),)
    return L.encode_message(L.Message(msgid, L.SearchRequest(
        base, scope, rng.choice([0, 0, 3]), size, rng.choice([0, 30]), types_only,
        _filter(rng, name), attrs), controls))


def _domain(url: str = "memory:") -> Database:
    """/users with root's password set; on SQLite a cache of 8 directories (most users
    then read from the store: ``CachedSource.peek``)."""
    db = Database(open_store(url), cache=8) if url != "memory:" else \
        Database(open_store(url))
    populate_standard(db.procedures)
    nid = _find(db, "root")
    assert nid is not None
    db.call(Proc.WRITEPROP, SUPERUSER, (nid, 1, [hash_password(ROOT_PW, "md5_crypt")]))
    db.commit()
    return db


def _users_dir(db: Database) -> NiId:
    root = db.call(Proc.ROOT, SUPERUSER, ())
    (uoid,), _ = db.call(Proc.LOOKUP, SUPERUSER, (root, "name", "users"))
    return db.call(Proc.SELF, SUPERUSER, (NiId(uoid, 0),))


def _create(db: Database, rng: random.Random, name: str) -> None:
    props = [("name", [name]), ("uid", [str(rng.randrange(1000, 9999))]),
             ("gid", [rng.choice(["20", "20", "20", "", "x"])])]
    if rng.random() < 0.7:
        props.append(("realname", [rng.choice([f"User {name}", "", "  ", "Ann B. Cé",
                                               "Long " * 30 + "Name", "\tTab\u3000"])]))
    if rng.random() < 0.7:
        props.append(("home", [rng.choice([f"/home/{name}", "/h/" + "d" * rng.choice(
            [118, 119, 120, 121, 200])])]))
    if rng.random() < 0.5:
        props.append(("shell", ["/bin/sh"]))
    if rng.random() < 0.4:
        props.append(("passwd", [rng.choice(["*", "", hash_password("pw", "md5_crypt")])]))
    if rng.random() < 0.1:
        props.append(("change", [rng.choice(["0", "86400", "-5", "abc"])]))
    if rng.random() < 0.1:
        props.append(("description", ["a description"]))
    if rng.random() < 0.2:
        props.append(("_writers_passwd", [name]))
    if rng.random() < 0.1:
        props.append(("extra", []))
    if rng.random() < 0.1:
        props.append((rng.choice(["note", "k=v\\x", "é"]), rng.choice(
            [["a", "b", "a"], ["x" * 130], [""]])))
    if rng.random() < 0.05:
        props.append(("uid", ["5"]))   # a second property of one name
    if rng.random() < 0.08:
        props += [("note", ["n1"]), ("note", [])]   # (not a column's)
    if rng.random() < 0.5:
        rng.shuffle(props)   # (the tests write the name as the property _where says)
    db.call(Proc.CREATE, SUPERUSER, (_users_dir(db), props, 0xFFFFFFFF))


def _find(db: Database, name: str) -> NiId | None:
    try:
        (oid,), _ = db.call(Proc.LOOKUP, SUPERUSER, (_users_dir(db), "name", name))
    except Exception:
        return None
    return db.call(Proc.SELF, SUPERUSER, (NiId(oid, 0),))


def _where(db: Database, nid: NiId, key: str = "name") -> int:
    """The position of property *key* in directory *nid*."""
    n = db.source.get(nid.object)
    assert n is not None
    return next(i for i, (k, _) in enumerate(n.props) if k == key)


def _change(db: Database, rng: random.Random, names: list[str]) -> None:
    """A random write to /users: a user made, renamed, given a second name, deleted,
    given a password or a child."""
    kind = rng.choice(["create", "create", "rename", "alias", "delete", "passwd", "child"])
    name = rng.choice(names)
    if kind == "create":
        _create(db, rng, rng.choice(names))   # sometimes a second user of one name
    else:
        nid = _find(db, name)
        if nid is None:
            return
        if kind == "rename":
            db.call(Proc.WRITEPROP, SUPERUSER, (nid, _where(db, nid), [rng.choice(names)]))
        elif kind == "alias":
            db.call(Proc.WRITEPROP, SUPERUSER, (nid, _where(db, nid), [name, rng.choice(names)]))
        elif kind == "delete":
            n = db.source.get(nid.object)
            if n is None or not n.children:
                db.call(Proc.DESTROY, SUPERUSER, (_users_dir(db), nid))
        elif kind == "passwd":
            db.call(Proc.CREATEPROP, SUPERUSER, (nid, ("passwd", ["$1$ab$cd"]), 0xFFFFFFFF))
        else:
            db.call(Proc.CREATE, SUPERUSER, (nid, [("name", ["sub"])], 0xFFFFFFFF))
    db.commit()


class Wire:
    """One connection: a request sent, the bytes of its answers (to the result) read."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w, self.buf = r, w, b""

    async def ask(self, raw: bytes, answers: int = 1) -> bytes:
        """What the server sends for *raw*, until its *answers* results (several
        requests in *raw*: sent in one write, read by the server in one read)."""
        self.w.write(raw)
        out = b""
        while True:
            n = ber.frame(self.buf)
            if n is None:
                data = await asyncio.wait_for(self.r.read(65536), TIMEOUT)
                assert data, "connection closed"
                self.buf += data
                continue
            one, self.buf = self.buf[:n], self.buf[n:]
            out += one
            m = L.decode_message(one)
            if not isinstance(m.op, (L.SearchEntry, L.SearchReference)):
                answers -= 1
                if not answers:
                    return out


async def _open(port: int, who: tuple[str, str] | None) -> Wire:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    c = Wire(r, w)
    if who is not None:
        answer = await c.ask(L.encode_message(L.Message(1, L.BindRequest(
            3, who[0], who[1].encode()))))
        op = L.decode_message(answer).op
        assert isinstance(op, L.Response) and op.code == L.ResultCode.SUCCESS, op
    return c


async def _all_said(port: int, raw: bytes) -> bytes:
    """Everything a new anonymous connection is sent for *raw*, the writing side shut
    after it (the server closes when it has answered what it could)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(raw)
    w.write_eof()
    out = b""
    while data := await asyncio.wait_for(r.read(65536), TIMEOUT):
        out += data
    w.close()
    return out


async def _damaged_routes(rng: random.Random, fast: LdapServer, pf: int, ps: int,
                          names: list[str]) -> None:
    """The searches of the routed shapes, whole and damaged (a byte changed, cut short,
    bytes after it, a long-form length), each alone on a new connection: the lane
    (``Connection._lane``) meets them first, and they are answered as the general
    path answers them."""
    shapes = list(fast.routes)
    assert shapes
    for _ in range(150):
        pre, post = rng.choice(shapes)
        fits = [n.encode() for n in names if len(n.encode()) == pre[-1]]
        body = pre + (rng.choice(fits) if fits else b"z" * pre[-1]) + post
        body = ber.encode_int(rng.choice([1, 127, 128, 70000])) + body
        raw = ber.tlv(ber.SEQUENCE, body)
        how = rng.choice(["whole", "byte", "cut", "more", "long"])
        if how == "byte":
            i = rng.randrange(len(raw))
            raw = raw[:i] + bytes((rng.randrange(256),)) + raw[i + 1:]
        elif how == "cut":
            raw = raw[:rng.randrange(1, len(raw))]
        elif how == "more":
            raw += rng.choice([raw, b"\x30", b"\x30\x03\x02\x01\x07", b"\x00"])
        elif how == "long" and len(body) < 0x100:
            raw = b"\x30\x81" + bytes((len(body),)) + body
        assert await _all_said(pf, raw) == await _all_said(ps, raw), (how, raw)


@pytest.mark.parametrize("engine", ["memory", "sqlite", "sqlite-indexed", "sqlite-resident",
                                    "sqlite-resident-deflated"])
def test_short_path_answers_byte_for_byte_as_the_general_path(monkeypatch, tmp_path: Path,
                                                              engine: str) -> None:
    """On SQLite with a cache of 8 most users are read from the store by the short path
    (``CachedSource.lookup_stored``: the row alone); "sqlite-indexed" finds them through
    the resident index (built at once here), kept up to date by the writes between
    rounds; "sqlite-resident" also holds the users' entries in memory (``residents``:
    read after 3 misses, a piece per turn, forgotten by the writes, read again when too
    changed) for the anonymous reader, as written (a map of few users) or, with
    "-deflated", compressed. User "big"'s entry is past the 64 KiB a held entry may be
    as written (so it is answered the usual way), not compressed."""
    rng = random.Random(22)
    names = [f"u{i}" for i in range(30)] + ["Ann", "bob", "BOB", "x,y", "e=q", "café",
                                            " lead", "trail ", "#h", "posixAccount",
                                            "big", "nobody-here"]
    db = _domain("memory:" if engine == "memory" else f"sqlite:{tmp_path / 'd.sqlite'}")
    resident = engine.startswith("sqlite-resident")
    if engine == "sqlite-resident-deflated":
        monkeypatch.setattr(door, "RESIDENT_PLAIN_USERS", 0)
    if engine != "memory" and engine != "sqlite":
        src = db.source
        assert isinstance(src, CachedSource)

        def run(job: IndexJob) -> None:
            job.run()
            job.install()
        src.index_runner = run
        monkeypatch.setattr(cached, "INDEX_AFTER", 2)
    if resident:
        monkeypatch.setattr(door, "RESIDENT_AFTER", 3)
        monkeypatch.setattr(door, "RESIDENT_BATCH", 4)
        monkeypatch.setattr(door, "RESIDENT_TURN", 0.0)
        monkeypatch.setattr(door, "RESIDENT_COOLDOWN", 0)
        monkeypatch.setattr("netinfo.server.nisresident.FORGOTTEN_MIN", 6)
    for name in names[:-2]:
        _create(db, rng, name)
    db.call(Proc.CREATE, SUPERUSER, (_users_dir(db), [
        ("name", ["big"]), ("uid", ["78"]), ("gid", ["20"]),
        ("shell", ["/bin/sh"]), ("realname", ["Big " * 9_000]),
        ("home", ["/" + "h" * 40_000])], 0xFFFFFFFF))
    # the user the bound connections are (a password, md5-crypt: quick to check)
    db.call(Proc.CREATE, SUPERUSER, (_users_dir(db), [
        ("name", ["carol"]), ("uid", ["77"]), ("passwd", [hash_password("c-pw", "md5_crypt")])],
        0xFFFFFFFF))
    db.commit()
    names.append("carol")
    def spy(owner: object, attr: str, note) -> list:
        """What *note* says of each answer of ``owner.attr`` (None: nothing noted)."""
        seen: list = []
        real = getattr(owner, attr)

        def wrapped(*args):
            got = real(*args)
            said = note(got)
            if said is not None:
                seen.append(said)
            return got
        monkeypatch.setattr(owner, attr, wrapped)
        return seen
    # searches the short path took (the entries it found)
    taken = spy(LdapServer, "quick", lambda got: None if got is None else len(got[0]))
    # answered from the users' entries in memory
    held = spy(LdapServer, "_resident_entry", lambda got: got is not None)
    # searches of a shape answered from memory before, routed there
    routed = spy(LdapServer, "routed_entry", lambda got: got is not None)
    # of those, the lone requests answered at once (Connection._lane)
    lane = spy(door.Connection, "_lane", lambda got: got or None)
    # entries written from the stored bytes (ldapentry.user_entry)
    built = spy(door, "user_entry",
                lambda got: "none" if got is None else got[1] is not None)
    readers = [None, (f"uid=carol,ou=users,{BASE}", "c-pw"),
               (f"uid=root,ou=users,{BASE}", ROOT_PW)]

    async def go() -> None:
        fast = LdapServer(db, LdapConfig(BASE, resident_bytes=(1 << 20) if resident else 0))
        slow = LdapServer(db, LdapConfig(BASE, quick=False))
        pf = await fast.listen("127.0.0.1", 0)
        ps = await slow.listen("127.0.0.1", 0)
        try:
            pairs = [(await _open(pf, who), await _open(ps, who)) for who in readers]
            msgid = 2
            for _ in range(60):
                for _ in range(40):
                    a, b = rng.choice(pairs)
                    raw = _request(rng, msgid, names)
                    msgid += rng.choice([1, 1, 1, 200, 70000])
                    k = 1
                    if rng.random() < 0.2:   # two at once: _process answers both
                        raw += _request(rng, msgid, names)
                        msgid += 1
                        k = 2
                    got, want = await a.ask(raw, k), await b.ask(raw, k)
                    assert got == want, (L.decode_message(raw), got, want)
                    if rng.random() < 0.2:   # asked again: the kept answer
                        assert await a.ask(raw, k) == await b.ask(raw, k)
                _change(db, rng, names)
            # a message id not in its fewest bytes, asked again and again (the general
            # path, then the kept answer): answered with the id in its fewest bytes
            a, b = pairs[0]
            for _ in range(20):
                raw = _request(rng, 5, names)
                p, q, _end = L.message_parts(raw) or (0, 0, 0)
                assert raw[p:q] == b"\x02\x01\x05"
                body = b"\x02\x03\x00\x00\x05" + raw[q:]
                wide = ber.tlv(ber.SEQUENCE, body)
                want = await b.ask(wide)
                assert want == await b.ask(raw)   # (the same answer, the same id)
                for _ in range(4):
                    assert await a.ask(wide) == want
                    assert await b.ask(wide) == want
            if resident:
                before = len(lane)
                await _damaged_routes(rng, fast, pf, ps, names)
                assert len(lane) - before >= 5, (before, len(lane))
            for a, b in pairs:
                a.w.close()
                b.w.close()
        finally:
            await fast.close()
            await slow.close()
    asyncio.run(go())
    # the short path answered many (with and without an entry), not everything
    assert taken.count(1) > 300 and taken.count(0) > 30, (taken.count(1), taken.count(0))
    # most of those from the stored bytes, not all (the unusual users the general way)
    assert built.count(True) > 150 and built.count("none") > 50, (
        built.count(True), built.count("none"), taken.count(1))
    if engine != "memory" and engine != "sqlite":
        assert any(key[1] == "name" for key in src.indexes)
    if resident:
        # (a few only: writes every 40 searches, random selections, 3 readers)
        assert held.count(True) > 15, (held.count(True), len(held))
        assert routed.count(True) > 5, (routed.count(True), len(routed))
        # in the lane and, for requests that came two at once, in _process
        assert 0 < len(lane) < routed.count(True), (len(lane), routed.count(True))
    else:
        assert not held and not routed and not lane


def test_short_path_waits_for_pending_writes() -> None:
    """While a write is pending (``read_state`` None) the general path answers (it sees
    the write); what the short path kept before is not answered after the commit."""
    db = _domain()
    rng = random.Random(3)
    _create(db, rng, "dan")
    db.commit()

    async def go() -> None:
        srv = LdapServer(db, LdapConfig(BASE))
        port = await srv.listen("127.0.0.1", 0)
        try:
            c = await _open(port, None)
            raw = L.encode_message(L.Message(5, L.SearchRequest(
                f"ou=users,{BASE}", L.Scope.ONE, 0, 0, 0, False,
                L.Compare(L.F_EQUAL, "uid", b"dan"), ("uid",))))
            first = await c.ask(raw)
            assert b"dan" in first
            nid = _find(db, "dan")
            assert nid is not None
            db.call(Proc.WRITEPROP, SUPERUSER, (nid, _where(db, nid), ["dan2"]))   # not committed
            assert srv.kept.usable() is False
            assert b"dan" not in (await c.ask(raw)).replace(b"dan2", b"")
            db.commit()
            after = await c.ask(raw)
            assert b"dan" not in after.replace(b"dan2", b"") and after != first
            c.w.close()
        finally:
            await srv.close()
    asyncio.run(go())


def test_scanner_reads_what_the_decoder_reads() -> None:
    """``scan_equality_search`` on random requests and on the same bytes damaged: when it
    reads a search, the general decoder reads the same search from those bytes (and no
    controls), and ``equality_value_span`` finds the value of its last equality; it
    reads the common shapes."""
    rng = random.Random(5)
    names = ["u1", "Ann", "x" * 200, "é"]
    read = spans = 0
    for _ in range(3000):
        raw = _request(rng, rng.choice([1, 127, 128, 300, 2**31 - 1]), names)
        variants = [raw]
        for _ in range(4):
            b = bytearray(raw)
            b[rng.randrange(2, len(b))] = rng.randrange(256)
            variants.append(bytes(b))
        cut = rng.randrange(3, len(raw))
        variants.append(raw[:cut])
        for v in variants:
            try:
                if ber.frame(v) != len(v):
                    continue
            except WireError:
                continue
            # the messages _Kept.answer and the lane let through to the short path
            parts = L.message_parts(v)   # (never raises, whatever the bytes)
            if parts is None:
                continue
            p, q, end = parts
            assert end == len(v)   # (framed whole: its length read as ber.frame reads it)
            try:
                assert L.decode_message(v).id == int.from_bytes(v[p + 2:q], "big")
            except WireError:
                pass
            if q >= len(v):
                continue
            span = L.equality_value_span(v, q)   # (never raises, whatever the bytes)
            got = L.scan_equality_search(v, q)
            if got is None:
                continue
            read += v is raw
            m = L.decode_message(v)
            assert m.op == got and m.controls == (), (v, got, m)
            # the span is the value of the filter's last equality
            last = got.filter.terms[-1] if isinstance(got.filter, L.And) else got.filter
            assert isinstance(last, L.Compare) and span is not None
            assert v[span[0]:span[1]] == last.value
            spans += 1
    assert read > 300 and spans > 300


def test_scanner_takes_ldapload_and_nslcd_requests() -> None:
    for f in (L.Compare(L.F_EQUAL, "uid", b"user5"),
              L.And((L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"),
                     L.Compare(L.F_EQUAL, "uid", b"user5")))):
        for attrs in ((), ("uid", "userPassword", "uidNumber", "gidNumber", "cn",
                           "homeDirectory", "loginShell", "gecos", "description",
                           "objectClass", "shadowLastChange", "shadowMin", "shadowMax",
                           "shadowWarning", "shadowInactive", "shadowExpire",
                           "shadowFlag")):
            raw = L.encode_message(L.Message(300, L.SearchRequest(
                f"ou=users,{BASE}", L.Scope.ONE, 0, 0, 0, False, f, attrs)))
            assert L.scan_equality_search(raw, _op_start(raw)) == L.decode_message(raw).op


def test_encode_selected_is_the_general_encoding() -> None:
    """``encode_selected`` against select + encode_op, random users, selections and
    readers."""
    rng = random.Random(9)
    db = _domain()
    for i in range(40):
        _create(db, rng, f"n{i}")
    db.commit()
    src = db.source
    uoid = _users_dir(db).object
    node = src.get(uoid)
    assert node is not None
    for oid in node.children:
        n = src.get(oid)
        assert n is not None
        path = ("users", next(vs[0] for k, vs in n.props if k == "name"))
        attrs = entry_attrs(path, n.props, ("dc", "t"))
        # values about the short form's bound (one value: 125..127 bytes and past)
        attrs["description"] = ("description", ["y" * rng.choice([1, 125, 126, 127, 128, 300])])
        attrs["mail"] = ("mail", ["m" * rng.choice([125, 126, 200])] * rng.choice([1, 2]))
        op = {"entrydn": ("entryDN", ["uid=x"]),
              "subschemasubentry": ("subschemaSubentry", ["cn=Subschema"]),
              "hassubordinates": ("hasSubordinates", ["FALSE"])}
        for wanted in [(), ("*",), ("+",), ("uid", "ENTRYDN"), ("1.1",), ("*", "+"),
                       ("userPassword", "cn")]:
            for hidden in (frozenset(), door.PRIVATE_ATTRS):
                assert encode_selected("uid=é,dc=t", attrs, wanted, hidden, op) == \
                    L.encode_op(L.SearchEntry("uid=é,dc=t", select(
                        attrs, wanted, False, hidden, op)))


def test_damaged_searches_get_the_general_paths_answers() -> None:
    """Requests of the short path's shapes with a byte changed (still framed): each door,
    on a connection of its own, answers them with the same bytes (a result, an error, or
    the notice of disconnection for what does not decode)."""
    rng = random.Random(11)
    db = _domain()
    for name in ("u1", "u2", "Ann"):
        _create(db, rng, name)
    db.commit()

    async def everything(port: int, raw: bytes) -> bytes:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(raw)
        # then a search that always answers: what came before it is all there
        w.write(L.encode_message(L.Message(9, L.SearchRequest(
            "", L.Scope.BASE, 0, 0, 0, False, L.Present("objectClass"), ("1.1",)))))
        out = b""
        while True:
            data = await asyncio.wait_for(r.read(65536), TIMEOUT)
            out += data
            if not data or out.endswith(L.message_with(9, door._DONE)):
                break
        w.close()
        return out

    async def go() -> None:
        fast = LdapServer(db, LdapConfig(BASE))
        slow = LdapServer(db, LdapConfig(BASE, quick=False))
        pf = await fast.listen("127.0.0.1", 0)
        ps = await slow.listen("127.0.0.1", 0)
        sent = 0
        try:
            while sent < 150:
                f: L.Filter = L.Compare(L.F_EQUAL, "uid", rng.choice([b"u1", b"Ann"]))
                if rng.random() < 0.5:
                    f = L.And((L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"), f))
                raw = bytearray(L.encode_message(L.Message(rng.randrange(1, 300),
                                                           L.SearchRequest(
                    f"ou=users,{BASE}", L.Scope.ONE, 0, 0, 0, False, f, ("uid",)))))
                raw[rng.randrange(2, len(raw))] = rng.randrange(256)
                try:
                    if ber.frame(raw) != len(raw):
                        continue
                except WireError:
                    continue
                sent += 1
                assert await everything(pf, bytes(raw)) == await everything(ps, bytes(raw))
        finally:
            await fast.close()
            await slow.close()
    asyncio.run(go())


def test_user_entry_writes_the_general_entry() -> None:
    """``ldapentry.user_entry`` against the general builder (``entry_attrs``, the filter,
    ``encode_selected``) on random proplists, attribute lists and readers: the same
    bytes, or None (then the general builder answers); most of them written."""
    rng = random.Random(23)
    keys = ["name", "uid", "gid", "realname", "home", "shell", "passwd", "note", "k=\\",
            "é", "", "change", "description", "_writers_passwd"]
    values = ["", " ", "a", "Ann B. Cé", "x" * 119, "y" * 121, "{CRYPT}h", "$1$s$h", "a b ",
              "\udcff"]
    written = 0
    for _ in range(4000):
        props = [("name", [rng.choice(["ann", "b,c", " x", "é"])])]
        for _ in range(rng.randrange(8)):
            k = rng.choice(keys[1:] if rng.random() < 0.9 else keys)
            props.append((k, [rng.choice(values) if rng.random() < 0.8 else
                              "z" * rng.randrange(100, 132)   # about the short forms
                              for _ in range(rng.choice([1, 1, 1, 1, 0, 2]))]))
        rng.shuffle(props)
        data = encode_proplist(props)
        name = next((vs[0] for k, vs in props if k == "name" and vs), None)
        f: L.Filter = L.Compare(L.F_EQUAL, "uid", rng.choice([name or "", "other"]).encode(
            "utf-8", "surrogateescape"))
        if rng.random() < 0.5:
            f = L.And((L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"), f))
        wanted = rng.choice([(), ("*",), ("+",), ("*", "+"), _NSLCD, ("1.1",), ("CN", "sn"),
                             ("hasSubordinates", "entryDN"), ("netinfoProperty",)])
        hide = rng.choice([frozenset(), door.PRIVATE_ATTRS])
        kids = rng.choice([None, True, False])
        got = user_entry(data, f"ou=users,{BASE}", f, wanted, lambda p, h=hide: h, kids)
        # damaged: what decode_proplist refuses is never written
        bad = rng.choice([data[:rng.randrange(len(data))], data + b"\0\0\0\0",
                          bytes([rng.randrange(256)]) + data[1:]])
        try:
            decode_proplist(bad)
        except WireError:
            assert user_entry(bad, f"ou=users,{BASE}", f, wanted, lambda p, h=hide: h,
                              kids) is None
        if got is None:
            continue
        assert name is not None and got[0] == name
        path = ("users", name)
        attrs = entry_attrs(path, props, ("dc", "t"))
        if evaluate(f, attrs, hide) is not True:
            assert got[1] is None, props
            continue
        written += 1
        dn = f"uid={escape_value(name)},ou=users,{BASE}"
        op = {"entrydn": ("entryDN", [dn]),
              "subschemasubentry": ("subschemaSubentry", ["cn=Subschema"]),
              "hassubordinates": ("hasSubordinates", ["TRUE" if kids else "FALSE"])}
        assert got[1] == encode_selected(dn, attrs, wanted, hide, op), (props, wanted)
    assert written > 500, written
