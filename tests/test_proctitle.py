"""The daemons go by their own names (issue 17): ``netinfod`` and ``nibindd`` in ``ps -C``,
``ps -o comm``, ``pidof``, ``ss -p``, and ``netinfod ARGS... TAG`` in ``ps -f``; never
``python3``. Real processes, started as nibindd starts its children and as the tests'
fixtures do (``python3 -m netinfo.cli.netinfod``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import env_with_src


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout


def _children(pid: int) -> list[int]:
    """The processes whose parent is *pid* (from /proc/PID/stat)."""
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(p.name))
    return kids


def _comm(pid: int) -> str:
    return _run("ps", "-o", "comm=", "-p", str(pid)).strip()


def _args(pid: int) -> str:
    return _run("ps", "-ww", "-o", "args=", "-p", str(pid)).strip()


@pytest.fixture
def daemons(nibindd):
    """(nibindd's pid, {tag: its netinfod's pid}) of a running ``nibindd --init``."""
    kids = {}
    for pid in _children(nibindd.proc.pid):
        m = re.match(r"netinfod (\w+) ", _args(pid))
        assert m, f"child {pid} of nibindd shows as {_args(pid)!r}"
        kids[m[1]] = pid
    assert set(kids) == {"local", "network"}, kids
    return nibindd.proc.pid, kids


@pytest.mark.skipif(shutil.which("ps") is None, reason="ps (procps) is not installed")
def test_ps_shows_the_daemons_by_name(daemons, nibindd):
    """Before: ``python3`` / ``python3 -m netinfo.cli.netinfod --dir ...``."""
    nb, kids = daemons
    assert _comm(nb) == "nibindd"
    assert _args(nb).startswith("nibindd --dir ")
    for tag, pid in kids.items():
        assert _comm(pid) == "netinfod"
        # "netinfod TAG", then the options nibindd ran it with
        assert re.fullmatch(rf"netinfod {tag} --dir {re.escape(str(nibindd.directory))} "
                            rf"--bind 127\.0\.0\.1( .*)?", _args(pid)), _args(pid)
    listed = {int(x) for x in _run("ps", "-C", "netinfod", "-o", "pid=").split()}
    assert set(kids.values()) <= listed
    assert nb in {int(x) for x in _run("ps", "-C", "nibindd", "-o", "pid=").split()}


@pytest.mark.skipif(shutil.which("pidof") is None,
                    reason="pidof (sysvinit-utils or procps) is not installed")
def test_pidof_finds_the_daemons(daemons):
    """Debian's pidof (sysvinit-utils) matches the command line's first word, not comm."""
    nb, kids = daemons
    assert set(kids.values()) <= {int(x) for x in _run("pidof", "netinfod").split()}
    assert nb in {int(x) for x in _run("pidof", "nibindd").split()}


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_ss_names_the_listening_netinfods(daemons):
    nb, kids = daemons
    out = _run("ss", "-tlpn")
    for pid in kids.values():
        assert f'("netinfod",pid={pid},' in out, out
    assert f'("nibindd",pid={nb},' in out, out


def test_the_standalone_netinfod_is_named_too(netinfod, tmp_path):
    d = netinfod("alone", "-m")
    assert d.proc is not None
    assert Path(f"/proc/{d.proc.pid}/comm").read_text().strip() == "netinfod"
    cmdline = Path(f"/proc/{d.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    assert cmdline[:2] == [b"netinfod", b"alone"]
    assert [b"--port", str(d.port).encode()] == cmdline[cmdline.index(b"--port"):][:2]


def test_without_setproctitle_comm_is_still_set():
    """The fallback: no setproctitle package, the kernel's name is set all the same and the
    command line stays as it was."""
    code = ("import sys; sys.modules['setproctitle'] = None\n"
            "from netinfo.server.proctitle import name_process\n"
            "name_process('netinfod', ['x'])\n"
            "print(open('/proc/self/comm').read().strip())\n"
            "print(open('/proc/self/cmdline').read().split(chr(0))[:2])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env_with_src(), timeout=30)
    assert r.returncode == 0, r.stderr
    comm, argv = r.stdout.splitlines()
    assert comm == "netinfod"
    assert argv == repr([sys.executable, "-c"])


def test_called_in_process_the_caller_keeps_its_name(tmp_path):
    """main(argv) from Python (tests, embedding) names nothing: only a program does."""
    code = ("from netinfo.cli import netinfod\n"
            "import sys\n"
            "try:\n"
            f"    netinfod.main(['--dir', {str(tmp_path)!r}, 'none'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(open('/proc/self/comm').read().strip())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env_with_src(), timeout=60)
    assert r.stdout.strip() == Path(sys.executable).name[:15], (r.stdout, r.stderr)
