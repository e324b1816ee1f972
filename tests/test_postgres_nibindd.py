"""nibindd serving the domains of a PostgreSQL database, and the lazy PostgreSQL source
over the wire (issue 23, items 3 and 4).

Real processes on loopback: ``nibindd --store postgresql://.../DB`` with its embedded
portmapper, the tools as subprocesses, the scratch cluster of tests/pgcluster.py (unix
socket only). Skipped, with the reason, without PostgreSQL or psycopg.
"""

from __future__ import annotations

import itertools

from netinfo.storage import open_catalog, open_store

from .conftest import Netinfod, Nibindd, env_with_src, tool_process
from .pgcluster import pg_cluster  # noqa: F401 - the session's scratch cluster

_databases = itertools.count(1)


def _database(cluster) -> str:
    """A database of the test's own (the catalog is every domain of a database)."""
    import psycopg
    name = f"nib{next(_databases)}"
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    return cluster.conninfo(name)


def _tool(nb: Nibindd, name: str, *args: str, ok: bool = True, stdin: str | None = None):
    p = tool_process(name, *args, env=nb.env, input=stdin, timeout=60)
    if ok:
        assert p.returncode == 0, (name, args, p.stdout, p.stderr)
    return p


def test_nibindd_serves_every_domain_of_a_database(pg_cluster, tmp_path,  # noqa: F811
                                                    monkeypatch):
    base = _database(pg_cluster)
    catalog = open_catalog(base)
    directory = tmp_path / "netinfo"
    directory.mkdir()
    nb = Nibindd(directory, "--init", "--store", base)
    # the in-process binder calls (wait_for) find this nibindd's portmapper
    monkeypatch.setenv("NETINFO_PORTMAPPER", nb.env["NETINFO_PORTMAPPER"])
    monkeypatch.setenv("NETINFO_BROADCAST", "off")
    nb.start()
    try:
        # --init made network and local in PostgreSQL, and nothing in the directory
        assert catalog.domains() == ["local", "network"]
        assert list(directory.iterdir()) == []
        listed = _tool(nb, "nidomain", "-l").stdout
        assert sorted(x.split()[0] for x in listed.splitlines()) == ["tag=local",
                                                                     "tag=network"]
        # reads and writes through each domain's netinfod land in its own schema
        for tag in ("network", "local"):
            _tool(nb, "niutil", "-create", "-t", f"127.0.0.1/{tag}", f"/users/in_{tag}")
            _tool(nb, "niutil", "-createprop", "-t", f"127.0.0.1/{tag}",
                  f"/users/in_{tag}", "uid", "4242")
        for tag in ("network", "local"):
            got = _tool(nb, "niutil", "-read", "-t", f"127.0.0.1/{tag}",
                        f"/users/in_{tag}").stdout
            assert f"name: in_{tag}" in got and "uid: 4242" in got
            other = "local" if tag == "network" else "network"
            assert _tool(nb, "niutil", "-read", "-t", f"127.0.0.1/{tag}",
                         f"/users/in_{other}", ok=False).returncode != 0
            stored = open_store(catalog.url(tag))
            try:
                names = [p for r in stored.load().records.values() for k, p in r.props
                         if k == "name"]
            finally:
                stored.close()
            assert [f"in_{tag}"] in names and [f"in_{other}"] not in names
        # a new domain made through nibindd (CREATEMASTER) lands in PostgreSQL
        r = _tool(nb, "nidomain", "-m", "eng")
        assert r.stderr == ""
        assert catalog.domains() == ["eng", "local", "network"]
        assert list(directory.iterdir()) == []
        _tool(nb, "niutil", "-create", "-t", "127.0.0.1/eng", "/machines/box")
        nb.wait_for(("eng", "local", "network"))
        assert "box" in _tool(nb, "niutil", "-list", "-t", "127.0.0.1/eng",
                              "/machines").stdout
        # a second nibindd on the same database finds its domains held by their writers
        # and so does a netinfod started by hand on one of them
        clash = Netinfod(tmp_path, "eng", "--store", catalog.url("eng"))
        try:
            clash.start(timeout=10)
            raise AssertionError("a second writer was let in")
        except RuntimeError:
            pass
        finally:
            clash.stop()
        # DESTROYDOMAIN drops its schema
        _tool(nb, "nidomain", "-d", "eng")
        assert catalog.domains() == ["local", "network"]
        assert _tool(nb, "nidomain", "-g", "eng", ok=False).returncode != 0
    finally:
        nb.stop()
    # served again by a new nibindd, the data is where it was
    nb = Nibindd(directory, "--store", base)
    monkeypatch.setenv("NETINFO_PORTMAPPER", nb.env["NETINFO_PORTMAPPER"])
    nb.start()
    try:
        got = _tool(nb, "niutil", "-read", "-t", "127.0.0.1/local", "/users/in_local").stdout
        assert "uid: 4242" in got
    finally:
        nb.stop()


def test_nibindd_refuses_an_unreachable_store(pg_cluster, tmp_path):  # noqa: F811
    url = f"postgresql://ni@/nothere?host={tmp_path}"
    p = tool_process("nibindd", "--store", url, "--portmapper", "embedded", "--bind",
                     "127.0.0.1", env=env_with_src(), timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("nibindd: cannot serve the domains of postgresql://"), p.stderr


def test_the_domain_is_read_on_demand(pg_cluster):  # noqa: F811
    """Opening a PostgreSQL domain reads nothing proportional to its size: the service
    gets the cached source (not a loaded image), a LOOKUP among 3,000 users is one index
    query, and a write is seen by the next read (the cache follows the writer's commits)."""
    from netinfo.model import NiId
    from netinfo.server.database import Database
    from netinfo.server.service import SUPERUSER
    from netinfo.storage import KidIns, Put
    from netinfo.storage.cached import CachedSource
    from netinfo.wire.protocol import Proc

    url = pg_cluster.url()
    st = open_store(url)
    ops = [Put(0, 1, 0, []), Put(1, 1, 0, [("name", ["users"])]), KidIns(0, 0, 1)]
    for k in range(3000):
        ops += [Put(k + 2, 1, 1, [("name", [f"user{k}"]), ("uid", [str(k)])]),
                KidIns(1, k, k + 2)]
    st.commit(ops, 0)
    st.close()
    st = open_store(url)
    st.claim()
    db = Database(st)
    try:
        src = db.source
        assert isinstance(src, CachedSource)
        assert sum(1 for _ in src.values()) <= 2   # the root, at most /users
        assert db.answer(Proc.LOOKUP, SUPERUSER, (NiId(1, 1), "name", "user1234")) \
            is not None
        assert src._rows.lookup(1, b"name", b"user1234") == [1236]
        assert sum(1 for _ in src.values()) <= 3 and len(src) == 3002
        # a write, committed, then read back through the cache and from the store
        db.call(Proc.CREATEPROP, SUPERUSER, (NiId(1236, 1), ("shell", ["/bin/sh"]), 0))
        db.commit()
        again = open_store(url)   # another connection: what is durable
        try:
            props = dict(again.load().records[1236].props)
        finally:
            again.close()
        assert props["shell"] == ["/bin/sh"]
        assert dict(src.get(1236).props)["shell"] == ["/bin/sh"]
    finally:
        db.close()
