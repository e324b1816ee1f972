"""The LDAP door's connection as an asyncio Protocol (``server/ldap.Connection``): the
whole messages of each read answered in order inside ``data_received``, a message cut
anywhere put together again, the idle and stall bounds kept by timers, a peer that
does not read its answers held to a bounded queue, StartTLS with a request arriving in
the same segment as the handshake's end, and the entries the door keeps between
searches (``ldap._Kept``) dropped by the writes that change them. In process, real
sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from netinfo.model import NiId
from netinfo.server import ldap as door
from netinfo.server import ldapentry
from netinfo.server.database import Database
from netinfo.server.ldap import LdapConfig, LdapServer, tls_context
from netinfo.server.peers import PeerLimits
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import populate_standard
from netinfo.storage import open_store
from netinfo.wire import ber
from netinfo.wire import ldap as L
from netinfo.wire.protocol import Proc

from .test_ldap_server import _certificate

BASE = "dc=t,dc=netinfo"
TIMEOUT = 20
USERS = 60


def _domain(users: int = USERS) -> Database:
    """A memory domain with users u0..u{users-1}, /users and each user writable by
    anyone (``_writers *``)."""
    db = Database(open_store("memory:"))
    populate_standard(db.procedures)
    root = db.call(Proc.ROOT, SUPERUSER, ())
    (uoid,), _ = db.call(Proc.LOOKUP, SUPERUSER, (root, "name", "users"))
    uid = db.call(Proc.SELF, SUPERUSER, (NiId(uoid, 0),))
    uid = db.call(Proc.CREATEPROP, SUPERUSER, (uid, ("_writers", ["*"]), 0xFFFFFFFF))
    for i in range(users):
        _, uid = db.call(Proc.CREATE, SUPERUSER, (uid, [
            ("name", [f"u{i}"]), ("uid", [str(6000 + i)]), ("gid", ["20"]),
            ("realname", [f"User {i}"]), ("home", [f"/home/u{i}"]),
            ("_writers", ["*"])], 0xFFFFFFFF))
    db.commit()
    return db


def _search(msgid: int, name: str, base: str = BASE) -> bytes:
    return L.encode_message(L.Message(msgid, L.SearchRequest(
        base, L.Scope.SUB, 0, 0, 0, False, L.And((
            L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"),
            L.Compare(L.F_EQUAL, "uid", name.encode()))), ())))


def _scan(msgid: int) -> bytes:
    return L.encode_message(L.Message(msgid, L.SearchRequest(
        BASE, L.Scope.SUB, 0, 0, 0, False, L.Present("objectClass"), ())))


class Peer:
    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w, self.buf = r, w, b""

    async def next(self) -> L.Message | None:
        """The next message, or None at the end of the connection."""
        while (n := ber.frame(self.buf)) is None:
            data = await asyncio.wait_for(self.r.read(65536), TIMEOUT)
            if not data:
                return None
            self.buf += data
        m = L.decode_message(self.buf[:n])
        self.buf = self.buf[n:]
        return m

    async def answers(self, count: int) -> list[L.Message]:
        """Messages until *count* searches are done."""
        out: list[L.Message] = []
        done = 0
        while done < count:
            m = await self.next()
            assert m is not None, out
            out.append(m)
            if isinstance(m.op, L.Response):
                done += 1
        return out


async def _connect(port: int) -> Peer:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    return Peer(r, w)


def _serve(db: Database, body, config: LdapConfig | None = None) -> None:
    async def go() -> None:
        server = LdapServer(db, config or LdapConfig(BASE))
        port = await server.listen("127.0.0.1", 0)
        try:
            await body(server, port)
        finally:
            await server.close()
    asyncio.run(go())


def _uids(msgs: list[L.Message], msgid: int) -> list[str]:
    return [dict(m.op.attributes)["uid"][0].decode() for m in msgs
            if m.id == msgid and isinstance(m.op, L.SearchEntry)]


def test_pipelined_searches_in_one_write_are_answered_in_order() -> None:
    """Forty searches in one write (one read of the server's socket): every one answered,
    its entry then its result, in the order sent."""
    n = 40

    async def body(server: LdapServer, port: int) -> None:
        c = await _connect(port)
        c.w.write(b"".join(_search(i + 1, f"u{i}") for i in range(n)))
        got = await c.answers(n)
        assert [m.id for m in got] == [i // 2 + 1 for i in range(2 * n)]
        for i in range(n):
            assert _uids(got, i + 1) == [f"u{i}"]
            done = got[2 * i + 1].op
            assert isinstance(done, L.Response) and done.code == L.ResultCode.SUCCESS
        c.w.close()
    _serve(_domain(), body)


def test_a_message_cut_anywhere_is_put_together() -> None:
    """Each search sent in two writes, cut at every byte position (the first half given
    time to arrive alone), is answered like one sent whole."""
    async def body(server: LdapServer, port: int) -> None:
        c = await _connect(port)
        data = _search(1, "u7")
        for cut in range(1, len(data)):
            msg = _search(cut, "u7")
            c.w.write(msg[:cut])
            await c.w.drain()
            await asyncio.sleep(0.002)
            c.w.write(msg[cut:])
            got = await c.answers(1)
            assert [m.id for m in got] == [cut, cut] and _uids(got, cut) == ["u7"]
        # and a message whose tail comes with the next message's head
        both = _search(900, "u1") + _search(901, "u2")
        c.w.write(both[:len(both) // 2 + 3])
        await c.w.drain()
        await asyncio.sleep(0.01)
        c.w.write(both[len(both) // 2 + 3:])
        got = await c.answers(2)
        assert _uids(got, 900) == ["u1"] and _uids(got, 901) == ["u2"]
        c.w.close()
    _serve(_domain(), body)


def test_idle_timeout_closes_a_silent_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection silent for IDLE_TIMEOUT with nothing in flight gets the notice of
    disconnection and is closed; one that keeps asking stays open past it."""
    monkeypatch.setattr(door, "IDLE_TIMEOUT", 0.5)

    async def body(server: LdapServer, port: int) -> None:
        busy = await _connect(port)
        silent = await _connect(port)
        for i in range(8):   # 1.6 s of searches, one every 0.2 s
            busy.w.write(_search(i + 1, "u3"))
            assert _uids(await busy.answers(1), i + 1) == ["u3"]
            await asyncio.sleep(0.2)
        notice = await silent.next()
        assert notice is not None and isinstance(notice.op, L.ExtendedResponse)
        assert notice.op.name == L.OID_NOTICE_OF_DISCONNECTION
        assert "idle" in notice.op.message
        assert await silent.next() is None   # then the end
        busy.w.write(_search(99, "u4"))
        assert _uids(await busy.answers(1), 99) == ["u4"]
        busy.w.close()
    _serve(_domain(), body)


def test_a_peer_that_does_not_read_holds_a_bounded_queue() -> None:
    """Two hundred subtree searches sent at once by a peer that reads nothing: the server
    stops reading the connection once its answers queue past the transport's mark,
    so what it holds stays bounded (about 2 MB of answers are asked for); when the
    peer reads, every answer comes, in order; past the bounds' ``stall`` seconds
    without reading, the connection goes."""
    n = 200

    async def body(server: LdapServer, port: int) -> None:
        c = await _connect(port)
        w = c.w
        # the peer's receive buffer fixed at 64 KiB (so the kernel does not grow it
        # as the first batch is read: grown to megabytes, it would take the second
        # batch whole, and the server would never see a stalled peer); 4 KiB would
        # make the first batch's reading slower than the stall allowed
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        while not server.conns:
            await asyncio.sleep(0.01)
        # the server's send buffer small too: what is not taken queues in the
        # server, where the bound is, rather than in the kernel
        (conn,) = server.conns
        assert conn.transport is not None
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        paused = []
        real = conn.pause_writing

        def pause() -> None:
            paused.append(True)
            real()
        conn.pause_writing = pause   # type: ignore[method-assign]
        w.write(b"".join(_scan(i + 1) for i in range(n)))
        most = 0
        for _ in range(30):   # 0.6 s: within the stall allowed (2 s)
            await asyncio.sleep(0.02)
            for conn in server.conns:
                t = conn.transport
                if t is not None and not t.is_closing():
                    most = max(most, t.get_write_buffer_size() + len(conn.buf))
        assert paused, "the answers never queued past the mark"
        assert 0 < most < 512 * 1024, most
        got = await c.answers(n)
        dones = [m.id for m in got if isinstance(m.op, L.Response)]
        assert dones == list(range(1, n + 1))
        assert all(m.op.code == L.ResultCode.SUCCESS for m in got
                   if isinstance(m.op, L.Response))
        entries = len(got) - n
        assert entries % n == 0 and entries // n > USERS
        # a peer that never reads again: dropped after the stall
        paused.clear()
        w.write(b"".join(_scan(1000 + i) for i in range(n)))
        end = asyncio.get_running_loop().time() + TIMEOUT
        while server.conns and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.05)
        assert paused, "the second batch never queued past the mark"
        assert not server.conns
        w.close()
    _serve(_domain(), body, LdapConfig(BASE, limits=PeerLimits(stall=2.0)))




