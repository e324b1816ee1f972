"""Issue 18, second round, findings N4, N7, N12, N17 and N18 replayed from a second test host
(network namespaces, tests/netns.py): the attacker has nothing but the wire (raw sockets,
the project's RPC codecs and client, raw HTTP).

Hosts: ``victim`` (10.77.0.1) runs the master, the web manager or nibindd; ``attacker``
(10.77.0.2, and for N17 more addresses of its own) sends the packets; ``bystander``
(10.77.0.3) is an ordinary client that must still be served; ``server`` (10.77.0.4) runs
the netinfod behind the manager for N12, so that the manager reaches it from a
non-loopback address as a manager on another host does. The loopback versions of these
tests are in tests/test_quota.py (N4), tests/test_limits.py (N7),
tests/test_web_security.py (N12), tests/test_snapshot_streams.py (N17) and
tests/test_replication_bounds.py (N18); each failed before the fix docs/security.md
names.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .netns import available, wait_until
from .test_security_hosts import _log, _stop, network_of

pytestmark = pytest.mark.slow

REASON = available()
HOSTS = {"victim": 1, "attacker": 2, "bystander": 3, "server": 4}
NI_PORT = 1800


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    yield from network_of(tmp_path_factory, HOSTS, "hosts2")


def _netinfod(host, directory: Path, tag: str, *extra: str):
    """A new master of *tag* (the standard directories: /printers has ``_writers`` ``*``)
    served on *host*'s address only, port :data:`NI_PORT`; started, with its log."""
    directory.mkdir()
    log = directory / "netinfod.log"
    proc = host.spawn([sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(directory),
                       "--bind", host.addr, "--port", str(NI_PORT), "-m", "--populate",
                       "-n", *extra, tag], log)
    wait_until(lambda: f"serving {tag}" in _log(log), 60, 0.3)
    return proc, log


def _db_bytes(directory: Path) -> int:
    """What the domain's files take on disk (database, WAL, anything beside them)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()
               and p.suffix != ".log")


CLIENT_HEAD = textwrap.dedent("""
    import asyncio, json, time
    from netinfo.client import Client
    from netinfo.errors import NiError, Status
""")


# -- N4: the anonymous quota, from another host -----------------------------------------------

# The victim's superuser (a reserved port, from the victim's own address): sets the quota,
# or writes a directory in /printers and counts what is there.
SUPERUSER = CLIENT_HEAD + textwrap.dedent("""
    async def main():
        c = await Client.connect(V, PORT, TAG, privileged=True)
        out = {}
        try:
            root = await c.self_id(0)
            for name, value in SET:
                await c.createprop(root, name, [value])
            if WRITE:
                pr = await c.pathsearch("/printers")
                try:
                    await c.create(pr, [("name", [WRITE]), ("note", ["x" * 20000])])
                    out["wrote"] = "ok"
                except NiError as e:
                    out["wrote"] = Status(e.status).name
            pr = await c.pathsearch("/printers")
            out["printers"] = len((await c.list(pr, "name"))[0])
        finally:
            await c.close()
        print(json.dumps(out))
    asyncio.run(main())
