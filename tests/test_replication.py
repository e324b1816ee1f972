"""Replication across test hosts (spec §9): a master and two clones in network namespaces,
each with its own hostname, /etc/hosts and address, each running nibindd with its own
embedded portmapper. Clones are made with ``nidomain -c`` (CREATECLONE), copy the domain
with READALL, receive every write the master commits, and refuse everyone else's.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from .netns import Network, available, wait_until

pytestmark = pytest.mark.slow

REASON = available()
HOSTS = {"hosta": 1, "hostb": 2, "hostc": 3}


def _master_db(directory: Path) -> None:
    from netinfo.model import NI_INDEX_NULL, NiId
    from netinfo.server.database import open_database
    from netinfo.server.service import SUPERUSER
    from netinfo.server.templates import create_master, ensure_dir, populate_standard
    with open_database(directory, "network", create=True) as db:
        svc = db.service_for_tests()
        create_master(svc, "network", "hosta", ["10.77.0.1"])
        m = ensure_dir(svc, "machines")
        for name in ("hostb", "hostc"):
            svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(m)),
                            [("name", [name]), ("ip_address", [f"10.77.0.{HOSTS[name]}"]),
                             ("serves", ["./network"])], NI_INDEX_NULL)
        populate_standard(svc)
        root = svc.proc_root(SUPERUSER)
        svc.proc_createprop(SUPERUSER, root, ("update_latency", ["1"]), NI_INDEX_NULL)


def tool(host, *argv: str, ok: bool = True):
    r = host.run([sys.executable, "-m", f"netinfo.cli.{argv[0]}", *argv[1:]], timeout=120)
    if ok:
        assert r.returncode == 0, f"{host.name} {argv}: {r.stderr}"
    return r


def stats(host) -> dict[str, list[str]]:
    out = host.python(textwrap.dedent("""
        import asyncio, json
        from netinfo.client import Client
        from netinfo.client import binding
        async def main():
            _, port = await binding.getregister("127.0.0.1", "network")
            c = await Client.connect("127.0.0.1", port, "network", privileged=False)
            print(json.dumps(dict(await c.statistics())))
            await c.close()
        asyncio.run(main())
    """))
    import json
    return json.loads(out)


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    tmp = tmp_path_factory.mktemp("repl")
    net = Network()
    try:
        hosts = {name: net.add_host(name, i) for name, i in HOSTS.items()}
        net.write_hosts(tmp / "hosts")
        for name, h in hosts.items():
            d = tmp / name
            d.mkdir()
            if name == "hosta":
                _master_db(d)
            h.dir = d
            h.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(d),
                     "--portmapper", "embedded", "--bind", "0.0.0.0"], tmp / f"{name}.log")
        for h in hosts.values():
            wait_until(lambda h=h: tool(h, "nidomain", "-l", ok=False).returncode == 0, 30)
        for name in ("hostb", "hostc"):
            tool(hosts[name], "nidomain", "-c", "network", "hosta/network")
        a = hosts["hosta"]
        for name in ("hostb", "hostc"):
            wait_until(lambda h=hosts[name]: stats(h)["checksum"] == stats(a)["checksum"], 30)
        net.logs = tmp
        net.h = hosts
        yield net
    finally:
        net.close()


WRITER = textwrap.dedent("""
    import asyncio, random
    from netinfo.client import Client
    from netinfo.client import binding
    from netinfo.errors import NiError
    async def main(n, seed):
        rng = random.Random(seed)
        _, port = await binding.getregister("127.0.0.1", "network")
        c = await Client.connect("127.0.0.1", port, "network", privileged=True)
        users = await c.pathsearch("/users")
        made = []
        done = 0
        while done < n:
            kind = rng.randrange(11)
            try:
                if kind <= 2 or not made:
                    users = await c.self_id(users)
                    kid, users = await c.create(users, [("name", [f"u{seed}-{done}"]),
                                                        ("uid", [str(5000 + done)]),
                                                        ("v", ["a", "b"])])
                    made.append(kid.object)
                else:
                    oid = rng.choice(made)
                    d = await c.self_id(oid)
                    if kind == 3:
                        users = await c.self_id(users)
                        await c.destroy(users, d)
                        made.remove(oid)
                    elif kind == 4:
                        await c.write(d, [("name", [f"w{done}"]), ("v", ["x"])])
                    elif kind == 5:
                        await c.createprop(d, "p", ["1", "2"])
                    elif kind == 6:
                        names, d = await c.listprops(d)
                        if not names:
                            continue
                        await c.destroyprop(d, len(names) - 1)
                    elif kind == 7:
                        await c.writeprop(d, 0, [f"n{done}"])
                    elif kind == 8:
                        await c.renameprop(d, 0, "name")
                    elif kind == 9:
                        await c.createname(d, 0, f"alias{done}")
                    else:
                        names, d = await c.listprops(d)
                        if not names:
                            continue
                        vals, d = await c.readprop(d, 0)
                        if len(vals) > 1:
                            await c.destroyname(d, 0, len(vals) - 1)
                        else:
                            await c.writename(d, 0, 0, f"r{done}")
                done += 1
            except NiError:
                continue
        await c.close()
        print(done)
    asyncio.run(main(N, SEED))
