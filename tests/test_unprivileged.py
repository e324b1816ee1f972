"""The third setup: nibindd and the tools as an ordinary user with NETINFO_PORTMAPPER.

The tests run as root; here the servers and clients run as ``nobody`` (setpriv) from a
copy of the source tree, with Debian's python3, on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import SRC, env_with_src, free_port

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch to an ordinary user"
    if not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON):
        return "needs setpriv and /usr/bin/python3"
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                       capture_output=True, text=True)
    if r.stdout.strip() != "True":
        return "/usr/bin/python3 is older than 3.11"
    return None


@contextlib.contextmanager
def _userland(*nibindd_args: str):
    """nobody's ``nibindd --init`` (plus *nibindd_args*) on a free loopback port, from a
    copy of the source tree: (as_nobody command prefix, env, top directory, process)."""
    why = _why_not()
    if why:
        pytest.skip(why)
    top = Path(tempfile.mkdtemp(prefix="ni-user-", dir="/tmp"))
    os.chmod(top, 0o755)
    shutil.copytree(SRC, top / "src", ignore=shutil.ignore_patterns("__pycache__"))
    db = top / "db"
    db.mkdir()
    os.chown(db, NOBODY, NOBODY)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(top / "src"), "HOME": str(db),
           "NETINFO_PORTMAPPER": f"127.0.0.1:{free_port()}", "NETINFO_BROADCAST": "off",
           "PYTHONDONTWRITEBYTECODE": "1"}
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 SYSTEM_PYTHON]
    log = open(top / "nibindd.log", "w")
    proc = subprocess.Popen([*as_nobody, "-m", "netinfo.cli.nibindd", "--init", "--dir",
                             str(db), "--bind", "127.0.0.1", *nibindd_args], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield as_nobody, env, top, proc
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(15)
        log.close()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def userland():
    with _userland() as u:
        yield u


def _serving(top: Path, timeout: float = 60) -> str:
    """nibindd's log once it serves (or times out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = (top / "nibindd.log").read_text()
        if "nibindd: serving" in text:
            return text
        time.sleep(0.2)
    raise AssertionError("nibindd did not start:\n" + (top / "nibindd.log").read_text())


def test_nibindd_and_clients_as_an_ordinary_user(userland):
    as_nobody, env, top, _ = userland
    code = textwrap.dedent("""
        import asyncio, os
        from netinfo.client import binding
        from netinfo.client.domain import open_domain, domain_name
        from netinfo.errors import NiError
        async def main():
            assert os.geteuid() != 0
            for _ in range(100):
                try:
                    tags = {r.tag for r in await binding.listreg("127.0.0.1", timeout=1)}
                except Exception:
                    tags = set()
                if {"local", "network"} <= tags:
                    break
                await asyncio.sleep(0.2)
            print("tags", sorted(tags))
            local = await open_domain(".")
            print("name", await domain_name(local))
            root = await open_domain("/")
            print("root", root.tag)
            users = await root.pathsearch("/users")
            try:
                await root.create(users, [("name", ["eve"])])
                print("write allowed")
            except NiError as e:
                print("write", e.status)
            printers = await root.pathsearch("/printers")
            await root.create(printers, [("name", ["lp"])])
            print("printers ok")
        asyncio.run(main())
    """)
    deadline = time.monotonic() + 60
    while True:
        r = subprocess.run([*as_nobody, "-c", code], env=env, capture_output=True, text=True,
                           timeout=90)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    logtext = (top / "nibindd.log").read_text()
    assert r.returncode == 0, r.stderr + logtext
    lines = r.stdout.splitlines()
    assert lines[0] == "tags ['local', 'network']", logtext
    assert lines[1].startswith("name /"), lines
    assert lines[2] == "root network"
    # the user running nibindd is the superuser of its domains (its owner, docs/security.md;
    # issue 17): it writes outside _writers=* directories too. Another uid is anonymous
    # there (test_owner.py).
    assert lines[3] == "write allowed"
    assert lines[4] == "printers ok"
    r = subprocess.run([*as_nobody, "-m", "netinfo.cli.nidomain", "-l"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "tag=local" in r.stdout and "tag=network" in r.stdout


def test_nibindd_trust_local_lets_its_own_user_write(tmp_path):
    """``nibindd --trust-local``: the unprivileged setup the suite uses as an ordinary user
    (no reserved port proves the superuser there, spec §10.2). Before: no such option."""
    with _userland("--trust-local") as (as_nobody, env, top, _):
        _serving(top)
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run([*as_nobody, "-m", "netinfo.cli.niutil", "-create", ".",
                                "/users/eve"], env=env, capture_output=True, text=True,
                               timeout=60)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert r.returncode == 0, r.stderr + (top / "nibindd.log").read_text()
        r = subprocess.run([*as_nobody, "-m", "netinfo.cli.niutil", "-read", ".",
                            "/users/eve"], env=env, capture_output=True, text=True, timeout=60)
        assert r.stdout == "name: eve\n", r.stderr


def _refused(cmd: list[str], env: dict[str, str]) -> tuple[int | None, str]:
    """(status, stderr) of a nibindd that must refuse; None if it kept running."""
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        return p.wait(30), p.communicate()[1]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 15)
        return None, p.communicate(timeout=15)[1]


def test_a_nibindd_never_joins_another_users_portmapper(userland, nibindd, tmp_path):
    """Root's nibindd on nobody's portmapper, nobody's on root's, and root's on a port
    another user's plain process holds: each refuses with one line naming the other uid,
    exits 2 and creates nothing. Before: root's re-registered its NIBIND in nobody's
    portmapper (a reserved port passes its owner check) and took over nobody's clients;
    nobody's was refused by root's portmapper but kept running, serving no one."""
    as_nobody, env, top, _ = userland
    _serving(top)
    mine = tmp_path / "root-db"
    root_env = dict(env_with_src(), NETINFO_PORTMAPPER=env["NETINFO_PORTMAPPER"])
    rc, err = _refused([sys.executable, "-m", "netinfo.cli.nibindd", "--init", "--dir",
                        str(mine)], root_env)
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"already serves another nibindd of uid {NOBODY}" in err, err
    assert not mine.exists()

    theirs = top / "db" / "second"
    user_env = dict(env, NETINFO_PORTMAPPER=nibindd.env["NETINFO_PORTMAPPER"])
    rc, err = _refused([*as_nobody, "-m", "netinfo.cli.nibindd", "--init", "--dir",
                        str(theirs)], user_env)
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "already serves another nibindd of uid 0" in err, err
    assert not theirs.exists()

    port = free_port()
    holder = subprocess.Popen([*as_nobody, "-c", textwrap.dedent(f"""
        import socket, sys, time
        t = socket.socket(); t.bind(("127.0.0.1", {port})); t.listen()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", {port}))
        print("held", flush=True); time.sleep(120)
    """)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        rc, err = _refused([sys.executable, "-m", "netinfo.cli.nibindd", "--init", "--dir",
                            str(mine)], dict(root_env, NETINFO_PORTMAPPER=f"127.0.0.1:{port}"))
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert f"uid {NOBODY}" in err, err
        assert not mine.exists()
    finally:
        holder.kill()
        holder.wait()
