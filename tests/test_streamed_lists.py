"""LIST and LISTALL of a big directory are streamed (issue 10, "streaming and fairness"):
the reply is made a piece at a time as the peer takes it, never built whole; another
connection's small call is answered in between; it reads a snapshot taken when it
begins, so writes go on meanwhile (issue 18: readers never hold writers) and the count
announced first stays true.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from netinfo.client.core import Client
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import open_database
from netinfo.server.service import STREAM_CHILDREN, SUPERUSER
from netinfo.wire import protocol, rpc
from netinfo.wire.protocol import (
    PROCEDURES,
    RESULT_KINDS,
    Proc,
    encode_args,
    list_pieces,
    listall_pieces,
)

USERS = STREAM_CHILDREN + 904
PAD = "p" * 2500   # ~12.5 MB of LISTALL: more than the write high-water mark (1 MiB)
#                    and the socket buffers hold together


def test_pieces_are_the_whole_encoding():
    entries = [(i, [f"u{i}"] if i % 3 else None) for i in range(1300)]
    nid = NiId(7, 9)
    whole = protocol._enc_union(PROCEDURES[Proc.LIST], (entries, nid))
    assert b"".join(list_pieces(len(entries), iter(entries), nid)) == whole
    props = [[("name", [f"u{i}"]), ("x", [])] for i in range(1025)]
    whole = protocol._enc_union(PROCEDURES[Proc.LISTALL], (nid, props))
    blobs = (protocol.encode_proplist(p) for p in props)
    assert b"".join(listall_pieces(nid, len(props), blobs)) == whole
    with pytest.raises(ValueError):
        list(list_pieces(3, iter(entries[:2]), nid))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A domain whose /users has more than STREAM_CHILDREN children; (dir, /users id,
    the expected LIST of names, the expected LISTALL)."""
    d = tmp_path_factory.mktemp("streamed")
    with open_database(d, "big", create=True) as db:
        svc = db.service_for_tests()
        u, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER), [("name", ["users"])],
                               NI_INDEX_NULL)
        for i in range(USERS):
            svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, u),
                            [("name", [f"u{i}"]), ("pad", [PAD])] if i % 5 else
                            [("pad", [PAD])], NI_INDEX_NULL)
        db.commit()
        kids = list(svc.proc_children(SUPERUSER, svc.proc_self(SUPERUSER, u))[0])
        want_list = [(k, [f"u{i}"] if i % 5 else None) for i, k in enumerate(kids)]
        want_all = [svc.proc_read(SUPERUSER, NiId(k, 0))[1] for k in kids]
    return d, u.object, want_list, want_all


def test_list_and_listall_of_a_big_directory_over_the_wire(big, netinfod):
    d, users, want_list, want_all = big
    srv = netinfod("big", directory=d)

    async def go():
        async with await Client.connect("127.0.0.1", srv.port, "big") as c:
            listed, nid = await c.list(users, "name")
            assert listed == want_list and nid.object == users
            nid2, everything = await c.listall(users)
            assert everything == want_all and nid2 == nid
            # the same connection goes on in order after a streamed reply
            assert (await c.read(users))[1] == [("name", ["users"])]
            listed, _ = await asyncio.gather(c.list(users, "pad"), c.ping())
            assert [v for _, v in listed[0]] == [[PAD]] * len(want_list)
    asyncio.run(go())


def _call(proc: Proc, xid: int, *args) -> bytes:
    return rpc.frame(rpc.encode_call(xid, protocol.NETINFO_PROG, protocol.NETINFO_VERS, proc,
                                     encode_args(PROCEDURES[proc], *args), None))


def _read_record(s: socket.socket) -> bytes:
    out = b""
    while True:
        hdr = b""
        while len(hdr) < 4:
            hdr += s.recv(4 - len(hdr))
        (h,) = struct.unpack(">I", hdr)
        n, part = h & 0x7FFFFFFF, b""
        while len(part) < n:
            part += s.recv(min(n - len(part), 1 << 16))
        out += part
        if h & 0x80000000:
            return out


def test_a_stalled_listall_neither_delays_others_nor_holds_writes(big, netinfod):
    d, users, _, want_all = big
    srv = netinfod("big", directory=d)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", srv.port))
    slow.sendall(_call(Proc.LISTALL, 77, NiId(users, 0)))
    time.sleep(0.5)   # the server streams until the peer stops taking: it is stalled now

    async def others():
        async with await Client.connect("127.0.0.1", srv.port, "big") as c:
            took = []
            for _ in range(20):
                t = time.perf_counter()
                await c.read(users)
                took.append(time.perf_counter() - t)
            # a write goes on, and is not in the stalled reply (its snapshot is older)
            u = await c.self_id(users)
            t = time.perf_counter()
            child, u = await c.create(u, [("name", ["during"])])
            assert time.perf_counter() - t < 1.0
            await c.destroy(u, child)   # the module's domain stays as it was
            return sorted(took)[-1]
    worst = asyncio.run(others())
    print(f"MEASURE stalled LISTALL of {USERS} children: worst READ on another "
          f"connection {worst * 1000:.1f} ms")
    assert worst < 0.5
    rec = _read_record(slow)   # now take it: whole and exact
    slow.close()
    xid, u = rpc.decode_reply(rec)
    assert xid == 77
    nid, got = RESULT_KINDS[protocol.Kind.UNION].decode(PROCEDURES[Proc.LISTALL], u)
    assert nid.object == users and got == want_all

    async def after():
        async with await Client.connect("127.0.0.1", srv.port, "big") as c:
            await c.createprop(await c.self_id(0), "after", ["x"])   # writes again
    asyncio.run(after())
