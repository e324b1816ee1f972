"""netinfod --read-workers (issue 20 item 3; server/readworkers.py): reads served by
several processes on one SQLite store, over the real wire.

A real netinfod with two read workers: many connections reading (raw records, replies
compared byte for byte with a single-process server's for the same script) while writes
go on other connections, each read sent after a write's reply seeing it; the superuser's
writes through any process; a worker killed (restarted, service goes on); SIGTERM (every
process gone); engines other than SQLite refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netinfo.client.core import Client
from netinfo.errors import NiError, Status
from netinfo.model import NiId
from netinfo.server.readworkers import (
    ALL,
    RING_ENTRIES,
    Ring,
    is_local_read,
    touched_ids,
)
from netinfo.storage.changes import Change, DirState, Touched
from netinfo.wire import rpc
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc, encode_args

from .conftest import ROOT_USER, env_with_src, free_port


def children(pid: int) -> list[int]:
    """The processes whose parent is *pid* (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def record(xid: int, proc: Proc, *args: object) -> bytes:
    return rpc.frame(rpc.encode_call(xid, NETINFO_PROG, NETINFO_VERS, int(proc),
                                     encode_args(PROCEDURES[proc], *args)))


class Raw:
    """A raw TCP connection: records out, reply records back as bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.sock.settimeout(10)

    def call(self, rec: bytes) -> bytes:
        self.sock.sendall(rec)
        out = b""
        while True:
            head = self._exact(4)
            n = struct.unpack(">I", head)[0]
            out += self._exact(n & 0x7FFFFFFF)
            if n & 0x80000000:
                return out

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            got = self.sock.recv(n - len(buf))
            if not got:
                raise ConnectionError("closed")
            buf += got
        return buf

    def close(self) -> None:
        self.sock.close()


#: netinfod's pid → the lines of its standard error so far
LOGS: dict[int, list[str]] = {}


def start(tmp_path: Path, workers: int, *extra: str, strict: bool = False
          ) -> tuple[subprocess.Popen, int, list[int]]:
    """A real netinfod (-m --populate) with *workers* read workers: (process, port,
    worker pids)."""
    port = free_port()
    trust = () if ROOT_USER or strict else ("--trust-local",)
    cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(tmp_path), "--bind",
           "127.0.0.1", "--port", str(port), "-m", "--populate", "-n", *trust,
           "--read-workers", str(workers), *extra, "test"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env_with_src(), text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError(f"netinfod exited with {proc.wait()}")
        if line.startswith("netinfod: serving test "):
            pids = []
            if "read-workers=" in line:
                pids = [int(p) for p in line.split("read-workers=")[1].split(",")]
            # stderr is kept by a thread so that the server never blocks on it
            lines: list[str] = []
            LOGS[proc.pid] = lines
            threading.Thread(target=lines.extend, args=(proc.stderr,), daemon=True).start()
            return proc, port, pids
    proc.kill()
    raise RuntimeError("netinfod did not start")


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture
def server(tmp_path):
    started: list[tuple[subprocess.Popen, list[int]]] = []

    def make(workers: int = 2, *extra: str, sub: str = "d", strict: bool = False):
        d = tmp_path / sub
        d.mkdir()
        proc, port, pids = start(d, workers, *extra, strict=strict)
        started.append((proc, pids))
        return proc, port, pids
    yield make
    for proc, _ in started:
        pid = proc.pid
        kids = children(pid)
        stop(proc)
        for k in kids:
            if alive(k):
                os.kill(k, signal.SIGKILL)


# -- the pure parts ------------------------------------------------------------------------

def test_local_reads_are_exactly_the_anonymous_netinfo_reads():
    def head(proc: int, prog: int = NETINFO_PROG, cred: int = 0) -> bytes:
        return struct.pack(">IIIIIIII", 7, rpc.CALL, 2, prog, NETINFO_VERS, proc, cred, 0)
    for p in Proc:
        assert is_local_read(head(p) + b"\0" * 16) == (p in {
            Proc.PING, Proc.ROOT, Proc.SELF, Proc.PARENT, Proc.READ, Proc.CHILDREN,
            Proc.LOOKUP, Proc.LIST, Proc.READPROP, Proc.LISTPROPS, Proc.READNAME,
            Proc.LISTALL, Proc.LOOKUPREAD}), p
    assert not is_local_read(head(Proc.READ, cred=1) + b"\0" * 16)   # AUTH_UNIX
    assert not is_local_read(head(Proc.READ, prog=100004) + b"\0" * 16)
    # YP (100004 v2) only with the NIS door on: NULL, DOMAIN, DOMAIN_NONACK, MATCH, with
    # any credential
    for p in range(12):
        rec = struct.pack(">IIIIIIII", 7, rpc.CALL, 2, 100004, 2, p, 1, 0) + b"\0" * 16
        assert is_local_read(rec, yp=True) == (p in {0, 1, 2, 3}), p
        assert not is_local_read(rec)
    assert not is_local_read(b"\0\0\0\1")


def test_ring_gives_what_was_published_and_says_when_it_fell_behind():
    owner = Ring.new()
    try:
        reader = Ring(owner.fd, create=False)
        pos = reader.position
        assert reader.since(pos) == (pos, [])
        owner.publish([5, 7])
        owner.publish([9])
        pos, ids = reader.since(pos)
        assert ids == [5, 7, 9] and pos == 3
        for _ in range(RING_ENTRIES // 1000 + 1):
            owner.publish(list(range(1000)))
        assert reader.since(pos)[1] is None          # overwritten: drop everything
        owner.publish(list(range(RING_ENTRIES)))      # too many at once: everything
        assert reader.since(reader.position - 1)[1] == [ALL]
        reader.close()
    finally:
        owner.close()


def test_touched_ids_are_the_directories_and_their_parents():
    t = Touched(12, DirState(1, 3, None, ()), DirState(2, 4, None, ()))
    c = Change(seq=1, proc=Proc.WRITE, caller=None, args=(), result=None,  # type: ignore[arg-type]
               touched=(t,), ops=())
    assert touched_ids([c]) == [12, 3, 4]
    whole = Change(seq=2, proc=None, caller=None, args=(), result=None,  # type: ignore[arg-type]
                   touched=(), ops=())
    assert touched_ids([c, whole]) == [ALL]


# -- over the wire -------------------------------------------------------------------------

def script(port: int, readers: int = 8, steps: int = 24) -> list[bytes]:
    """Writes on one connection, each followed by reads of what it changed on *readers*
    other raw connections; every reply's bytes, in order. Each read must see the write
    whose reply came before it."""
    conns = [Raw(port) for _ in range(readers)]
    out: list[bytes] = []
    ok = b"\0\0\0\0"

    async def go() -> None:
        xid = 1

        def ask(c: Raw, proc: Proc, *args: object) -> bytes:
            nonlocal xid
            rep = c.call(record(xid, proc, *args))
            xid += 1
            out.append(rep)
            return rep

        async with await Client.connect("127.0.0.1", port, "test") as w:
            users = await w.pathsearch("/users")
            made: list[tuple[str, NiId]] = []
            for i in range(steps):
                name = f"u{i}"
                kid, users = await w.create(users, [("name", [name]),
                                                    ("uid", [str(500 + i)])])
                made.append((name, kid))
                if i % 3 == 2:
                    n0, d0 = made[-3]
                    d0 = await w.createprop(d0, "shell", [f"/bin/s{i}"])
                    made[-3] = (n0, d0)
                    for c in conns:
                        assert f"/bin/s{i}".encode() in ask(c, Proc.READ, d0), i
                if i % 5 == 4:
                    n1, d1 = made.pop(0)
                    users = await w.destroy(users, await w.self_id(d1))
                    for c in conns:
                        rep = ask(c, Proc.LOOKUP, users, "name", n1)
                        assert rep[24:28] == struct.pack(">I", Status.NODIR), (i, n1)
                        assert ask(c, Proc.READ, d1)[24:28] == struct.pack(
                            ">I", Status.BADID), (i, n1)
                for c in conns:
                    for n, d in made[-2:]:
                        rep = ask(c, Proc.LOOKUPREAD, users, "name", n)
                        assert rep[24:28] == ok and n.encode() in rep, (i, n)
                        rep = ask(c, Proc.READ, d)
                        assert rep[24:28] == ok and n.encode() in rep, (i, n)
                    rep = ask(c, Proc.SELF, users)
                    assert rep[28:36] == struct.pack(">II", *users), i
                    rep = ask(c, Proc.LIST, users, "name")
                    assert all(n.encode() in rep for n, _ in made), i
    try:
        asyncio.run(go())
    finally:
        for c in conns:
            c.close()
    return out


def test_reads_after_acknowledged_writes_see_them_as_one_process_answers(server):
    """Byte for byte what a single-process server answers to the same script; every read
    sent after a write's reply sees the write, whichever process serves its connection."""
    _, port1, pids = server(2, sub="w2")
    assert len(pids) == 2
    with_workers = script(port1)
    _, port0, none = server(0, sub="w0")
    assert none == []
    single = script(port0)
    assert len(with_workers) == len(single)
    assert with_workers == single


def test_workers_serve_reads_while_the_owner_is_stopped(server):
    """Connections land on the workers (SO_REUSEPORT): with the owner stopped, reads on
    the connections a worker accepted are still answered."""
    proc, port, _ = server(2)
    conns = [Raw(port) for _ in range(12)]
    try:
        for c in conns:
            c.call(record(1, Proc.READ, NiId(0, 0)))   # accepted by now
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            answered = 0
            for c in conns:
                c.sock.settimeout(0.5)
                try:
                    c.call(record(2, Proc.READ, NiId(0, 0)))
                    answered += 1
                except TimeoutError:
                    pass
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert answered >= 1   # all 12 on the owner: (1/3)^12
    finally:
        for c in conns:
            c.close()


def test_the_superusers_writes_pass_through_any_process(server):
    """Writes on many connections (some accepted by workers, handed to the owner with
    the socket itself): the reserved port as root, the owner's uid as an ordinary user
    (a strict server, no --trust-local), are the superuser's; an unprivileged root
    connection is refused."""
    _, port, _ = server(2, strict=True)

    async def go() -> None:
        for i in range(10):
            async with await Client.connect("127.0.0.1", port, "test") as c:
                users = await c.pathsearch("/users")
                await c.create(users, [("name", [f"su{i}"])])
        if ROOT_USER:
            async with await Client.connect("127.0.0.1", port, "test",
                                            privileged=False) as c:
                users = await c.pathsearch("/users")
                with pytest.raises(NiError) as e:
                    await c.create(users, [("name", ["nope"])])
                assert e.value.status == Status.PERM
        async with await Client.connect("127.0.0.1", port, "test") as c:
            users = await c.pathsearch("/users")
            entries, _ = await c.list(users, "name")
            names = [v for _, v in entries]
            assert all([f"su{i}"] in names for i in range(10))
    asyncio.run(go())


def test_credentials_are_checked_by_the_owner_through_any_process(server):
    """AUTH_UNIX writes (handed over at their first call): the right password writes as
    the user, a wrong one is NI_AUTHERROR, on connections spread over the processes;
    the owner's log says connections were handed over."""
    from netinfo.passwords import hash_password  # noqa: PLC0415
    proc, port, _ = server(2, "-v", strict=True)

    async def go() -> None:
        async with await Client.connect("127.0.0.1", port, "test") as su:
            users = await su.pathsearch("/users")
            await su.create(users, [("name", ["ann"]), ("uid", ["601"]),
                                    ("passwd", [hash_password("pw")]),
                                    ("_writers", ["ann"])])
        for i in range(8):
            async with await Client.connect("127.0.0.1", port, "test",
                                            privileged=False) as c:
                ann = await c.pathsearch("/users/ann")
                c.set_password("pw" if i % 2 == 0 else "wrong", 601)
                if i % 2 == 0:
                    await c.createprop(ann, f"p{i}", ["x"])
                else:
                    with pytest.raises(NiError) as e:
                        await c.createprop(ann, f"p{i}", ["x"])
                    assert e.value.status == Status.AUTHERROR
        async with await Client.connect("127.0.0.1", port, "test") as c:
            _, props = await c.read(await c.pathsearch("/users/ann"))
            names = [k for k, _ in props]
            assert [n for n in names if n[:1] == "p" and n[1:].isdigit()] == [
                "p0", "p2", "p4", "p6"]
    asyncio.run(go())
    time.sleep(0.2)
    assert any("handed over by read worker" in line for line in LOGS[proc.pid])


def test_a_killed_worker_is_restarted_and_service_goes_on(server):
    proc, port, pids = server(2)
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        kids = children(proc.pid)
        if len(kids) == 2 and pids[0] not in kids:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker not restarted: {children(proc.pid)}")
    for _ in range(20):
        c = Raw(port)
        try:
            assert c.call(record(3, Proc.READ, NiId(0, 0)))[24:28] == b"\0\0\0\0"
        finally:
            c.close()
    assert any(f"(pid {pids[0]}) ended with status -9; starting it again" in line
               for line in LOGS[proc.pid])


def test_sigterm_stops_every_process(server):
    proc, port, pids = server(2)
    c = Raw(port)
    c.call(record(1, Proc.READ, NiId(0, 0)))
    c.close()
    assert all(alive(p) for p in pids)
    assert stop(proc) == 0
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()


def test_other_engines_are_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "netinfo.cli.netinfod", "--store", "memory:",
                        "--port", str(free_port()), "-m", "--read-workers", "2", "test"],
                       capture_output=True, text=True, env=env_with_src(), timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "--read-workers needs a SQLite store" in r.stderr


