"""Hostile and malformed input against a real netinfod (spec §1.2–§1.4, §2, §4.1).

Every case talks raw bytes over its own socket and then proves that the server is still up and
still serving: a *bystander* TCP connection opened before the case must still be answered
afterwards, and so must a fresh TCP connection and a UDP PING (the autouse fixture
``still_serving``).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from netinfo.client.core import Client, SyncClient
from netinfo.errors import RpcError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.wire import rpc
from netinfo.wire.proplist import unpack_proplist
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc, encode_args
from netinfo.wire.rpc import AcceptStat, AuthStat, RejectStat

from .conftest import Netinfod, env_with_src, free_port

TAG = "hostile"
NIBIND_PROG = 200100001
MiB = 1 << 20
#: Loopback peer served as a child domain by the shared server's /machines (for BIND).
CHILD_ADDR, CHILD_TAG = "127.0.0.2", "kidtag"


def trust() -> tuple[str, ...]:
    """Writes need the local superuser: root clients get it from a reserved source port."""
    return () if os.geteuid() == 0 else ("--trust-local",)


def drain(proc: subprocess.Popen) -> list[str]:
    """Read the server's stderr in the background (it logs every connection it drops)."""
    lines: list[str] = []

    def run() -> None:
        try:
            for line in proc.stderr:  # type: ignore[union-attr]
                lines.append(line)
        except (ValueError, OSError):
            pass
    threading.Thread(target=run, daemon=True).start()
    return lines


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def reset_peak(pid: int) -> None:
    """Restart VmHWM from the current RSS (Linux ≥ 4.0, ``clear_refs`` 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_growth_mib(pid: int, before: dict[str, int]) -> float:
    return (memory(pid)["VmHWM"] - before["VmRSS"]) / 1024


# -- raw RPC ----------------------------------------------------------------------------------

def call(xid: int, proc: int, args: bytes = b"", *, prog: int = NETINFO_PROG,
         vers: int = NETINFO_VERS, auth: rpc.AuthUnix | None = None) -> bytes:
    return rpc.encode_call(xid, prog, vers, proc, args, auth)


def call_with_cred(xid: int, proc: int, flavor: int, body: bytes, args: bytes = b"") -> bytes:
    """A call whose credential is exactly (*flavor*, *body*), whatever it contains."""
    pad = b"\0" * (-len(body) % 4)
    return (struct.pack(">6I", xid, rpc.CALL, 2, NETINFO_PROG, NETINFO_VERS, proc)
            + struct.pack(">II", flavor, len(body)) + body + pad + b"\0" * 8 + args)


def nid(obj: int, inst: int = 0) -> bytes:
    return struct.pack(">II", obj, inst)


def xstr(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s + b"\0" * (-len(s) % 4)


def args_of(proc: Proc, *a) -> bytes:
    return encode_args(PROCEDURES[proc], *a)


class Conn:
    """A raw TCP connection speaking record-marked RPC."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_call(self, record: bytes) -> None:
        self.send(rpc.frame(record))

    def _fill(self, n: int, timeout: float) -> bool:
        """Buffer at least *n* bytes; False on EOF or reset."""
        self.sock.settimeout(timeout)
        while len(self.buf) < n:
            try:
                data = self.sock.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                return False
            if not data:
                return False
            self.buf += data
        return True

    def recv_record(self, timeout: float | None = None) -> bytes | None:
        """The next reply record; None when the server closed the connection.

        :raises TimeoutError: nothing within *timeout*.
        """
        timeout = self.timeout if timeout is None else timeout
        parts = []
        while True:
            if not self._fill(4, timeout):
                return None
            hdr = struct.unpack(">I", self.buf[:4])[0]
            n = hdr & 0x7FFFFFFF
            if not self._fill(4 + n, timeout):
                return None
            parts.append(self.buf[4:4 + n])
            self.buf = self.buf[4 + n:]
            if hdr & 0x80000000:
                return b"".join(parts)

    def rpc(self, record: bytes, timeout: float | None = None) -> bytes:
        self.send_call(record)
        rep = self.recv_record(timeout)
        assert rep is not None, "server closed the connection"
        return rep

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes (EOF or reset) within *timeout* without a reply."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        assert not data, f"unexpected reply bytes {data[:32].hex()}"
        return True


