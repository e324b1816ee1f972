"""A PostgreSQL store's round trips never hold the other connections (issue 23 item 3).

netinfod reads what its cache misses and commits its batches in threads
(``server.storeio``): while PostgreSQL keeps one call waiting, every other connection
is answered. The test makes PostgreSQL wait on purpose: a session of its own holds the
domain's tables in ACCESS EXCLUSIVE mode, so that any read of them, and any commit,
waits for it. Meanwhile a read of a cold directory and a write wait (their connections
only), and a third connection's reads are answered at once. ``--store-on-loop`` (each
round trip on the event loop, as before) is the control: there the third connection
waits as long as the lock is held, so the test fails where the threads are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator

import pytest

from netinfo.client.core import Client
from netinfo.model import NiId
from netinfo.storage.postgres import SCHEMA_PREFIX, split_url

from .conftest import Netinfod

#: seconds the tables are held
HOLD = 3.0
#: users made before the server restarts with a cold cache
USERS = 40


def _hold(conninfo: str, url: str, seconds: float, held: threading.Event) -> None:
    """Hold the domain's tables for *seconds* (reads and commits of them wait)."""
    import psycopg

    schema = SCHEMA_PREFIX + split_url(url)[1]
    with psycopg.connect(conninfo) as c:   # one transaction, rolled back at the end
        c.execute(f'LOCK TABLE "{schema}".dirs, "{schema}".kids, "{schema}".keys, '
                  f'"{schema}".meta IN ACCESS EXCLUSIVE MODE')
        held.set()
        time.sleep(seconds)
        c.rollback()


@contextlib.asynccontextmanager
async def _holding(pg_cluster, url: str) -> AsyncIterator[None]:
    """The domain's tables held by another session (:func:`_hold`) for :data:`HOLD`
    seconds from entering; leaving waits for the hold to end."""
    held = threading.Event()
    holder = threading.Thread(target=_hold, args=(pg_cluster.conninfo(), url, HOLD, held))
    holder.start()
    try:
        assert await asyncio.to_thread(held.wait, 10)
        yield
    finally:
        await asyncio.to_thread(holder.join)


def _populated(pg_cluster, tmp_path, tag: str) -> str:
    """The URL of a new PostgreSQL domain *tag* with USERS users, its netinfod stopped
    (the next one starts with a cold cache)."""
    url = pg_cluster.url()
    made = Netinfod(tmp_path, tag, "--store", url, "-m", "--populate").start()
    try:
        asyncio.run(_populate(made.port, tag))
    finally:
        made.stop()
    return url


async def _populate(port: int, tag: str) -> None:
    async with await Client.connect("127.0.0.1", port, tag) as c:
        users, _ = await c.lookup(0, "name", "users")
        uid = await c.self_id(users[0])
        for i in range(USERS):
            _, uid = await c.create(uid, [("name", [f"u{i}"]), ("uid", [str(1000 + i)])])