def test_unread_bytes_give_the_same_records_to_another_reader():
    """What a worker hands over with a connection: complete records not answered are
    re-framed by the caller; RecordReader.unread gives back what is half-read, a
    fragment included."""
    whole = rpc.frame(b"x" * 10)
    first = struct.pack(">I", 6) + b"abcdef"          # a fragment, not the last
    last_part = struct.pack(">I", 0x80000000 | 4) + b"ghij"
    r = rpc.RecordReader()
    assert r.feed(whole + first + last_part[:5]) == [b"x" * 10]
    left = r.unread()
    assert r.pending() == 0
    again = rpc.RecordReader()
    assert again.feed(left + last_part[5:]) == [b"abcdefghij"]


def test_a_read_only_store_reads_and_refuses_writes(tmp_path):
    from netinfo.errors import StorageError  # noqa: PLC0415
    from netinfo.server.database import Database, open_database  # noqa: PLC0415
    from netinfo.server.service import SUPERUSER  # noqa: PLC0415
    from netinfo.storage.sqlite import SqliteStore  # noqa: PLC0415
    with open_database(tmp_path, "t", create=True) as owner:
        owner.procedures.proc_create(SUPERUSER, NiId(0, owner.source[0].instance),
                                     [("name", ["a"])], 0xFFFFFFFF)
        owner.commit()
        path = owner.store.path
        reader = Database(SqliteStore(path, read_only=True))
        try:
            root = reader.source[0]
            assert root is not None and len(list(root.children)) == 1
            with pytest.raises(StorageError):
                reader.store.commit([], 0)
        finally:
            reader.close()