def test_start_tls_with_a_request_in_the_handshakes_last_segment(tmp_path: Path) -> None:
    """StartTLS, then a search sent in the same segment as the client's Finished (TLS
    1.3: the server's handshake ends and the request is there in one read): answered,
    and the connection reads on."""
    cert, key = _certificate(tmp_path)

    async def body(server: LdapServer, port: int) -> None:
        def client() -> list[L.Message]:
            s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            s.sendall(L.encode_message(L.Message(1, L.ExtendedRequest(L.OID_STARTTLS))))
            buf = b""
            while (n := ber.frame(buf)) is None:
                buf += s.recv(4096)
            ok = L.decode_message(buf[:n])
            assert isinstance(ok.op, L.ExtendedResponse) and ok.op.code == 0
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = ctx.wrap_bio(inc, outg, server_hostname="127.0.0.1")
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outg.pending:
                        s.sendall(outg.read())
                    inc.write(s.recv(65536))
            tls.write(_search(2, "u5"))       # after the Finished in the same buffer
            s.sendall(outg.read())            # one segment: Finished + request
            got: list[L.Message] = []
            plain = b""
            while len(got) < 2:
                try:
                    plain += tls.read(65536)
                except ssl.SSLWantReadError:
                    data = s.recv(65536)
                    assert data, got
                    inc.write(data)
                    continue
                while (n := ber.frame(plain)) is not None:
                    got.append(L.decode_message(plain[:n]))
                    plain = plain[n:]
            tls.write(_search(3, "u6"))       # and the connection reads on
            s.sendall(outg.read())
            while len(got) < 4:
                try:
                    plain += tls.read(65536)
                except ssl.SSLWantReadError:
                    inc.write(s.recv(65536))
                    continue
                while (n := ber.frame(plain)) is not None:
                    got.append(L.decode_message(plain[:n]))
                    plain = plain[n:]
            s.close()
            return got
        got = await asyncio.to_thread(client)
        assert _uids(got, 2) == ["u5"] and _uids(got, 3) == ["u6"]
    _serve(_domain(), body, LdapConfig(BASE, tls_context(str(cert), str(key))))