""")


def _superuser(host, tag: str, set_props=(), write: str = "") -> dict:
    code = (f"V, PORT, TAG, SET, WRITE = {host.addr!r}, {NI_PORT}, {tag!r}, "
            f"{list(set_props)!r}, {write!r}\n" + SUPERUSER)
    return json.loads(host.python(code, timeout=90))


def test_n4_anonymous_writes_from_another_host_stop_at_the_quota(net):
    """The victim's master serves the standard /printers (``_writers`` ``*``) on its
    address; its superuser sets ``anonymous_quota_dirs`` 50. From the attacker, anonymous
    CREATEs: 50 taken, then NI_NOSPACE for every further one, small or carrying 60 KB
    (what grew a database by 1.9 GB before the quota); the files grow by what the 50 hold,
    not by what was sent; the victim's superuser writes on."""
    victim, attacker = net.h["victim"], net.h["attacker"]
    d = net.tmp / "n4"
    proc, log = _netinfod(victim, d, "open")
    try:
        got = _superuser(victim, "open", [("anonymous_quota_dirs", "50")])
        assert got["printers"] == 0, got
        before = _db_bytes(d)
        out = attacker.python(f"V, PORT = {victim.addr!r}, {NI_PORT}\n" + CLIENT_HEAD
                              + textwrap.dedent("""
            async def main():
                c = await Client.connect(V, PORT, "open", privileged=False)
                statuses, sent, t0 = [], 0, time.monotonic()
                pr = await c.pathsearch("/printers")
                for i in range(400):
                    big = i >= 60            # after the quota: 60 KB a directory
                    props = [("name", [f"evil{i}"]), ("_writers", ["*"])]
                    if big:
                        props.append(("junk", ["j" * 60000]))
                    try:
                        _, pr = await c.create(pr, props)
                        statuses.append("OK")
                    except NiError as e:
                        statuses.append(Status(e.status).name)
                        pr = await c.pathsearch("/printers")
                    sent += 60000 if big else 0
                await c.close()
                print(json.dumps({"statuses": statuses, "sent": sent,
                                  "took": time.monotonic() - t0}))
            asyncio.run(main())
        """), timeout=300)
        got = json.loads(out)
        statuses = got["statuses"]
        grew = _db_bytes(d) - before
        print(f"MEASURE N4 {len(statuses)} anonymous CREATEs from another host in "
              f"{got['took']:.1f} s ({got['sent'] / 2**20:.0f} MiB of values sent): "
              f"{statuses.count('OK')} taken, the rest "
              f"{sorted(set(statuses[50:]))}; the files grew {grew / 1024:.0f} KiB")
        assert statuses[:50] == ["OK"] * 50, statuses
        assert statuses[50:] == ["NOSPACE"] * 350, statuses
        assert grew < 4 * 2**20, grew             # 21 MB sent; the 50 are a few KB
        # the superuser, on the victim's host by a reserved port, writes on
        got = _superuser(victim, "open", write="by root")
        assert got == {"wrote": "ok", "printers": 51}, got
        assert "Traceback" not in _log(log), _log(log)
    finally:
        _stop(victim, proc)


# -- N7: nesting depth, from another host -----------------------------------------------------

def test_n7_an_anonymous_chain_from_another_host_stops_at_the_maximum_depth(net):
    """From the attacker, a chain of anonymous CREATEs in /printers (each directory
    ``_writers`` ``*``, so the next can be made in it): levels 2 to 256 are taken; the
    CREATE at level 257 is NI_NOSPACE (before, a chain 10,000 deep was built), while
    another directory at level 256 is still taken (the depth refused, not the quota)."""
    from netinfo.wire.limits import MAX_DEPTH
    victim, attacker = net.h["victim"], net.h["attacker"]
    d = net.tmp / "n7"
    proc, log = _netinfod(victim, d, "deep")
    try:
        out = attacker.python(f"V, PORT, MAX = {victim.addr!r}, {NI_PORT}, {MAX_DEPTH}\n"
                              + CLIENT_HEAD + textwrap.dedent("""
            async def main():
                c = await Client.connect(V, PORT, "deep", privileged=False)
                t0 = time.monotonic()
                cur = await c.pathsearch("/printers")      # level 1
                level, made, refused = 1, [], {}
                parent = None
                while level < MAX + 5:
                    try:
                        new, _ = await c.create(cur, [("name", [f"l{level + 1}"]),
                                                      ("_writers", ["*"])])
                    except NiError as e:
                        refused[level + 1] = Status(e.status).name
                        break
                    level += 1
                    made.append(level)
                    parent, cur = cur, new
                # a sibling at the deepest level taken: still allowed
                parent = await c.self_id(parent.object)
                try:
                    await c.create(parent, [("name", ["sibling"])])
                    sibling = "OK"
                except NiError as e:
                    sibling = Status(e.status).name
                await c.close()
                print(json.dumps({"deepest": level, "made": len(made), "refused": refused,
                                  "sibling": sibling, "took": time.monotonic() - t0}))
            asyncio.run(main())
        """), timeout=300)
        got = json.loads(out)
        print(f"MEASURE N7 anonymous chain from another host: levels 2-{got['deepest']} "
              f"taken in {got['took']:.1f} s, level {got['deepest'] + 1} "
              f"{got['refused']}")
        assert got["deepest"] == MAX_DEPTH == 256, got
        assert got["made"] == MAX_DEPTH - 1, got
        assert got["refused"] == {str(MAX_DEPTH + 1): "NOSPACE"}, got
        assert got["sibling"] == "OK", got
        assert "Traceback" not in _log(log), _log(log)
    finally:
        _stop(victim, proc)


