"""Shared fixtures: byte helpers, a real netinfod subprocess on loopback.

The suite is hermetic: it ignores the caller's ``NETINFO_*`` settings (cleared for the
whole session in :func:`pytest_configure`, so every subprocess environment, built from
``os.environ``, is clean too), points clients at a portmapper port nothing serves unless
a test starts it, never broadcasts outside the namespaces it creates, and runs as root or
as an ordinary user (where the servers it starts trust local callers, since nobody else can
bind the reserved port that makes a caller the superuser, spec §10.2).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
FIXTURES = Path(os.environ.get("NETINFO_FIXTURES", ROOT.parent / "shared" / "fixtures"))


#: Our own variable: where the shared fixtures are (kept; every other NETINFO_* is cleared).
KEEP_ENV = frozenset({"NETINFO_FIXTURES"})
#: Root binds reserved ports and so is the superuser of the servers it starts; an ordinary
#: user's servers are started with --trust-local so that its tests can write.
ROOT_USER = os.geteuid() == 0
TRUST = () if ROOT_USER else ("--trust-local",)
#: For tests of the privilege rule itself through the suite's shared, trusting servers.
PRIVILEGE_RULE_NEEDS_ROOT = (
    "as an ordinary user the suite's servers trust every local caller (--trust-local), so an "
    "unprivileged caller cannot be told from the superuser; the rule itself is tested on "
    "strict servers (test_access, test_server)")
needs_privilege_rule = pytest.mark.skipif(not ROOT_USER, reason=PRIVILEGE_RULE_NEEDS_ROOT)
#: Held for the whole session: a TCP port bound but never listening, so free_port() never
#: hands it out and a call to it is refused at once (see pytest_configure).
_DEAD_PORT: socket.socket | None = None


def pytest_configure(config) -> None:
    """Forget the caller's NETINFO_* environment; clients find no portmapper (a port nothing
    serves) and never broadcast, unless a test says otherwise."""
    global _DEAD_PORT
    for key in [k for k in os.environ if k.startswith("NETINFO_") and k not in KEEP_ENV]:
        del os.environ[key]
    _DEAD_PORT = socket.socket()
    _DEAD_PORT.bind(("127.0.0.1", 0))
    os.environ["NETINFO_PORTMAPPER"] = f"127.0.0.1:{_DEAD_PORT.getsockname()[1]}"
    os.environ["NETINFO_BROADCAST"] = "off"


def hexbytes(text: str) -> bytes:
    """Spec-style hex words ("0000002a 00000003") to bytes."""
    return bytes.fromhex("".join(text.split()))


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP."""
    for _ in range(100):
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        return port
    raise RuntimeError("no free port")


def env_with_src() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Netinfod:
    """A real ``netinfod`` subprocess serving one tag on 127.0.0.1."""

    def __init__(self, directory: Path, tag: str, *extra: str, port: int | None = None,
                 strict: bool = False) -> None:
        self.directory = directory
        self.tag = tag
        # strict: the real privilege rule even for an ordinary user (no --trust-local)
        self.extra = extra if strict else (*TRUST, *extra)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> Netinfod:
        cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(self.directory),
               "--bind", "127.0.0.1", "--port", str(self.port), *self.extra, self.tag]
        # no terminal: a new domain's root stays locked, never a password prompt
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, env=env_with_src(), text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"netinfod exited with {self.proc.wait()}")
            if line.startswith(f"netinfod: serving {self.tag} "):
                return self
        raise RuntimeError("netinfod did not start")

    def stop(self, sig: int | None = None) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        return rc


@pytest.fixture
def netinfod(tmp_path):
    """Start netinfod instances: ``netinfod(tag, *flags)``; all are stopped afterwards.
    ``strict=True``: no --trust-local for an ordinary user (tests of the privilege rule)."""
    started: list[Netinfod] = []

    def start(tag: str = "test", *extra: str, directory: Path | None = None,
              port: int | None = None, strict: bool = False) -> Netinfod:
        d = Netinfod(directory or tmp_path, tag, *extra, port=port, strict=strict).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


class Nibindd:
    """A real ``nibindd --init`` subprocess with its own embedded portmapper on a free
    loopback port. ``env`` is what tool subprocesses need (NETINFO_PORTMAPPER, no
    broadcasts, the source tree on PYTHONPATH)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.pmap_port = free_port()
        self.env = env_with_src()
        self.env["NETINFO_PORTMAPPER"] = f"127.0.0.1:{self.pmap_port}"
        self.env["NETINFO_BROADCAST"] = "off"
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 30.0, tags: tuple[str, ...] = ("local", "network")):
        import threading

        cmd = [sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(self.directory),
               "--portmapper", "embedded", "--bind", "127.0.0.1", *TRUST, *self.extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, env=self.env, text=True)
        ready = threading.Event()

        def drain(stream):
            for line in stream:
                self.log.append(line)
                if line.startswith("nibindd: serving"):
                    ready.set()
        threading.Thread(target=drain, args=(self.proc.stderr,), daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("nibindd did not start:\n" + "".join(self.log))
        try:
            self.wait_for(tags, timeout)
        except BaseException:
            self.stop()  # never leave a server behind
            raise
        return self

    def wait_for(self, tags, timeout: float = 30.0) -> None:
        """Until every tag in *tags* is registered (and local has bound its parent)."""
        import asyncio

        from netinfo import binding
        deadline = time.monotonic() + timeout

        async def registered():
            try:
                return {r.tag for r in await binding.listreg("127.0.0.1", timeout=1.0)}
            except Exception:
                return set()
        while time.monotonic() < deadline:
            if set(tags) <= asyncio.run(registered()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"tags {tags} not registered:\n" + "".join(self.log))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def nibindd(tmp_path, monkeypatch):
    """A served ``local`` domain bound to a ``network`` root on this host (``nibindd
    --init``); in-process clients and tool subprocesses find it through ``.env``."""
    nb = Nibindd(tmp_path / "netinfo", "--init")
    monkeypatch.setenv("NETINFO_PORTMAPPER", nb.env["NETINFO_PORTMAPPER"])
    monkeypatch.setenv("NETINFO_BROADCAST", "off")
    nb.start()
    yield nb
    nb.stop()


@contextlib.contextmanager
def served_domains(tmp_path_factory, name: str):
    """A module's shared ``nibindd --init`` (``.`` = local, ``/`` = the network root), with
    the environment set for in-process tools; stopped at the end."""
    d = Nibindd(tmp_path_factory.mktemp(name) / "netinfo", "--init")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETINFO_PORTMAPPER", d.env["NETINFO_PORTMAPPER"])
        mp.setenv("NETINFO_BROADCAST", "off")
        mp.delenv("NETINFO_PRIVILEGED", raising=False)
        d.start()
        try:
            yield d
        finally:
            d.stop()