""")


def dump(host) -> str:
    return tool(host, "nidump", "-r", "/", "-t", "127.0.0.1/network").stdout


def test_clones_are_clones_and_copied_the_domain(domain):
    a, b, c = (domain.h[n] for n in HOSTS)
    sa = stats(a)
    assert sa["tag"][:2] == ["network", "master"]
    for h in (b, c):
        s = stats(h)
        assert s["tag"] == ["network", "clone"] and s["checksum"] == sa["checksum"]
        assert s["sync_state"] == ["in-step"] and s["master_server"] == ["10.77.0.1/network"]
    assert dump(b) == dump(a) == dump(c)


def test_every_write_reaches_both_clones(domain):
    a, b, c = (domain.h[n] for n in HOSTS)
    t = time.monotonic()
    out = a.python(WRITER.replace("N, SEED", "1000, 7"), timeout=300)
    assert out.strip() == "1000"
    written = time.monotonic()
    want = stats(a)["checksum"]
    for h in (b, c):
        wait_until(lambda h=h: stats(h)["checksum"] == want, 10, 0.2)
    converged = time.monotonic()
    print(f"MEASURE replication writes=1000 write_s={written - t:.1f} "
          f"converged_after_s={converged - written:.1f}")
    assert dump(b) == dump(a) == dump(c)
    states = stats(a)["clone_state"]
    assert len(states) == 2 and all(" in-step " in s for s in states), states


def test_clones_refuse_everyone_but_their_master(domain):
    a, b, c = (domain.h[n] for n in HOSTS)
    code = textwrap.dedent("""
        import asyncio
        from netinfo.client import Client
        from netinfo.client import binding
        from netinfo.errors import NiError, Status
        async def main():
            _, port = await binding.getregister(HOST, "network")
            for priv in PRIVS:
                c = await Client.connect(HOST, port, "network", privileged=priv)
                users = await c.pathsearch("/users")
                for what, call in (("create", c.create(users, [("name", ["intruder"])])),
                                   ("readall", c.readall(0))):
                    try:
                        await call
                        print(what, "OK")
                    except NiError as e:
                        print(what, Status(e.status).name)
                await c.close()
        asyncio.run(main())
    """)
    # from the clone's own host, from the other clone, and from the master's address but
    # (first round) an ordinary port: none is the master pushing an update
    for frm, privs in ((b, (False, True)), (c, (False, True)), (a, (False,))):
        out = frm.python(code.replace("HOST", repr("10.77.0.2"))
                         .replace("PRIVS", repr(privs)))
        assert out.splitlines() == ["create RDONLY", "readall NOTMASTER"] * len(privs), out


# -- faults -------------------------------------------------------------------------------------

def _pid(host, tag: str = "network") -> int | None:
    import subprocess
    r = subprocess.run(["pgrep", "-f", f"^netinfod {tag} --dir {host.dir} "],
                       capture_output=True, text=True)
    pids = [int(p) for p in r.stdout.split()]
    return pids[0] if pids else None


def _answers(host) -> bool:
    try:
        stats(host)
    except AssertionError:   # restarting: not registered again yet
        return False
    return True


def _converged(domain, host, timeout: float = 10.0) -> float:
    a = domain.h["hosta"]
    t = time.monotonic()
    wait_until(lambda: _answers(a), 30, 0.2)
    want = stats(a)["checksum"]
    wait_until(lambda: stats(host)["checksum"] == want, timeout, 0.2)
    return time.monotonic() - t


def _writer(domain, n: int, seed: int):
    import subprocess
    a = domain.h["hosta"]
    code = WRITER.replace("N, SEED", f"{n}, {seed}")
    return subprocess.Popen(a.wrap([sys.executable, "-c", code]), env=a.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_clone_killed_at_random_moments_converges(domain):
    import os
    import random
    import signal
    b = domain.h["hostb"]
    rng = random.Random(11)
    w = _writer(domain, 800, 21)
    kills = 0
    while kills < 10:
        time.sleep(rng.uniform(0.05, 0.4))
        pid = _pid(b)
        if pid is None:
            continue  # being restarted by nibindd
        os.kill(pid, signal.SIGKILL)
        kills += 1
    _out, err = w.communicate(timeout=300)
    assert w.returncode == 0, err
    # nibindd restarts it; at start-up it copies what it missed; its database always opens
    took = _converged(domain, b, 30)
    print(f"MEASURE replication sigkills=10 converged_after_s={took:.1f}")
    assert dump(b) == dump(domain.h["hosta"])


def test_a_clone_cut_off_converges_soon_after_the_link_is_back(domain):
    import subprocess
    c = domain.h["hostc"]
    subprocess.run(["ip", "-n", c.ns, "link", "set", "eth0", "down"], check=True)
    try:
        w = _writer(domain, 500, 31)
        _out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        time.sleep(3)  # the master finds the clone gone and marks it out of date
    finally:
        subprocess.run(["ip", "-n", c.ns, "link", "set", "eth0", "up"], check=True)
    took = _converged(domain, c, 10)
    print(f"MEASURE replication link_down_writes=500 converged_after_link_up_s={took:.1f}")
    assert dump(c) == dump(domain.h["hosta"])


def test_a_restarted_master_tells_a_clone_that_is_behind(domain):
    import os
    import signal
    import subprocess
    a, c = domain.h["hosta"], domain.h["hostc"]
    subprocess.run(["ip", "-n", c.ns, "link", "set", "eth0", "down"], check=True)
    try:
        w = _writer(domain, 200, 41)
        _out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        os.kill(_pid(a), signal.SIGKILL)   # the master goes down with the clone behind
    finally:
        subprocess.run(["ip", "-n", c.ns, "link", "set", "eth0", "up"], check=True)
    # nibindd restarts the master, which sends CRASHED(checksum) to its clones (§9.6)
    wait_until(lambda: _pid(a) is not None, 30)
    took = _converged(domain, c, 15)
    print(f"MEASURE replication master_restart converged_after_s={took:.1f}")


def test_a_clone_killed_mid_transfer_converges(domain):
    # The clone is behind by 6,000 users (its link was down while they were loaded), so
    # each start of its netinfod copies the domain (READALL, written beside its database
    # and renamed over it). It is killed again and again while copying; its database
    # keeps opening (old or new, and a half-written copy is discarded at the next start),
    # and once left alone it copies and converges.
    import os
    import random
    import signal
    import subprocess
    a, b = domain.h["hosta"], domain.h["hostb"]
    lines = "".join(f"mt{i}:*:{20000 + i}:20::0:0:Mid Transfer:/h:/bin/sh\n"
                    for i in range(6000))
    subprocess.run(["ip", "-n", b.ns, "link", "set", "eth0", "down"], check=True)
    try:
        r = a.run([sys.executable, "-m", "netinfo.cli.niload", "passwd", "-t",
                   "127.0.0.1/network"], input=lines, timeout=300)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["ip", "-n", b.ns, "link", "set", "eth0", "up"], check=True)
    log = domain.logs / "hostb.log"
    rng = random.Random(5)
    mid = 0
    for _ in range(6):
        wait_until(lambda: _pid(b) is not None, 30)
        pid = _pid(b)
        time.sleep(rng.uniform(0.05, 0.5))
        if f"netinfod[{pid}] INFO copied" not in log.read_text(errors="replace"):
            mid += 1   # started, not yet copied: killed during the copy
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda pid=pid: _pid(b) not in (None, pid), 30)
    took = _converged(domain, b, 60)
    print(f"MEASURE replication kills_during_copy={mid}/6 converged_after_s={took:.1f}")
    assert mid >= 1
    assert dump(b) == dump(a)


ATTACKER = textwrap.dedent("""
    import asyncio, time
    from netinfo.client import Client
    from netinfo.client import binding
    async def main():
        n = 0
        _, port = await binding.getregister("10.77.0.1", "network")
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            # an ordinary port of the clone's address; the master's checksum: "current"
            c = await Client.connect("10.77.0.1", port, "network", privileged=False)
            try:
                checksum = int(dict(await c.statistics())["checksum"][0])
                t = await c.readall_stream(checksum)
                async for _ in t:
                    pass
                t.close()
                n += 1
            finally:
                await c.close()
            await asyncio.sleep(0.05)
        print(n)
    asyncio.run(main())
