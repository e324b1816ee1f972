"""Shared fixtures: byte helpers, a real netinfod subprocess on loopback."""

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

    def __init__(self, directory: Path, tag: str, *extra: str, port: int | None = None) -> None:
        self.directory = directory
        self.tag = tag
        self.extra = extra
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> Netinfod:
        cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(self.directory),
               "--bind", "127.0.0.1", "--port", str(self.port), *self.extra, self.tag]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=env_with_src(), text=True)
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
    """Start netinfod instances: ``netinfod(tag, *flags)``; all are stopped afterwards."""
    started: list[Netinfod] = []

    def start(tag: str = "test", *extra: str, directory: Path | None = None,
              port: int | None = None) -> Netinfod:
        d = Netinfod(directory or tmp_path, tag, *extra, port=port).start()
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
               "--portmapper", "embedded", "--bind", "127.0.0.1", *self.extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=self.env, text=True)
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
