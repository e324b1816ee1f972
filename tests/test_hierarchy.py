"""A three-level hierarchy on separate test hosts (network namespaces with veth).

Host A serves the root domain ``network``; host B serves ``sales``, a child of the root;
host C's ``local`` binds to ``sales`` by broadcast; host D serves a second copy of
``network`` (for failover). Run once with our embedded portmapper and once with Debian's
``rpcbind -r`` in every namespace (spec §1.5, §6–§8; issue "Binding and the domain
hierarchy").
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest

from netinfo.model import NiId
from netinfo.server.database import open_database
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import create_local, ensure_dir, populate_standard

from .netns import Network, available, wait_until

pytestmark = pytest.mark.slow

REASON = available()


def _db(directory, tag, master, machines, populate=False, local_parent=None):
    db = open_database(directory, tag, create=True)
    svc = db.service_for_tests()
    if local_parent:
        create_local(svc, local_parent)
    else:
        svc.proc_write(SUPERUSER, svc.proc_root(SUPERUSER), [("master", [master])])
        mid = ensure_dir(svc, "machines")
        for name, addr, serves in machines:
            svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(mid)),
                            [("name", [name]), ("ip_address", [addr]), ("serves", serves)],
                            0xFFFFFFFF)
        if populate:
            populate_standard(svc)
    db.close()


@pytest.fixture(params=["embedded", "rpcbind"])
def hierarchy(request, tmp_path):
    if REASON:
        pytest.skip(REASON)
    mode = request.param
    if mode == "rpcbind" and not shutil.which("rpcbind"):
        pytest.skip("Debian's rpcbind is not installed")
    net = Network()
    try:
        hosts = {n: net.add_host(n, i) for i, n in
                 ((1, "hostA"), (2, "hostB"), (3, "hostC"), (4, "hostD"))}
        a, b, c, d = (hosts[n].addr for n in ("hostA", "hostB", "hostC", "hostD"))
        dirs = {n: tmp_path / n for n in hosts}
        network_machines = [("hostA", a, ["./network"]), ("hostD", d, ["./network"]),
                            ("hostB", b, ["sales/sales"])]
        _db(dirs["hostA"], "network", "hostA/network", network_machines, populate=True)
        shutil.copytree(dirs["hostA"], dirs["hostD"])
        _db(dirs["hostB"], "sales", "hostB/sales",
            [("hostB", b, ["./sales"]), ("hostA", a, ["../network"]),
             ("hostC", c, ["hostC/local"])])
        _db(dirs["hostC"], "local", None, [], local_parent="sales")
        for name, host in hosts.items():
            log = tmp_path / f"{name}.log"
            if mode == "rpcbind":
                host.spawn(["unshare", "-m", "sh", "-c",
                            "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && "
                            "(chown _rpc /run/rpcbind 2>/dev/null || true) && "
                            "exec rpcbind -f -r"], log)
                wait_until(lambda h=host: h.run(["rpcinfo", "-p", "127.0.0.1"]).returncode
                           == 0, 15)
            host.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(dirs[name]),
                        "--portmapper", "system" if mode == "rpcbind" else "embedded",
                        "--bind", "0.0.0.0"], log)
        net.mode = mode
        net.logs = tmp_path
        served = {"hostA": "network", "hostB": "sales", "hostC": "local", "hostD": "network"}
        for name, tag in served.items():
            wait_until(lambda h=hosts[name], t=tag: f"tag={t} " in h.run(
                [sys.executable, "-m", "netinfo.cli.nidomain", "-l"]).stdout, 30)
        # C's local binds to sales by broadcast: wait until its RPARENT answers.
        wait_until(lambda: hosts["hostC"].python(_RPARENT).strip().startswith("sales"), 60)
        yield net
    finally:
        net.close()


_RPARENT = textwrap.dedent("""
    import asyncio
    from netinfo.client.domain import open_domain
    from netinfo.model import uint_to_addr
    async def main():
        d = await open_domain(".")
        tag, addr = await d.rparent()
        print(tag, uint_to_addr(addr))
        await d.close()
    asyncio.run(main())
""")

_OPEN_FROM_C = textwrap.dedent("""
    import asyncio, json
    from netinfo.client.domain import open_domain, domain_name
    async def main():
        out = {}
        for name in [".", "..", "/", "/sales", "../..", "/sales/hostC"]:
            d = await open_domain(name)
            out[name] = [d.server[0], d.tag, await domain_name(d)]
            await d.close()
        root = await open_domain("/")
        out["alice"] = (await root.read(await root.pathsearch("/users/alice")))[1]
        await root.close()
        print(json.dumps(out))
    asyncio.run(main())
