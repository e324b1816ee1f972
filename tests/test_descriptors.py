"""accept() at the descriptor limit (issue 18, finding N19).

When a netinfod or nibindd had no descriptor left, every accept() failing with EMFILE
printed a traceback (asyncio's default exception handler). Now it is one rate-limited
log line; accepting pauses for a second and resumes, and the server answers again once
connections close. The limit is lowered on the running daemon (``prlimit``) to just
above the descriptors it holds.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time

import pytest

from .conftest import Netinfod

pytestmark = pytest.mark.skipif(not hasattr(resource, "prlimit") or
                                 not os.path.isdir("/proc/self/fd"),
                                 reason="needs prlimit(2) and /proc (Linux)")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def drain(proc, lines: list[str]) -> None:
    stream = proc.stderr
    threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")),
                     daemon=True).start()


def ping_tcp(port: int, timeout: float = 2.0, prog: int = 200100000) -> bool:
    """Procedure 0 (NETINFO PING; the portmapper's NULL) over TCP answered: the
    connection was accepted and served."""
    from netinfo.wire import rpc
    call = rpc.encode_call(0x1234, prog, 2, 0, b"")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(rpc.frame(call))
            return len(s.recv(4096)) >= 4
    except OSError:
        return False


def exhaust(pid: int, port: int, lines: list[str], what: str) -> list[socket.socket]:
    """Lower *pid*'s descriptor limit to what it holds + 2 and open connections past it,
    until the daemon says it cannot accept."""
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + 2, hard))
    held = []
    deadline = time.monotonic() + 20
    while "cannot accept connections" not in "".join(lines):
        assert time.monotonic() < deadline, f"{what} never ran out:\n" + "".join(lines)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.append(s)
        time.sleep(0.2)
    return held


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_netinfod_at_the_descriptor_limit(tmp_path, loop):
    """On either event loop (auto: uvloop, whose own server would accept and close in
    silence; netinfod's listener is its own, server.listener): one log line, and a
    connection made meanwhile waits in the kernel's queue and is answered once
    descriptors are free again."""
    from netinfo.wire import rpc
    srv = Netinfod(tmp_path, "fd", "-m", "--event-loop", loop).start()
    assert srv.proc is not None
    lines: list[str] = []
    drain(srv.proc, lines)
    try:
        assert ping_tcp(srv.port)
        held = exhaust(srv.proc.pid, srv.port, lines, "netinfod")
        time.sleep(2.5)   # accepting is retried every second, and fails again
        assert not ping_tcp(srv.port, timeout=1.0)
        waiting = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        waiting.sendall(rpc.frame(rpc.encode_call(0x4321, 200100000, 2, 0, b"")))
        for s in held:
            s.close()
        with waiting:
            assert len(waiting.recv(4096)) >= 4, "the queued connection was not answered"
        deadline = time.monotonic() + 15
        while not ping_tcp(srv.port):
            assert time.monotonic() < deadline, "netinfod never accepted again"
            time.sleep(0.3)
    finally:
        srv.stop()
    log = "".join(lines)
    assert "Traceback" not in log
    # rate-limited: one line for the many failed accepts of those seconds
    assert log.count("cannot accept connections") == 1, log


def test_nibindd_at_the_descriptor_limit(tmp_path):
    from .conftest import Nibindd
    (tmp_path / "netinfo").mkdir()
    nb = Nibindd(tmp_path / "netinfo")
    nb.start(tags=())
    try:
        port = int(nb.env["NETINFO_PORTMAPPER"].rpartition(":")[2])
        assert nb.proc is not None
        held = exhaust(nb.proc.pid, port, nb.log, "nibindd")
        time.sleep(2.5)
        assert not ping_tcp(port, timeout=1.0, prog=100000)
        for s in held:
            s.close()
        deadline = time.monotonic() + 15
        while not ping_tcp(port, prog=100000):
            assert time.monotonic() < deadline, "nibindd never accepted again"
            time.sleep(0.3)
    finally:
        nb.stop()
    log = "".join(nb.log)
    assert "Traceback" not in log
    assert log.count("cannot accept connections") == 1, log