""")


def test_readalls_from_a_clones_host_on_ordinary_ports_lose_no_update(domain):
    # Issue 18, N9: any user on hostb READALLs from the master again and again while
    # writes are made; the master's queue for hostb must survive it (only hostb's
    # address with a reserved port and a transfer taken whole counts as its copy).
    import subprocess
    a, b = domain.h["hosta"], domain.h["hostb"]
    attacker = subprocess.Popen(b.wrap([sys.executable, "-c",
                                        ATTACKER.replace("SECONDS", "6")]),
                                env=b.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        time.sleep(0.5)
        w = _writer(domain, 100, 61)
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    finally:
        out, err = attacker.communicate(timeout=60)
    assert attacker.returncode == 0, err
    assert int(out) > 10
    # no RESYNC, no cleanup_wait: the pushes alone bring hostb in step
    took = _converged(domain, b, 10)
    print(f"MEASURE replication readalls_from_clone_host={out.strip()} converged_s={took:.1f}")
    assert dump(b) == dump(a)
    assert "not taken as the clone's copy" in (domain.logs / "hosta.log").read_text(
        errors="replace")


FLOOD = textwrap.dedent("""
    import asyncio
    from netinfo.client import Client
    from netinfo.client import binding
    from netinfo.wire.protocol import Proc
    async def main():
        _, port = await binding.getregister("10.77.0.1", "network")
        c = await Client.connect("10.77.0.1", port, "network", privileged=False)
        for _ in range(4):
            await asyncio.gather(*(c.call(Proc.RESYNC) for _ in range(500)))
            await asyncio.sleep(0.5)
        await c.close()
    asyncio.run(main())
