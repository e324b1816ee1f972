"""Fuzzing through the real servers (issue "security"): byte mutations of valid calls to
NETINFO, NIBIND and the portmapper, over UDP and TCP, from an anonymous local client.

Per program at least :data:`INPUTS` mutated inputs reach the server (sent in paced
batches, so that the kernel drops none). After every batch a valid PING must be answered;
at the end every server still runs and its memory grew by less than 32 MiB.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from pathlib import Path

import pytest

from netinfo.model import NiId
from netinfo.wire import rpc
from netinfo.wire.nibind import (
    NIBIND_PROG,
    NIBIND_VERS,
    BindArgs,
    BindProc,
    CloneArgs,
    Registration,
    encode_bind_args,
    encode_clone_args,
    encode_registration,
    decode_clone_args,
    encode_tag,
)
from netinfo.wire.portmap import PMAP_PROG, PMAP_VERS, Mapping, PmapProc, encode_callit_args
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc, encode_args

from .conftest import ROOT_USER, Nibindd, served_domains

pytestmark = pytest.mark.slow

INPUTS = 100_000
#: Inputs per batch: few enough that the server's socket buffer never overflows (what
#: the kernel dropped would not count as tried).
BATCH = 200
SEED = 20261130


def netinfo_calls() -> list[tuple[int, bytes]]:
    """A valid call for every NETINFO procedure: (proc, args)."""
    i, j = NiId(0, 1), NiId(3, 2)
    samples = {
        Proc.SELF: (i,), Proc.PARENT: (j,), Proc.CREATE: (i, [("name", ["x"])], 0, None),
        Proc.DESTROY: (i, j), Proc.READ: (i,), Proc.WRITE: (j, [("a", ["b", "c"])]),
        Proc.CHILDREN: (i,), Proc.LOOKUP: (i, "name", "users"), Proc.LIST: (i, "name"),
        Proc.CREATEPROP: (j, ("p", ["v"]), 0), Proc.DESTROYPROP: (j, 0),
        Proc.READPROP: (j, 0), Proc.WRITEPROP: (j, 0, ["v"]), Proc.RENAMEPROP: (j, 0, "n"),
        Proc.LISTPROPS: (j,), Proc.CREATENAME: (j, 0, "n", 0), Proc.DESTROYNAME: (j, 0, 0),
        Proc.READNAME: (j, 0, 0), Proc.WRITENAME: (j, 0, 0, "n"), Proc.LISTALL: (i,),
        Proc.BIND: ("child", 0x7F000001), Proc.READALL: (0,), Proc.CRASHED: (5,),
        Proc.LOOKUPREAD: (i, "name", "users"),
    }
    return [(p, encode_args(PROCEDURES[p], *samples.get(p, ()))) for p in Proc]


def nibind_calls() -> list[tuple[int, bytes]]:
    return [
        (BindProc.PING, b""),
        (BindProc.REGISTER, encode_registration(Registration("fz", 700, 701))),
        (BindProc.UNREGISTER, encode_tag("fz")),
        (BindProc.GETREGISTER, encode_tag("local")),
        (BindProc.LISTREG, b""),
        (BindProc.CREATEMASTER, encode_tag("fz")),
        (BindProc.CREATECLONE, encode_clone_args(CloneArgs("fz", "h", 0x7F000001, "m"))),
        (BindProc.DESTROYDOMAIN, encode_tag("local")),
        (BindProc.BIND, encode_bind_args(BindArgs(0x7F000001, "local", "network"))),
    ]


def pmap_calls() -> list[tuple[int, bytes]]:
    m = Mapping(NIBIND_PROG, NIBIND_VERS, 17, 0).encode()
    return [
        (PmapProc.NULL, b""), (PmapProc.SET, Mapping(300000, 1, 17, 999).encode()),
        (PmapProc.UNSET, m), (PmapProc.GETPORT, m), (PmapProc.DUMP, b""),
        (PmapProc.CALLIT, encode_callit_args(NIBIND_PROG, NIBIND_VERS, 0, b"")),
        (PmapProc.CALLIT, encode_callit_args(NETINFO_PROG, NETINFO_VERS, 7,
                                             encode_args(PROCEDURES[Proc.READ], NiId(0, 0)))),
    ]


BOUNDARY = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 65535, 1 << 20]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(8)
        if op == 0 and b:                          # flip a bit
            k = rng.randrange(len(b))
            b[k] ^= 1 << rng.randrange(8)
        elif op == 1 and b:                        # a random byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2 and len(b) >= 4:              # a boundary word (lengths, counts)
            k = rng.randrange(0, len(b) - 3) & ~3
            b[k:k + 4] = struct.pack(">I", rng.choice(BOUNDARY))
        elif op == 3:                              # insert junk
            k = rng.randrange(len(b) + 1)
            b[k:k] = rng.randbytes(rng.randint(1, 16))
        elif op == 4 and b:                        # delete a range
            k = rng.randrange(len(b))
            del b[k:k + rng.randint(1, 16)]
        elif op == 5 and b:                        # truncate
            del b[rng.randrange(len(b)):]
        elif op == 6 and b:                        # repeat a chunk
            k = rng.randrange(len(b))
            b[k:k] = b[k:k + rng.randint(1, 32)] * rng.randint(1, 8)
        elif op == 7:                              # append a boundary word
            b += struct.pack(">I", rng.choice(BOUNDARY))
    return bytes(b)


def reaches_out(data: bytes) -> bool:
    """Whether *data* is a CREATECLONE that would send the new clone to a master off
    loopback. The fuzzer is its nibindd's owner, whose CREATECLONE nibindd carries out;
    a mutated master address (0x7F000001 with a bit flipped: 63.0.0.1, 127.128.0.1 is
    fine) must never make a test reach past loopback, so such records are not sent."""
    try:
        call = rpc.decode_call(data)
        if call.prog != NIBIND_PROG or call.proc != BindProc.CREATECLONE:
            return False
        return decode_clone_args(call.args).master_addr >> 24 != 127
    except Exception:
        return False


def _is_createclone(data: bytes) -> bool:
    """A CREATECLONE call, whose record marking is then left alone (a mangled frame
    could hide a mutated master address from :func:`reaches_out`)."""
    try:
        call = rpc.decode_call(data)
    except Exception:
        return False
    return call.prog == NIBIND_PROG and call.proc == BindProc.CREATECLONE


def valid_records(prog: int, vers: int, calls, rng: random.Random) -> list[bytes]:
    creds = [None, rpc.AuthUnix.for_password("pw", 0), rpc.AuthUnix.for_password("x", 501)]
    return [rpc.encode_call(rng.getrandbits(32), prog, vers, p, a, rng.choice(creds))
            for p, a in calls]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def ping_udp(port: int, prog: int, vers: int, timeout: float = 2.0, tries: int = 3) -> bool:
    """PING over UDP, retransmitted like any UDP client does (*tries* × *timeout*)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(tries):
            s.sendto(rpc.encode_call(77, prog, vers, 0), ("127.0.0.1", port))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    break
                if rpc.reply_xid(data) == 77:
                    return True
    return False


