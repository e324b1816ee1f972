"""Security findings reproduced as an attacker on a second test host would (issue
"security"): the wire only, from another network namespace.

Host A ("victim") runs a root nibindd (embedded portmapper on 111) and a nibindd as an
ordinary user (its portmapper on A's address, port 1111); host B ("attacker") sends
packets. Each test failed on the code before the fix it names.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from .conftest import SRC
from .netns import Network, available, wait_until

pytestmark = pytest.mark.slow

SYSTEM_PYTHON = "/usr/bin/python3"   # an ordinary user cannot read root's own Python
REASON = available() or (None if os.path.exists(SYSTEM_PYTHON) and shutil.which("setpriv")
                         else "needs /usr/bin/python3 and setpriv")
NOBODY = pwd.getpwnam("nobody").pw_uid if REASON is None else 0
USER_PMAP = 1111

# What the attacker runs on B: raw datagrams built with our codecs, no library state.
ATTACK_LIB = textwrap.dedent("""
    import os, socket, struct, sys
    from netinfo import rpc
    from netinfo.portmap import encode_callit_args, Mapping
    from netinfo.nibind import encode_tag

    def call(host, port, prog, vers, proc, args=b"", auth=None, timeout=1.5):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        xid = int.from_bytes(os.urandom(4), "big")
        s.sendto(rpc.encode_call(xid, prog, vers, proc, args, auth), (host, port))
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            return None
        finally:
            s.close()
        return rpc.decode_reply(data)[1]

    def callit(host, port, prog, vers, proc, args=b""):
        return call(host, port, 100000, 2, 5, encode_callit_args(prog, vers, proc, args))
""")


def _nobody_tree() -> Path:
    """A copy of the sources and a database directory an ordinary user can use."""
    top = Path(tempfile.mkdtemp(prefix="ni-sec-", dir="/tmp"))
    os.chmod(top, 0o755)
    shutil.copytree(SRC, top / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (top / "db").mkdir()
    os.chown(top / "db", NOBODY, NOBODY)
    return top


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    logs = tmp_path_factory.mktemp("sec")
    net = Network()
    top = _nobody_tree()
    try:
        a = net.add_host("victim", 1)
        b = net.add_host("attacker", 2)
        root_dir = logs / "root"
        a.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--init", "--dir", str(root_dir),
                 "--portmapper", "embedded", "--bind", "0.0.0.0"], logs / "root.log")
        user_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(top / "src"),
                    "HOME": str(top / "db"), "PYTHONDONTWRITEBYTECODE": "1",
                    "NETINFO_PORTMAPPER": f"{a.addr}:{USER_PMAP}", "NETINFO_BROADCAST": "off"}
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        out = open(logs / "user.log", "w")
        a.procs.append(subprocess.Popen(
            a.wrap([*as_nobody, SYSTEM_PYTHON, "-m", "netinfo.cli.nibindd", "--init",
                    "--dir", str(top / "db"), "--portmapper", "embedded",
                    "--bind", "0.0.0.0"]),
            stdout=out, stderr=subprocess.STDOUT, env=user_env, start_new_session=True))
        out.close()
        net.a, net.b, net.root_dir, net.user_dir = a, b, root_dir, top / "db"
        net.user_env, net.as_nobody, net.logs = user_env, as_nobody, logs
        for port in (111, USER_PMAP):
            wait_until(lambda port=port: "['local', 'network']" in attack(
                net, f"print(sorted(t for t in registered({port})))"), 60)
        yield net
    finally:
        net.close()
        shutil.rmtree(top, ignore_errors=True)


def attack(net, code: str) -> str:
    """Run *code* on the attacker's host, after the attack library."""
    helpers = textwrap.dedent(f"""
        from netinfo.nibind import decode_listreg_res
        def registered(port):
            nib = pmap_port(port, 200100001, 1)
            u = call({net.a.addr!r}, nib, 200100001, 1, 4) if nib else None
            if u is None:
                return []
            return [r.tag for r in decode_listreg_res(u)]
        def pmap_port(port, prog, vers, prot=17):
            u = call({net.a.addr!r}, port, 100000, 2, 3,
                     Mapping(prog, vers, prot, 0).encode())
            return None if u is None else u.unpack_uint()
        A = {net.a.addr!r}
    """)
    return net.b.python(ATTACK_LIB + helpers + textwrap.dedent(code), timeout=120)


