"""The suite is hermetic by construction (issue 17): the guard (tests/guard/sitecustomize.py)
refuses and reports traffic beyond loopback, in the pytest process and in every Python
subprocess, and a test during which that happened fails; the code under test resolves host
names only from the suite's hosts file (``NETINFO_HOSTS``), never by DNS.

The violations provoked here never leave the host: the guard's audit hook runs before the
system call and raises, so no connect or datagram is made.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from netinfo import netif

from .conftest import HOSTS_FILE, ROOT, env_with_src, guard_violations

#: Documentation addresses (RFC 5737): never routed, and refused before any packet anyway.
FAR = "192.0.2.1"

#: Each line tries one kind of traffic beyond loopback and prints what stopped it.
_ATTEMPTS = f"""
import socket
def attempt(label, fn):
    try:
        fn()
        print(label, "sent")
    except PermissionError as e:
        print(label, "refused")
    except OSError as e:
        print(label, "oserror", e)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
attempt("tcp", lambda: t.connect(({FAR!r}, 9)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
attempt("broadcast", lambda: u.sendto(b"x", ("255.255.255.255", 111)))
attempt("subnet-broadcast", lambda: u.sendto(b"x", ("192.0.2.255", 111)))
attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
attempt("byname", lambda: socket.gethostbyname("no-such-host.invalid"))
attempt("reverse", lambda: socket.gethostbyaddr({FAR!r}))
attempt("udp-connect", lambda: u.connect(({FAR!r}, 53)))
"""

_KINDS = ["tcp", "broadcast", "subnet-broadcast", "dns", "byname", "reverse", "udp-connect"]


def _run(code: str, *prefix: str) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-c", code], env=env_with_src(),
                          capture_output=True, text=True, timeout=60)


def test_a_subprocess_is_refused_and_reported():
    r = _run(_ATTEMPTS)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{k} refused" for k in _KINDS]
    found = guard_violations()   # taken here, so that this test itself passes
    assert [v["event"] for v in found] == [
        "socket.connect", "socket.sendto", "socket.sendto", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.gethostbyaddr", "socket.connect"]
    assert all(v["argv"][1:2] == ["-c"] for v in found)   # names the process
    assert len({v["pid"] for v in found}) == 1
    text = " ".join(v["destination"] for v in found)
    for dest in (FAR, "255.255.255.255", "192.0.2.255", "example.com",
                 "no-such-host.invalid"):
        assert dest in text


def test_this_process_is_guarded_too():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        with pytest.raises(PermissionError, match="hermetic test guard"):
            u.sendto(b"x", (FAR, 9))
    with pytest.raises(PermissionError):
        socket.getaddrinfo("www.example.com", 443)
    assert [v["event"] for v in guard_violations()] == ["socket.sendto",
                                                        "socket.getaddrinfo"]


def test_loopback_unix_and_local_names_pass():
    code = textwrap.dedent("""
        import socket
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        socket.create_connection(srv.getsockname()).close()
        socket.create_connection(("localhost", srv.getsockname()[1])).close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"x", ("127.0.0.9", 9))
        a, b = socket.socketpair()
        a.sendall(b"x")
        socket.getaddrinfo("127.0.0.1", 80)
        socket.getaddrinfo(None, 80)
        socket.gethostbyaddr("127.0.0.1")
        print("ok")
    """)
    r = _run(code)
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")
    assert guard_violations() == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="a network namespace of its own needs root and unshare")
def test_a_namespace_the_test_made_is_not_the_host():
    # `unshare -n`: a fresh namespace with nothing but a down loopback; whatever the
    # process sends stays there, so the guard lets it try (the kernel says no route)
    r = _run(_ATTEMPTS, "unshare", "-n")
    assert r.returncode == 0, r.stderr
    assert "refused" not in r.stdout and "tcp oserror" in r.stdout
    assert guard_violations() == []


_INNER = f"""
import socket, subprocess, sys

def test_child_leaks():
    subprocess.run([sys.executable, "-c", "import socket\\n"
                    "try: socket.create_connection(({FAR!r}, 9), 1)\\n"
                    "except OSError: pass"], check=True)

def test_own_broadcast_swallowed():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.sendto(b"x", ("255.255.255.255", 9))
    except OSError:
        pass   # code under test that hides the error does not hide the violation

def test_clean():
    socket.create_connection
"""


def test_a_violation_fails_the_test_during_which_it_happened(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(_INNER)
    env = env_with_src()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env["PYTHONPATH"]
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q",
                        "-p", "no:cacheprovider", "-rf", str(tmp_path / "test_inner.py")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 failed, 1 passed" in r.stdout, r.stdout
    assert f"socket.connect ('{FAR}', 9)" in r.stdout
    assert "socket.sendto ('255.255.255.255', 9)" in r.stdout
    assert "FAILED test_inner.py::test_child_leaks" in r.stdout
    assert "FAILED test_inner.py::test_own_broadcast_swallowed" in r.stdout
    # the inner session kept its own log: nothing of it reached this one
    assert guard_violations() == []


# -- NETINFO_HOSTS: the one resolver of the package ------------------------------------------

def test_names_resolve_from_the_suites_hosts_file_only(tmp_path, monkeypatch):
    assert os.environ["NETINFO_HOSTS"] == str(HOSTS_FILE)
    assert netif.address_of("localhost") == "127.0.0.1"
    assert netif.address_of("LOCALHOST.") == "127.0.0.1"
    assert netif.address_of("ip6-localhost") == "::1"
    assert netif.name_of("127.0.0.1") == "localhost"
    with pytest.raises(OSError):
        netif.address_of("example.com")      # not in the file: not found, no DNS asked
    with pytest.raises(OSError):
        netif.name_of("192.0.2.1")
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n::1 both\n127.0.0.7 both alias # trailing\nbad line\n"
                     "not-an-address x\n")
    monkeypatch.setenv("NETINFO_HOSTS", str(hosts))
    assert netif.address_of("both") == "127.0.0.7"   # IPv4 first, as gethostbyname
    assert netif.address_of("Alias") == "127.0.0.7"
    assert netif.name_of("::1") == "both"
    with pytest.raises(OSError):
        netif.address_of("x")
    monkeypatch.setenv("NETINFO_HOSTS", str(tmp_path / "missing"))
    with pytest.raises(OSError):
        netif.address_of("localhost")        # an unreadable file names nothing
    assert guard_violations() == []


def test_invalid_names_are_never_looked_up(monkeypatch):
    # RFC 6761 §6.4: answered at once, even where the system's resolver would be asked
    monkeypatch.delenv("NETINFO_HOSTS")
    for name in ("no-such-host.invalid", "x.INVALID.", "invalid"):
        with pytest.raises(OSError):
            netif.address_of(name)
    assert guard_violations() == []


# -- tests/tools/strace_check.py: the same rule, checked from the system calls ----------------

_TRACE = """\
100 connect(3<UDP:[41234]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.9.9.53")}, 16) = 0
100 sendto(3<UDP:[41234]>, "q", 1, MSG_NOSIGNAL, NULL, 0) = 1
100 connect(4<UDPv6:[41235]>, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = 0
100 connect(5<TCP:[41236]>, {sa_family=AF_INET, sin_port=htons(111), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
100 sendto(6<UDP:[0.0.0.0:881]>, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(111), sin_addr=inet_addr("255.255.255.255")}, 16) = -1 EACCES (Permission denied)
100 connect(7<UNIX:[41237]>, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = 0
100 connect(8<TCP:[41238]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("192.0.2.80")} <unfinished ...>
101 clone(child_stack=NULL, flags=CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>
100 <... connect resumed>, 16) = -1 EINPROGRESS (Operation now in progress)
100 clone(child_stack=NULL, flags=CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 200
200 setns(9</run/netns/nitest>, CLONE_NEWNET) = 0
200 sendto(3<UDP:[1]>, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("10.77.0.2")}, 16) = 1
200 clone(child_stack=NULL, flags=CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 201
201 connect(3<TCP:[2]>, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("10.77.0.3")}, 16) = 0
100 clone3({flags=CLONE_VM|CLONE_FILES|CLONE_THREAD, exit_signal=0} => {parent_tid=[300]}, 88) = 300
300 sendmsg(3<UDP:[41234]>, {msg_name=NULL, msg_namelen=0, msg_iov=[], msg_iovlen=0}, 0) = 0
"""


def test_strace_check_tells_traffic_from_route_lookups_and_namespaces(tmp_path):
    from .tools import strace_check
    found = strace_check.scan(_TRACE.splitlines(keepends=True), host_ns="net:[1]")
    rows = [(f.pid, f.call, f.destination, f.host_ns, f.traffic) for f in found]
    assert rows == [
        ("100", "connect", "10.9.9.53:53", True, True),      # sent on afterwards: traffic
        ("100", "sendto", "10.9.9.53:53", True, True),
        ("100", "connect", "[2001:db8::1]:443", True, False),  # a route lookup only
        ("100", "sendto", "255.255.255.255:111", True, True),
        ("100", "connect", "192.0.2.80:80", True, True),     # TCP: a SYN, even unfinished
        ("200", "sendto", "10.77.0.2:9", False, True),       # inside a test's namespace
        ("201", "connect", "10.77.0.3:9", False, True),      # ... and its children
        ("300", "sendmsg", "10.9.9.53:53", True, True),      # a thread: the same fd table
    ]
    trace = tmp_path / "trace"
    trace.write_text(_TRACE)
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "tools" / "strace_check.py"),
                        "--host-netns", "net:[1]", str(trace)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == ("5 beyond loopback from the host's namespace (1 "
                                         "route lookups without traffic), 2 inside test "
                                         "namespaces")
    trace.write_text("".join(line + "\n" for line in _TRACE.splitlines()
                             if "10.9.9.53" not in line and "192.0.2" not in line
                             and "255.255" not in line and not line.startswith("300")))
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "tools" / "strace_check.py"),
                        "--host-netns", "net:[1]", str(trace)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