class TcpFeeder:
    """Record-marked mutated calls over one connection, reopened when the server closes
    it (as it must for bad framing); the server's replies are read and dropped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.reconnects = 0

    def send(self, data: bytes, raw_framing: bool) -> None:
        for _ in range(3):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sock.setblocking(False)
                self.reconnects += 1
            try:
                self.drain()
                self.sock.setblocking(True)
                self.sock.sendall(data if raw_framing else rpc.frame(data))
                self.sock.setblocking(False)
                return
            except OSError:
                self.close()

    def drain(self) -> None:
        assert self.sock is not None
        while True:
            try:
                if not self.sock.recv(1 << 20):
                    raise ConnectionResetError("closed")
            except BlockingIOError:
                return

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def fuzz(port_udp: int, port_tcp: int, prog: int, vers: int, calls, pids: list[int],
         seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    seeds = valid_records(prog, vers, calls, rng)
    before = {pid: rss_kib(pid) for pid in pids}
    tcp = TcpFeeder(port_tcp)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    sent = {"udp": 0, "tcp": 0}
    try:
        while sent["udp"] + sent["tcp"] < INPUTS:
            for _ in range(BATCH):
                seed_record = rng.choice(seeds)
                data = mutate(rng, seed_record)
                if reaches_out(data):
                    data = seed_record
                if rng.random() < 0.7:
                    try:
                        udp.sendto(data, ("127.0.0.1", port_udp))
                    except OSError:
                        pass
                    sent["udp"] += 1
                else:
                    # now and then mangle the record marking itself
                    raw = rng.random() < 0.1 and not _is_createclone(data)
                    tcp.send(mutate(rng, rpc.frame(data)) if raw else data, raw)
                    sent["tcp"] += 1
            try:
                while udp.recv(65536):
                    pass
            except BlockingIOError:
                pass
            # paced: the server has answered this batch before the next one goes out
            assert ping_udp(port_udp, prog, vers), f"no answer to PING after {sent}"
    finally:
        tcp.close()
        udp.close()
    for pid in pids:
        grew = rss_kib(pid) - before[pid]
        assert grew < 32 * 1024, f"process {pid} grew by {grew} KiB"
    sent["reconnects"] = tcp.reconnects
    return sent


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with served_domains(tmp_path_factory, "fuzz") as nb:
        yield nb


def _netinfod_pid(nb: Nibindd, tag: str) -> tuple[int, int]:
    """(pid, port) of the netinfod nibindd runs for *tag*."""
    import asyncio

    from netinfo.client import binding
    reg = asyncio.run(binding.getregister("127.0.0.1", tag))
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            args = (p / "cmdline").read_bytes().replace(b"\0", b" ").split()
        except OSError:
            continue
        # the daemon shows as "netinfod TAG ARGS..." (proctitle)
        if args[:2] == [b"netinfod", tag.encode()] and str(nb.directory).encode() in args:
            return int(p.name), reg[0]
    raise AssertionError(f"no netinfod for {tag}")


def test_fuzz_netinfo(servers):
    pid, port = _netinfod_pid(servers, "local")
    sent = fuzz(port, port, NETINFO_PROG, NETINFO_VERS, netinfo_calls(), [pid], SEED)
    assert sent["udp"] + sent["tcp"] >= INPUTS


def test_fuzz_nibind_and_portmapper(servers):
    import asyncio

    from netinfo.client import binding
    nib = asyncio.run(binding.nibindd_port("127.0.0.1"))
    pids = [servers.proc.pid]
    for prog, vers, calls, port in ((NIBIND_PROG, NIBIND_VERS, nibind_calls(), nib),
                                    (PMAP_PROG, PMAP_VERS, pmap_calls(), servers.pmap_port)):
        sent = fuzz(port, port, prog, vers, calls, pids, SEED + prog)
        assert sent["udp"] + sent["tcp"] >= INPUTS
    # and it still serves what it served, when the fuzzer is anonymous: an ordinary user's
    # nibindd obeys its own user (binder.owner_may_register), and here the fuzzer is that
    # user, whose mutated UNREGISTER or DESTROYDOMAIN it rightly carries out
    if ROOT_USER:
        servers.wait_for(("local", "network"), 10)