""")


def test_anonymous_resyncs_open_no_socket_each(domain):
    # Issue 18, N8: while hostc is unreachable (out of date), 2,000 anonymous RESYNCs
    # from hostb. Each used to make the master open a connection to hostc (5,000
    # descriptors, EMFILE, megabytes of log); now one is in flight per clone.
    import os
    import subprocess
    a, b, c = (domain.h[n] for n in HOSTS)
    log = domain.logs / "hosta.log"
    lines = log.read_text(errors="replace").count("RESYNC to clone 10.77.0.3")
    subprocess.run(["ip", "-n", c.ns, "link", "set", "eth0", "down"], check=True)
    try:
        w = _writer(domain, 20, 71)          # hostc's push fails: it is out of date
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
        time.sleep(3)
        pid = _pid(a)
        assert pid is not None
        base = len(os.listdir(f"/proc/{pid}/fd"))
        flood = subprocess.Popen(b.wrap([sys.executable, "-c", FLOOD]), env=b.env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        most = base
        while flood.poll() is None:
            most = max(most, len(os.listdir(f"/proc/{pid}/fd")))
            time.sleep(0.02)
        _, err = flood.communicate()
        assert flood.returncode == 0, err
        for _ in range(50):                  # the RESYNCs' aftermath
            most = max(most, len(os.listdir(f"/proc/{pid}/fd")))
            time.sleep(0.05)
    finally:
        subprocess.run(["ip", "-n", c.ns, "link", "set", "eth0", "up"], check=True)
    print(f"MEASURE replication resync_flood=2000 descriptors={base}->{most}")
    assert most - base <= 10, (base, most)
    new_lines = log.read_text(errors="replace").count("RESYNC to clone 10.77.0.3") - lines
    assert new_lines <= 2, new_lines
    _converged(domain, c, 20)


def test_niutil_resync_on_both_roles(domain):
    a, b, c = (domain.h[n] for n in HOSTS)
    # on a clone: it checks its copy against the master (spec §4.4 RESYNC)
    r = tool(c, "niutil", "-resync", "-t", "127.0.0.1/network")
    assert r.returncode == 0 and r.stderr == ""
    # on the master: it pushes RESYNC to its clones, which copy nothing new
    before = stats(b)["last_sync"]
    time.sleep(1.1)  # last_sync has a one-second resolution
    r = tool(a, "niutil", "-resync", "-t", "127.0.0.1/network")
    assert r.returncode == 0 and r.stderr == ""
    wait_until(lambda: stats(b)["last_sync"] != before, 15, 0.3)
    assert stats(b)["checksum"] == stats(a)["checksum"]


# -- promotion (beyond the original; keep this test last: it changes the roles) -----------

def test_promote_a_clone_when_the_master_is_gone(domain):
    a, b, c = (domain.h[n] for n in HOSTS)
    a.stop_all()                                    # the master host goes away
    tool(b, "nidomain", "-p", "network")
    wait_until(lambda: stats(b)["tag"][:2] == ["network", "master"], 15)
    out = b.python(WRITER.replace("N, SEED", "200, 51"), timeout=300)
    assert out.strip() == "200"
    # the other clone follows the new master
    wait_until(lambda: stats(c)["checksum"] == stats(b)["checksum"], 20, 0.3)
    assert stats(c)["master_server"] == ["10.77.0.2/network"]
    assert dump(c) == dump(b)
    assert "master_server: 10.77.0.2/network" in tool(c, "nidomain", "-s", "network").stdout
    # the old master comes back and hears hostb claim to be the master: it says so and
    # stays the master (issue 18, N5: never a role change on a peer's word)
    log = domain.logs / "hosta-2.log"
    a.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(a.dir),
             "--portmapper", "embedded", "--bind", "0.0.0.0"], log)
    wait_until(lambda: "says it is the master" in log.read_text(errors="replace"), 30, 0.5)
    assert stats(a)["tag"][:2] == ["network", "master"]
    assert not list((a.dir / "network.nidb").glob("*.mastered-*"))
    # the operator demotes it (root master written there, as root): it keeps the
    # database it mastered aside, becomes hostb's clone and copies the domain
    tool(a, "niutil", "-createprop", "-t", "127.0.0.1/network", "/", "master",
         "hostb/network")
    wait_until(lambda: stats(a)["tag"][:2] == ["network", "clone"], 30, 0.5)
    wait_until(lambda: stats(a)["checksum"] == stats(b)["checksum"], 30, 0.3)
    assert dump(a) == dump(b)
    kept = list((a.dir / "network.nidb").glob("netinfo.sqlite.mastered-*"))
    assert len(kept) == 1 and f"kept as {kept[0]}" in log.read_text(errors="replace")
    states = tool(b, "nidomain", "-s", "network").stdout
    assert "tag: network master 2" in states, states