# -- N12: password guessing through a manager on another host ---------------------------------

WEB_PORT = 8080
PASSWORD = "right horse"

# Logs in through the manager as a browser would: the login page (a session cookie and
# its CSRF token), then the form; prints each attempt's status.
LOGIN = textwrap.dedent("""
    import http.client, json, re, sys, time, urllib.parse
    def attempt(password):
        c = http.client.HTTPConnection(W, PORT, timeout=30)
        c.request("GET", "/login?" + urllib.parse.urlencode({"d": D}))
        r = c.getresponse()
        page = r.read().decode()
        cookie = r.getheader("Set-Cookie").split(";")[0]
        token = re.search(r'action="[^"?]*\\?csrf=([^"&]+)"', page).group(1)
        body = urllib.parse.urlencode({"d": D, "user": "root", "password": password,
                                       "next": "/browse"})
        c.request("POST", f"/login?csrf={token}", body, {
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, "Too many failed logins" in text
    out = []
    for i, password in enumerate(PLAN):
        t = time.monotonic()
        status, limited = attempt(password)
        out.append([status, limited, round(time.monotonic() - t, 2)])
        # wrong guesses: until REFUSED of them were tried and two were not (429)
        if [s for s, _, _ in out].count(403) >= REFUSED and \
                [s for s, _, _ in out].count(429) >= 2:
            break
        if status == 429:
            time.sleep(0.5)
    print(json.dumps(out))
""")


def _logins(host, victim, spec: str, plan: list, refused: int = 0) -> list:
    head = (f"W, PORT, D, PLAN, REFUSED = {victim.addr!r}, {WEB_PORT}, {spec!r}, "
            f"{plan!r}, {refused}\n")
    return json.loads(host.python(head + LOGIN, timeout=120))


def test_n12_guesses_through_a_manager_never_lock_the_server_out(net):
    """netinfo-web on the victim's address manages ``sec``, served by a netinfod on
    another host (``server``), whose root has a password: the manager reaches it from a
    non-loopback address, where netinfod's own limit (5 failures from one address lock
    it out for 60 s) applies. The attacker posts wrong passwords for root: the first
    CLIENT_FREE are refused (403), past them it must wait (429) and waiting it out buys
    one more guess, until 5 wrong passwords (AUTH_FAILURES) were tried. Before the fix
    each went to netinfod, which then refused the manager's every credential: a login
    with the right password from the bystander failed for 60 s. Now netinfod never hears
    a wrong password and the bystander logs in at once."""
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    from netinfo.server.database import AUTH_FAILURES
    from netinfo.web.lock import CLIENT_FREE
    victim, attacker, bystander, server = (net.h[n] for n in HOSTS)
    d = net.tmp / "n12"
    d.mkdir()
    pw = d / "password"
    pw.write_text(PASSWORD + "\n")
    ni, ni_log = _netinfod(server, d / "db", "sec", "--root-password-file", str(pw))
    spec = f"sec@{server.addr}:{NI_PORT}"
    web_log = d / "web.log"
    web = victim.spawn([sys.executable, "-m", "netinfo.web.server", "--domain", spec,
                        "--bind", f"{victim.addr}:{WEB_PORT}"], web_log)
    try:
        wait_until(lambda: "serving" in _log(web_log), 60, 0.3)
        # wrong guesses at once, waiting 0.5 s after each 429, until AUTH_FAILURES of
        # them were tried (what locked netinfod out) and two were refused untried
        got = _logins(attacker, victim, spec, [f"guess{i}" for i in range(40)],
                      refused=AUTH_FAILURES)
        # the bystander, through the same manager, with the right password, at once
        mine = _logins(bystander, victim, spec, [PASSWORD])
        print(f"MEASURE N12 guesses from another host through the manager: {got}; "
              f"then the right password from a third host: {mine}")
        statuses = [s for s, _, _ in got]
        # CLIENT_FREE are free and the next is tried (it starts a wait); past them
        # the attacker waits, and what it sends while waiting is refused untried
        assert statuses[:CLIENT_FREE + 1] == [403] * (CLIENT_FREE + 1), got
        assert statuses.count(403) == AUTH_FAILURES and statuses.count(429) == 2, got
        assert all(limited for s, limited, _ in got if s == 429), got
        assert mine[0][0] == 303, (mine, _log(ni_log))
        assert all(took < 10 for _, _, took in got + mine), (got, mine)
        text = _log(ni_log)
        assert "authentication failed" not in text and "refusing its credentials" \
            not in text, text
        assert "Traceback" not in _log(web_log), _log(web_log)
    finally:
        _stop(victim, web)
        _stop(server, ni)


