"""The RFC 2307 table (server/rfc2307), DNs, the filter evaluator (server/ldapview), and the
front door's rules that loopback cannot show (server/ldap: a password bind without TLS
from another host)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netinfo.server import rfc2307 as R
from netinfo.server.ldap import Connection, LdapConfig, LdapServer, default_base
from netinfo.server.ldapview import evaluate, root_dse, schema_entry, select
from netinfo.storage import open_store
from netinfo.server.database import Database
from netinfo.wire import ldap as L

ANN = [("name", ["ann"]), ("passwd", ["$6$x$y"]), ("uid", ["5001"]), ("gid", ["20"]),
       ("realname", ["Ann Arbor"]), ("home", ["/home/ann"]), ("shell", ["/bin/sh"]),
       ("change", ["864000"]), ("_writers_passwd", ["ann"]), ("class", [""])]
BASE_RDN = ("dc", "ni")


def test_a_user_entry() -> None:
    a = R.entry_attrs(("users", "ann"), ANN, BASE_RDN)
    # netinfoDirectory: the class that allows netinfoProperty (a server's schema check)
    assert a["objectclass"][1] == ["top", "posixAccount", "shadowAccount", "inetOrgPerson",
                                   "netinfoDirectory"]
    assert a["uidnumber"] == ("uidNumber", ["5001"])
    assert a["userpassword"] == ("userPassword", ["{CRYPT}$6$x$y"])
    assert a["shadowlastchange"] == ("shadowLastChange", ["10"])   # days, not seconds
    assert a["cn"][1] == ["Ann Arbor"] and a["sn"][1] == ["Arbor"]
    assert a["netinfoproperty"][1] == ["_writers_passwd=ann", "class="]
    # a column that shows a value otherwise (days) also carries it exactly
    odd = [kv for kv in ANN if kv[0] != "shell"] + [("expire", ["0"]), ("shell", [])]
    lossy = R.entry_attrs(("users", "ann"), odd, BASE_RDN)
    assert lossy["netinfoproperty"][1] == ["_writers_passwd=ann", "class=", "expire=0",
                                           "shell"]
    back = dict(R.props_from_attrs(("users", "ann"), list(lossy.values())))
    assert back["expire"] == ["0"] and back["shell"] == [] and back["change"] == ["864000"]
    assert not any("$6$" in v for v in a["netinfoproperty"][1])
    no_name = R.entry_attrs(("users", "bob"), [("name", ["bob"]), ("uid", ["1"])], BASE_RDN)
    assert "account" in no_name["objectclass"][1] and no_name["cn"][1] == ["bob"]


def test_every_row_and_generic_entries() -> None:
    host = R.entry_attrs(("machines", "h"), [("name", ["h", "h2"]),
                                             ("ip_address", ["10.0.0.1"]),
                                             ("en_address", ["0:1:2:3:4:5"])], BASE_RDN)
    assert host["cn"][1] == ["h", "h2"] and host["iphostnumber"][1] == ["10.0.0.1"]
    assert host["macaddress"][1] == ["0:1:2:3:4:5"]
    mount = R.entry_attrs(("mounts", "srv:/x"), [("name", ["srv:/x"]), ("dir", ["/x"]),
                                                 ("opts", ["ro"])], BASE_RDN)
    assert mount["automountinformation"][1] == ["-ro srv:/x"]
    assert mount["automountkey"][1] == ["/x"]
    for d in R.MAPPINGS:
        assert R.rdn_attr((d, "x")).lower() in R.entry_attrs((d, "x"), [("name", ["x"])],
                                                             BASE_RDN)
    deep = R.entry_attrs(("users", "ann", "keys"), [("name", ["keys"]), ("a_b", ["1"])],
                         BASE_RDN)
    assert deep["objectclass"][1] == list(R.GENERIC_CLASSES)
    assert deep["netinfoproperty"][1] == ["a_b=1"]
    top = R.entry_attrs(("printers",), [("name", ["printers"])], BASE_RDN)
    assert top["ou"][1] == ["printers"]
    root = R.entry_attrs((), [("master", ["h/net"])], BASE_RDN)
    assert root["dc"][1] == ["ni"] and "domain" in root["objectclass"][1]


def test_properties_back_from_attributes() -> None:
    """A read-modify-write keeps every property: what no attribute speaks for (the
    private passwd when it is not shown, empty values) stays, in place."""
    path = ("users", "ann")
    a = R.entry_attrs(path, ANN, BASE_RDN)
    back = R.props_from_attrs(path, list(a.values()), ANN)
    assert back == ANN   # the same properties in the same order
    # the attributes are the whole entry: without userPassword, passwd goes
    shown = {k: v for k, v in a.items() if k not in R.PRIVATE_ATTRS}
    back = R.props_from_attrs(path, list(shown.values()), ANN)
    assert "passwd" not in dict(back) and back[0][0] == "name"
    assert ("class", [""]) in back


@given(st.lists(st.tuples(st.sampled_from(["a_b", "x=y", "x\\y", "note", "_writers"]),
                          st.lists(st.text(min_size=1, max_size=5), min_size=1,
                                   max_size=3)), max_size=4))
def test_generic_properties_round_trip(props: list[tuple[str, list[str]]]) -> None:
    seen: dict[str, list[str]] = {}
    for k, vs in props:
        seen.setdefault(k, vs)
    plist = [("name", ["n"])] + list(seen.items())
    path = ("things", "n")
    a = R.entry_attrs(path, plist, BASE_RDN)
    assert dict(R.props_from_attrs(path, list(a.values()), plist)) == dict(plist)


@given(st.lists(st.tuples(st.sampled_from(["cn", "uid", "ou", "dc"]),
                          st.text(min_size=1, max_size=8)), max_size=5))
def test_dn_text_round_trips(dn: list[tuple[str, str]]) -> None:
    assert R.parse_dn(R.dn_text(tuple(dn))) == tuple(dn)


def test_dn_parsing() -> None:
    assert R.parse_dn("uid=a\\,b,ou=users, dc=ni") == (("uid", "a,b"), ("ou", "users"),
                                                       ("dc", "ni"))
    assert R.parse_dn("cn=\\23x\\20") == (("cn", "#x "),)
    assert R.parse_dn("cn=a+sn=b,dc=x") == (("cn", "a"), ("dc", "x"))
    assert R.dn_text((("cn", " #a,b "),)) == "cn=\\ #a\\,b\\ "
    for bad in ("cn", "=x", "cn=a\\"):
        with pytest.raises(R.DnError):
            R.parse_dn(bad)
    with pytest.raises(R.DnError):
        R.parse_dn(",".join(["cn=a"] * (R.MAX_RDNS + 1)))
    assert R.norm_dn(R.parse_dn("UID=Ann,DC=Ni")) == R.norm_dn(R.parse_dn("uid=ann,dc=ni"))
    assert default_base("network") == "dc=network,dc=netinfo"


def test_three_valued_filters() -> None:
    a = R.entry_attrs(("users", "ann"), ANN, BASE_RDN)
    hide = R.PRIVATE_ATTRS
    eq = L.Compare(L.F_EQUAL, "userPassword", b"{CRYPT}$6$x$y")
    assert evaluate(eq, a) is True
    assert evaluate(eq, a, hide) is None
    assert evaluate(L.Not(eq), a, hide) is None            # a NOT cannot read it out
    assert evaluate(L.Or((eq, L.Present("uid"))), a, hide) is True
    assert evaluate(L.And((eq, L.Present("uid"))), a, hide) is None
    assert evaluate(L.Present("userPassword"), a, hide) is None
    assert evaluate(L.Substrings("userPassword", b"{CRYPT}", (), None), a, hide) is None
    bad = L.Compare(L.F_GE, "uidNumber", b"abc")
    assert evaluate(bad, a) is None
    assert evaluate(L.Compare(L.F_GE, "uidNumber", b"5001"), a) is True
    assert evaluate(L.Compare(L.F_EQUAL, "nosuch", b"x"), a) is False


def test_selection_and_the_fixed_entries() -> None:
    a = R.entry_attrs(("users", "ann"), ANN, BASE_RDN)
    op = {"entrydn": ("entryDN", ["uid=ann,ou=users,dc=ni"])}
    names = [n for n, _ in select(a, (), False, R.PRIVATE_ATTRS, op)]
    assert "userPassword" not in names and "entryDN" not in names and "uid" in names
    assert [n for n, _ in select(a, ("1.1",), False, frozenset(), op)] == []
    assert [n for n, _ in select(a, ("+",), False, frozenset(), op)] == ["entryDN"]
    assert all(v == () for _, v in select(a, ("uid",), True, frozenset(), op))
    assert L.OID_STARTTLS not in root_dse("dc=ni", False)["supportedextension"][1]
    assert L.OID_STARTTLS in root_dse("dc=ni", True)["supportedextension"][1]
    assert any("posixGroup" in v for v in schema_entry()["objectclasses"][1])


class _Writer(asyncio.Transport):
    """A stand-in for a connection's transport whose peer is *addr* (another host)."""

    def __init__(self, addr: str) -> None:
        super().__init__()
        self.addr = addr
        self.out = b""

    def get_extra_info(self, key: str, default: object = None) -> object:
        return (self.addr, 40000) if key == "peername" else default

    def write(self, data: bytes) -> None:   # type: ignore[override]
        self.out += data

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connection(server: LdapServer, addr: str) -> tuple[Connection, _Writer]:
    """A connection of *server* over a stand-in transport from *addr* (in a running
    loop)."""
    w = _Writer(addr)
    conn = Connection(server)
    conn.connection_made(w)
    return conn, w


