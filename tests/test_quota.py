"""The quota on anonymous writes (issue 18, finding N4; docs/security.md, "Bounds").

Apple's default domain lets anyone write to /printers (``_writers`` = ``*``). Before the
quota an anonymous peer grew a database by 1.9 GB. Now what callers allowed only through
``*`` add is counted (directories, bytes of stored proplists) against root
``anonymous_quota_dirs`` / ``anonymous_quota_bytes``; past it they get NI_NOSPACE while
the superuser and authenticated users write on; the usage is committed with each write
(the store's meta table), so a restart neither forgets nor recounts it.
"""

from __future__ import annotations

import asyncio

import pytest

from netinfo.errors import NiError, Status
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.passwords import hash_password
from netinfo.server import quota
from netinfo.server.database import open_database
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import populate_standard
from netinfo.storage.changes import Caller

from .conftest import ROOT_USER, Netinfod, free_port

ANON = Caller("10.0.0.9", 40000)
ROOT_PW = "rootpw"


def make_domain(directory, tag: str = "q", dirs: int = 5, nbytes: int = 4096) -> None:
    """The standard directories (/printers: ``_writers`` ``*``), a root user with a
    password, and a small quota."""
    with open_database(directory, tag, create=True) as db:
        svc = db.service_for_tests()
        populate_standard(svc)
        root = svc.proc_self(SUPERUSER, NiId(0, 0))
        root = svc.proc_createprop(SUPERUSER, root, (quota.DIRS_PROPERTY, [str(dirs)]),
                                   NI_INDEX_NULL)
        svc.proc_createprop(SUPERUSER, root, (quota.BYTES_PROPERTY, [str(nbytes)]),
                            NI_INDEX_NULL)
        users = svc.proc_lookup(SUPERUSER, NiId(0, 0), "name", "users")[0][0]
        svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(users, 0)),
                        [("name", ["root"]), ("uid", ["0"]), ("gid", ["0"]),
                         ("passwd", [hash_password(ROOT_PW)])], NI_INDEX_NULL)
        db.commit()


def printers(svc) -> NiId:
    oid = svc.proc_lookup(SUPERUSER, NiId(0, 0), "name", "printers")[0][0]
    return svc.proc_self(SUPERUSER, NiId(oid, 0))


# -- the rules --------------------------------------------------------------------------------

def test_limits_come_from_the_root_or_the_defaults():
    assert quota.limits([]) == (quota.DEFAULT_DIRS, quota.DEFAULT_BYTES)
    assert quota.limits([(quota.DIRS_PROPERTY, ["7"]), (quota.BYTES_PROPERTY, ["x"])]) \
        == (7, quota.DEFAULT_BYTES)
    used = quota.charge(quota.Usage(), quota.Usage(2, 100), 2, 100)
    assert used == (2, 100)
    with pytest.raises(NiError) as e:
        quota.charge(used, quota.Usage(2, 100), 1, 0)
    assert e.value.status == Status.NOSPACE
    with pytest.raises(NiError):
        quota.charge(used, quota.Usage(5, 100), 0, 1)
    # giving back never goes below zero, and never fails even past the quota
    assert quota.charge(quota.Usage(9, 9), quota.Usage(1, 1), -20, -20) == (0, 0)


def test_anonymous_writes_stop_at_the_quota_and_the_superuser_writes_on(tmp_path):
    make_domain(tmp_path)
    with open_database(tmp_path, "q") as db:
        svc = db.service_for_tests()
        made = []
        for i in range(5):
            made.append(svc.proc_create(ANON, printers(svc), [("name", [f"p{i}"]),
                                                              ("_writers", ["*"])],
                                        NI_INDEX_NULL)[0])
        db.commit()
        with pytest.raises(NiError) as e:
            svc.proc_create(ANON, printers(svc), [("name", ["p5"])], NI_INDEX_NULL)
        assert e.value.status == Status.NOSPACE
        # refused before anything changed: nothing is pending, the tree is as it was
        assert not db.dirty and len(svc.proc_children(ANON, printers(svc))[0]) == 5
        svc.proc_create(SUPERUSER, printers(svc), [("name", ["by root"])], NI_INDEX_NULL)
        # an anonymous WRITE that grows a proplist counts its growth in bytes (the
        # directory lets anyone write it)
        p0 = svc.proc_self(ANON, made[0])
        with pytest.raises(NiError) as e:
            svc.proc_write(ANON, p0, [("name", ["p0"]), ("note", ["x" * 5000])])
        assert e.value.status == Status.NOSPACE
        # a DESTROY in /printers gives the room back, whoever destroys
        svc.proc_destroy(SUPERUSER, printers(svc), svc.proc_self(SUPERUSER, made[1]))
        svc.proc_create(ANON, printers(svc), [("name", ["again"])], NI_INDEX_NULL)
        db.commit()
        used = svc.anon_usage
        assert used.dirs == 5 and 0 < used.bytes < 4096
    # durable: the usage is read back at open, nothing recounted
    with open_database(tmp_path, "q") as db:
        assert db.service_for_tests().anon_usage == used
        with pytest.raises(NiError):
            svc = db.service_for_tests()
            svc.proc_create(ANON, printers(svc), [("name", ["x"])], NI_INDEX_NULL)


