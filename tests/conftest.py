"""Shared fixtures: byte helpers, a real netinfod subprocess on loopback.

The suite is hermetic: it ignores the caller's ``NETINFO_*`` settings (cleared for the
whole session in :func:`pytest_configure`, so every subprocess environment, built from
``os.environ``, is clean too), points clients at a portmapper port nothing serves unless
a test starts it, never broadcasts outside the namespaces it creates, resolves host names
from its own hosts file (``NETINFO_HOSTS``, tests/data/hosts: no DNS query ever), and runs as
root or as an ordinary user (where the servers it starts trust local callers, since nobody
else can bind the reserved port that makes a caller the superuser, spec §10.2).

The hermetic guard (tests/guard/sitecustomize.py) holds every test to that: in this process
and in every Python subprocess, a connect, send or name lookup that would reach beyond
loopback from the host's network namespace is refused and recorded, and the test during
which it happened fails, naming the destination and the process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
FIXTURES = Path(os.environ.get("NETINFO_FIXTURES", ROOT.parent / "shared" / "fixtures"))


#: Our own variable: where the shared fixtures are (kept; every other NETINFO_* is cleared).
KEEP_ENV = frozenset({"NETINFO_FIXTURES"})
#: The suite's hosts file: the only names the code under test can resolve (NETINFO_HOSTS).
HOSTS_FILE = Path(__file__).resolve().parent / "data" / "hosts"
#: Holds the guard as ``sitecustomize.py``; first on every subprocess's PYTHONPATH.
GUARD_DIR = Path(__file__).resolve().parent / "guard"
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
#: The guard's log (a file every user may append to) and how much of it has been reported.
_GUARD: dict[str, object] = {"dir": None, "log": None, "seen": 0}


def pytest_configure(config) -> None:
    """Forget the caller's NETINFO_* environment; clients find no portmapper (a port nothing
    serves), never broadcast and resolve names only from the suite's hosts file, unless a
    test says otherwise; and the hermetic guard watches this process and its children."""
    global _DEAD_PORT
    for key in [k for k in os.environ if k.startswith("NETINFO_") and k not in KEEP_ENV]:
        del os.environ[key]
    _DEAD_PORT = socket.socket()
    _DEAD_PORT.bind(("127.0.0.1", 0))
    os.environ["NETINFO_PORTMAPPER"] = f"127.0.0.1:{_DEAD_PORT.getsockname()[1]}"
    os.environ["NETINFO_BROADCAST"] = "off"
    os.environ["NETINFO_HOSTS"] = str(HOSTS_FILE)
    _start_guard()


# -- the hermetic guard (tests/guard/sitecustomize.py) ----------------------------------------

def _guard_module():
    """The guard, as imported at start-up when this process already runs under it (a
    pytest started by a test), else loaded from its file."""
    here = (GUARD_DIR / "sitecustomize.py").resolve()
    mod = sys.modules.get("sitecustomize")
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve() == here:
        return mod
    mod = sys.modules.get("_netinfo_test_guard")
    if mod is None:
        spec = importlib.util.spec_from_file_location("_netinfo_test_guard", here)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return mod


def _start_guard() -> None:
    guard = _guard_module()
    # a directory every user may enter (servers may run as another uid) holding a file
    # every user may append to; not in sticky /tmp itself (protected_regular)
    top = tempfile.mkdtemp(prefix="netinfo-guard.")
    os.chmod(top, 0o711)
    log = os.path.join(top, "violations")
    fd = os.open(log, os.O_CREAT | os.O_WRONLY, 0o666)
    os.fchmod(fd, 0o666)
    os.close(fd)
    host_ns = guard.netns()
    os.environ[guard.LOG_VAR] = log
    os.environ[guard.NETNS_VAR] = str(host_ns or "")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(GUARD_DIR), os.environ.get("PYTHONPATH", "")) if p)
    _GUARD.update(dir=top, log=log, seen=0)
    guard.install(log, host_ns)


def guard_violations() -> list[dict]:
    """What the guard refused since the last call (each: pid, argv, event, destination)."""
    log = _GUARD["log"]
    if not isinstance(log, str):
        return []
    with open(log, "rb") as f:
        f.seek(int(_GUARD["seen"]))  # type: ignore[call-overload]
        data = f.read()
    end = data.rfind(b"\n") + 1   # a line still being written waits for the next call
    _GUARD["seen"] = int(_GUARD["seen"]) + end  # type: ignore[call-overload]
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def _describe(found: list[dict]) -> str:
    lines = ["traffic beyond loopback (refused by the hermetic guard, tests/guard):"]
    for v in found:
        lines.append(f"  {v['event']} {v['destination']}  from pid {v['pid']}: "
                     f"{' '.join(v['argv'])[:200]}")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test fails when it, or a process it started, tried to reach beyond loopback
    during its set-up and call (then reported with the call) or its teardown."""
    outcome = yield
    if call.when == "setup":
        return
    found = guard_violations()
    if not found:
        return
    report = outcome.get_result()
    text = _describe(found)
    if report.failed:
        report.sections.append(("hermetic guard", text))
    else:
        report.outcome = "failed"
        report.longrepr = text


def pytest_sessionfinish(session, exitstatus) -> None:
    """Violations after the last test's teardown (module fixtures stopping) fail the run."""
    found = guard_violations()
    if found:
        text = _describe(found)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(text, red=True)
        else:
            sys.stderr.write(text + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config) -> None:
    top = _GUARD["dir"]
    if isinstance(top, str):
        shutil.rmtree(top, ignore_errors=True)
    _GUARD.update(dir=None, log=None, seen=0)


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