def victim_log(net) -> str:
    return "".join((net.logs / n).read_text() for n in ("root.log", "user.log"))


# -- finding 1: CALLIT forwarding ---------------------------------------------------------------

@pytest.mark.parametrize("port", [111, USER_PMAP], ids=["root", "user"])
def test_callit_cannot_reach_the_portmapper_itself(net, port):
    out = attack(net, f"""
        nib = pmap_port({port}, 200100001, 1)
        # UNSET NIBIND, SET it elsewhere, both through CALLIT: no answer, no effect
        print(callit(A, {port}, 100000, 2, 2, Mapping(200100001, 1, 17, 0).encode()))
        print(callit(A, {port}, 100000, 2, 1, Mapping(200100001, 1, 17, 9).encode()))
        print(callit(A, {port}, 100000, 2, 1, Mapping(300000, 1, 17, 9).encode()))
        print(pmap_port({port}, 200100001, 1) == nib != 0, pmap_port({port}, 300000, 1))
    """)
    assert out.splitlines() == ["None", "None", "None", "True 0"], victim_log(net)


@pytest.mark.parametrize("port", [111, USER_PMAP], ids=["root", "user"])
def test_callit_cannot_administer_nibindd(net, port):
    out = attack(net, f"""
        for proc in (2, 5, 7):      # UNREGISTER, CREATEMASTER, DESTROYDOMAIN
            print(callit(A, {port}, 200100001, 1, proc, encode_tag("network")))
        print(sorted(registered({port})))
        # what anyone may call still goes through: PING, and LISTREG
        print(callit(A, {port}, 200100001, 1, 0) is not None)
        print(callit(A, {port}, 200100001, 1, 4) is not None)
    """)
    assert out.splitlines() == ["None", "None", "None", "['local', 'network']", "True",
                                "True"], victim_log(net)
    for d in (net.root_dir, net.user_dir):
        assert (d / "network.nidb" / "netinfo.sqlite").exists()


def test_nested_callit_is_never_forwarded(net):
    out = attack(net, """
        import time, resource
        inner = encode_callit_args(200100001, 1, 0, b"")
        for _ in range(200):
            inner = encode_callit_args(100000, 2, 5, inner)
            if len(inner) > 60000:
                break
        t = time.monotonic()
        print(call(A, 111, 100000, 2, 5, inner, timeout=1.0))
        print(callit(A, 111, 200100001, 1, 0) is not None)   # still answering
    """)
    assert out.splitlines() == ["None", "True"]


# -- finding 8: a non-root nibindd trusts only its own user ---------------------------------