def test_a_rolled_back_write_takes_its_usage_back(tmp_path):
    make_domain(tmp_path)
    with open_database(tmp_path, "q") as db:
        svc = db.service_for_tests()
        svc.proc_create(ANON, printers(svc), [("name", ["p"])], NI_INDEX_NULL)
        assert svc.anon_usage.dirs == 1
        svc.take_pending()
        svc.rollback()
        assert svc.anon_usage == (0, 0)


def test_authenticated_users_are_not_counted(tmp_path):
    make_domain(tmp_path, dirs=0)
    with open_database(tmp_path, "q") as db:
        svc = db.service_for_tests()
        with pytest.raises(NiError) as e:   # 0: no anonymous additions at all
            svc.proc_create(ANON, printers(svc), [("name", ["p"])], NI_INDEX_NULL)
        assert e.value.status == Status.NOSPACE
        from netinfo.wire.rpc import AuthUnix
        root = Caller("10.0.0.9", 40000, credential=AuthUnix.for_password(ROOT_PW, 0))
        svc.proc_create(root, printers(svc), [("name", ["p"])], NI_INDEX_NULL)
        assert svc.anon_usage == (0, 0)


# -- over the wire ------------------------------------------------------------------------------

async def _wire_run(port: int, privileged_root: bool) -> list[str]:
    """Anonymous creates in /printers until NI_NOSPACE, then the superuser's (by a
    reserved port, or by password), then an anonymous DESTROY and CREATE again."""
    from netinfo.client.core import Client
    out: list[str] = []
    anon = await Client.connect("127.0.0.1", port, "q", privileged=False)
    root = await Client.connect("127.0.0.1", port, "q", privileged=privileged_root)
    if not privileged_root:
        root.set_password(ROOT_PW, 0)
    try:
        made = []
        for i in range(6):
            try:
                made.append((await anon.create(await anon.pathsearch("/printers"),
                                               [("name", [f"p{i}"])]))[0])
                out.append("anon ok")
            except NiError as e:
                out.append(f"anon {Status(e.status).name}")
        await root.create(await root.pathsearch("/printers"), [("name", ["by root"])])
        out.append("root ok")
        d = await anon.pathsearch("/printers")
        await anon.destroy(d, (await anon.pathsearch("/printers/p0")))
        await anon.create(await anon.pathsearch("/printers"), [("name", ["again"])])
        out.append("anon again ok")
    finally:
        await anon.close()
        await root.close()
    return out


WANT = ["anon ok"] * 5 + ["anon NOSPACE", "root ok", "anon again ok"]


def test_anonymous_quota_over_the_wire(tmp_path):
    """A real server on loopback whose peers are anonymous unless they authenticate
    (an in-process NetInfoServer without an owner: under an ordinary uid a netinfod
    takes its own uid's connections for the superuser's)."""
    from netinfo.server.netinfod import NetInfoServer, ServerConfig
    make_domain(tmp_path)

    async def go() -> list[str]:
        db = open_database(tmp_path, "q")
        server = NetInfoServer(db, ServerConfig("q", "127.0.0.1", free_port()),
                               ["127.0.0.1"])
        server.dispatcher.owner = None
        await server.start()
        try:
            return await _wire_run(server.tcp_port, False)
        finally:
            await server.close()
            db.close()
    assert asyncio.run(go()) == WANT
    with open_database(tmp_path, "q") as db:
        assert db.service_for_tests().anon_usage.dirs == 5


@pytest.mark.skipif(not ROOT_USER, reason="an anonymous peer of a netinfod run by an "
                    "ordinary user needs another uid (root's unreserved port is one)")
def test_anonymous_quota_against_netinfod(tmp_path):
    make_domain(tmp_path)
    srv = Netinfod(tmp_path, "q", strict=True).start()
    try:
        assert asyncio.run(_wire_run(srv.port, True)) == WANT
    finally:
        srv.stop()
    srv = Netinfod(tmp_path, "q", strict=True).start()   # the usage survives a restart

    async def one() -> int:
        from netinfo.client.core import Client
        async with await Client.connect("127.0.0.1", srv.port, "q", privileged=False) as c:
            try:
                await c.create(await c.pathsearch("/printers"), [("name", ["late"])])
                return Status.OK
            except NiError as e:
                return e.status
    try:
        assert asyncio.run(one()) == Status.NOSPACE
    finally:
        srv.stop()