# -- N17: connections that never read, at nibindd and its portmapper --------------------------

RPC_LIB = textwrap.dedent("""
    import json, re, resource, socket, struct, sys, time
    from netinfo.wire import rpc
    from netinfo.wire.nibind import NIBIND_PROG, NIBIND_VERS, BindProc
    from netinfo.wire.portmap import (IPPROTO_TCP, PMAP_PROG, PMAP_VERS, Mapping, PmapProc,
                                 decode_dump)
    DUMP = rpc.frame(rpc.encode_call(1, PMAP_PROG, PMAP_VERS, PmapProc.DUMP))
    PING = rpc.frame(rpc.encode_call(1, NIBIND_PROG, NIBIND_VERS, BindProc.PING))
""")

# The attacker: from each of its addresses, PER connections to the portmapper and PER to
# nibindd's TCP port, a third sending nothing, a third calls whose replies it never reads
# (a small receive buffer), a third half a record; it holds them until killed.
FLOOD = RPC_LIB + textwrap.dedent("""
    resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
    socks, failed = [], 0
    for i in range(PER):
        for src in SOURCES:
            for port, call in ((111, DUMP), (NB_PORT, PING)):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
                s.settimeout(5)
                try:
                    s.bind((src, 0))
                    s.connect((V, port))
                    s.sendall((b"", call * 400, call[:6])[i % 3])
                except OSError:
                    failed += 1
                socks.append(s)
    print("holding", len(socks), "failed", failed, flush=True)
    time.sleep(600)
""")

# The bystander: over TCP, the portmapper's GETPORT and DUMP (what rpcinfo -p does) and
# nibindd's PING; over UDP, GETPORT; each timed, a few rounds.
PROBE = RPC_LIB + textwrap.dedent("""
    import asyncio
    from netinfo.client import binding
    def record(s):
        out = b""
        while True:
            head = b""
            while len(head) < 4:
                got = s.recv(4 - len(head))
                if not got:
                    raise ConnectionError("closed")
                head += got
            n = struct.unpack(">I", head)[0]
            body = b""
            while len(body) < (n & 0x7FFFFFFF):
                got = s.recv((n & 0x7FFFFFFF) - len(body))
                if not got:
                    raise ConnectionError("closed")
                body += got
            out += body
            if n & 0x80000000:
                return out
    def tcp(port, prog, vers, proc, args=b""):
        s = socket.create_connection((V, port), 10)
        try:
            s.sendall(rpc.frame(rpc.encode_call(9, prog, vers, proc, args)))
            xid, u = rpc.decode_reply(record(s))
            assert xid == 9
            return u
        finally:
            s.close()
    def timed(fn):
        t = time.monotonic()
        try:
            v = fn()
        except Exception as e:
            v = repr(e)
        return [v, round(time.monotonic() - t, 3)]
    rounds = []
    for _ in range(ROUNDS):
        rounds.append({
            "getport": timed(lambda: tcp(111, PMAP_PROG, PMAP_VERS, PmapProc.GETPORT,
                Mapping(NIBIND_PROG, NIBIND_VERS, IPPROTO_TCP, 0).encode()).unpack_uint()),
            "dump": timed(lambda: sorted({m.prog for m in decode_dump(
                tcp(111, PMAP_PROG, PMAP_VERS, PmapProc.DUMP))})),
            "ping": timed(lambda: tcp(NB_PORT, NIBIND_PROG, NIBIND_VERS, BindProc.PING)
                          and "ok"),
            "udp getport": timed(lambda: asyncio.run(binding.pmap_getport(
                V, NIBIND_PROG, NIBIND_VERS, IPPROTO_TCP, timeout=5.0))),
        })
        time.sleep(0.5)
    print(json.dumps(rounds))
""")