def test_password_binds_need_tls_off_loopback() -> None:
    """RFC 4513 §5.1.2 / issue 22: from another host a simple bind with a password on a
    connection without TLS is refused (confidentialityRequired) before any password is
    checked; from loopback it is checked."""
    db = Database(open_store("memory:"))
    server = LdapServer(db, LdapConfig("dc=t,dc=netinfo"))
    bind = L.Message(1, L.BindRequest(3, "uid=root,ou=users,dc=t,dc=netinfo", b"pw"))

    async def answer(addr: str) -> L.Message:
        conn, w = _connection(server, addr)
        await conn.bind(bind)
        return L.decode_message(w.out)
    for addr, code in (("192.0.2.7", L.ResultCode.CONFIDENTIALITY_REQUIRED),
                       ("127.0.0.1", L.ResultCode.INVALID_CREDENTIALS)):
        reply = asyncio.run(answer(addr))
        assert isinstance(reply.op, L.Response) and reply.op.code == code, addr


def test_time_and_size_limits_in_process() -> None:
    """A subtree search past its timeLimit ends timeLimitExceeded (checked every BATCH
    entries against the connection's clock), past its sizeLimit sizeLimitExceeded, with
    the entries found until then."""
    from netinfo.server import ldap as S
    from netinfo.server.templates import populate_standard
    db = Database(open_store("memory:"))
    populate_standard(db.procedures)
    db.commit()
    server = LdapServer(db, LdapConfig("dc=t,dc=netinfo"))

    def run(limit_s: int, size: int, tick: float) -> list[L.Message]:
        async def go() -> bytes:
            conn, w = _connection(server, "127.0.0.1")
            now = [0.0]

            def clock() -> float:
                now[0] += tick
                return now[0]
            conn.clock = clock
            op = L.SearchRequest("dc=t,dc=netinfo", 2, 0, size, limit_s, False,
                                 L.Present("objectClass"), ("1.1",))
            await conn._search(L.Message(7, op), op)
            return w.out
        out = asyncio.run(go())
        msgs = []
        while out:
            n = S.ber.frame(out)
            assert n is not None
            msgs.append(L.decode_message(out[:n]))
            out = out[n:]
        return msgs

    S.BATCH, old = 8, S.BATCH
    try:
        timed = run(1, 0, 0.3)
        assert timed[-1].op == L.Response(L.SEARCH_DONE, L.ResultCode.TIME_LIMIT_EXCEEDED)
        assert 0 < len(timed) - 1 < 8 * 4
        sized = run(0, 5, 0.0)
        assert sized[-1].op == L.Response(L.SEARCH_DONE, L.ResultCode.SIZE_LIMIT_EXCEEDED)
        assert len(sized) == 6
        whole = run(0, 0, 0.0)
        assert whole[-1].op == L.Response(L.SEARCH_DONE, L.ResultCode.SUCCESS)
        assert len(whole) > 30
    finally:
        S.BATCH = old


