"""Nothing lost by a slip (issue #9): domains never cross between users, a malformed
NETINFO_PORTMAPPER or --dir or --bind is said at once and changes nothing, the suite
ignores the caller's environment, and the README's quick start works per user.

Everything here drives the real daemons and tools as subprocesses, on loopback.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import socket
import subprocess
import sys

import pytest

from netinfo.client import binding
from netinfo.errors import ConfigError
from netinfo.netif import bind_problem

from .conftest import ROOT, env_with_src, free_port

README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
FOREIGN = "10.9.9.9"   # an address this host does not have (checked before use)


def _daemon(module: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 30.0) -> tuple[int | None, str]:
    """Run a daemon that should refuse to start: (exit status, stderr). A daemon still
    running after *timeout* (it did not refuse) is stopped and gives (None, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", f"netinfo.cli.{module}", *args],
                         env=env or env_with_src(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 15)
        _, err = p.communicate(timeout=15)
        return None, err


def _registrations(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """tag → (udp, tcp) as the nibindd behind *env*'s portmapper lists them."""
    async def go():
        return await binding.listreg("127.0.0.1", timeout=2.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETINFO_PORTMAPPER", env["NETINFO_PORTMAPPER"])
        return {r.tag: (r.udp_port, r.tcp_port) for r in asyncio.run(go())}


# -- one nibindd per portmapper ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["auto", "embedded"])
def test_a_second_nibindd_on_a_taken_portmapper_refuses_and_changes_nothing(
        nibindd, tmp_path, mode):
    """Before: in auto mode the second took the first's portmapper for a "system rpcbind"
    and re-registered NIBIND there (clients then reached its domains, and the first was
    unreachable once it stopped); in embedded mode it created its databases, then failed
    to bind."""
    before = _registrations(nibindd.env)
    other = tmp_path / "second-user"
    rc, err = _daemon("nibindd", "--init", "--dir", str(other), "--portmapper", mode,
                      "--bind", "127.0.0.1", env=nibindd.env)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nibindd: the portmapper at "), err
    assert "already serves another nibindd" in err and "NETINFO_PORTMAPPER" in err
    assert not other.exists()
    # the first still serves the same domains, on the same ports
    assert _registrations(nibindd.env) == before
    r = subprocess.run([sys.executable, "-m", "netinfo.cli.niutil", "-read", ".",
                        "/users/root"], env=nibindd.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "name: root" in r.stdout, r.stderr


# -- NETINFO_PORTMAPPER is checked ------------------------------------------------------

BAD = {"abc": "'abc'", "host:": "no port after 'host:'", ":99999": "'99999'",
       ":-1": "'-1'", "a b:111": "host 'a b'"}


@pytest.mark.parametrize("value", list(BAD))
def test_a_malformed_netinfo_portmapper_is_an_error_never_port_111(value, tmp_path,
                                                                   monkeypatch):
    """Before: anything after the last ':' that was not digits meant port 111."""
    with monkeypatch.context() as mp:
        mp.setenv("NETINFO_PORTMAPPER", value)
        with pytest.raises(ConfigError) as ei:
            binding.portmapper_address()
    assert "NETINFO_PORTMAPPER" in str(ei.value) and BAD[value] in str(ei.value)
    env = dict(env_with_src(), NETINFO_PORTMAPPER=value)
    runs = {
        "niutil": (["-read", ".", "/"], 1),
        "nidomain": (["-l"], 1),
        "nibindd": (["--init", "--dir", str(tmp_path / "nb")], 2),
        "netinfod": (["--dir", str(tmp_path / "nd"), "-m", "t"], 2),
    }
    for tool, (args, status) in runs.items():
        rc, err = _daemon(tool, *args, env=env)
        lines = err.strip().splitlines()
        assert (rc, len(lines)) == (status, 1), (tool, err)
        assert lines[0].startswith(f"{tool}: NETINFO_PORTMAPPER={value!r}: "), err
        assert BAD[value] in lines[0], err
    assert not (tmp_path / "nb").exists() and not (tmp_path / "nd").exists()


# -- --dir and --bind slips -------------------------------------------------------------

def test_nibindd_on_a_missing_directory_says_it_serves_nothing(tmp_path):
    """Before: it served nothing, silently, until killed."""
    missing = tmp_path / "nonexistent"
    env = dict(env_with_src(), NETINFO_PORTMAPPER=f"127.0.0.1:{free_port()}")
    rc, err = _daemon("nibindd", "--dir", str(missing), "--portmapper", "embedded", env=env)
    assert (rc, err) == (2, f"nibindd: serving nothing from {missing}: it does not exist "
                            "(--init creates it)\n")
    assert not missing.exists()


@pytest.fixture
def foreign():
    if bind_problem(FOREIGN) is None:
        pytest.skip(f"{FOREIGN} is an address of this host")
    return FOREIGN


def test_netinfod_on_an_address_not_on_this_host_fails_and_creates_nothing(tmp_path,
                                                                          foreign):
    """Before: "no free port pair for UDP and TCP", and a new database left behind."""
    rc, err = _daemon("netinfod", "--dir", str(tmp_path), "--bind", foreign, "-m",
                      "--populate", "fresh")
    assert (rc, err) == (2, f"netinfod: cannot listen on {foreign}: not an address of "
                            "this host\n")
    assert not (tmp_path / "fresh.nidb").exists()
    rc, err = _daemon("nibindd", "--init", "--dir", str(tmp_path / "nb"), "--bind", foreign)
    assert (rc, err) == (2, f"nibindd: cannot listen on {foreign}: not an address of "
                            "this host\n")
    assert not (tmp_path / "nb").exists()


# -- the suite is hermetic ---------------------------------------------------------------

def test_the_suite_ignores_the_callers_netinfo_environment(tmp_path):
    """A caller's NETINFO_* settings reach no test: a decoy portmapper named by the caller
    hears nothing, NETINFO_PRIVILEGED=0 does not stop root's writes, NETINFO_DIR is not
    used. Before: the netinfod fixture registered with the caller's portmapper and the
    writes failed."""
    decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    decoy.bind(("127.0.0.1", 0))
    elsewhere = tmp_path / "callers-dir"
    env = dict(env_with_src(), NETINFO_PORTMAPPER=f"127.0.0.1:{decoy.getsockname()[1]}",
               NETINFO_PRIVILEGED="0", NETINFO_DIR=str(elsewhere), NETINFO_BROADCAST="on")
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "--basetemp", str(tmp_path / "inner"),
                            "tests/test_server.py::test_every_procedure_over_tcp[sqlite]",
                            "tests/test_niutil.py::test_create_makes_every_missing_component"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        heard = select.select([decoy], [], [], 0)[0]
    finally:
        decoy.close()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout
    assert not heard, "a test talked to the caller's portmapper"
    assert not elsewhere.exists()


# -- the README's quick start -----------------------------------------------------------

def _quick_start() -> list[str]:
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [x for x in block.splitlines() if x.strip() and not x.startswith("#")]


def test_the_quick_start_gives_each_user_their_own_portmapper():
    """Before: every user was told NETINFO_PORTMAPPER=127.0.0.1:1111."""
    first = _quick_start()[0]
    export = next(p.strip() for p in first.split("&&") if "NETINFO_PORTMAPPER=" in p)
    ports = {}
    for uid in (0, 1000, 1001, 65534):
        r = subprocess.run(["bash", "-c", f"id() {{ echo {uid}; }}; {export}; "
                            "echo \"$NETINFO_PORTMAPPER\""], capture_output=True, text=True,
                           timeout=10)
        host, port = binding.parse_portmapper(r.stdout.strip())
        assert host == "127.0.0.1"
        ports[uid] = port
    assert len(set(ports.values())) == len(ports), ports
    # unreserved (any user may bind it) and below Linux's ephemeral range
    assert all(1024 <= p < 32768 for p in ports.values()), ports


def test_the_quick_start_uses_a_venv_and_ci_runs_its_test_command():
    """Before: plain `pip install` (refused by PEP 668 on Debian 12 and Ubuntu) and a fixed
    port; CI ran the suite as root only."""
    first, test = _quick_start()
    assert first.startswith("python3 -m venv .venv && . .venv/bin/activate && "
                            "pip install -e '.[test]' && "), first
    assert "nibindd --init" in first
    assert CI.rstrip("\n").splitlines()[-1] == test
    # and before it the same suite as an ordinary user
    assert re.search(r"(setpriv --reuid|runuser -u) ?\S*.*pytest", CI, re.S)


def test_the_standalone_netinfod_has_a_directory_of_its_own():
    """Before: ``netinfod --dir "$HOME/.netinfo" ...``, nibindd's directory: nibindd serves
    every DIR/*.nidb, so its next SIGHUP took the standalone database up too (issue 17)."""
    nibindd_dir = re.search(r'nibindd --init --dir (\S+)', _quick_start()[0])[1]
    alone = re.findall(r'`netinfod --dir (\S+) [^`]*`', README)
    assert alone and nibindd_dir not in alone, alone