def _established(host, ports: set[int]) -> dict[int, dict[str, int]]:
    """Established TCP connections at *host*'s *ports*: port → peer address → count."""
    r = host.run(["ss", "-tnH", "state", "established"], timeout=30)
    assert r.returncode == 0, r.stderr
    out: dict[int, dict[str, int]] = {p: {} for p in ports}
    for line in r.stdout.splitlines():
        local, peer = line.split()[-2:]
        port = int(local.rsplit(":", 1)[1])
        if port in out:
            addr = peer.rsplit(":", 1)[0]
            out[port][addr] = out[port].get(addr, 0) + 1
    return out


def test_n17_connections_that_never_read_do_not_shut_the_portmapper_out(net):
    """nibindd with its embedded portmapper on the victim's address. From the attacker's
    nine addresses (its own, four more on the same network, two on each of two networks
    of its own), 1,440 TCP connections to the portmapper and nibindd that send nothing,
    send calls and never read a reply, or hold half a record. Before the fix 256 such
    connections shut both out for 2 minutes (every newcomer closed); now one address
    holds at most 64, one network 128, and at the cap of 256 the network and address
    holding the most make room: the bystander's GETPORT, DUMP and PING over
    TCP, and GETPORT over UDP, are answered within seconds, while the flood is held."""
    import subprocess

    from netinfo.wire.nibind import NIBIND_PROG
    from netinfo.wire.portmap import PMAP_PROG
    victim, attacker, bystander = net.h["victim"], net.h["attacker"], net.h["bystander"]
    d = net.tmp / "n17"
    (d / "db").mkdir(parents=True)
    log = d / "nibindd.log"
    nb = victim.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(d / "db"),
                       "--portmapper", "embedded", "--bind", victim.addr], log)
    # four more addresses on the attacker's network and two each on two networks of its
    # own (the victim routes them to the attacker's link): 3 networks, 8 addresses
    extra = ["10.77.0.20", "10.77.0.21", "10.77.0.22", "10.77.0.23",
             "10.77.1.2", "10.77.1.3", "10.77.2.2", "10.77.2.3"]
    routes = ["10.77.1.0/24", "10.77.2.0/24"]
    flood = None
    try:
        m = wait_until(lambda: re.search(r"serving .* tcp=(\d+)", _log(log)), 60, 0.3)
        nb_port = int(m.group(1))
        head = f"V, NB_PORT, ROUNDS = {victim.addr!r}, {nb_port}, 3\n"
        # the bystander is served before the flood, and the attack does not stop it
        before = json.loads(bystander.python(head + PROBE, timeout=120))
        for a in extra:
            subprocess.run(["ip", "-n", attacker.ns, "addr", "add", f"{a}/24", "dev",
                            "eth0"], check=True, capture_output=True)
        for r in routes:
            subprocess.run(["ip", "-n", victim.ns, "route", "add", r, "dev", "eth0"],
                           check=True, capture_output=True)
        flood_log = d / "flood.log"
        flood = attacker.spawn([sys.executable, "-c",
                                f"V, NB_PORT, PER, SOURCES = {victim.addr!r}, {nb_port}, "
                                f"80, {[attacker.addr, *extra]!r}\n" + FLOOD], flood_log)
        held = wait_until(lambda: re.search(r"holding (\d+) failed (\d+)", _log(flood_log)),
                          120, 0.3)
        during = json.loads(bystander.python(head + PROBE, timeout=120))
        kept = _established(victim, {111, nb_port})
        print(f"MEASURE N17 {held.group(1)} connections that never read from 9 addresses "
              f"of another host ({held.group(2)} failed to connect); the victim keeps "
              f"{ {p: sum(n.values()) for p, n in kept.items()} } (port: connections); the "
              f"bystander's calls before {before[0]}, during {during}")
        for rounds in (before, during):
            for one in rounds:
                assert one["getport"][0] == nb_port, rounds
                assert one["dump"][0] == sorted({PMAP_PROG, NIBIND_PROG}), rounds
                assert one["ping"][0] == "ok", rounds
                assert one["udp getport"][0] == nb_port, rounds
                assert max(took for _, took in one.values()) < 3.0, rounds
        for port, peers in kept.items():     # the bounds, seen from outside
            assert sum(peers.values()) <= 256 and max(peers.values()) <= 64, (port, peers)
            for network in ("10.77.0.", "10.77.1.", "10.77.2."):
                assert sum(n for a, n in peers.items() if a.startswith(network)) <= 128
        assert nb.poll() is None, _log(log)
        assert "Traceback" not in _log(log), _log(log)
    finally:
        if flood is not None:
            _stop(attacker, flood)
        for a in extra:
            subprocess.run(["ip", "-n", attacker.ns, "addr", "del", f"{a}/24", "dev",
                            "eth0"], capture_output=True)
        for r in routes:
            subprocess.run(["ip", "-n", victim.ns, "route", "del", r, "dev", "eth0"],
                           capture_output=True)
        _stop(victim, nb)