""")


def _logs(net) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(net.logs.glob("*.log")))


def test_hierarchy_from_c(hierarchy):
    net = hierarchy
    a, b = net.hosts["hostA"], net.hosts["hostB"]
    # A user added to "/" on the root's master (local superuser there) ...
    a.python(textwrap.dedent("""
        import asyncio
        from netinfo.client.domain import open_domain
        async def main():
            d = await open_domain("network@127.0.0.1")
            users = await d.pathsearch("/users")
            await d.create(users, [("name", ["alice"]), ("uid", ["1001"])])
            await d.close()
        asyncio.run(main())
    """))
    out = json.loads(net.hosts["hostC"].python(_OPEN_FROM_C, timeout=120))
    # ... and every domain opens from C, with its spec §7.7 name.
    assert out["."] == ["127.0.0.1", "local", "/sales/hostC"], _logs(net)
    assert out[".."] == [b.addr, "sales", "/sales"]
    assert out["/"] == [a.addr, "network", "/"]
    assert out["/sales"] == [b.addr, "sales", "/sales"]
    assert out["../.."] == [a.addr, "network", "/"]
    assert out["/sales/hostC"][1:] == ["local", "/sales/hostC"]
    assert out["alice"] == [["name", ["alice"]], ["uid", ["1001"]]]


_FAILOVER = textwrap.dedent("""
    import asyncio, logging, os, signal, sys
    from netinfo.client.domain import open_domain
    logging.basicConfig(level=logging.INFO)
    async def main():
        root = await open_domain("/")
        await root.read(0)
        print("servers", root.servers, flush=True)
        sys.stdin.readline()          # the test kills the first server now
        _, props = await root.read(await root.pathsearch("/users/uid=0"))
        print("after", root.server, dict(props)["name"], flush=True)
        await root.close()
    asyncio.run(main())
""")


def test_failover_to_the_other_server(hierarchy):
    import subprocess

    net = hierarchy
    c, a, d = net.hosts["hostC"], net.hosts["hostA"], net.hosts["hostD"]
    p = subprocess.Popen(c.wrap([sys.executable, "-c", _FAILOVER]), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=c.env())
    line = p.stdout.readline()
    assert line.startswith("servers"), p.stderr.read() + _logs(net)
    assert a.addr in line and d.addr in line
    # Kill host A's nibindd and its netinfods (its process group): one server of "/" is gone.
    import os
    nib = next(q for q in a.procs if "nibindd" in " ".join(map(str, q.args)))
    os.killpg(nib.pid, 9)
    nib.wait()
    out, err = p.communicate("go\n", timeout=120)
    assert p.returncode == 0, err + _logs(net)
    assert f"after ('{d.addr}', 'network') ['root']" in out, out + err


def test_rpcinfo_and_callit_inside_a_host(hierarchy):
    """rpcinfo sees nibindd; CALLIT forwards NIBIND BIND for a served tag and stays silent
    for an unserved one (spec §1.5, §6.3)."""
    net = hierarchy
    b = net.hosts["hostB"]
    r = b.run(["rpcinfo", "-p", "127.0.0.1"])
    assert r.returncode == 0 and "200100001" in r.stdout, r.stdout + r.stderr
    for flag in ("-t", "-u"):
        r = b.run(["rpcinfo", flag, "127.0.0.1", "200100001", "1"])
        assert "ready and waiting" in r.stdout, r.stdout + r.stderr
        r = b.run(["rpcinfo", flag, "127.0.0.1", "100000", "2"])
        assert "ready and waiting" in r.stdout, r.stdout + r.stderr
    # rpcinfo -b broadcasts CALLIT(NIBIND, PING): every host's portmapper forwards it to its
    # nibindd and answers; for a program nobody serves, every portmapper stays silent.
    if shutil.which("stdbuf"):
        r = b.run(["timeout", "4", "stdbuf", "-oL", "rpcinfo", "-b", "200100001", "1"])
        answered = {line.split()[0].rsplit(".", 2)[0] for line in r.stdout.splitlines()}
        assert {h.addr for h in net.hosts.values()} <= answered, r.stdout + r.stderr
        r = b.run(["timeout", "3", "stdbuf", "-oL", "rpcinfo", "-b", "200100099", "1"])
        assert r.stdout.strip() == "", r.stdout
    c = net.hosts["hostC"]
    code = textwrap.dedent(f"""
        import asyncio
        from netinfo.client.binding import multicall
        from netinfo.wire.nibind import BindArgs, encode_bind_args, NIBIND_PROG, BindProc
        from netinfo.model import addr_to_uint
        async def main():
            good = encode_bind_args(BindArgs(addr_to_uint("{c.addr}"), "local", "sales"))
            bad = encode_bind_args(BindArgs(addr_to_uint("{c.addr}"), "local", "nosuch"))
            print(await multicall([("{b.addr}", good)], NIBIND_PROG, 1, BindProc.BIND,
                                  rounds=(1.0,)))
            print(await multicall([("{b.addr}", bad)], NIBIND_PROG, 1, BindProc.BIND,
                                  rounds=(1.0, 1.0)))
        asyncio.run(main())
    """)
    lines = c.python(code).splitlines()
    assert lines[0] == f"(0, '{b.addr}', b'')", lines
    assert lines[1] == "None", lines


_SET_TRUSTED = textwrap.dedent("""
    import asyncio, sys
    from netinfo.client.domain import open_domain
    async def main():
        d = await open_domain("network@127.0.0.1")
        root = await d.root()
        props = [p for p in (await d.read(root))[1] if p[0] != "trusted_networks"]
        await d.write(root, props + [("trusted_networks", sys.argv[1:])])
        nets = await d.pathsearch("/networks")
        try:
            await d.pathsearch("/networks/lan")
        except Exception:
            await d.create(nets, [("name", ["lan"]), ("address", ["10.77.0"])])
        await d.close()
    asyncio.run(main())
