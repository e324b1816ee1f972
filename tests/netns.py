"""Test hosts in network namespaces: each host a namespace with a veth into a shared bridge.

Everything is created by the test and removed afterwards; traffic stays inside these
namespaces. Needs root and iproute2; :func:`available` says whether this machine can.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import SRC

SUBNET = "10.77.0"


def available() -> str | None:
    """None when namespaces can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "needs iproute2 and unshare"
    probe = f"niprobe{secrets.token_hex(3)}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if r.returncode != 0:
        return f"ip netns add fails: {r.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Host:
    """One test host: a namespace, a hostname (own UTS namespace) and an address."""

    name: str
    ns: str
    addr: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("NETINFO_") and k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(SRC)
        env.update(extra)
        return env

    hosts_file: Path | None = None

    def wrap(self, cmd: list[str]) -> list[str]:
        """Run *cmd* in this host's namespace with its own hostname (and the network's
        /etc/hosts, so that host names resolve)."""
        script = 'hostname "$0" && exec "$@"'
        unshare = ["unshare", "--uts"]
        if self.hosts_file is not None:
            script = f'mount --bind {self.hosts_file} /etc/hosts && ' + script
            unshare.append("--mount")
        return ["ip", "netns", "exec", self.ns, *unshare, "sh", "-c", script, self.name, *cmd]

    def run(self, cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("env", self.env())
        return subprocess.run(self.wrap(cmd), capture_output=True, text=True, timeout=timeout,
                              **kw)

    def python(self, code: str, timeout: float = 60, **env: str) -> str:
        """Run Python *code* on this host; returns stdout. :raises AssertionError: failed."""
        r = self.run([sys.executable, "-c", code], timeout=timeout, env=self.env(**env))
        assert r.returncode == 0, f"{self.name}: {r.stderr}\n{r.stdout}"
        return r.stdout

    def spawn(self, cmd: list[str], log: Path, **env: str) -> subprocess.Popen:
        out = open(log, "a")
        p = subprocess.Popen(self.wrap(cmd), stdout=out, stderr=subprocess.STDOUT,
                             env=self.env(**env), start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
        self.procs.clear()


class Network:
    """A bridge namespace and hosts attached to it by veth pairs."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.bridge_ns = f"nibr{self.tag}"
        self.hosts: dict[str, Host] = {}
        _ip("netns", "add", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")

    def add_host(self, name: str, index: int) -> Host:
        ns = f"ni{name}{self.tag}"
        addr = f"{SUBNET}.{index}"
        _ip("netns", "add", ns)
        _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{index}",
            "netns", self.bridge_ns)
        _ip("-n", ns, "addr", "add", f"{addr}/24", "broadcast", f"{SUBNET}.255", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.bridge_ns, "link", "set", f"p{index}", "master", "br0")
        _ip("-n", self.bridge_ns, "link", "set", f"p{index}", "up")
        host = Host(name, ns, addr)
        self.hosts[name] = host
        return host

    def write_hosts(self, path: Path) -> None:
        """An /etc/hosts naming every host; bind-mounted over /etc/hosts in each one."""
        lines = ["127.0.0.1 localhost"] + [f"{h.addr} {h.name}" for h in self.hosts.values()]
        path.write_text("\n".join(lines) + "\n")
        for h in self.hosts.values():
            h.hosts_file = path

    def close(self) -> None:
        for h in self.hosts.values():
            h.stop_all()
        for h in self.hosts.values():
            subprocess.run(["ip", "netns", "del", h.ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.bridge_ns], capture_output=True)


def wait_until(fn, timeout: float = 30.0, interval: float = 0.3):
    """Poll *fn* until it returns a true value; returns it. :raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # polling: remember and retry
            last = e
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s (last error: {last!r})")


class HeldHost:
    """A test host whose own mount namespace is held by a process (``unshare --mount``
    running *script*, which sets up private /etc files, /run, ... and ends in ``exec
    sleep``): every command enters its network, mount and UTS namespaces with nsenter,
    so what *script* mounted lasts as long as the host (NIS and LDAP client hosts)."""

    def __init__(self, h: Host, tmp: Path, script: str) -> None:
        self.h = h
        self.tmp = tmp
        self.holder = h.spawn(["unshare", "--mount", "sh", "-c", script], tmp / "holder.log")
        self.pid = wait_until(self._holder_pid, 15)

    def _holder_pid(self) -> int | None:
        """The holder's pid once its namespaces are set up (it runs sleep then)."""
        try:
            comm = Path(f"/proc/{self.holder.pid}/comm").read_text().strip()
        except OSError:
            return None
        if self.holder.poll() is not None:
            raise RuntimeError(f"test host setup failed:\n{self.log('holder.log')}")
        return self.holder.pid if comm == "sleep" else None

    def enter(self, cmd: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", "-m", "-u", *cmd]

    def env(self, **extra: str) -> dict[str, str]:
        return self.h.env(**extra)

    def run(self, cmd: list[str], timeout: float = 60, input: str | None = None,
            **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.enter(cmd), capture_output=True, text=True,
                              timeout=timeout, env=self.env(**env), input=input)

    def out(self, cmd: list[str], **env: str) -> str:
        r = self.run(cmd, **env)
        assert r.returncode == 0, f"{cmd}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def spawn(self, cmd: list[str], log: str, **env: str) -> subprocess.Popen:
        out = open(self.tmp / log, "a")
        p = subprocess.Popen(self.enter(cmd), stdout=out, stderr=subprocess.STDOUT,
                             env=self.env(**env), start_new_session=True)
        out.close()
        self.h.procs.append(p)
        return p

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace") if path.exists() else ""