def udp_exchange(port: int, datagram: bytes, timeout: float = 2.0,
                 sock: socket.socket | None = None) -> bytes | None:
    """Send one datagram; the reply, or None when none arrives within *timeout*."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(datagram, ("127.0.0.1", port))
        try:
            return s.recv(65536)
        except TimeoutError:
            return None
    finally:
        if own:
            s.close()


def reserved_udp_socket() -> socket.socket:
    """A UDP socket on a reserved port when root (so the caller counts as the superuser)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if os.geteuid() == 0:
        for port in random.sample(range(600, 1024), 100):
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
    return s


def ok(reply: bytes, xid: int | None = None):
    """Decode an accepted SUCCESS reply; returns the unpacker at the results."""
    rxid, u = rpc.decode_reply(reply)
    if xid is not None:
        assert rxid == xid
    return u


def refused(reply: bytes, kind: str, stat: int, detail: tuple[int, ...] | None = None,
            xid: int | None = None) -> None:
    with pytest.raises(RpcError) as e:
        rpc.decode_reply(reply)
    assert (e.value.kind, e.value.stat) == (kind, stat), e.value
    if detail is not None:
        assert tuple(e.value.detail) == detail
    if xid is not None:
        assert e.value.xid == xid


def assert_serving(port: int, conn: Conn | None = None) -> None:
    """The server answers on *conn* (when given), on a fresh TCP connection and over UDP."""
    if conn is not None:
        u = ok(conn.rpc(call(0x5EED, Proc.ROOT), timeout=5), 0x5EED)
        assert u.unpack_int() == 0
    fresh = Conn(port)
    try:
        u = ok(fresh.rpc(call(7, Proc.READ, nid(0))), 7)
        assert u.unpack_int() == 0
    finally:
        fresh.close()
    rep = udp_exchange(port, call(8, Proc.PING), timeout=5)
    assert rep is not None, "no UDP PING reply"
    ok(rep, 8).done()


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One shared master (with /machines serving a child for BIND) for the malformed cases."""
    d = Netinfod(tmp_path_factory.mktemp("hostile"), TAG, "-m", "--populate", *trust()).start()
    d.log = drain(d.proc)  # type: ignore[attr-defined]
    with SyncClient.connect("127.0.0.1", d.port, TAG) as c:
        machines = c.pathsearch("/machines")
        c.create(machines, [("name", ["kid"]), ("ip_address", [CHILD_ADDR]),
                            ("serves", [f"kid/{CHILD_TAG}"])])
        d.root_instance = c.self_id(0).instance  # type: ignore[attr-defined]
    yield d
    d.stop()


@pytest.fixture(autouse=True)
def still_serving(request):
    """For tests on the shared server: a bystander connection survives, the server serves."""
    if "server" not in request.fixturenames:
        yield None
        return
    d = request.getfixturevalue("server")
    bystander = Conn(d.port)
    ok(bystander.rpc(call(1, Proc.PING)), 1).done()
    yield bystander
    try:
        assert d.proc.poll() is None, f"netinfod died: {''.join(d.log[-5:])}"
        assert_serving(d.port, bystander)
    finally:
        bystander.close()


# -- record marking (spec §1.3) ---------------------------------------------------------------

def test_huge_record_header_closes_only_that_connection(server):
    pid = server.proc.pid
    reset_peak(pid)
    before = memory(pid)
    for hdr in (0xFFFFFFFF, 0x7FFFFFFF):  # 2³¹−1 bytes, as last and as non-last fragment
        c = Conn(server.port)
        c.send(struct.pack(">I", hdr) + b"\0" * 1000)
        assert c.closed_by_server(5)
        c.close()
    assert peak_growth_mib(pid, before) < 16, "memory grew on a declared 2 GiB record"


def test_record_over_the_cap_is_refused_by_closing(server):
    pid = server.proc.pid
    reset_peak(pid)
    before = memory(pid)
    # One 17 MiB fragment: refused as soon as its header is read.
    c = Conn(server.port)
    body = call(1, Proc.PING) + b"\0" * (17 * MiB - 40)
    try:
        c.send(rpc.frame(body, fragment_size=32 * MiB))
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert c.closed_by_server(5)
    c.close()
    # 17 fragments of 1 MiB: refused when the record's total passes the cap (16 MiB).
    c = Conn(server.port)
    try:
        c.send(rpc.frame(body, fragment_size=MiB))
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert c.closed_by_server(5)
    c.close()
    assert rpc.MAX_CALL_RECORD == 16 * MiB
    assert peak_growth_mib(pid, before) < 96, "an over-cap record cost too much memory"


def test_record_under_the_cap_is_read_and_answered(server):
    """15 MiB (under the 16 MiB cap): read whole, answered (trailing bytes → GARBAGE_ARGS)."""
    c = Conn(server.port, timeout=20)
    rec = call(3, Proc.PING) + b"\0" * (15 * MiB)
    refused(c.rpc(rec), "accept", AcceptStat.GARBAGE_ARGS, xid=3)
    ok(c.rpc(call(4, Proc.PING)), 4).done()  # and the connection stays usable
    c.close()


def test_multi_fragment_call_is_reassembled(server):
    c = Conn(server.port)
    rec = call(9, Proc.LOOKUP, args_of(Proc.LOOKUP, NiId(0), "name", "machines"))
    c.send(rpc.frame(rec, fragment_size=5))
    u = ok(c.recv_record(), 9)
    assert u.unpack_int() == 0
    c.close()


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",  # header 0x47455420: a 1.2 GB record, over the cap
    rpc.frame(b"\x13\x37" * 5),  # a record too short for a call header
    rpc.frame(os.urandom(8)),
    rpc.frame(struct.pack(">6I", 1, 7, 2, NETINFO_PROG, 2, 0)),  # msg_type 7
], ids=["http", "short-record", "random-8", "msg-type-7"])
def test_garbage_over_tcp_closes_the_connection(server, garbage):
    c = Conn(server.port)
    c.send(garbage)
    assert c.closed_by_server(5)
    c.close()


def test_reply_message_sent_as_call_is_closed_or_ignored(server):
    c = Conn(server.port)
    reply = rpc.reply_success(0xBAD, b"\0" * 8)
    c.send(rpc.frame(call(1, Proc.PING)) + rpc.frame(reply) + rpc.frame(call(2, Proc.PING)))
    ok(c.recv_record(), 1).done()  # the call before it is answered
    nxt = c.recv_record(5)
    if nxt is not None:  # ignored: the call after it is answered, the REPLY is not
        ok(nxt, 2).done()
    c.close()


# -- RPC header errors (spec §1.2, §4.1) -----------------------------------------------------

@pytest.mark.parametrize("proc", [29, 30, 1000, 0xFFFFFFFF])
def test_unknown_procedure_is_proc_unavail(server, proc):
    c = Conn(server.port)
    refused(c.rpc(call(11, proc)), "accept", AcceptStat.PROC_UNAVAIL, xid=11)
    refused(c.rpc(call(12, proc, nid(0))), "accept", AcceptStat.PROC_UNAVAIL, xid=12)
    c.close()


@pytest.mark.parametrize("prog", [NIBIND_PROG, 100000, 0, 0xFFFFFFFF])
def test_wrong_program_is_prog_unavail(server, prog):
    c = Conn(server.port)
    refused(c.rpc(call(21, Proc.PING, prog=prog)), "accept", AcceptStat.PROG_UNAVAIL, xid=21)
    c.close()


@pytest.mark.parametrize("vers", [1, 3, 0, 0xFFFFFFFF])
def test_wrong_version_is_prog_mismatch_2_2(server, vers):
    c = Conn(server.port)
    refused(c.rpc(call(31, Proc.READ, nid(0), vers=vers)), "accept", AcceptStat.PROG_MISMATCH,
            (2, 2), xid=31)
    c.close()


@pytest.mark.parametrize("rpcvers", [3, 1, 0xFFFFFFFF])
def test_wrong_rpc_version_is_rpc_mismatch(server, rpcvers):
    rec = bytearray(call(41, Proc.PING))
    struct.pack_into(">I", rec, 8, rpcvers)
    c = Conn(server.port)
    refused(c.rpc(bytes(rec)), "reject", RejectStat.RPC_MISMATCH, (2, 2), xid=41)
    c.close()


def _unix_body(name: bytes = b"\x9e\x9d\x9c", gids: list[int] | None = None) -> bytes:
    gids = gids or []
    return (struct.pack(">I", 42) + xstr(name) + struct.pack(">III", 0, 0, len(gids))
            + b"".join(struct.pack(">I", g) for g in gids))


@pytest.mark.parametrize("body", [
    struct.pack(">I", 42),  # only the stamp
    b"",  # empty
    struct.pack(">II", 42, 300) + b"\xff" * 300 + struct.pack(">III", 0, 0, 0),  # name > 255
    _unix_body(gids=list(range(17))),  # 17 gids > 16
    struct.pack(">II", 42, 1000) + b"ab",  # name length past the body
    _unix_body() + b"\0\0\0\0",  # trailing bytes inside the body
], ids=["stamp-only", "empty", "name-300", "gids-17", "name-past-end", "trailing"])
def test_bad_auth_unix_body_is_auth_error_badcred(server, body):
    c = Conn(server.port)
    refused(c.rpc(call_with_cred(51, Proc.READ, 1, body, nid(0))), "reject",
            RejectStat.AUTH_ERROR, (AuthStat.BADCRED,), xid=51)
    c.close()


def test_credential_longer_than_400_bytes_is_badcred(server):
    # opaque_auth bodies are opaque<400> (RFC 5531 §8.2, spec §1.2).
    c = Conn(server.port)
    refused(c.rpc(call_with_cred(52, Proc.READ, 1, b"\0" * 404, nid(0))), "reject",
            RejectStat.AUTH_ERROR, (AuthStat.BADCRED,), xid=52)
    c.close()


def test_valid_auth_unix_is_accepted(server):
    c = Conn(server.port)
    u = ok(c.rpc(call_with_cred(53, Proc.READ, 1, _unix_body(), nid(0))), 53)
    assert u.unpack_int() == 0
    c.close()


# -- argument errors (spec §4.1: malformed arguments → GARBAGE_ARGS) -------------------------

TRUNCATED = {
    "read-half-id": (Proc.READ, b"\0\0\0\0"),
    "read-empty": (Proc.READ, b""),
    "lookup-short-key": (Proc.LOOKUP, nid(0) + struct.pack(">I", 100) + b"name"),
    "lookup-no-value": (Proc.LOOKUP, nid(0) + xstr(b"name")),
    "create-cut": (Proc.CREATE, args_of(Proc.CREATE, NiId(0, 1), [("name", ["x"])],
                                        NI_INDEX_NULL, None)[:-6]),
    "writeprop-no-values": (Proc.WRITEPROP, nid(0, 1) + struct.pack(">I", 0)),
    "readall-empty": (Proc.READALL, b""),
    "bind-no-addr": (Proc.BIND, xstr(b"local")),
    "list-unpadded": (Proc.LIST, nid(0) + struct.pack(">I", 3) + b"nam"),
}


@pytest.mark.parametrize("case", list(TRUNCATED), ids=list(TRUNCATED))
def test_truncated_args_are_garbage_args(server, case):
    proc, args = TRUNCATED[case]
    c = Conn(server.port)
    refused(c.rpc(call(61, proc, args)), "accept", AcceptStat.GARBAGE_ARGS, xid=61)
    c.close()


TRAILING = {
    "ping": (Proc.PING, b"\0\0\0\0"),
    "root": (Proc.ROOT, b"\0\0\0\1"),
    "statistics": (Proc.STATISTICS, b"\0\0\0\0"),
    "read": (Proc.READ, nid(0) + b"\0\0\0\0"),
    "read-1-byte": (Proc.READ, nid(0) + b"\0"),
    "lookup": (Proc.LOOKUP, args_of(Proc.LOOKUP, NiId(0), "name", "machines") + b"\0" * 8),
    "write": (Proc.WRITE, args_of(Proc.WRITE, NiId(0, 1), [("a", ["b"])]) + b"\0\0\0\0"),
}


@pytest.mark.parametrize("case", list(TRAILING), ids=list(TRAILING))
def test_trailing_bytes_after_args_are_garbage_args(server, case):
    proc, args = TRAILING[case]
    c = Conn(server.port)
    refused(c.rpc(call(71, proc, args)), "accept", AcceptStat.GARBAGE_ARGS, xid=71)
    c.close()


HOSTILE_COUNTS = {
    # WRITE {id, proplist [ {name "x", namelist count 0x7fffffff} ]}
    "write-namelist-2^31": (Proc.WRITE, nid(0, 1) + struct.pack(">I", 1) + xstr(b"x")
                            + struct.pack(">I", 0x7FFFFFFF)),
    "write-namelist-65535-lying": (Proc.WRITE, nid(0, 1) + struct.pack(">I", 1) + xstr(b"x")
                                   + struct.pack(">I", 65535) + xstr(b"v")),
    "write-proplist-2^31": (Proc.WRITE, nid(0, 1) + struct.pack(">I", 0x7FFFFFFF)),
    "create-proplist-2^32-1": (Proc.CREATE, nid(0, 1) + struct.pack(">I", 0xFFFFFFFF)),
    "writeprop-values-2^31": (Proc.WRITEPROP, nid(0, 1) + struct.pack(">II", 0, 0x7FFFFFFF)),
    "lookup-key-length-2^31": (Proc.LOOKUP, nid(0) + struct.pack(">I", 0x7FFFFFFF) + b"abcd"),
    "createprop-name-2^32-1": (Proc.CREATEPROP, nid(0, 1) + struct.pack(">I", 0xFFFFFFFF)),
}


@pytest.mark.parametrize("case", list(HOSTILE_COUNTS), ids=list(HOSTILE_COUNTS))
def test_hostile_array_counts_are_garbage_args(server, case):
    proc, args = HOSTILE_COUNTS[case]
    pid = server.proc.pid
    reset_peak(pid)
    before = memory(pid)
    c = Conn(server.port)
    t0 = time.monotonic()
    refused(c.rpc(call(81, proc, args)), "accept", AcceptStat.GARBAGE_ARGS, xid=81)
    assert time.monotonic() - t0 < 2
    c.close()
    assert peak_growth_mib(pid, before) < 16


# -- UDP (spec §1.4) --------------------------------------------------------------------------

def test_udp_read_and_write_are_auth_tooweak(server):
    refused(udp_exchange(server.port, call(91, Proc.READ, nid(0))), "reject",
            RejectStat.AUTH_ERROR, (AuthStat.TOOWEAK,), xid=91)
    refused(udp_exchange(server.port, call(92, Proc.STATISTICS)), "reject",
            RejectStat.AUTH_ERROR, (AuthStat.TOOWEAK,), xid=92)
    s = reserved_udp_socket()
    try:
        w = call(93, Proc.WRITE, args_of(Proc.WRITE, NiId(0, server.root_instance),
                                          [("udp", ["no"])]))
        refused(udp_exchange(server.port, w, sock=s), "reject", RejectStat.AUTH_ERROR,
                (AuthStat.TOOWEAK,), xid=93)
    finally:
        s.close()
    with SyncClient.connect("127.0.0.1", server.port, TAG) as c:
        _, props = c.read(0)
        assert "udp" not in dict(props)


def test_udp_ping_and_bind_are_answered(server):
    ok(udp_exchange(server.port, call(101, Proc.PING)), 101).done()
    served = args_of(Proc.BIND, CHILD_TAG, struct.unpack(">I", socket.inet_aton(CHILD_ADDR))[0])
    ok(udp_exchange(server.port, call(102, Proc.BIND, served)), 102).done()
    # A child not listed in /machines: no reply (NeXT) or SYSTEM_ERR (Apple) (spec §4.4 BIND).
    other = args_of(Proc.BIND, "nobody", 0x0A000001)
    rep = udp_exchange(server.port, call(103, Proc.BIND, other), timeout=1)
    if rep is not None:
        refused(rep, "accept", AcceptStat.SYSTEM_ERR, xid=103)


def test_udp_errors_in_headers_are_answered(server):
    refused(udp_exchange(server.port, call(104, 29)), "accept", AcceptStat.PROC_UNAVAIL)
    refused(udp_exchange(server.port, call(105, 0, prog=NIBIND_PROG)), "accept",
            AcceptStat.PROG_UNAVAIL)
    refused(udp_exchange(server.port, call(106, 0, vers=3)), "accept",
            AcceptStat.PROG_MISMATCH, (2, 2))
    refused(udp_exchange(server.port, call(107, Proc.PING, b"\0\0\0\0")), "accept",
            AcceptStat.GARBAGE_ARGS)


@pytest.mark.parametrize("datagram", [
    b"",
    b"\x01\x02\x03",
    os.urandom(23),
    b"\xff" * 200,
    rpc.reply_success(5, b"\0" * 8),  # a REPLY, not a call
    struct.pack(">6I", 6, 9, 2, NETINFO_PROG, 2, 0) + b"\0" * 16,  # msg_type 9
], ids=["empty", "3-bytes", "random-23", "ff-200", "reply", "msg-type-9"])
def test_udp_garbage_is_ignored(server, datagram):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert udp_exchange(server.port, datagram, timeout=0.3, sock=s) is None
        ok(udp_exchange(server.port, call(111, Proc.PING), sock=s), 111).done()
    finally:
        s.close()


def test_lenient_udp_answers_reads_but_never_writes(netinfod):
    d = netinfod("lenient", "-m", "--lenient-udp", *trust())
    drain(d.proc)
    u = ok(udp_exchange(d.port, call(121, Proc.READ, nid(0))), 121)
    assert u.unpack_int() == 0
    root = NiId(u.unpack_uint(), u.unpack_uint())
    props = unpack_proplist(u)
    u.done()
    assert root.object == 0 and "master" in dict(props)
    s = reserved_udp_socket()
    try:
        for proc, args in [
            (Proc.WRITE, args_of(Proc.WRITE, root, [("udp", ["yes"])])),
            (Proc.CREATEPROP, args_of(Proc.CREATEPROP, root, ("udp", ["yes"]), NI_INDEX_NULL)),
            (Proc.CREATE, args_of(Proc.CREATE, root, [("name", ["udp"])], NI_INDEX_NULL,
                                  None)),
        ]:
            refused(udp_exchange(d.port, call(122, proc, args), sock=s), "reject",
                    RejectStat.AUTH_ERROR, (AuthStat.TOOWEAK,), xid=122)
    finally:
        s.close()
    with SyncClient.connect("127.0.0.1", d.port, "lenient") as c:
        rid, props = c.read(0)
        assert rid == root and "udp" not in dict(props)
    assert_serving(d.port)


# -- slow, greedy and many clients ------------------------------------------------------------

def _latencies(port: int, n: int) -> list[float]:
    c = Conn(port)
    out = []
    try:
        for i in range(n):
            t = time.monotonic()
            u = ok(c.rpc(call(1000 + i, Proc.READ, nid(0)), timeout=10), 1000 + i)
            assert u.unpack_int() == 0
            out.append(time.monotonic() - t)
    finally:
        c.close()
    return out


def test_half_a_record_does_not_delay_other_clients(server):
    slow = Conn(server.port)
    rec = rpc.frame(call(131, Proc.READ, nid(0)))
    slow.send(rec[:len(rec) // 2])
    lat = _latencies(server.port, 50)
    assert max(lat) < 0.5, f"other client delayed: {max(lat):.3f} s"
    # A byte-at-a-time sender does not hold anybody up either.
    drip = Conn(server.port)
    rec2 = rpc.frame(call(132, Proc.PING))
    stop = threading.Event()

    def dribble() -> None:
        for b in rec2:
            if stop.is_set():
                return
            drip.send(bytes([b]))
            time.sleep(0.02)
    t = threading.Thread(target=dribble)
    t.start()
    lat = _latencies(server.port, 30)
    assert max(lat) < 0.5
    t.join()
    ok(drip.recv_record(), 132).done()
    drip.close()
    # The stalled record, completed later, is answered normally.
    slow.send(rec[len(rec) // 2:])
    u = ok(slow.recv_record(), 131)
    assert u.unpack_int() == 0
    slow.close()


def _big_dir(port: int, tag: str, value_size: int, count: int) -> int:
    with SyncClient.connect("127.0.0.1", port, tag) as c:
        child, _ = c.create(c.self_id(0), [("name", ["big"]), ("v", ["x" * value_size] * count)])
    return child.object


def _stats_calls(port: int, proc: Proc) -> int:
    c = Conn(port)
    try:
        u = ok(c.rpc(call(1, Proc.STATISTICS)))
        return int(dict(unpack_proplist(u))[proc.name.lower()][1])
    finally:
        c.close()


def _flood(sock: socket.socket, chunk: bytes, limit_s: float, stall_s: float) -> tuple[int, bool]:
    """Send *chunk* repeatedly without reading; (bytes sent, whether sending stalled)."""
    sock.setblocking(False)
    sent = 0
    t_end = time.monotonic() + limit_s
    last_progress = time.monotonic()
    view = memoryview(chunk)
    pos = 0
    while time.monotonic() < t_end:
        try:
            n = sock.send(view[pos:])
        except BlockingIOError:
            if time.monotonic() - last_progress > stall_s:
                return sent, True
            time.sleep(0.01)
            continue
        sent += n
        pos = (pos + n) % len(chunk)
        last_progress = time.monotonic()
    return sent, False


def test_client_that_never_reads_is_paused_not_served_forever(netinfod):
    """Thousands of pipelined READs, replies never read: the server stops reading that
    client (bounded memory) and keeps serving the others (server.py WRITE_HIGH_WATER)."""
    d = netinfod("hog", "-m", *trust())
    drain(d.proc)
    big = _big_dir(d.port, "hog", 4000, 1)  # READ replies of ~4 KB
    pid = d.proc.pid
    reads_before = _stats_calls(d.port, Proc.READ)
    reset_peak(pid)
    before = memory(pid)
    hog = socket.create_connection(("127.0.0.1", d.port))
    one = rpc.frame(call(0, Proc.READ, nid(big)))
    chunk = b"".join(rpc.frame(call(i, Proc.READ, nid(big))) for i in range(10000))
    sent, stalled = _flood(hog, chunk, limit_s=15, stall_s=0.7)
    calls_sent = sent // len(one)
    assert stalled, f"the server kept reading {calls_sent} calls whose replies nobody reads"
    assert calls_sent >= 2000
    lat = _latencies(d.port, 20)
    assert max(lat) < 0.5, f"other client delayed by the hog: {max(lat):.3f} s"
    served = _stats_calls(d.port, Proc.READ) - reads_before - 20
    assert served < calls_sent, "the server answered everything: it was never paused"
    growth = peak_growth_mib(pid, before)
    print(f"hog: {calls_sent} calls sent, {served} answered, server grew {growth:.0f} MiB, "
          f"other client max latency {max(lat) * 1000:.1f} ms")
    assert growth < 128, f"server memory grew by {growth:.0f} MiB for one reader-less client"
    hog.close()
    assert_serving(d.port)


def test_client_that_never_reads_large_replies_stays_bounded(netinfod):
    d = netinfod("hogbig", "-m", *trust())
    drain(d.proc)
    big = _big_dir(d.port, "hogbig", 60000, 16)  # READ replies of ~960 KB
    pid = d.proc.pid
    reset_peak(pid)
    before = memory(pid)
    hog = socket.create_connection(("127.0.0.1", d.port))
    # 150 calls, 7 KiB in all: one socket read on the server side.
    hog.sendall(b"".join(rpc.frame(call(i, Proc.READ, nid(big))) for i in range(150)))
    time.sleep(0.05)
    try:
        lat = _latencies(d.port, 5)
        growth = peak_growth_mib(pid, before)
    finally:
        hog.close()
    assert_serving(d.port)
    # Bounded: the 1 MiB high-water mark plus a reply or two, not 150 replies.
    assert max(lat) < 0.5 and growth < 64, (
        f"other client waited {max(lat):.2f} s behind the hog; server memory grew by "
        f"{growth:.0f} MiB")


def test_200_concurrent_connections_all_served(server):
    async def one(i: int) -> None:
        c = await Client.connect("127.0.0.1", server.port, TAG, privileged=False, timeout=20)
        try:
            async with asyncio.timeout(30):
                root, _ping, machines, stats = await asyncio.gather(
                    c.root(), c.ping(), c.pathsearch("/machines"), c.statistics())
                assert root.object == 0 and machines.object > 0
                assert dict(stats)["checksum"]
                _, props = await c.read(machines)
                assert dict(props)["name"] == ["machines"]
        finally:
            await c.close()

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(200)))
    asyncio.run(main())


def test_pipelined_calls_are_answered_in_order(server):
    rng = random.Random(7)
    calls = []
    kinds = [
        lambda x: (call(x, Proc.PING), "ok"),
        lambda x: (call(x, Proc.READ, nid(0)), "ok"),
        lambda x: (call(x, Proc.LOOKUP, args_of(Proc.LOOKUP, NiId(0), "name", "machines")),
                   "ok"),
        lambda x: (call(x, Proc.STATISTICS), "ok"),
        lambda x: (call(x, Proc.READ, nid(0x7FFF)), "ok"),  # NI_BADID is still a SUCCESS reply
        lambda x: (call(x, 29), AcceptStat.PROC_UNAVAIL),
        lambda x: (call(x, Proc.READ, b"\0"), AcceptStat.GARBAGE_ARGS),
        lambda x: (call(x, Proc.PING, vers=1), AcceptStat.PROG_MISMATCH),
        lambda x: (call(x, Proc.PING, prog=NIBIND_PROG), AcceptStat.PROG_UNAVAIL),
        lambda x: (call(x, Proc.WRITE, args_of(Proc.WRITE, NiId(0, 0xFFFF), [("a", [])])),
                   "ok"),  # NI_STALE
    ]
    xids = rng.sample(range(1, 1 << 32), 600)
    blob = []
    for x in xids:
        rec, expect = rng.choice(kinds)(x)
        calls.append((x, expect))
        blob.append(rpc.frame(rec))
    c = Conn(server.port, timeout=10)
    c.send(b"".join(blob))
    for x, expect in calls:
        rep = c.recv_record()
        assert rep is not None
        if expect == "ok":
            rxid, _ = rpc.decode_reply(rep)
            assert rxid == x
        else:
            refused(rep, "accept", expect, xid=x)
    c.close()


# -- process life cycle -----------------------------------------------------------------------

def test_no_database_without_m_exits_2_with_one_line(tmp_path):
    cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(tmp_path / "none"),
           "--bind", "127.0.0.1", "--port", str(free_port()), "missing"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env_with_src(), timeout=30)
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("netinfod: "), p.stderr
    assert "missing" in lines[0]
    assert not (tmp_path / "none" / "missing.nidb").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_gives_clean_exit_0(netinfod, sig):
    d = netinfod("sig", "-m", *trust())
    with SyncClient.connect("127.0.0.1", d.port, "sig") as c:  # an open connection…
        root = c.self_id(0)
        c.createprop(root, "before", [sig.name])
        idle = Conn(d.port)  # …and an idle raw one, left open
        half = Conn(d.port)
        half.send(rpc.frame(call(1, Proc.PING))[:10])  # and a half-sent record
        d.proc.send_signal(sig)
        rc = d.proc.wait(15)
        rest = d.proc.stderr.read()
    idle.close()
    half.close()
    assert rc == 0, rest
    assert "Traceback" not in rest
    assert rest.rstrip().endswith("netinfod: sig stopped")
    d.stop()
    # The write acknowledged before the signal is there after a restart.
    d2 = netinfod("sig", port=d.port, directory=d.directory)
    with SyncClient.connect("127.0.0.1", d2.port, "sig") as c:
        _, props = c.read(0)
        assert dict(props)["before"] == [sig.name]