def test_kept_entries_follow_the_writes() -> None:
    """The door keeps LOOKUP's answers, entries and whole answers between searches; a
    modify, a delete,
    an add, a write made through NETINFO (the Database) and a rename of ``ou=users``
    itself are each seen by the next search."""
    db = _domain(10)

    async def body(server: LdapServer, port: int) -> None:
        c = await _connect(port)

        async def shell(msgid: int, name: str, base: str = BASE) -> list[str]:
            c.w.write(L.encode_message(L.Message(msgid, L.SearchRequest(
                base, L.Scope.SUB, 0, 0, 0, False, L.Compare(
                    L.F_EQUAL, "uid", name.encode()), ("loginShell",)))))
            got = await c.answers(1)
            return [v.decode() for m in got if isinstance(m.op, L.SearchEntry)
                    for a, vs in m.op.attributes if a == "loginShell" for v in vs]

        async def write(msgid: int, op: L.Operation) -> int:
            c.w.write(L.encode_message(L.Message(msgid, op)))
            m = await c.next()
            assert m is not None and isinstance(m.op, L.Response)
            return m.op.code

        dn = f"uid=u2,ou=users,{BASE}"
        assert await shell(1, "u2") == []
        assert await shell(2, "u2") == []   # kept now: answered from the reply table
        assert len(server.kept.replies) == 1
        assert await write(3, L.ModifyRequest(dn, ((L.ModOp.REPLACE, (
            "loginShell", (b"/bin/zsh",))),))) == 0
        assert await shell(4, "u2") == ["/bin/zsh"]
        # a write through the domain itself (NETINFO's way): the entry is dropped too
        (uoid,), _ = db.call(Proc.LOOKUP, SUPERUSER, (NiId(0), "name", "users"))
        (u2,), _ = db.call(Proc.LOOKUP, SUPERUSER, (NiId(uoid), "name", "u2"))
        nid = db.call(Proc.SELF, SUPERUSER, (NiId(u2, 0),))
        db.call(Proc.WRITE, SUPERUSER, (nid, [("name", ["u2"]), ("uid", ["6002"]),
                                              ("shell", ["/bin/fish"])]))
        assert await shell(5, "u2") == ["/bin/fish"]   # pending: read live
        db.commit()
        assert await shell(6, "u2") == ["/bin/fish"]
        assert await shell(7, "u2") == ["/bin/fish"]
        assert await write(8, L.DelRequest(dn)) == 0
        c.w.write(_search(9, "u2"))
        assert _uids(await c.answers(1), 9) == []
        assert await write(10, L.AddRequest(dn, (
            ("objectClass", (b"account", b"posixAccount")), ("uid", (b"u2",)),
            ("uidNumber", (b"7002",)), ("gidNumber", (b"20",)),
            ("homeDirectory", (b"/h",)), ("loginShell", (b"/bin/ksh",))))) == 0
        assert await shell(11, "u2") == ["/bin/ksh"]
        # ou=users renamed: every DN below changes (and the directory is no longer
        # the mapped one); renamed back, its users are found again
        c.w.write(_search(12, "u3"))
        assert _uids(await c.answers(1), 12) == ["u3"]
        assert await write(13, L.ModDNRequest(f"ou=users,{BASE}", "ou=people", True,
                                              None)) == 0
        for msgid, base in ((14, f"ou=users,{BASE}"), (15, BASE)):
            c.w.write(_search(msgid, "u3", base))
            got = await c.answers(1)
            assert not any(isinstance(m.op, L.SearchEntry) for m in got), got
        assert got[-1].op == L.Response(L.SEARCH_DONE, L.ResultCode.SUCCESS)
        assert await write(16, L.ModDNRequest(f"ou=people,{BASE}", "ou=users", True,
                                              None)) == 0
        c.w.write(_search(17, "u3"))
        got = await c.answers(1)
        assert [m.op.dn for m in got if isinstance(m.op, L.SearchEntry)] == \
            [f"uid=u3,ou=users,{BASE}"]
        c.w.close()
    _serve(db, body)