# -- N18: a master that sends more than a clone keeps -------------------------------------------

CLONE_STATE = textwrap.dedent("""
    import asyncio, json
    from netinfo.client import binding
    from netinfo.client import Client
    async def main():
        _, port = await binding.getregister("127.0.0.1", "net")
        c = await Client.connect("127.0.0.1", port, "net", privileged=True)
        users = await c.pathsearch("/users")
        names = [v[0] for _, v in (await c.list(users, "name"))[0] if v]
        await c.close()
        print(json.dumps(names))
    asyncio.run(main())
""")


def test_n18_a_master_on_another_host_cannot_fill_a_clones_disk(net):
    """The victim serves a clone of ``net`` (50 users) whose master is at the attacker's
    address; the attacker serves a master of ``net`` there (behind its own nibindd and
    portmapper) that holds 12,000 users, some 5 MB on the wire, and lists the victim as
    its clone, so it answers the clone's READALL. The victim's nibindd runs its netinfods
    with ``--max-copy-mb 1``: the copy is abandoned past 1 MB with one log line naming the
    option, the clone keeps serving its 50 users, and its directory grows by less than
    the copy. Before the fix a copy had no bound: a master could fill the clone's disk."""
    from netinfo.model import NI_INDEX_NULL, NiId
    from netinfo.server.database import open_database
    from netinfo.server.service import SUPERUSER
    from netinfo.server.templates import create_clone, ensure_dir

    from .test_security_hosts import _registered, _start_nibindd, _users_db
    victim, attacker = net.h["victim"], net.h["attacker"]
    vdir, adir = net.tmp / "n18-victim", net.tmp / "n18-attacker"
    vdir.mkdir()
    adir.mkdir()
    _users_db(adir, "net", "attacker", attacker.addr, 12000, "evil" + "e" * 200,
              {"victim": victim.addr})
    with open_database(vdir, "net", create=True) as db:
        svc = db.service_for_tests()
        create_clone(svc, "attacker", attacker.addr, "net")
        users = NiId(ensure_dir(svc, "users"), 0)
        for i in range(50):
            users = svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, users),
                                    [("name", [f"old{i}"])], NI_INDEX_NULL)[1]
        db.commit()
    before = _db_bytes(vdir)
    started = []
    try:
        started.append((attacker, _start_nibindd(attacker, adir, net.tmp / "n18-a.log")))
        wait_until(lambda: _registered(attacker, "net"), 60, 0.5)
        log = net.tmp / "n18-v.log"
        started.append((victim, victim.spawn(
            [sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(vdir), "--portmapper",
             "embedded", "--bind", "0.0.0.0", "--max-copy-mb", "1"], log)))
        wait_until(lambda: "the copy exceeds" in _log(log), 90, 0.3)
        time.sleep(1.0)      # what would follow: the rest of the copy, the swap
        names = json.loads(victim.python(CLONE_STATE, timeout=90))
        grew = _db_bytes(vdir) - before
        line = next((x for x in _log(log).splitlines() if "exceeds" in x), "")
        print(f"MEASURE N18 a master on another host sent a 12,000-user copy to a clone "
              f"with --max-copy-mb 1: {line.split(': ', 1)[-1]!r}; the clone serves "
              f"{len(names)} users, its directory grew {grew / 1024:.0f} KiB")
        assert sorted(names) == sorted(f"old{i}" for i in range(50)), names[:5]
        assert "the copy exceeds 1 MB (netinfod --max-copy-mb): abandoned" in line, line
        assert grew < 2 * 2**20, grew
        assert not [p for p in vdir.rglob("*") if p.name.endswith(".temp")]
        assert "Traceback" not in _log(log), _log(log)
    finally:
        for host, proc in reversed(started):
            _stop(host, proc)