def test_yp_match_through_the_workers_sees_each_write(server, monkeypatch):
    """With the NIS door on, the workers answer YP MATCH too: on many connections, each
    MATCH sent after a NETINFO write's reply sees the write."""
    from netinfo.wire import yp  # noqa: PLC0415
    monkeypatch.setenv("NETINFO_PORTMAPPER", "127.0.0.1:1")   # nothing there
    _, port, _ = server(2, "--nis-domain", "nitest")
    conns = [Raw(port) for _ in range(8)]

    def match(c: Raw, key: bytes) -> bytes:
        rep = c.call(rpc.frame(rpc.encode_call(5, yp.YPPROG, 2, yp.YpProc.MATCH,
                                               yp.encode_key("nitest", "passwd.byname", key))))
        return rep[24:]

    async def go() -> None:
        async with await Client.connect("127.0.0.1", port, "test") as w:
            users = await w.pathsearch("/users")
            props = [("name", ["alice"]), ("passwd", ["*"]), ("uid", ["5001"]),
                     ("gid", ["20"]), ("realname", ["Alice"]), ("home", ["/h/alice"]),
                     ("shell", ["/bin/sh"])]
            alice, users = await w.create(users, props)
            for uid in range(5002, 5012):
                seen = {match(c, b"alice") for c in conns}
                assert len(seen) == 1
                assert yp.decode_val(seen.pop())[1].startswith(
                    f"alice:x:{uid - 1}:".encode())
                alice = await w.write(alice, [(k, [str(uid)] if k == "uid" else v)
                                              for k, v in props])
            for c in conns:
                assert yp.decode_val(match(c, b"alice"))[1].startswith(b"alice:x:5011:")
                assert yp.decode_val(match(c, b"nosuchuser"))[0] == yp.YpStat.NOKEY
    try:
        asyncio.run(go())
    finally:
        for c in conns:
            c.close()
