"""``cached.WaitingRows``: what a cached source reads when its engine's reads are round
trips kept off the event loop (issue 23 item 3; ``server/storeio.py``). Over a real
SQLite store's rows, with the "elsewhere" runner recording what it was asked."""

from __future__ import annotations

import pytest

from netinfo.errors import StorageError
from netinfo.storage import KidIns, Put, open_store
from netinfo.storage.cached import CachedSource, StoreWait, WaitingRows, run_read


def _source(tmp_path):
    store = open_store(f"sqlite:{tmp_path / 'w.sqlite'}")
    store.commit([Put(0, 1, 0, [("name", [])]), Put(1, 1, 0, [("name", ["users"])]),
                  Put(2, 1, 1, [("name", ["ann"])]), KidIns(0, 0, 1), KidIns(1, 0, 2)], 7)
    src = store.source()
    assert isinstance(src, CachedSource)
    return store, src


def test_a_miss_names_its_read_and_a_fetched_result_answers_it(tmp_path):
    store, src = _source(tmp_path)
    asked: list[tuple] = []
    inner = src._rows

    def run(name, args):
        asked.append((name, args))
        return run_read(inner, name, args)
    rows = src.wait_off_loop(run)
    assert src.wait_off_loop(run) is rows   # once
    rows.no_wait = True
    with pytest.raises(StoreWait) as got:
        src.get(2)
    assert got.value.key == ("row", (2,)) and got.value.rows is rows
    assert not asked                      # nothing waited for
    rows.offer(got.value.key, run_read(inner, *got.value.key), rows.settles)
    assert src.get(2).props == [("name", ["ann"])]
    # LOOKUP, fetched the same way; kept (not consumed) until a batch settles
    rows.offer(("row", (1,)), run_read(inner, "row", (1,)), rows.settles)
    node = src.get(1)
    assert node is not None
    with pytest.raises(StoreWait) as got:
        src.lookup(1, node, "name", "ann")
    key = got.value.key
    assert key == ("lookup", (1, b"name", b"ann"))
    rows.offer(key, run_read(inner, *key), rows.settles)
    assert src.lookup(1, node, "name", "ann") == [2]
    assert src.lookup(1, node, "name", "ann") == [2]
    src.durable()                         # a batch settled: what was fetched may be stale
    with pytest.raises(StoreWait):
        src.lookup(1, node, "name", "ann")
    # waiting allowed: run where it may wait, counted
    rows.no_wait = False
    assert src.lookup(1, node, "name", "ann") == [2]
    assert asked == [("lookup", (1, b"name", b"ann"))] and rows.waited == 1
    store.close()


def _missed(tmp_path):
    """A source whose reader never waits, and the read its get(2) misses."""
    store, src = _source(tmp_path)
    rows = src.wait_off_loop(lambda name, args: pytest.fail("no wait"))
    rows.no_wait = True
    with pytest.raises(StoreWait) as got:
        src.get(2)
    return store, src, rows, got


def test_a_result_fetched_before_a_batch_settled_is_refused(tmp_path):
    store, src, rows, got = _missed(tmp_path)
    started = rows.settles
    src.durable()                          # ... while the fetch was under way
    rows.offer(got.value.key, (1, 1, b"", False), started)
    with pytest.raises(StoreWait):
        src.get(2)
    store.close()


def test_a_failed_fetch_fails_the_call_once_then_is_tried_again(tmp_path):
    store, src, rows, got = _missed(tmp_path)
    rows.failed(got.value.key, StorageError("PostgreSQL is down"), rows.settles)
    with pytest.raises(StorageError, match="down"):
        src.get(2)
    with pytest.raises(StoreWait):        # asked again, tried again
        src.get(2)
    store.close()


def test_kept_results_are_bounded(tmp_path):
    from netinfo.storage import cached

    store, src = _source(tmp_path)
    rows = src.wait_off_loop(lambda name, args: pytest.fail("no wait"))
    for i in range(cached.READY_MAX + 10):
        rows.offer(("has", (i,)), True, rows.settles)
    assert len(rows._ready) <= cached.READY_MAX
    assert isinstance(rows, WaitingRows)
    store.close()
