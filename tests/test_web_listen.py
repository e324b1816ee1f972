"""Where ``netinfo-web`` listens (issue 17): a default port of each user's own, and a port it
cannot have is one line on stderr and a non-zero exit, never a "serving" line first. Real
subprocesses, as the console script runs the tool."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from netinfo.web.server import default_port

from .conftest import SRC, env_with_src, free_port

NOBODY = 65534
WEB = [sys.executable, "-m", "netinfo.web.server"]


def _first_line(cmd: list[str], env: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[str, str, int]:
    """(first stderr line, the rest of stderr, exit status) of netinfo-web run as *cmd*;
    stopped (SIGTERM) once it says it serves."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or env_with_src())
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        if first.startswith("netinfo-web: serving "):
            proc.terminate()
        out, rest = proc.communicate(timeout=timeout)
    finally:
        timer.cancel()
    assert out == "", out
    return first.rstrip("\n"), rest, proc.returncode


def test_a_second_netinfo_web_on_a_busy_port_says_so_in_one_line():
    """Before: ``serving . on http://127.0.0.1:8966/``, then uvicorn's bind error, exit 3."""
    port = free_port()
    first = subprocess.Popen([*WEB, "--bind", f"127.0.0.1:{port}"], env=env_with_src(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        line = first.stderr.readline()
        assert line == f"netinfo-web: serving . on http://127.0.0.1:{port}/\n", line
        second = subprocess.run([*WEB, "--bind", f"127.0.0.1:{port}"], env=env_with_src(),
                                capture_output=True, text=True, timeout=60)
        assert second.stderr == (f"netinfo-web: 127.0.0.1:{port} is in use; "
                                 "--bind HOST:PORT\n")
        assert second.returncode == 2 and second.stdout == ""
        assert first.poll() is None, "the first one goes on serving"
    finally:
        first.terminate()
        first.wait(15)
        assert first.stderr is not None
        first.stderr.close()


def test_a_port_someone_else_listens_on_is_refused_before_serving():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line, rest, rc = _first_line([*WEB, "--bind", f"127.0.0.1:{port}"])
    assert (line, rest, rc) == (
        f"netinfo-web: 127.0.0.1:{port} is in use; --bind HOST:PORT", "", 2)


def test_an_address_that_is_not_this_hosts_is_one_line():
    """192.0.2.1 (TEST-NET-1, RFC 5737) is no host's: bind fails, nothing is sent."""
    line, rest, rc = _first_line([*WEB, "--bind", "192.0.2.1:8080"])
    assert (line, rest, rc) == (
        "netinfo-web: cannot listen on 192.0.2.1:8080: not an address of this host", "", 2)


def test_a_certificate_it_cannot_read_is_one_line_before_serving(tmp_path):
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    port = free_port()
    for cert, why in ((tmp_path / "none.pem", "No such file or directory"),
                      (bad, "[SSL] PEM lib")):
        line, rest, rc = _first_line([*WEB, "--bind", f"127.0.0.1:{port}",
                                      "--certfile", str(cert), "--keyfile", str(cert)])
        assert line.startswith(f"netinfo-web: cannot use --certfile {cert} with --keyfile "
                               f"{cert}: {why}"), line
        assert (rest, rc) == ("", 2)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a certificate")
def test_https_on_the_socket_it_made(tmp_path):
    """The socket made before the "serving" line carries TLS when given a certificate."""
    import http.client
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    proc = subprocess.Popen([*WEB, "--bind", f"127.0.0.1:{port}", "--certfile", str(cert),
                             "--keyfile", str(key)], env=env_with_src(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line == f"netinfo-web: serving . on https://127.0.0.1:{port}/\n", line
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(15)
        assert proc.stderr is not None
        proc.stderr.close()


def _reserved_port_is_refused() -> bool:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read()) > 1
    except OSError:
        return True


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on a reserved port")
@pytest.mark.skipif(not _reserved_port_is_refused(),
                    reason="this kernel lets every user listen on port 1")
def test_a_reserved_port_as_an_ordinary_user_is_one_line():
    line, rest, rc = _first_line([*WEB, "--bind", "127.0.0.1:1"])
    assert (line, rest, rc) == (
        "netinfo-web: cannot listen on 127.0.0.1:1: permission denied (a port below 1024 "
        "needs root); --bind HOST:PORT", "", 2)


def test_each_user_has_a_port_of_their_own_apart_from_the_portmappers():
    assert default_port(0) == 8966
    assert default_port(1000) == 31000 and default_port(NOBODY) == 35534
    for uid in (*range(1, 70000, 7), 2**31 - 1, 2**32 - 2):
        port = default_port(uid)
        assert 30000 <= port < 50000, uid
        # the README's portmapper ports, 10000 + uid % 20000, of this user and any other
        assert not 10000 <= port < 30000 and port != 8966


def _expected(port: int) -> tuple[str, str]:
    """What netinfo-web prints first on *port*: serving, or the port is in use (another
    run of this user's, on a shared machine): either way the port it chose."""
    return (f"netinfo-web: serving . on http://127.0.0.1:{port}/",
            f"netinfo-web: 127.0.0.1:{port} is in use; --bind HOST:PORT")


def test_without_bind_it_listens_on_the_users_own_port():
    """As the user the suite runs as: root 8966, anyone else 30000 + uid % 20000 (CI runs
    the suite both ways)."""
    port = 8966 if os.geteuid() == 0 else 30000 + os.geteuid() % 20000
    line, _, rc = _first_line(WEB)
    assert line in _expected(port), line
    if "in use" in line:
        assert rc == 2


def _as_nobody() -> list[str] | str:
    """setpriv's prefix that runs this Python as nobody, or why it cannot."""
    if os.geteuid() != 0:
        return "needs root to switch to another user"
    if not shutil.which("setpriv"):
        return "needs setpriv"
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    r = subprocess.run([*prefix, sys.executable, "-c", "import uvicorn, starlette, netinfo"],
                       capture_output=True, env=env_with_src(), timeout=60)
    if r.returncode:
        return f"nobody cannot run {sys.executable} with the web extra and {SRC}"
    return prefix


def test_without_bind_another_user_gets_another_port():
    prefix = _as_nobody()
    if isinstance(prefix, str):
        pytest.skip(prefix)
    line, _, _ = _first_line([*prefix, *WEB])
    assert line in _expected(35534), line
