"""The change history across replication (issue 24): a master and a clone in network
namespaces (tests/netns.py, root only). The clone keeps the master's history — the same
sequence numbers, callers and states — copied through the history program; a revert of
a DESTROY made on the master restores number, properties and order on the clone too; a
promoted clone numbers its writes above the master's last change.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from .netns import Network, available, wait_until
from .test_replication import _master_db

pytestmark = pytest.mark.slow

REASON = available()

READ = textwrap.dedent("""
    import asyncio, json, sys
    from netinfo.client import binding
    from netinfo.client.core import Client
    async def main():
        _, port = await binding.getregister("127.0.0.1", "network")
        c = await Client.connect("127.0.0.1", port, "network", privileged=True)
        out = {"checksum": dict(await c.statistics())["checksum"][0]}
        try:
            d = await c.pathsearch(sys.argv[1])
            nid, props = await c.read(d)
            out["dir"] = [nid.object, [[k, list(v)] for k, v in props]]
            out["kids"] = (await c.children((await c.parent(d))[0]))[0]
        except Exception as e:
            out["dir"] = None
        await c.close()
        print(json.dumps(out))
    asyncio.run(main())
""")

WRITE = textwrap.dedent("""
    import asyncio
    from netinfo.client import binding
    from netinfo.client.core import Client
    async def main():
        _, port = await binding.getregister("127.0.0.1", "network")
        c = await Client.connect("127.0.0.1", port, "network", privileged=True)
        users = await c.pathsearch("/users")
        zed, _ = await c.create(await c.self_id(users), [
            ("uid", ["4242"]), ("name", ["zed"]), ("shell", ["/bin/sh", "/bin/ksh"])], 1)
        await c.destroy(await c.self_id(users), await c.self_id(zed.object))
        await c.close()
    asyncio.run(main())
""")


def tool(host, *argv: str, ok: bool = True):
    r = host.run([sys.executable, "-m", f"netinfo.cli.{argv[0]}", *argv[1:]], timeout=120)
    if ok:
        assert r.returncode == 0, f"{host.name} {argv}: {r.stderr}"
    return r


def read(host, path: str) -> dict:
    return json.loads(host.run([sys.executable, "-c", READ, path], timeout=60).stdout)


def history(host) -> list[dict]:
    return json.loads(tool(host, "nihistory", "-t", "127.0.0.1/network", "--json").stdout)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    tmp = tmp_path_factory.mktemp("hrepl")
    net = Network()
    try:
        hosts = {name: net.add_host(name, i) for name, i in (("hosta", 1), ("hostb", 2))}
        net.write_hosts(tmp / "hosts")
        for name, h in hosts.items():
            d = tmp / name
            d.mkdir()
            if name == "hosta":
                _master_db(d)
            h.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(d),
                     "--portmapper", "embedded", "--bind", "0.0.0.0"], tmp / f"{name}.log")
        for h in hosts.values():
            wait_until(lambda h=h: tool(h, "nidomain", "-l", ok=False).returncode == 0, 30)
        tool(hosts["hostb"], "nidomain", "-c", "network", "hosta/network")
        a, b = hosts["hosta"], hosts["hostb"]
        wait_until(lambda: read(b, "/")["checksum"] == read(a, "/")["checksum"], 30)
        yield a, b
    finally:
        net.close()


def test_a_clone_keeps_the_masters_history_and_its_reverts(pair):
    a, b = pair
    a.run([sys.executable, "-c", WRITE], timeout=60).check_returncode()
    kept = history(a)
    destroy = kept[0]
    assert destroy["procedure"] == "DESTROY" and destroy["path"] == "/users/zed"
    # the clone's history is the master's: same numbers, callers, times and paths
    try:
        wait_until(lambda: history(b)[:len(kept)] == kept, 30)
    except TimeoutError:
        raise AssertionError(f"clone: {history(b)[:3]} master: {kept[:3]}") from None
    shown_a = json.loads(tool(a, "nihistory", "-t", "127.0.0.1/network", "--show",
                              str(destroy["seq"]), "--json").stdout)
    shown_b = json.loads(tool(b, "nihistory", "-t", "127.0.0.1/network", "--show",
                              str(destroy["seq"]), "--json").stdout)
    assert shown_a == shown_b
    zed = destroy["dir"]
    before = shown_a["touched"][1]["before"]["properties"]
    # revert on the master: zed back with its number, properties and order, everywhere
    tool(a, "nihistory", "-t", "127.0.0.1/network", "--revert", str(destroy["seq"]))
    on_a = read(a, "/users/zed")
    assert on_a["dir"] == [zed, [[p["name"], p["values"]] for p in before]]
    wait_until(lambda: read(b, "/users/zed")["dir"] == on_a["dir"], 30)
    assert read(b, "/users/zed")["kids"] == on_a["kids"]
    wait_until(lambda: history(b)[0]["seq"] == history(a)[0]["seq"], 30)
    assert history(b)[0]["procedure"] == "CREATE"


def test_a_promoted_clone_goes_on_with_the_masters_history(pair):
    a, b = pair
    kept = history(a)
    wait_until(lambda: history(b)[:len(kept)] == kept, 30)
    a.stop_all()                                    # the master host goes away
    tool(b, "nidomain", "-p", "network")
    wait_until(lambda: "master" in tool(b, "nidomain", "-s", "network").stdout, 15)
    tool(b, "niutil", "-create", "-t", "127.0.0.1/network", "/after_promotion")
    now = history(b)
    # the promotion's own write (root master) and ours come after the old master's last,
    # numbered above it (the clone's own count of the pushes it applied may leave a gap)
    assert now[0]["path"] == "/after_promotion" and now[1]["path"] == "/"
    assert now[0]["seq"] == now[1]["seq"] + 1 and now[1]["seq"] > kept[0]["seq"]
    assert now[2:][:len(kept)] == kept
