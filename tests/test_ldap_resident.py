"""The LDAP door's users' entries held in memory (``residents``, issue 22), served.

A netinfod with ``--ldap`` asked for each of 3,000 users once by anonymous equality
searches (nslcd's filter) reads the users' entries into memory after RESIDENT_AFTER
misses and answers from there; writes through NetInfo (a property changed, a user
renamed, one destroyed, one made) are seen by the next search. With
``--ldap-resident-mb 0`` nothing is read: the same answers.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from netinfo.server import ldap as door
from netinfo.wire import ber
from netinfo.wire import ldap as L

from .conftest import TRUST, env_with_src, free_port
from .test_nis_resident import _said, users_domain

BASE = "dc=t,dc=netinfo"
USERS_DN = f"ou=users,{BASE}"


def _ask(s: socket.socket, msgid: int, name: str) -> list[L.Message]:
    """nslcd's search for *name*, and its answer (the entries and the result)."""
    s.sendall(L.encode_message(L.Message(msgid, L.SearchRequest(
        USERS_DN, L.Scope.ONE, 0, 0, 0, False, L.And((
            L.Compare(L.F_EQUAL, "objectClass", b"posixAccount"),
            L.Compare(L.F_EQUAL, "uid", name.encode()))), ()))))
    out: list[L.Message] = []
    buf = b""
    while not out or not isinstance(out[-1].op, L.Response):
        n = ber.frame(buf)
        if n is None:
            data = s.recv(65536)
            assert data, "connection closed"
            buf += data
            continue
        out.append(L.decode_message(buf[:n]))
        buf = buf[n:]
    assert out[-1].id == msgid and out[-1].op.code == L.ResultCode.SUCCESS
    return out


def _user(s: socket.socket, msgid: int, name: str) -> dict[str, tuple[bytes, ...]] | None:
    """The attributes of the one entry a search for *name* finds (None: none)."""
    got = _ask(s, msgid, name)
    assert len(got) <= 2
    if len(got) == 1:
        return None
    entry = got[0].op
    assert isinstance(entry, L.SearchEntry) and entry.dn == f"uid={name},{USERS_DN}"
    return dict(entry.attributes)


@pytest.mark.parametrize("flags", [(), ("--ldap-resident-mb", "0")],
                         ids=["resident", "none-kept"])
def test_the_door_answers_from_memory_and_sees_writes(tmp_path, monkeypatch, flags):
    n = 3000
    users_domain(tmp_path, n, ("passwd", ["$1$salt$hash"]))
    monkeypatch.setenv("NETINFO_PORTMAPPER", "127.0.0.1:1")   # served unregistered
    log = tmp_path / "netinfod.log"
    port, lport = free_port(), free_port()
    resident = "0" not in flags
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "netinfo.cli.netinfod", "--dir",
                                 str(tmp_path), "--bind", "127.0.0.1", "--port", str(port),
                                 *TRUST, *flags, "--ldap", f"127.0.0.1:{lport}",
                                 "--ldap-base", BASE, "test"],
                                stdout=subprocess.DEVNULL, stderr=out,
                                stdin=subprocess.DEVNULL, env=env_with_src())
    try:
        assert _said(log, "netinfod: serving test", 30), log.read_text()
        kept = f"LDAP: users 0 kept in memory: {n} entries"
        with socket.create_connection(("127.0.0.1", lport), 5) as s:
            for msgid in range(1, n + 1):          # each user once: nothing kept twice
                i = msgid * 7 % n
                attrs = _user(s, msgid, f"u{i}")
                assert attrs is not None and attrs["uidNumber"] == (str(10000 + i).encode(),)
                assert "userPassword" not in attrs
                if msgid > door.RESIDENT_AFTER and _said(log, kept, 0):
                    break
            assert _said(log, kept, 10 if resident else 1) is resident, log.read_text()
            for msgid in range(5000, 5300):
                i = msgid * 13 % n
                attrs = _user(s, msgid, f"u{i}")
                assert attrs is not None and attrs["loginShell"] == (b"/bin/sh",)
            assert _user(s, 6000, "nobody-here") is None
            env = env_with_src()
            for argv in (["-createprop", "/users/u7", "shell", "/bin/zsh"],
                         ["-createprop", "/users/u8", "name", "eve"],
                         ["-destroy", "/users/u9"],
                         ["-create", "/users/u10x"]):
                r = subprocess.run([sys.executable, "-m", "netinfo.cli.niutil", argv[0],
                                    f"test@127.0.0.1:{port}", *argv[1:]],
                                   capture_output=True, text=True, env=env, timeout=60)
                assert r.returncode == 0, r.stderr
            u7 = _user(s, 6001, "u7")
            assert u7 is not None and u7["loginShell"] == (b"/bin/zsh",)
            assert _user(s, 6002, "u8") is None
            eve = _user(s, 6003, "eve")
            assert eve is not None and eve["uidNumber"] == (b"10008",)
            assert _user(s, 6004, "u9") is None
            assert _user(s, 6005, "u10x") is not None
            u11 = _user(s, 6006, "u11")                # untouched: still from memory
            assert u11 is not None and u11["uidNumber"] == (b"10011",)
    finally:
        proc.terminate()
        proc.wait(30)
