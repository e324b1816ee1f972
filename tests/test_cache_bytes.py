"""The directory cache bounded in bytes, not only by count (issue 18, finding N4).

``netinfod --cache N`` bounded the decoded directories by number (20,000); a domain of
huge directories (anonymous writes of megabyte proplists) then held gigabytes. The LRU
now also stops at ``--cache-mb`` MiB of stored proplists (64 by default), and a directory
bigger than the whole bound is not cached at all.
"""

from __future__ import annotations

import asyncio

from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import open_database
from netinfo.server.service import SUPERUSER
from netinfo.storage.sqlite_source import DEFAULT_CACHE_BYTES
from netinfo.wire.proplist import encode_proplist

from .conftest import Netinfod


def make(tmp_path, sizes: list[int]) -> list[int]:
    with open_database(tmp_path, "c", create=True) as db:
        svc = db.service_for_tests()
        ids = []
        for i, size in enumerate(sizes):
            d, _ = svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(0, 0)),
                                   [("name", [f"d{i}"]), ("blob", ["x" * size])],
                                   NI_INDEX_NULL)
            ids.append(d[0])
        db.commit()
    return ids


def test_the_cache_stops_at_its_byte_bound(tmp_path):
    ids = make(tmp_path, [1000] * 60 + [50_000])
    with open_database(tmp_path, "c", cache=1000, cache_bytes=10_000) as db:
        src = db.service_for_tests().source
        one = len(encode_proplist([("name", ["d0"]), ("blob", ["x" * 1000])]))
        for oid in ids[:60]:
            db.service_for_tests().proc_read(SUPERUSER, NiId(oid, 0))
            assert src.cached_bytes <= 10_000
        assert src.cached_bytes == (10_000 // one) * one
        assert len(src._cache) == 10_000 // one     # the count bound (1000) is far off
        # the last ones read are the ones kept (least recently used dropped first)
        assert list(src._cache)[-1] == ids[59]
        # a directory bigger than the whole bound is read, never cached
        big = ids[60]
        for _ in range(2):
            _, props = db.service_for_tests().proc_read(SUPERUSER, NiId(big, 0))
            assert len(props[1][1][0]) == 50_000
        assert big not in src._cache and src.cached_bytes <= 10_000
        # destroying and writing take their directories out of the count
        svc = db.service_for_tests()
        svc.proc_write(SUPERUSER, svc.proc_self(SUPERUSER, NiId(ids[59], 0)),
                       [("name", ["d59"])])
        assert ids[59] not in src._cache
        assert src.cached_bytes == sum(src._weights.values()) <= 10_000


def test_the_default_byte_bound_and_the_count_bound_both_hold(tmp_path):
    ids = make(tmp_path, [10] * 30)
    with open_database(tmp_path, "c", cache=8) as db:
        src = db.service_for_tests().source
        assert src._max_bytes == DEFAULT_CACHE_BYTES == 64 << 20
        for oid in ids:
            db.service_for_tests().proc_read(SUPERUSER, NiId(oid, 0))
        assert len(src._cache) == 8


def test_netinfod_takes_cache_mb(tmp_path):
    from netinfo.client.core import Client
    ids = make(tmp_path, [60_000, 10])
    srv = Netinfod(tmp_path, "c", "--cache-mb", "0").start()   # nothing is cached

    async def go() -> list[int]:
        async with await Client.connect("127.0.0.1", srv.port, "c") as c:
            return [len((await c.read(oid))[1][1][1][0]) for oid in ids]
    try:
        assert asyncio.run(go()) == [60_000, 10]
    finally:
        srv.stop()
