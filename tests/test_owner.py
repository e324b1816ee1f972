"""The owner of an unprivileged domain is its superuser; nipasswd (issue 17 items 2, 3).

A netinfod not run as root takes a local caller whose socket belongs to its own uid for
the superuser (docs/security.md), as root on a reserved port is for a root-run server
(spec §10.2); any other uid is anonymous. These tests run the daemons and the tools as
real subprocesses under two uids (``nobody`` and a made-up one), so they need root: as
an ordinary user they skip. The processes get CAP_DAC_READ_SEARCH (ambient) only so that
they can reach an interpreter installed under root's home; it gives no reserved port, so
they are ordinary users for everything these tests look at.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError, Status
from netinfo.passwords import verify

from .conftest import ROOT_USER, SRC, free_port

try:
    NOBODY = pwd.getpwnam("nobody")
except KeyError:   # pragma: no cover - every Debian has nobody
    NOBODY = None
#: A uid with no account: "another local user".
OTHER = (12345, 12345)

needs_uid_switch = pytest.mark.skipif(
    not ROOT_USER or NOBODY is None or shutil.which("setpriv") is None,
    reason="runs daemons and tools under other uids: needs root, setpriv and a nobody user")


def as_uid(uid: int, gid: int) -> list[str]:
    """The command prefix that runs a program as *uid*/*gid*, without supplementary
    groups (CAP_DAC_READ_SEARCH kept only to reach the interpreter, see above)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]


def nobody() -> list[str]:
    assert NOBODY is not None
    return as_uid(NOBODY.pw_uid, NOBODY.pw_gid)


def other() -> list[str]:
    return as_uid(*OTHER)


class World:
    """A fresh HOME for nobody and a portmapper port of its own; tools run as any uid."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        assert NOBODY is not None
        os.chown(self.home, NOBODY.pw_uid, NOBODY.pw_gid)
        self.pm_port = free_port()
        self.procs: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment (no caller's NETINFO_*, no terminal, HOME fresh)."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                "PYTHONPATH": str(SRC), "NETINFO_PORTMAPPER": f"127.0.0.1:{self.pm_port}",
                "NETINFO_BROADCAST": "off", **extra}

    def tool(self, who: list[str], tool: str, *args: str, stdin: str | None = None,
             **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*who, sys.executable, "-m", f"netinfo.cli.{tool}", *args],
                              input=stdin or "", capture_output=True, text=True,
                              env=self.env(**env), timeout=60)

    def daemon(self, who: list[str], *args: str, ready: str) -> tuple[subprocess.Popen,
                                                                      list[str]]:
        """Start ``python -m netinfo.cli.<args>`` as *who* without a terminal; returns it
        and its stderr lines up to the one starting with *ready*."""
        p = subprocess.Popen([*who, sys.executable, "-m", *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=self.env())
        self.procs.append(p)
        assert p.stderr is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                raise AssertionError(f"{args[0]} exited {p.wait()}: {lines}")
            lines.append(line.rstrip("\n"))
            if line.startswith(ready):
                return p, lines
        raise AssertionError(f"{args[0]} did not start: {lines}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr:
                p.stderr.close()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.stop()


def wait_served(w: World, who: list[str], domain: str = ".") -> None:
    """Until the local domain answers through the portmapper and nibindd."""
    deadline = time.monotonic() + 60
    while True:
        r = w.tool(who, "niutil", "-read", domain, "/users/root")
        if r.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(r.stderr)
        time.sleep(0.3)


@needs_uid_switch
def test_readme_quick_start_as_nobody_then_write_and_unlock(world):
    """The README's command 1 as nobody, without a terminal: root stays locked and the
    daemon says so, naming nipasswd; nobody (the owner) then writes as the README does,
    another uid cannot; nipasswd --stdin gives root a password with which the other uid
    writes as root."""
    w = world
    _, lines = w.daemon(nobody(), "netinfo.cli.nibindd", "--init", "--dir",
                        str(w.home / ".netinfo"), "--portmapper", "embedded",
                        ready="nibindd: serving")
    notice = [x for x in lines if "stays locked" in x]
    assert len(notice) == 1 and "nipasswd" in notice[0] and "as nobody" in notice[0], lines
    wait_served(w, nobody())
    # the owner writes, as the README's examples do
    r = w.tool(nobody(), "niutil", "-create", ".", "/users/bob")
    assert (r.returncode, r.stderr) == (0, "")
    r = w.tool(nobody(), "niutil", "-create", "/", "/users/bob")
    assert (r.returncode, r.stderr) == (0, "")
    # another uid is anonymous: refused, and so is root without a reserved port
    for who, env in ((other(), {}), ([], {"NETINFO_PRIVILEGED": "0"})):
        r = w.tool(who, "niutil", "-create", ".", "/users/carol", **env)
        assert r.returncode == 104 and "Permission denied" in r.stderr, r.stderr
    # root on a reserved port stays the superuser of every server on its host
    r = w.tool([], "niutil", "-create", ".", "/users/by-root")
    assert r.returncode == 0, r.stderr
    # root is locked: no password opens it
    r = w.tool(other(), "niutil", "-create", "-u", "root", "-P", "", ".", "/users/carol")
    assert r.returncode == 120 and "Authentication error" in r.stderr
    # the owner unlocks root with nipasswd, from a script
    r = w.tool(nobody(), "nipasswd", "--stdin", "root", stdin="s3cret\n")
    assert r.returncode == 0, r.stderr
    r = w.tool(other(), "niutil", "-create", "-u", "root", "-P", "s3cret", ".",
               "/users/carol")
    assert r.returncode == 0, r.stderr
    r = w.tool(other(), "niutil", "-create", "-u", "root", "-P", "wrong", ".", "/users/dan")
    assert r.returncode == 120
    # a credential from the owner is checked too (netinfo-web acts for others that way)
    r = w.tool(nobody(), "niutil", "-create", "-u", "root", "-P", "wrong", ".", "/users/dan")
    assert r.returncode == 120
    r = w.tool(other(), "niutil", "-read", ".", "/users/carol")
    assert r.returncode == 0 and "name: carol" in r.stdout


@needs_uid_switch
def test_nipasswd_as_the_user_with_its_old_password(world):
    """A user changes its own password from another uid with the old one, where
    _writers_passwd lets it; without the old one, or with a wrong one, nothing changes."""
    w = world
    w.daemon(nobody(), "netinfo.cli.nibindd", "--init", "--dir", str(w.home / "ni"),
             "--portmapper", "embedded", ready="nibindd: serving")
    wait_served(w, nobody())
    for args in (("-create", ".", "/users/bob"),
                 ("-createprop", ".", "/users/bob", "uid", "501"),
                 ("-createprop", ".", "/users/bob", "_writers_passwd", "bob")):
        assert w.tool(nobody(), "niutil", *args).returncode == 0
    r = w.tool(nobody(), "nipasswd", "--stdin", "--hash", "md5", ".", "bob", stdin="first\n")
    assert r.returncode == 0 and "password of bob in domain . changed" in r.stderr

    def stored() -> str:
        r = w.tool(other(), "niutil", "-readprop", ".", "/users/bob", "passwd")
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()
    assert stored().startswith("$1$") and verify("first", stored())
    # another uid: the server refuses without the old password
    r = w.tool(other(), "nipasswd", "--stdin", ".", "bob", stdin="second\n")
    assert r.returncode == 104
    assert r.stderr.startswith("nipasswd: can't set the password of bob in domain .: "
                               "Permission denied"), r.stderr
    r = w.tool(other(), "nipasswd", "--stdin", ".", "bob", stdin="wrong\nsecond\n")
    assert (r.returncode, r.stderr) == (120, "nipasswd: can't authenticate as bob: "
                                             "Authentication error\n")
    assert verify("first", stored())
    r = w.tool(other(), "nipasswd", "--stdin", ".", "bob", stdin="first\nsecond\n")
    assert r.returncode == 0, r.stderr
    assert stored().startswith("$6$") and verify("second", stored())
    # the user's password opens only what _writers_passwd gives: not root's
    r = w.tool(other(), "nipasswd", "--stdin", ".", "root", stdin="second\nx\n")
    assert r.returncode == 120, r.stderr
    # no such user, no terminal, no login name: one line each, no traceback
    r = w.tool(other(), "nipasswd", "--stdin", ".", "nosuch", stdin="x\n")
    assert (r.returncode, r.stderr) == (121, "nipasswd: nosuch: no such user in domain .\n")
    r = w.tool(other(), "nipasswd", ".", "bob")
    assert r.returncode == 1 and "no terminal" in r.stderr and "--stdin" in r.stderr
    r = w.tool(other(), "nipasswd", "--stdin", stdin="x\n")   # uid 12345 has no name
    assert r.returncode == 1 and r.stderr.startswith("nipasswd: cannot tell your login")


@needs_uid_switch
def test_netinfod_owner_is_superuser_other_uids_are_anonymous(world):
    """netinfod -m run by nobody: nobody's connections write, another uid's and root's
    without a reserved port are anonymous, root's reserved port is the superuser; the
    locked root is announced with the nipasswd line that reaches this server."""
    w = world
    port = free_port()
    d = w.home / "db"
    d.mkdir()
    assert NOBODY is not None
    os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)
    _, lines = w.daemon(nobody(), "netinfo.cli.netinfod", "--dir", str(d), "--bind",
                        "127.0.0.1", "--port", str(port), "-m", "--populate", "own",
                        ready="netinfod: serving own")
    assert any(f"'nipasswd own@127.0.0.1:{port} root'" in x and "as nobody" in x
               for x in lines), lines
    target = f"own@127.0.0.1:{port}"
    assert w.tool(nobody(), "niutil", "-create", target, "/users/a").returncode == 0
    r = w.tool(other(), "niutil", "-create", target, "/users/b")
    assert r.returncode == 104

    async def as_root(privileged: bool) -> int:
        async with await Client.connect("127.0.0.1", port, "own",
                                        privileged=privileged) as c:
            users = await c.pathsearch("/users")
            try:
                await c.create(users, [("name", [f"root-{privileged}"])])
            except NiError as e:
                return e.status
            return Status.OK
    assert asyncio.run(as_root(False)) == Status.PERM
    assert asyncio.run(as_root(True)) == Status.OK
    # the owner sets a password on this server directly
    r = w.tool(nobody(), "nipasswd", "--stdin", target, "root", stdin="pw\n")
    assert r.returncode == 0, r.stderr
    r = w.tool(other(), "niutil", "-create", "-u", "root", "-P", "pw", target, "/users/b")
    assert r.returncode == 0, r.stderr


def test_owner_of_a_strict_server(netinfod):
    """Run as root or not: a strict netinfod (no --trust-local) started by this test
    takes the test's connections for its owner's, the superuser's, exactly when it is
    not root's (root-run servers keep the reserved-port rule only)."""
    d = netinfod("strict", "-m", "--populate", strict=True)

    async def go() -> int:
        async with await Client.connect("127.0.0.1", d.port, "strict",
                                        privileged=False) as c:
            return await _create_status(c)
    assert asyncio.run(go()) == (Status.PERM if ROOT_USER else Status.OK)


async def _create_status(c: Client) -> int:
    """The status of a CREATE under /users over *c*: NI_OK, or the refusal's."""
    users = await c.pathsearch("/users")
    try:
        await c.create(users, [("name", ["made"])])
    except NiError as e:
        return e.status
    return Status.OK


def test_peer_uid_skips_time_wait_and_other_connections(monkeypatch):
    """A client port may still have a TIME_WAIT row from an earlier connection (uid 0 in
    the kernel's table), or another connection elsewhere: only the row of the socket
    connected to our end counts (the CI run that found it: a strict server refused its
    owner once in 2,500 tests)."""
    from netinfo import netif
    me = "0100007F:9C40"          # 127.0.0.1:40000, the peer
    ours = "0100007F:03C6"        # 127.0.0.1:966, our end
    rows = [["0:", me, "0100007F:0050", "06", "", "", "", "0"],        # TIME_WAIT to :80
            ["1:", me, "0100007F:1F90", "01", "", "", "", "777"],      # to :8080, another
            ["2:", me, ours, "01", "", "", "", "4242"]]
    monkeypatch.setattr(netif, "_proc_net_sockets", lambda udp: iter(rows))
    assert netif.peer_uid("127.0.0.1", 40000, udp=False, towards=("127.0.0.1", 966)) == 4242
    assert netif.peer_uid("127.0.0.1", 40000, udp=False) == 777    # no end given: any live row
    assert netif.peer_uid("127.0.0.1", 40001, udp=False) is None


def test_owner_from_a_reused_port(netinfod):
    """Over the wire: the test's client leaves a connection in TIME_WAIT on a port, then
    connects to a strict server from that same port; the server still knows its owner."""
    import socket
    d = netinfod("reuse", "-m", "--populate", strict=True)
    lsn = socket.create_server(("127.0.0.1", 0))
    a = socket.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    a.bind(("127.0.0.1", 0))
    port = a.getsockname()[1]
    a.connect(lsn.getsockname())
    b, _ = lsn.accept()
    a.close()                      # the active close: our side of it waits in TIME_WAIT
    b.close()
    lsn.close()
    time.sleep(0.1)
    with open("/proc/net/tcp") as f:
        assert any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "06"
                   for line in f.readlines()[1:])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)

    async def go() -> int:
        from netinfo.client.transport import RpcConnection
        await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", d.port))
        _, conn = await asyncio.get_running_loop().create_connection(RpcConnection, sock=s)
        async with Client(conn, "127.0.0.1", d.port, "reuse", 10.0) as c:
            return await _create_status(c)
    assert asyncio.run(go()) == (Status.PERM if ROOT_USER else Status.OK)


def test_nipasswd_usage_and_help(run_tool):
    from netinfo.cli import nipasswd
    r = run_tool("nipasswd", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: nipasswd") and "--stdin" in r.stdout
    for argv, text in ((["--hash", "rot13", "bob"], "unknown hash rot13"),
                       (["-x"], "unknown option -x"), (["a", "b", "c"], "too many operands"),
                       (["-t"], "-t needs host/tag")):
        r = run_tool("nipasswd", *argv)
        assert r.returncode == 1 and r.stderr.startswith(f"nipasswd: {text}"), r.stderr
        assert "usage: nipasswd" in r.stderr and "Traceback" not in r.stderr
    o = nipasswd.parse_args(["bob"])
    assert (o.domain, o.user, o.tagged) == (".", "bob", False)
    o = nipasswd.parse_args(["/", "bob"])
    assert (o.domain, o.user) == ("/", "bob")
    o = nipasswd.parse_args(["-t", "h/t"])
    assert (o.domain, o.user, o.tagged) == ("h/t", None, True)


def _on_a_terminal(argv: list[str], answers: list[str]) -> tuple[int, str]:
    """Run *argv* with a pseudo-terminal as its controlling terminal (where getpass asks),
    typing each of *answers* after the next prompt; (exit status, everything it wrote)."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:   # the child: never returns into the test run
        try:
            os.execve(sys.executable, [sys.executable, *argv],
                      {**os.environ, "PYTHONPATH": str(SRC)})
        finally:
            os._exit(127)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 1.0)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if pending and out.endswith(b": "):   # a prompt, waiting (echo is off by now)
            os.write(fd, pending.pop(0).encode() + b"\n")
    os.close(fd)
    if time.monotonic() >= deadline:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_nipasswd_asks_twice_on_a_terminal(netinfod):
    """On a terminal the new password is typed twice: different → nothing changes;
    the same → written, SHA-512 crypt. The test is the server's superuser (root by a
    reserved port, or an ordinary user as the server's owner)."""
    from netinfo.client.core import SyncClient
    d = netinfod("tty", "-m", "--populate", strict=True)
    target = f"tty@127.0.0.1:{d.port}"

    def stored() -> str:
        with SyncClient.connect("127.0.0.1", d.port, "tty") as c:
            return c.lookupprop(c.pathsearch("/users/root"), "passwd")[0]
    code, out = _on_a_terminal(["-m", "netinfo.cli.nipasswd", target, "root"],
                               ["one", "two"])
    assert code == 1 and "New password for root:" in out and "Again:" in out
    assert "the passwords differ: nothing changed" in out and stored() == "*"
    code, out = _on_a_terminal(["-m", "netinfo.cli.nipasswd", target, "root"],
                               ["same", "same"])
    assert code == 0, out
    assert "password of root in domain " in out and "Old password" not in out
    assert stored().startswith("$6$") and verify("same", stored())
