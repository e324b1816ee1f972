"""Progress bars: niload and nidump show one on a real terminal (a pty) for jobs of more
than about 1,000 records, and none when stderr is not a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from .conftest import env_with_src


def _run_with_tty_stderr(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=slave, env=env_with_src())
    os.close(slave)
    out, _ = p.communicate(stdin, timeout=120)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_only(netinfod, run_tool):
    d = netinfod("prog", "-m")
    t = f"127.0.0.1:{d.port}/prog"
    lines = "".join(f"u{i}:*:{1000 + i}:20::0:0:User {i}:/home/u{i}:/bin/sh\n"
                    for i in range(1500)).encode()
    rc, _, tty = _run_with_tty_stderr(["netinfo.cli.niload", "passwd", "-t", t], lines)
    assert rc == 0 and "/1500" in tty, tty
    # nidump -r walks the tree with pipelined calls: a bar once past ~1,000 directories.
    # (A flat dump is one LISTALL, 0.6 s for 10,000 users: it shows none.)
    rc, out, tty = _run_with_tty_stderr(["netinfo.cli.nidump", "-r", "/users", "-t", t])
    assert rc == 0 and out.count('"realname" = ( "User ') == 1500 and "\r" in tty, tty
    # not a terminal: nothing but the dump
    r = run_tool("nidump", "passwd", "-t", t)
    assert r.returncode == 0 and r.stderr == ""
