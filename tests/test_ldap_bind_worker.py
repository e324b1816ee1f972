"""A simple bind's password check runs in a worker thread (``ldap.BIND_WORKERS`` of them
for the whole door), not on the event loop: while one connection's bind is being
verified, another connection's search is answered. The check is held on an event the
test sets only after that search's answer arrived, so a bind verified on the loop
would never let the search through (the test then fails on its timeout). Binds still
succeed and fail as before, with the failure limiter counting the same. In process,
real sockets on loopback."""

from __future__ import annotations

import asyncio
import threading

import pytest

from netinfo.model import NiId
from netinfo.passwords import hash_password
from netinfo.server import ldap as door
from netinfo.server.database import Database
from netinfo.server.ldap import BIND_WORKERS, LdapConfig, LdapServer
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import populate_standard
from netinfo.storage import open_store
from netinfo.wire import ber
from netinfo.wire import ldap as L
from netinfo.wire.protocol import Proc

BASE = "dc=t,dc=netinfo"
TIMEOUT = 20


def _domain() -> Database:
    """A memory domain with users ann (password ann-pw) and bob (bob-pw)."""
    db = Database(open_store("memory:"))
    populate_standard(db.procedures)
    root = db.call(Proc.ROOT, SUPERUSER, ())
    (users,), _ = db.call(Proc.LOOKUP, SUPERUSER, (root, "name", "users"))
    for i, name in enumerate(("ann", "bob")):
        db.call(Proc.CREATE, SUPERUSER, (NiId(users, db.call(Proc.SELF, SUPERUSER, (
            NiId(users, 0),)).instance), [
            ("name", [name]), ("uid", [str(5001 + i)]), ("gid", ["20"]),
            ("passwd", [hash_password(f"{name}-pw", "md5_crypt")])], 0xFFFFFFFF))
    db.commit()
    return db


def _bind(msgid: int, name: str, password: str) -> bytes:
    return L.encode_message(L.Message(msgid, L.BindRequest(
        3, f"uid={name},ou=users,{BASE}", password.encode())))


def _search(msgid: int, name: str) -> bytes:
    return L.encode_message(L.Message(msgid, L.SearchRequest(
        BASE, L.Scope.SUB, 0, 0, 0, False, L.Compare(L.F_EQUAL, "uid", name.encode()),
        ("1.1",))))


class Client:
    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w, self.buf = r, w, b""

    async def until(self, msgid: int) -> list[L.Message]:
        """The messages received up to the result of operation *msgid*."""
        out: list[L.Message] = []
        while True:
            while (n := ber.frame(self.buf)) is not None:
                out.append(L.decode_message(self.buf[:n]))
                self.buf = self.buf[n:]
                if out[-1].id == msgid and isinstance(out[-1].op,
                                                       L.Response | L.ExtendedResponse):
                    return out
            data = await asyncio.wait_for(self.r.read(65536), TIMEOUT)
            assert data, out
            self.buf += data


async def _clients(port: int, n: int) -> list[Client]:
    out = []
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        out.append(Client(r, w))
    return out


def _code(msgs: list[L.Message]) -> int:
    op = msgs[-1].op
    assert isinstance(op, L.Response)
    return op.code