def test_user_nibindd_refuses_other_local_users(net):
    code = textwrap.dedent(f"""
        import asyncio
        from netinfo import binding
        from netinfo.errors import NiError, Status
        async def main():
            for tag in ("network", "../victim"):
                try:
                    await binding.destroydomain(tag, host={net.a.addr!r}, timeout=3)
                    print("destroyed", tag)
                except NiError as e:
                    print(tag, Status(e.status).name)
        asyncio.run(main())
    """)
    env = dict(net.user_env)
    other = ["setpriv", "--reuid=12345", "--regid=12345", "--clear-groups"]
    r = net.a.run([*other, SYSTEM_PYTHON, "-c", code], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["network PERM", "../victim PERM"]
    # the owner itself may administer, but a tag never leaves the directory
    r = net.a.run([*net.as_nobody, SYSTEM_PYTHON, "-c", code.replace(
        '("network", "../victim")', '("../victim",)')], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["../victim NOTAG"]
    assert (net.user_dir / "network.nidb" / "netinfo.sqlite").exists()


# -- finding 2: no empty root password, loopback by default ---------------------------------

def test_new_domains_lock_root_and_bind_loopback(net, tmp_path):
    a = net.a
    d = tmp_path / "fresh"
    log = tmp_path / "fresh.log"
    a.spawn([sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(d), "-m",
             "--populate", "--port", "1700", "fresh"], log)
    wait_until(lambda: "serving fresh" in log.read_text(), 30)
    # from the attacker: nothing listens on A's address
    out = attack(net, """
        import socket
        s = socket.socket()
        s.settimeout(2)
        print(s.connect_ex((A, 1700)))
    """)
    assert out.strip() != "0"
    # on A itself: root is locked; uid 0 with any password is refused
    code = textwrap.dedent("""
        import asyncio
        from netinfo.client import Client
        from netinfo.errors import NiError, Status
        async def main():
            c = await Client.connect("127.0.0.1", 1700, "fresh", privileged=False)
            users = await c.pathsearch("/users")
            _, props = await c.read(await c.pathsearch("/users/root"))
            print(dict(props)["passwd"])
            for pw in ("", "x", "*"):
                c.set_password(pw, uid=0)
                try:
                    await c.create(users, [("name", ["evil"]), ("uid", ["0"])])
                    print("created")
                except NiError as e:
                    print(Status(e.status).name)
        asyncio.run(main())
    """)
    r = a.run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["['*']"] + ["AUTHERROR"] * 3


# -- finding 10: damaged databases are refused, never served in part ---------------------------

def _netinfod(directory: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETINFO_")}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(directory),
                           "--port", "0", *extra, "dmg"], capture_output=True, text=True,
                          timeout=30, env=env, stdin=subprocess.DEVNULL)


def _make_domain(directory: Path, users: int = 300) -> Path:
    from netinfo.database import open_database
    from netinfo.templates import create_master, ensure_dir
    from netinfo.service import SUPERUSER
    from netinfo.model import NI_INDEX_NULL, NiId
    with open_database(directory, "dmg", create=True) as db:
        svc = db.service
        create_master(svc, "dmg", "here", ["127.0.0.1"])
        u = ensure_dir(svc, "users")
        for i in range(users):
            svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(u)),
                            [("name", [f"user{i}"]), ("uid", [str(1000 + i)]),
                             ("passwd", ["x" * 40])], NI_INDEX_NULL)
    return directory / "dmg.nidb" / "netinfo.sqlite"


def test_empty_database_file_is_refused_and_kept(tmp_path):
    f = tmp_path / "dmg.nidb" / "netinfo.sqlite"
    f.parent.mkdir()
    f.write_bytes(b"")
    r = _netinfod(tmp_path)
    assert r.returncode == 2 and "is empty (0 bytes)" in r.stderr and "-m" in r.stderr
    assert "Traceback" not in r.stderr and f.read_bytes() == b""


@pytest.mark.parametrize("damage", ["pages", "bit"])
def test_damaged_database_is_refused_with_a_recovery_hint(tmp_path, damage):
    f = _make_domain(tmp_path)
    data = bytearray(f.read_bytes())
    if damage == "pages":     # overwrite whole pages in the middle (a torn disk write)
        mid = len(data) // 2 // 4096 * 4096
        data[mid:mid + 8192] = os.urandom(8192)
    else:                     # one flipped bit in every page past the header
        for off in range(4096 + 100, len(data), 4096):
            data[off] ^= 0x10
    f.write_bytes(bytes(data))
    before = f.read_bytes()
    r = _netinfod(tmp_path)
    assert r.returncode == 2, r.stderr
    assert "damaged" in r.stderr or "cannot read" in r.stderr, r.stderr
    assert "restore it from a dump" in r.stderr and "Traceback" not in r.stderr
    assert f.read_bytes() == before
