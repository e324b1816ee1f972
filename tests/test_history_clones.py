"""The change history across replication (issue 24): a master and clones in network
namespaces (tests/netns.py, root only), over the real wire. The clone keeps the master's
history — the same sequence numbers, callers and states — copied through the history
program as each push lands, never ahead of its own data (sampled while the master
writes); a new clone's copy brings the history; a revert of a DESTROY made on the master
restores number, properties and order on the clone too; a promoted clone numbers its
writes right after the master's last change, and ``nihistory --revert`` works there.
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


#: On the master: N creates of /users/wI, one after the other.
WRITER = textwrap.dedent("""
    import asyncio, sys
    from netinfo.client import binding
    from netinfo.client.core import Client
    async def main():
        _, port = await binding.getregister("127.0.0.1", "network")
        c = await Client.connect("127.0.0.1", port, "network", privileged=True)
        users = await c.pathsearch("/users")
        for i in range(int(sys.argv[1])):
            await c.create(await c.self_id(users), [("name", [f"w{i}"])])
            await asyncio.sleep(0.05)
        await c.close()
    asyncio.run(main())
""")

#: On a clone, for T seconds: its newest history entry, then whether its own data holds
#: that write (a CREATE's directory exists); then, once /users/wLAST is in its data, how
#: long until its history has that write too.
SAMPLER = textwrap.dedent("""
    import asyncio, json, sys, time
    from netinfo.client import binding
    from netinfo.client.core import Client
    from netinfo.client.history import query
    from netinfo.errors import NiError
    from netinfo.wire.history import Query
    from netinfo.wire.protocol import Proc
    async def main():
        _, port = await binding.getregister("127.0.0.1", "network")
        c = await Client.connect("127.0.0.1", port, "network", privileged=True)
        seen, ahead, end = set(), [], time.monotonic() + float(sys.argv[1])
        while time.monotonic() < end:
            page = await query(c, Query(limit=1))
            e = page.entries[0] if page.entries else None
            if e is not None and e.proc == Proc.CREATE and e.path.startswith("/users/w"):
                seen.add(e.seq)
                try:
                    await c.pathsearch(e.path)
                except NiError:
                    ahead.append(e.seq)
            await asyncio.sleep(0.02)
        last, t_data = sys.argv[2], None
        while time.monotonic() < end + 60:
            if t_data is None:
                try:
                    await c.pathsearch(last)
                    t_data = time.monotonic()
                except NiError:
                    pass
            if t_data is not None:
                page = await query(c, Query(limit=1))
                if page.entries and page.entries[0].path == last:
                    lag = time.monotonic() - t_data
                    break
            await asyncio.sleep(0.005)
        else:
            lag = None
        await c.close()
        print(json.dumps({"seen": len(seen), "ahead": ahead, "lag": lag}))
    asyncio.run(main())
""")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    tmp = tmp_path_factory.mktemp("hrepl")
    net = Network()
    try:
        hosts = {name: net.add_host(name, i) for name, i in (("hosta", 1), ("hostb", 2),
                                                              ("hostc", 3))}
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
        yield a, b, hosts["hostc"]
    finally:
        net.close()


def test_a_clone_keeps_the_masters_history_and_its_reverts(pair):
    a, b, _ = pair
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


def test_the_clones_history_follows_each_push_never_ahead_of_its_data(pair, tmp_path):
    """While the master writes (pushed every update_latency = 1 s), the clone's newest
    entry is always a write its own data holds; the last write's entry arrives right
    after the write itself; and the two histories are then the same."""
    a, b, _ = pair
    n = 60
    writer = a.spawn([sys.executable, "-c", WRITER, str(n)], tmp_path / "writer.log")
    r = b.run([sys.executable, "-c", SAMPLER, "6", f"/users/w{n - 1}"], timeout=120)
    assert writer.wait(60) == 0, (tmp_path / "writer.log").read_text()
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    print(f"\nclone's history while the master writes: {got}")
    assert got["seen"] >= 3, "the clone's history did not follow the pushes"
    assert got["ahead"] == [], "the clone's history named writes its data did not hold"
    assert got["lag"] is not None, "the last write's entry never reached the clone"
    kept = history(a)
    wait_until(lambda: history(b)[:len(kept)] == kept, 30)


def test_a_new_clones_copy_brings_the_history(pair):
    """A clone made now (its first copy, spec §9.5) has the master's whole history."""
    a, _, c = pair
    kept = history(a)
    assert len(kept) > 3
    tool(c, "nidomain", "-c", "network", "hosta/network")
    wait_until(lambda: read(c, "/")["checksum"] == read(a, "/")["checksum"], 30)
    wait_until(lambda: history(c)[:len(kept)] == kept, 30)
    for e in (kept[0], kept[-1]):
        shown = [json.loads(tool(h, "nihistory", "-t", "127.0.0.1/network", "--show",
                                 str(e["seq"]), "--json").stdout) for h in (a, c)]
        assert shown[0] == shown[1]


def test_a_promoted_clone_goes_on_with_the_masters_history(pair):
    a, b, c = pair
    tool(a, "niutil", "-create", "-t", "127.0.0.1/network", "/users/yan")
    tool(a, "niutil", "-createprop", "-t", "127.0.0.1/network", "/users/yan", "uid", "77")
    kept = history(a)
    assert kept[0]["path"] == "/users/yan" and kept[0]["procedure"] == "CREATEPROP"
    wait_until(lambda: history(b)[:len(kept)] == kept, 30)
    c.stop_all()
    a.stop_all()                                    # the master host goes away
    tool(b, "nidomain", "-p", "network")
    wait_until(lambda: "master" in tool(b, "nidomain", "-s", "network").stdout, 15)
    tool(b, "niutil", "-create", "-t", "127.0.0.1/network", "/after_promotion")
    now = history(b)
    # the promotion's own write (root master) and ours come right after the old
    # master's last, with no gap
    assert now[0]["path"] == "/after_promotion" and now[1]["path"] == "/"
    assert now[0]["seq"] == now[1]["seq"] + 1 == kept[0]["seq"] + 2
    assert now[2:][:len(kept)] == kept
    # an old master's write is put back by the new master (yan's CREATEPROP); its
    # CREATE, followed by that later change, refuses
    r = tool(b, "nihistory", "-t", "127.0.0.1/network", "--revert", str(kept[1]["seq"]),
             ok=False)
    assert r.returncode != 0 and read(b, "/users/yan")["dir"] is not None
    tool(b, "nihistory", "-t", "127.0.0.1/network", "--revert", str(kept[0]["seq"]))
    assert read(b, "/users/yan")["dir"][1] == [["name", ["yan"]]]
    after = history(b)
    assert after[0]["path"] == "/users/yan" and after[0]["seq"] == now[0]["seq"] + 1