""")

_READ_ROOT_FROM = textwrap.dedent("""
    import asyncio, sys
    from netinfo.client.domain import open_domain
    async def main():
        try:
            d = await open_domain(f"network@{sys.argv[1]}")
            await d.read(0)
            print("admitted")
        except Exception as e:
            print("refused", type(e).__name__)
    asyncio.run(main())
""")


def test_trusted_networks_filter_tcp(hierarchy):
    """Root trusted_networks admits listed networks (numbers or /networks names) and the
    host itself; others are closed right after accept (spec §10.5, scenario A15)."""
    net = hierarchy
    if net.mode != "embedded":
        pytest.skip("the filter does not depend on the portmapper")
    a, c = net.hosts["hostA"], net.hosts["hostC"]

    def from_c() -> str:
        r = c.run([sys.executable, "-c", _READ_ROOT_FROM, a.addr])
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def set_trusted(*values: str) -> None:
        r = a.run([sys.executable, "-c", _SET_TRUSTED, *values])
        assert r.returncode == 0, r.stderr

    assert from_c() == "admitted"
    set_trusted("10.99")
    assert from_c().startswith("refused")
    r = a.run([sys.executable, "-c", _READ_ROOT_FROM, a.addr])  # the host itself: always
    assert r.stdout.strip() == "admitted", r.stderr
    set_trusted("10.77.0")
    assert from_c() == "admitted"
    set_trusted("lan")  # a /networks name
    assert from_c() == "admitted"
    set_trusted()  # empty: only the server's own addresses
    assert from_c().startswith("refused")


_MASTER_WRITE = textwrap.dedent("""
    import asyncio, sys
    from netinfo.client.domain import DomainClient
    from netinfo.errors import NiError
    a, d = sys.argv[1], sys.argv[2]
    async def main():
        # a handle whose current server is the clone D: reads from D, writes to the master
        h = await DomainClient.for_servers([(d, "network"), (a, "network")])
        printers = await h.pathsearch("/printers")          # _writers = * (anonymous ok)
        await h.create(printers, [("name", ["lp-master"])])
        only_a = await DomainClient.for_servers([(a, "network")])
        print("on master", (await only_a.read(await only_a.pathsearch("/printers/lp-master")))[1])
        only_d = await DomainClient.for_servers([(d, "network")])
        try:
            await only_d.create(await only_d.pathsearch("/printers"), [("name", ["x"])])
        except NiError as e:
            print("clone says", e.status)
        for c in (h, only_a, only_d):
            await c.close()
    asyncio.run(main())
""")


def test_writes_go_to_the_master_and_clones_refuse_them(hierarchy):
    """Spec §7.5 master discovery (root master -> /machines/<host> -> server list) and
    §9.2: a clone answers NI_RDONLY to writes that do not come from its master."""
    net = hierarchy
    if net.mode != "embedded":
        pytest.skip("does not depend on the portmapper")
    a, c, d = net.hosts["hostA"], net.hosts["hostC"], net.hosts["hostD"]
    r = c.run([sys.executable, "-c", _MASTER_WRITE, a.addr, d.addr])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["on master [('name', ['lp-master'])]", "clone says 13"]
