"""One authentication door (issue 19 #4): ``Authenticator.authenticate(name or uid,
password, peer) -> Caller`` with the failure limiter, used by NETINFO's AUTH_UNIX writes
and by any later front door (spec §10.2), so a name-and-password door cannot guess past
the limit a NETINFO write keeps.
"""

from __future__ import annotations

import asyncio

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError, Status
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.auth import AUTH_FAILURES, AUTH_WINDOW, Authenticator, FailureLimiter
from netinfo.server.database import Database, open_database
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import create_master, ensure_dir
from netinfo.storage import open_store
from netinfo.storage.changes import Caller
from netinfo.wire.protocol import Proc
from netinfo.wire.rpc import AuthUnix

passlib_hash = pytest.importorskip("passlib.hash")


def crypt(pw: str) -> str:
    return passlib_hash.sha256_crypt.using(rounds=1000).hash(pw)


USERS = [("root", 0, "rootpw"), ("alice", 501, "alicepw"), ("carol", 503, "carolpw")]


def fill(svc) -> None:
    create_master(svc, "acc", "here", ["127.0.0.1"])
    users = ensure_dir(svc, "users")
    for name, uid, pw in USERS:
        svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(users)),
                        [("name", [name]), ("uid", [str(uid)]), ("passwd", [crypt(pw)])],
                        NI_INDEX_NULL)
    groups = ensure_dir(svc, "groups")
    svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(groups)),
                    [("name", ["admin"]), ("gid", ["80"]), ("users", ["carol"])],
                    NI_INDEX_NULL)


def build() -> Database:
    db = Database(open_store("memory:"))
    fill(db.service_for_tests())
    db.commit()
    return db


def write(db: Database, caller: Caller) -> int:
    """A credentialed NETINFO write of the root: its status."""
    root = db.service_for_tests().proc_root(SUPERUSER)
    try:
        db.call(Proc.CREATEPROP, caller, (root, ("p", ["v"]), NI_INDEX_NULL))
    except NiError as e:
        db.service_for_tests().rollback()
        return e.status
    db.commit()
    return Status.OK


PEER = Caller("10.1.2.3", 4000)


@pytest.mark.parametrize(("who", "password", "user", "superuser"), [
    ("alice", "alicepw", "alice", False),
    (501, "alicepw", "alice", False),
    ("root", "rootpw", "root", True),
    (0, "rootpw", "root", True),
    ("carol", "carolpw", "carol", True),      # /groups/admin, promote_admins unset
])
def test_by_name_or_uid(who, password, user, superuser):
    db = build()
    c = db.authenticator.authenticate(who, password, PEER)
    assert (c.user, c.superuser, c.addr, c.port) == (user, superuser, PEER.addr, PEER.port)
    assert c.credential is None


@pytest.mark.parametrize(("who", "status"), [
    ("alice", Status.AUTHERROR), (501, Status.AUTHERROR),
    ("nobody", Status.NOUSER), (777, Status.NOUSER),
])
def test_wrong_password_or_no_such_user(who, status, caplog):
    db = build()
    with pytest.raises(NiError) as e:
        db.authenticator.authenticate(who, "guess", PEER)
    assert e.value.status == status
    assert "authentication failed for" in caplog.text and "10.1.2.3:4000" in caplog.text
    assert "guess" not in caplog.text


def test_the_limiter_is_shared_by_every_door(caplog):
    """Failures at a name-and-password door count against the peer's NETINFO writes, and
    the other way round: one limiter per domain."""
    db = build()
    for _ in range(AUTH_FAILURES - 1):
        with pytest.raises(NiError):
            db.authenticator.authenticate("alice", "guess", PEER)
    # the last failure comes through NETINFO's AUTH_UNIX
    bad = Caller(PEER.addr, 4001, credential=AuthUnix.for_password("guess", 501))
    assert write(db, bad) == Status.AUTHERROR
    assert "failed authentications from 10.1.2.3" in caplog.text
    # refused now at both doors, even with the right password
    good = Caller(PEER.addr, 4002, credential=AuthUnix.for_password("alicepw", 501))
    assert write(db, good) == Status.AUTHERROR
    with pytest.raises(NiError) as e:
        db.authenticator.authenticate("alice", "alicepw", PEER)
    assert e.value.status == Status.AUTHERROR
    # another peer is not
    other = Caller("10.1.2.4", 4000, credential=AuthUnix.for_password("carolpw", 503))
    assert write(db, other) == Status.OK


def test_the_window_passes():
    now = [1000.0]
    db = build()
    auth = Authenticator(db.service_for_tests().check_user, FailureLimiter(clock=lambda: now[0]))
    for _ in range(AUTH_FAILURES):
        with pytest.raises(NiError):
            auth.authenticate("alice", "guess", PEER)
    with pytest.raises(NiError):
        auth.authenticate("alice", "alicepw", PEER)
    now[0] += AUTH_WINDOW + 1
    assert auth.authenticate("alice", "alicepw", PEER).user == "alice"


def test_loopback_is_only_logged(caplog):
    db = build()
    local = Caller("127.0.0.1", 4000)
    for _ in range(AUTH_FAILURES * 2):
        with pytest.raises(NiError):
            db.authenticator.authenticate("alice", "guess", local)
    assert "authentication failed for user 'alice' from 127.0.0.1:4000" in caplog.text
    assert "failed authentications from" not in caplog.text
    assert db.authenticator.authenticate("alice", "alicepw", local).user == "alice"


def test_over_the_wire_auth_unix_goes_through_it(tmp_path, netinfod):
    """A real netinfod: wrong passwords from loopback are refused, never blocked; the
    right ones then authenticate (alice may not write the root: NI_PERM, not
    NI_AUTHERROR; root may)."""
    with open_database(tmp_path, "acc", create=True) as db:
        fill(db.service_for_tests())
        db.commit()
    d = netinfod("acc", directory=tmp_path, strict=True)

    async def main():
        statuses = []
        tries = [("guess", 501)] * (AUTH_FAILURES + 1) + [("alicepw", 501), ("rootpw", 0)]
        for pw, uid in tries:
            c = await Client.connect("127.0.0.1", d.port, "acc", timeout=5.0,
                                     privileged=False)
            try:
                c.set_password(pw, uid)
                try:
                    await c.createprop(await c.root(), "p", ["v"])
                    statuses.append(Status.OK)
                except NiError as e:
                    statuses.append(e.status)
            finally:
                await c.close()
        return statuses

    statuses = asyncio.run(main())
    assert statuses == [Status.AUTHERROR] * (AUTH_FAILURES + 1) + [Status.PERM,
                                                                 Status.OK]
