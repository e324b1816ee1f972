"""Domain facts (issue 19 #5): master, servers, clones and role come from one module
(``netinfo.facts``), and every consumer agrees on them — the service, replication, the
replicator, the server's "pushed by the master" rule, netinfod's start-up role and the
client library's ``_find_master`` — for a table of /machines layouts, the one that split
them included: a host name listed first in the master's ``ip_address`` (spec §9.1).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from netinfo.cli.netinfod import is_clone
from netinfo.client.core import Client
from netinfo.client.domain import DomainClient
from netinfo.facts import DomainFacts, Peer, Role, addresses, clone_list, master_of
from netinfo.model import first_values
from netinfo.netif import is_local
from netinfo.server.database import Database, open_database
from netinfo.server.netinfod import Dispatcher, NetInfoServer, ServerConfig
from netinfo.server.replicator import Replicator
from netinfo.server.service import DirectoryService
from netinfo.server.templates import _child, _set_root, ensure_dir
from netinfo.storage import open_store

from .conftest import ROOT_USER, free_port

OWN = ["127.0.0.1"]

#: id: (this server's tag, root master, /machines entries (name, ip_address, serves),
#:      the master (address, tag) or None, this server's role, its clones (address, tag))
LAYOUTS = {
    "plain master": (
        "net", "h/net", [("h", ["127.0.0.1"], ["./net"])],
        ("127.0.0.1", "net"), Role.MASTER, []),
    "host name first (issue 19)": (
        "net", "h/net", [("h", ["h", "127.0.0.1"], ["./net"])],
        ("127.0.0.1", "net"), Role.MASTER, []),
    "IPv6 literal first": (
        "net", "h/net", [("h", ["fe80::1", "127.0.0.1"], ["./net"])],
        ("127.0.0.1", "net"), Role.MASTER, []),
    "host names first, a clone listed": (
        "net", "h/net", [("h", ["h", "127.0.0.1"], ["./net"]),
                         ("c", ["c.example", "192.0.2.2"], ["./net"])],
        ("127.0.0.1", "net"), Role.MASTER, [("192.0.2.2", "net")]),
    "clone of a master named first": (
        "net", "m/net", [("m", ["m.example", "192.0.2.1"], ["./net"]),
                         ("me", ["127.0.0.1"], ["./net"])],
        ("192.0.2.1", "net"), Role.CLONE, [("192.0.2.1", "net")]),
    "another tag on the master's host": (
        "other", "h/net", [("h", ["h", "127.0.0.1"], ["./net", "./other"])],
        ("127.0.0.1", "net"), Role.CLONE, [("127.0.0.1", "net")]),
    "master's host has only a name": (
        "net", "h/net", [("h", ["h"], ["./net"])],
        None, Role.MASTER, []),
    "no root master": (
        "net", None, [("h", ["127.0.0.1"], ["./net"])],
        None, Role.MASTER, []),
    "master host not in /machines": (
        "net", "gone/net", [("h", ["127.0.0.1"], ["./net"])],
        None, Role.MASTER, []),
    "local is never a clone": (
        "local", "h/local", [("h", ["192.0.2.1"], ["./local"])],
        ("192.0.2.1", "local"), Role.MASTER, [("192.0.2.1", "local")]),
}


def fill(svc: DirectoryService, master: str | None, entries) -> None:
    if master is not None:
        _set_root(svc, "master", [master])
    machines = ensure_dir(svc, "machines")
    for name, ips, serves in entries:
        _child(svc, machines, [("name", [name]), ("ip_address", list(ips)),
                               ("serves", list(serves))])


def is_own(addr: str) -> bool:
    return is_local(addr, frozenset(OWN))


def layout_db(case: str) -> Database:
    tag, master, entries, *_ = LAYOUTS[case]
    db = Database(open_store("memory:"))
    db.info.tag = tag
    fill(db.service_for_tests(), master, entries)
    db.commit()
    return db


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_every_consumer_agrees(case):
    tag, master, _, want_master, want_role, want_clones = LAYOUTS[case]
    db = layout_db(case)
    svc = db.service_for_tests()
    machines = svc.machines()
    facts = DomainFacts(svc.directory(0).props, machines)

    # the facts themselves
    got = (facts.master.addr, facts.master.tag) if facts.master else None
    assert got == want_master
    assert facts.role(tag, is_own) is want_role
    assert [(p.addr, p.tag) for p in facts.clones(is_own, tag)] == want_clones

    # the service
    assert svc.master_address() == (want_master[0] if want_master else None)
    assert svc.master_property() == (tuple(master.split("/", 1)) if master else None)
    # every server the STATISTICS list names is an address (no host names)
    assert all(addresses([("ip_address", [s.split("/")[0]])]) for s in svc.domain_servers())

    # replication's pure helpers
    assert master_of(master, machines) == want_master
    assert [(p.addr, p.tag) for p in clone_list(machines, is_own, tag)] == want_clones

    # netinfod's start-up role, and the owner holding it
    assert is_clone(svc, tag, OWN) is (want_role is Role.CLONE)
    assert db.settle_role(tag, is_own) is want_role
    assert db.role is want_role and db.info.clone is (want_role is Role.CLONE)

    # the replicator (not started: it sends nothing)
    rep = Replicator(db, tag, is_own)
    assert rep.is_clone is (want_role is Role.CLONE)
    assert rep._names_another_master() is (want_role is Role.CLONE)
    if want_role is Role.MASTER:
        rep.rebuild_clones()
        assert sorted((p.addr, p.tag) for p in rep.clones) == sorted(want_clones)
    else:
        rep.publish()
        stats = dict(db.info.replication)
        assert stats["master_server"] == [f"{want_master[0]}/{want_master[1]}"
                                          if want_master else "unknown"]
    for p in facts.servers:
        assert rep._listed_server(p.addr) in facts.servers

    # the server: an update pushed by the master is recognised by the master's address
    disp = Dispatcher(db, ServerConfig(tag, "127.0.0.1", 0), OWN)
    if want_master is not None:
        pushed = disp.caller_for(want_master[0], 600)
        assert pushed.from_master is (want_role is Role.CLONE)


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_the_client_library_finds_the_same_master_over_the_wire(case):
    """``DomainClient._find_master`` reads root and /machines from a served domain."""
    tag, *_, want_master, _, _ = LAYOUTS[case]
    db = layout_db(case)

    async def main():
        server = NetInfoServer(db, ServerConfig(tag, "127.0.0.1", free_port(),
                                                trust_local=not ROOT_USER), OWN)
        await server.start()
        try:
            dc = await DomainClient.for_servers([("127.0.0.1", tag)], port=server.tcp_port,
                                                timeout=5.0)
            try:
                return await dc._find_master()
            finally:
                await dc.close()
        finally:
            await server.close()

    assert asyncio.run(main()) == want_master


# -- the host-name case through a real netinfod ----------------------------------------------

def _statistics(port: int, tag: str) -> dict[str, list[str]]:
    async def main():
        c = await Client.connect("127.0.0.1", port, tag, timeout=5.0)
        try:
            return dict(await c.statistics())
        finally:
            await c.close()
    return asyncio.run(main())


def _on_disk(tmp_path, case: str) -> None:
    tag, master, entries, *_ = LAYOUTS[case]
    with open_database(tmp_path, tag, create=True) as db:
        fill(db.service_for_tests(), master, entries)
        db.commit()


def test_netinfod_with_a_host_name_first_is_the_master(tmp_path, netinfod):
    """Before: netinfod took the name as the master's address and started as a clone
    whose master replication could not find ("unknown"): nothing could write."""
    case = "host name first (issue 19)"
    _on_disk(tmp_path, case)
    d = netinfod("net", directory=tmp_path)
    stats = _statistics(d.port, "net")
    assert stats["tag"][:2] == ["net", "master"]
    assert stats["domain_servers"] == ["127.0.0.1/net"]


def test_netinfod_clone_names_the_master_a_host_name_hid(tmp_path, netinfod):
    """The clone's side: it is a clone and says which master it copies from."""
    case = "another tag on the master's host"
    _on_disk(tmp_path, case)
    d = netinfod("other", directory=tmp_path)
    stats = _statistics(d.port, "other")
    assert stats["tag"][:2] == ["other", "clone"]
    deadline = time.monotonic() + 20   # the replicator publishes just after "serving"
    while "master_server" not in stats and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = _statistics(d.port, "other")
    assert stats["master_server"] == ["127.0.0.1/net"]


