"""The LDAP door's writes go through the domain's group commit (``Database.batch``, as
NETINFO's TCP connections do): the requests of one read of the socket are committed in
one transaction and answered only after it; when that commit fails, every write of the
batch answers unavailable and none is kept. In process, real sockets on loopback."""

from __future__ import annotations

import asyncio

import pytest

from netinfo.errors import NiError, StorageError
from netinfo.model import NiId
from netinfo.server.database import Database
from netinfo.server.ldap import LdapConfig, LdapServer
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import populate_standard
from netinfo.storage import open_store
from netinfo.wire import ber
from netinfo.wire import ldap as L
from netinfo.wire.protocol import Proc

BASE = "dc=t,dc=netinfo"
N = 12


def _domain() -> Database:
    """A memory domain whose /users anyone may write (``_writers *``)."""
    db = Database(open_store("memory:"))
    populate_standard(db.procedures)
    root = db.call(Proc.ROOT, SUPERUSER, ())
    (users,), _ = db.call(Proc.LOOKUP, SUPERUSER, (root, "name", "users"))
    uid = db.call(Proc.SELF, SUPERUSER, (NiId(users, 0),))
    db.call(Proc.CREATEPROP, SUPERUSER, (uid, ("_writers", ["*"]), 0xFFFFFFFF))
    db.commit()
    return db


def _adds(first: int) -> bytes:
    return b"".join(L.encode_message(L.Message(first + i, L.AddRequest(
        f"uid=u{first + i},ou=users,{BASE}",
        (("objectClass", (b"account", b"posixAccount")), ("uid", (f"u{first + i}".encode(),)),
         ("uidNumber", (str(5000 + i).encode(),)), ("gidNumber", (b"20",)),
         ("homeDirectory", (b"/h",)))))) for i in range(N))


async def _exchange(db: Database, data: bytes, count: int) -> list[L.Message]:
    server = LdapServer(db, LdapConfig(BASE))
    port = await server.listen("127.0.0.1", 0)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(data)   # every request in one write: one read of the server's socket
        await w.drain()
        buf = b""
        out: list[L.Message] = []
        while len(out) < count:
            buf += await asyncio.wait_for(r.read(65536), 10)
            while (n := ber.frame(buf)) is not None:
                out.append(L.decode_message(buf[:n]))
                buf = buf[n:]
        w.close()
        return out
    finally:
        await server.close()


def test_one_read_one_commit() -> None:
    db = _domain()
    batches: list[int] = []
    db.subscribe(lambda changes: batches.append(len(changes)))
    replies = asyncio.run(_exchange(db, _adds(1), N))
    assert [m.id for m in replies] == list(range(1, N + 1))
    assert all(isinstance(m.op, L.Response) and m.op.code == L.ResultCode.SUCCESS
               for m in replies), replies
    assert batches == [N]   # twelve adds, one transaction


def test_a_failed_commit_answers_every_write_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = _domain()

    def broken(*args: object, **kw: object) -> None:
        raise StorageError("disk full")
    monkeypatch.setattr(db.store, "commit", broken)
    replies = asyncio.run(_exchange(db, _adds(100), N))
    assert all(isinstance(m.op, L.Response) and m.op.code == L.ResultCode.UNAVAILABLE
               for m in replies), replies
    monkeypatch.undo()
    root = db.call(Proc.ROOT, SUPERUSER, ())
    (users,), _ = db.call(Proc.LOOKUP, SUPERUSER, (root, "name", "users"))
    with pytest.raises(NiError):
        db.call(Proc.LOOKUP, SUPERUSER, (NiId(users, 0), "name", "u100"))