def test_a_search_after_writes_in_the_same_read_sees_them() -> None:
    """Adds, a search, adds in one write: the search is answered after the adds before
    it (their commit first) and finds them; every write is answered."""
    db = _domain(0)

    def add(msgid: int, name: str) -> bytes:
        return L.encode_message(L.Message(msgid, L.AddRequest(
            f"uid={name},ou=users,{BASE}",
            (("objectClass", (b"account", b"posixAccount")), ("uid", (name.encode(),)),
             ("uidNumber", (b"7000",)), ("gidNumber", (b"20",)),
             ("homeDirectory", (b"/h",))))))
    batches: list[int] = []
    db.subscribe(lambda changes: batches.append(len(changes)))

    async def body(server: LdapServer, port: int) -> None:
        c = await _connect(port)
        c.w.write(add(1, "a1") + add(2, "a2") + _search(3, "a2") + add(4, "a3")
                  + add(5, "a4"))
        got: list[L.Message] = []
        while len(got) < 6:
            m = await c.next()
            assert m is not None
            got.append(m)
        assert [m.id for m in got] == [1, 2, 3, 3, 4, 5]
        assert _uids(got, 3) == ["a2"]
        assert all(m.op.code == 0 for m in got if isinstance(m.op, L.Response))
        c.w.close()
    _serve(db, body)
    assert batches == [2, 2]