def test_a_master_named_without_an_address_is_said(caplog):
    db = layout_db("master's host has only a name")
    assert db.settle_role("net", is_own) is Role.MASTER
    assert "root master names h/net, but /machines lists no dotted ip_address for h" \
        in caplog.text


# -- the pure rules -----------------------------------------------------------------------------

def test_an_address_is_a_dotted_ipv4_value():
    props = [("ip_address", ["h", "10.0.0.1", "fe80::1", "10.0.0.2", ""])]
    assert addresses(props) == ["10.0.0.1", "10.0.0.2"]
    assert addresses([]) == []


def test_servers_parents_and_children_skip_names_alike():
    root = [("master", ["h/net"])]
    machines = [
        [("name", ["h"]), ("ip_address", ["h", "10.0.0.1"]),
         ("serves", ["./net", "../top", "kid/net", "./"])],
        [("name", ["n"]), ("ip_address", ["n.example"]), ("serves", ["./net", "../top"])],
    ]
    f = DomainFacts(root, machines)
    assert f.servers == [Peer("h", "10.0.0.1", "net")]
    assert f.parent_candidates() == [("10.0.0.1", "top")]
    assert f.serves_child("net", "10.0.0.1") and not f.serves_child("net", "10.0.0.9")
    assert f.domain_servers() == ["10.0.0.1/net"]
    assert f.child_servers("kid") == [("10.0.0.1", "net")] and f.child_servers("x") == []
    assert f.listed_server("::ffff:10.0.0.1") == Peer("h", "10.0.0.1", "net")
    assert not f.clone_serves("10.0.0.1")        # the master's own listing
    assert f.own_entry(lambda a: a == "10.0.0.1", "net") == Peer("h", "10.0.0.1", "net")
    assert first_values(root, "master") == ["h/net"]