@pytest.mark.parametrize("threads", [True, False], ids=["threads", "on-loop"])
def test_a_waiting_round_trip_holds_only_its_own_connection(pg_cluster, tmp_path, threads):
    url = _populated(pg_cluster, tmp_path, "wait")
    # a cold cache: the users are read from PostgreSQL when asked for
    d = Netinfod(tmp_path, "wait", "--store", url,
                 *(() if threads else ("--store-on-loop",))).start()

    async def scenario() -> tuple[float, float, list[str], int, bool]:
        hot = await Client.connect("127.0.0.1", d.port, "wait")
        cold = await Client.connect("127.0.0.1", d.port, "wait")
        writer = await Client.connect("127.0.0.1", d.port, "wait")
        try:
            users, _ = await hot.lookup(0, "name", "users")
            kids, users_id = await hot.children(users[0])
            kids = kids[-USERS:]   # ours, after the template's
            await hot.read(0)
            # one write first: the path a write reads (and its numbering) is warm
            _, users_id = await writer.create(users_id, [("name", ["early"])])
            async with _holding(pg_cluster, url):
                t0 = time.monotonic()
                slow_read = asyncio.ensure_future(cold.read(kids[USERS // 2]))
                slow_write = asyncio.ensure_future(
                    writer.create(users_id, [("name", ["late"])]))
                await asyncio.sleep(0.2)
                for _ in range(20):   # cached: the root
                    _, props = await hot.read(0)
                    assert props
                answered = time.monotonic() - t0
                late_done = slow_read.done() or slow_write.done()
                (_, user), (new, _) = await asyncio.gather(slow_read, slow_write)
                waited = time.monotonic() - t0
            names = [v for k, vals in user for v in vals if k == "name"]
            return answered, waited, names, new.object, late_done
        finally:
            for c in (hot, cold, writer):
                await c.close()

    try:
        answered, waited, names, new, late_done = asyncio.run(scenario())
    finally:
        d.stop()
    assert names == [f"u{USERS // 2}"]
    assert new > 0
    assert waited >= HOLD - 0.5   # the cold read and the write waited for PostgreSQL
    if threads:
        # the other connection was answered while they waited
        assert answered < HOLD / 2, answered
        assert not late_done, "PostgreSQL was held: these had to wait"
    else:
        # the control: on the loop, every connection waited for the round trip
        assert answered >= HOLD - 0.5, answered


def test_udp_reads_of_a_cold_domain_are_fetched_and_answered(pg_cluster, tmp_path):
    """Lenient UDP reads (spec §1.4) of directories the cache does not hold: each miss is
    fetched off the loop and the datagram answered again (``UdpEndpoint._fetch``)."""
    from netinfo.client.transport import udp_call
    from netinfo.wire.proplist import unpack_proplist
    from netinfo.wire.protocol import (
        NETINFO_PROG,
        NETINFO_VERS,
        PROCEDURES,
        Proc,
        encode_args,
    )

    url = _populated(pg_cluster, tmp_path, "udp")
    d = Netinfod(tmp_path, "udp", "--store", url, "--lenient-udp").start()

    async def call(proc: Proc, *args: object):
        body = encode_args(PROCEDURES[proc], *args)
        return await udp_call("127.0.0.1", d.port, NETINFO_PROG, NETINFO_VERS, proc, body,
                              timeout=5, retries=0)   # answered the first time

    async def go() -> list[tuple[str, list[str]]]:
        u = await call(Proc.LOOKUP, NiId(0, 0), "name", "users")
        assert u.unpack_int() == 0
        users = u.unpack_array(u.unpack_uint)[0]
        u = await call(Proc.LOOKUP, NiId(users, 0), "name", "u7")
        assert u.unpack_int() == 0
        (u7,) = u.unpack_array(u.unpack_uint)
        u = await call(Proc.READ, NiId(u7, 0))
        assert u.unpack_int() == 0
        u.unpack_uint(), u.unpack_uint()   # its id
        return unpack_proplist(u)

    try:
        props = asyncio.run(go())
    finally:
        d.stop()
    assert props == [("name", ["u7"]), ("uid", ["1007"])]


def test_kept_answers_wait_for_a_commit_in_flight(pg_cluster, tmp_path):
    """A LOOKUPREAD kept by the short path (and answered by the connection's lane, one
    lone record at a time) is not answered from the table while a write's commit is in
    flight: reads made meanwhile see the write (docs/postgres.md, "Visibility")."""
    url = _populated(pg_cluster, tmp_path, "lane")
    d = Netinfod(tmp_path, "lane", "--store", url).start()

    async def scenario() -> tuple[list[str], list[str]]:
        reader = await Client.connect("127.0.0.1", d.port, "lane")
        writer = await Client.connect("127.0.0.1", d.port, "lane")
        try:
            users, _ = await reader.lookup(0, "name", "users")
            users_id = await reader.self_id(users[0])

            async def uid_of() -> list[str]:
                _, props = await reader.lookupread(users_id, "name", "u3")
                return [v for k, vals in props for v in vals if k == "uid"]
            for _ in range(3):   # kept, then answered from the table
                assert await uid_of() == ["1003"]
            u3, _ = await writer.lookup(users[0], "name", "u3")
            u3_id, _ = await writer.read(u3[0])
            async with _holding(pg_cluster, url):
                write = asyncio.ensure_future(
                    writer.write(u3_id, [("name", ["u3"]), ("uid", ["7777"])]))
                await asyncio.sleep(0.3)   # its commit waits for PostgreSQL
                during = await uid_of()
                await write
            return during, await uid_of()
        finally:
            for c in (reader, writer):
                await c.close()

    try:
        during, after = asyncio.run(scenario())
    finally:
        d.stop()
    assert during == ["7777"]
    assert after == ["7777"]