def test_a_cold_search_on_postgresql_waits_alone(pg_cluster, tmp_path: Path) -> None:
    """On PostgreSQL a search whose user is not in the cache is fetched off the event
    loop (``cached.StoreWait``, ``server.storeio``) and run again, as NETINFO's calls
    are: while PostgreSQL keeps that read waiting (its tables held by a session of the
    test's), another connection's search of a user read before is answered at once,
    and the cold search is answered, right, once the tables are free."""
    import threading
    import time

    from netinfo.client.core import Client

    from .conftest import Netinfod, free_port
    from .test_postgres_offloop import _hold

    hold = 3.0
    url = pg_cluster.url()
    made = Netinfod(tmp_path, "ldappg", "--store", url, "-m", "--populate").start()

    async def populate() -> None:
        async with await Client.connect("127.0.0.1", made.port, "ldappg") as c:
            users, _ = await c.lookup(0, "name", "users")
            uid = await c.self_id(users[0])
            for i in range(20):
                _, uid = await c.create(uid, [("name", [f"p{i}"]), ("uid", [str(7000 + i)]),
                                              ("gid", ["20"]), ("home", ["/h"])])
    try:
        asyncio.run(populate())
    finally:
        made.stop()
    lport = free_port()
    d = Netinfod(tmp_path, "ldappg", "--store", url, "--ldap", f"127.0.0.1:{lport}",
                 "--ldap-base", BASE).start()

    async def scenario() -> tuple[float, float, list[str], list[str]]:
        hot, cold = await _connect(lport), await _connect(lport)
        hot.w.write(_search(1, "p3"))
        assert _uids(await hot.answers(1), 1) == ["p3"]
        held = threading.Event()
        holder = threading.Thread(target=_hold, args=(pg_cluster.conninfo(), url, hold,
                                                      held))
        holder.start()
        try:
            assert await asyncio.to_thread(held.wait, 10)
            t0 = time.monotonic()
            cold.w.write(_search(2, "p17"))
            slow = asyncio.ensure_future(cold.answers(1))
            await asyncio.sleep(0.2)
            for i in range(10):
                hot.w.write(_search(10 + i, "p3"))
                assert _uids(await hot.answers(1), 10 + i) == ["p3"]
            answered = time.monotonic() - t0
            got = await slow
            waited = time.monotonic() - t0
        finally:
            await asyncio.to_thread(holder.join)
        hot.w.close()
        cold.w.close()
        return answered, waited, _uids(got, 2), [m.op.dn for m in got
                                                  if isinstance(m.op, L.SearchEntry)]
    try:
        answered, waited, uids, dns = asyncio.run(scenario())
    finally:
        d.stop()
    assert uids == ["p17"] and dns == [f"uid=p17,ou=users,{BASE}"]
    assert waited >= hold - 0.5, waited     # the cold search waited for PostgreSQL
    assert answered < hold / 2, answered    # the other connection did not


def test_the_kept_tables_stay_within_their_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its bound a kept table starts again: searches of more users than the bounds
    hold are all answered right, twice over, and the tables never hold more."""
    monkeypatch.setattr(door, "MAX_KEPT_ENTRIES", 7)
    monkeypatch.setattr(door, "MAX_KEPT_REPLIES", 5)
    monkeypatch.setattr(door, "MAX_KEPT_LOOKUPS", 9)

    async def body(server: LdapServer, port: int) -> None:
        c = await _connect(port)
        kept = server.kept
        for rnd in range(2):
            for i in range(USERS):
                msgid = rnd * 1000 + i + 1
                c.w.write(_search(msgid, f"u{i}"))
                assert _uids(await c.answers(1), msgid) == [f"u{i}"]
                assert len(kept.items) <= 7 and len(kept.replies) <= 5
                assert kept.n_lookups <= 9
        c.w.close()
    _serve(_domain(), body)


def test_long_searches_are_answered_but_their_keys_are_never_kept() -> None:
    """A search longer than ``MAX_KEPT_KEY`` (a long filter value, a base DN of a
    thousand characters, thousands of attributes named) is answered as any other, but
    nothing it names becomes a key of a kept table: the tables' counts would otherwise
    let each key hold up to a whole message (16 MiB)."""
    many = tuple(f"attr{i}" for i in range(3000))

    def search(msgid: int, name: str, attrs: tuple[str, ...], base: str = BASE) -> bytes:
        return L.encode_message(L.Message(msgid, L.SearchRequest(
            base, L.Scope.SUB, 0, 0, 0, False, L.And((
                L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"),
                L.Compare(L.F_EQUAL, "uid", name.encode()))), attrs)))

    async def body(server: LdapServer, port: int) -> None:
        c = await _connect(port)
        kept = server.kept
        for msgid, (name, attrs) in enumerate(
                [("u1", many), ("u1", (*many, "uid")), ("u2", ("uid",) * 400),
                 ("x" * 5000, ()), ("u3", many)], 1):
            for _ in range(2):
                c.w.write(search(msgid, name, attrs))
                got = await c.answers(1)
                entries = [m for m in got if isinstance(m.op, L.SearchEntry)]
                assert len(entries) == (0 if name.startswith("x") else 1), got
                if "uid" in attrs:
                    assert _uids(got, msgid) == [name]
        long_base = "ou=" + "y" * 2000 + "," + BASE
        c.w.write(search(99, "u1", (), long_base))
        await c.answers(1)
        assert not kept.replies
        assert all(len(p) + len(v) <= door.MAX_KEPT_KEY
                   for under in kept.lookups.values() for p, v in under)
        assert all(door.selection_size(k[0]) <= door.MAX_KEPT_KEY   # type: ignore[index]
                   for item in kept.items.values() if item[4] for k in item[4])
        assert all(len(dn) <= door.MAX_KEPT_KEY for dn in server._paths)
        assert all(ldapentry.selection_size(k[0]) <= 1024 for k in ldapentry._PLANS)
        c.w.close()
    _serve(_domain(), body)
