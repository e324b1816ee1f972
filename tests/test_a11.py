"""Scenario A11 of the tools spec, end to end on two test hosts (network namespaces).

"Create a shared (network) domain on a server": nidomain -m network on the server, link
the server's local domain to it, list the client in the new domain with niutil -t, SIGHUP
nibindd, then check niutil -rparent, niutil -domainname and a user added to "/".
Everything runs through the real tools as subprocesses.
"""

from __future__ import annotations

import signal
import sys

import pytest

from netinfo.server.database import open_database
from netinfo.server.templates import create_local

from .netns import Network, available, wait_until

pytestmark = pytest.mark.slow


def _local_db(directory) -> None:
    db = open_database(directory, "local", create=True)
    svc = db.service_for_tests()
    create_local(svc)  # broadcasthost serves ../network (spec §12.3)
    db.close()


def tool(host, *argv: str, ok: bool = True):
    r = host.run([sys.executable, "-m", f"netinfo.cli.{argv[0]}", *argv[1:]], timeout=120)
    if ok:
        assert r.returncode == 0, f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}{r.stderr}"
    return r


@pytest.fixture
def two_hosts(tmp_path):
    why = available()
    if why:
        pytest.skip(why)
    net = Network()
    try:
        server = net.add_host("server", 1)
        client = net.add_host("client1", 2)
        net.write_hosts(tmp_path / "hosts")
        for h in (server, client):
            d = tmp_path / h.name
            _local_db(d)
            h.dbdir = d
            h.nibindd = h.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(d),
                                 "--portmapper", "embedded", "--bind", "0.0.0.0"],
                                tmp_path / f"{h.name}.log")
        for h in (server, client):
            wait_until(lambda h=h: "tag=local " in tool(h, "nidomain", "-l", ok=False).stdout,
                       30)
        net.logs = tmp_path
        yield net
    finally:
        net.close()


def test_scenario_a11(two_hosts):
    net = two_hosts
    server, client = net.hosts["server"], net.hosts["client1"]

    # 1. nidomain -m network: master = server/network, /machines/server serves ./network
    tool(server, "nidomain", "-m", "network")
    out = tool(server, "niutil", "-read", "-t", "server/network", "/").stdout
    assert "master: server/network" in out.splitlines()
    out = tool(server, "niutil", "-read", "-t", "server/network", "/machines/server").stdout
    assert "serves: ./network" in out.splitlines() and f"ip_address: {server.addr}" in out

    # 2. the server's local domain names its parent
    tool(server, "niutil", "-create", ".", "/machines/server")
    tool(server, "niutil", "-createprop", ".", "/machines/server", "ip_address", server.addr)
    tool(server, "niutil", "-appendprop", ".", "/machines/server", "serves", "../network")

    # 3. the new domain lists the server's and the client's local domains as children
    tool(server, "niutil", "-appendprop", "-t", "server/network", "/machines/server",
         "serves", "server/local")
    tool(server, "niutil", "-create", "-t", "server/network", "/machines/client1")
    tool(server, "niutil", "-createprop", "-t", "server/network", "/machines/client1",
         "ip_address", client.addr)
    tool(server, "niutil", "-createprop", "-t", "server/network", "/machines/client1",
         "serves", "client1/local")

    # 4. SIGHUP nibindd on both hosts (re-reads its directory)
    for h in (server, client):
        h.nibindd.send_signal(signal.SIGHUP)

    # 5. verify: client1's local binds to server/network (by broadcast) ...
    def rparent() -> str:
        r = tool(client, "niutil", "-rparent", "-t", "client1/local", ok=False)
        return r.stdout.strip() if r.returncode == 0 else ""
    assert wait_until(rparent, 60) == "server/network"
    r = tool(client, "niutil", "-rparent", "-n", "-t", "client1/local")
    assert r.stdout.strip() == f"{server.addr}/network"
    # ... its domain name is /client1, the server's is /server, and the root prints "/"
    assert tool(client, "niutil", "-domainname", ".").stdout == "/client1\n"
    assert wait_until(lambda: tool(server, "niutil", "-domainname", ".",
                                   ok=False).stdout == "/server\n", 60)
    assert tool(client, "niutil", "-domainname", "/").stdout == "/\n"
    r = tool(client, "niutil", "-rparent", "-t", "server/network", ok=False)
    assert (r.returncode, r.stdout) == (111, "root domain: no parent\n")

    # ... and a user added to "/" on the server resolves on the client
    tool(server, "niutil", "-create", "/", "/users/alice")
    tool(server, "niutil", "-createprop", "/", "/users/alice", "uid", "1001")
    assert tool(client, "niutil", "-readprop", "/", "/users/alice", "uid").stdout == "1001\n"
    out = tool(client, "nireport", "/", "/users", "name", "uid").stdout
    assert "alice\t1001\t" in out.splitlines()
