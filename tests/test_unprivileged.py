"""The third setup: nibindd and the tools as an ordinary user with NETINFO_PORTMAPPER.

The tests run as root; here the servers and clients run as ``nobody`` (setpriv) from a
copy of the source tree, with Debian's python3, on a free loopback port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import SRC, free_port

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


@pytest.fixture
def userland():
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
                             str(db), "--bind", "127.0.0.1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield as_nobody, env, top, proc
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(15)
        log.close()
        shutil.rmtree(top, ignore_errors=True)


def test_nibindd_and_clients_as_an_ordinary_user(userland):
    as_nobody, env, top, proc = userland
    code = textwrap.dedent("""
        import asyncio, os
        from netinfo import binding
        from netinfo.domain import open_domain, domain_name
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
    # an ordinary user is not the superuser: NI_PERM (4) outside _writers=* directories
    assert lines[3] == "write 4"
    assert lines[4] == "printers ok"
    r = subprocess.run([*as_nobody, "-m", "netinfo.cli.nidomain", "-l"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "tag=local" in r.stdout and "tag=network" in r.stdout