def test_partial_messages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message begun and not finished within PARTIAL_TIMEOUT ends its session (with
    the notice of disconnection); past PARTIAL_BUDGET for all connections together the
    one holding the most is dropped (in process, real sockets on loopback)."""
    from netinfo.server import ldap as S
    monkeypatch.setattr(S, "PARTIAL_TIMEOUT", 0.5)
    monkeypatch.setattr(S, "PARTIAL_BUDGET", 1000)
    db = Database(open_store("memory:"))

    async def go() -> tuple[bytes, bytes, bool]:
        server = LdapServer(db, LdapConfig("dc=t,dc=netinfo"))
        port = await server.listen("127.0.0.1", 0)
        try:
            head = bytes.fromhex("3084000f0000")   # announces 983,040 bytes
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)
            w1.write(head + b"\x02" * 10)
            await w1.drain()
            slow = await asyncio.wait_for(r1.read(), 5)   # the timeout's notice, EOF
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            r3, w3 = await asyncio.open_connection("127.0.0.1", port)
            w2.write(head + b"\x02" * 400)
            await w2.drain()
            await asyncio.sleep(0.1)
            w3.write(head + b"\x02" * 700)   # 1,112 in all: the biggest (this one) goes
            await w3.drain()
            big = await asyncio.wait_for(r3.read(), 5)
            still = not r2.at_eof()
            for w in (w1, w2, w3):
                w.close()
            return slow, big, still
        finally:
            await server.close()
    slow, big, still = asyncio.run(go())
    notice = L.decode_message(slow)
    assert isinstance(notice.op, L.ExtendedResponse)
    assert notice.op.name == L.OID_NOTICE_OF_DISCONNECTION
    assert big == b"" and still