def test_a_search_is_answered_while_another_connections_bind_is_verified(
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    inside: list[str] = []
    real = door._verify

    def slow(password: str, stored: str) -> bool:
        inside.append(password)
        assert release.wait(TIMEOUT), "never released"
        return real(password, stored)
    monkeypatch.setattr(door, "_verify", slow)

    async def run() -> None:
        server = LdapServer(_domain(), LdapConfig(BASE))
        port = await server.listen("127.0.0.1", 0)
        try:
            a, b = await _clients(port, 2)
            a.w.write(_bind(1, "ann", "ann-pw"))
            while not inside:   # the bind is in its worker
                await asyncio.sleep(0.01)
            b.w.write(_search(7, "bob"))
            got = await b.until(7)
            assert [m.op.dn for m in got if isinstance(m.op, L.SearchEntry)] == \
                [f"uid=bob,ou=users,{BASE}"]
            assert _code(got) == L.ResultCode.SUCCESS
            release.set()
            assert _code(await a.until(1)) == L.ResultCode.SUCCESS
            a.w.write(L.encode_message(L.Message(2, L.ExtendedRequest(L.OID_WHOAMI))))
            (who,) = await a.until(2)
            assert isinstance(who.op, L.ExtendedResponse)
            assert who.op.value == f"dn:uid=ann,ou=users,{BASE}".encode()
        finally:
            release.set()
            await server.close()
    asyncio.run(run())


def test_binds_in_flight_are_bounded_and_answered_in_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """More binds than workers: at most BIND_WORKERS verifications at once, the others
    wait (none answered busy); right and wrong passwords answered as before, each
    failure counted once by the domain's limiter."""
    release = threading.Event()
    lock = threading.Lock()
    now, most = [0], [0]
    real = door._verify

    def counted(password: str, stored: str) -> bool:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            assert release.wait(TIMEOUT), "never released"
            return real(password, stored)
        finally:
            with lock:
                now[0] -= 1
    monkeypatch.setattr(door, "_verify", counted)
    db = _domain()
    failures: list[str] = []
    monkeypatch.setattr(db.authenticator.limiter, "report", failures.append)
    n = BIND_WORKERS + 3

    async def run() -> None:
        server = LdapServer(db, LdapConfig(BASE))
        port = await server.listen("127.0.0.1", 0)
        try:
            cs = await _clients(port, n)
            for i, c in enumerate(cs):
                c.w.write(_bind(1, "ann", "ann-pw" if i % 2 == 0 else "wrong"))
            await asyncio.sleep(0.3)
            release.set()
            codes = [_code(await c.until(1)) for c in cs]
            assert codes == [L.ResultCode.SUCCESS if i % 2 == 0 else
                             L.ResultCode.INVALID_CREDENTIALS for i in range(n)]
            # no such user: invalidCredentials without a verification, counted too
            c = cs[0]
            c.w.write(_bind(2, "nobody", "x"))
            assert _code(await c.until(2)) == L.ResultCode.INVALID_CREDENTIALS
        finally:
            release.set()
            await server.close()
    asyncio.run(run())
    assert 1 <= most[0] <= BIND_WORKERS
    assert len([f for f in failures if "authentication failed" in f]) == n // 2 + 1


def test_a_search_begun_inline_is_still_abandoned_once_it_yields(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A search on an idle connection is answered in its read loop up to its first yield
    (every BATCH entries examined); what is left runs as a task that abandon cancels (no
    result for it), and the connection goes on answering."""
    monkeypatch.setattr(door, "BATCH", 2)
    gate = asyncio.Event()
    real = door.Connection._yield

    async def held(self: door.Connection, run: door._Search) -> bool:
        await gate.wait()   # the first yield waits for the test
        return await real(self, run)

    monkeypatch.setattr(door.Connection, "_yield", held)

    async def run() -> None:
        server = LdapServer(_domain(), LdapConfig(BASE))
        port = await server.listen("127.0.0.1", 0)
        try:
            (c,) = await _clients(port, 1)
            c.w.write(L.encode_message(L.Message(3, L.SearchRequest(
                BASE, L.Scope.SUB, 0, 0, 0, False, L.Present("objectClass"), ("1.1",)))))
            while len(server.conns) != 1 or not next(iter(server.conns)).ops:
                await asyncio.sleep(0.01)   # begun inline, then a task waiting to go on
            c.w.write(L.encode_message(L.Message(4, L.AbandonRequest(3))))
            while next(iter(server.conns)).ops:
                await asyncio.sleep(0.01)
            gate.set()
            c.w.write(_search(5, "ann"))
            got = await c.until(5)
            assert not any(m.id == 3 and isinstance(m.op, L.Response) for m in got)
            assert [m.op.dn for m in got if m.id == 5 and isinstance(m.op, L.SearchEntry)] \
                == [f"uid=ann,ou=users,{BASE}"]
        finally:
            gate.set()
            await server.close()
    asyncio.run(run())
