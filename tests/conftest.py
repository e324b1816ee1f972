"""Shared fixtures: byte helpers, a real netinfod subprocess on loopback."""

from __future__ import annotations

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
