"""A stream's pieces made ahead in a worker thread (server/ahead.py, issue 19 item 6), and a
snapshot stream of a lazy engine read off the event loop."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

from netinfo.errors import StorageError
from netinfo.model import NI_INDEX_NULL
from netinfo.server import ahead as ahead_mod
from netinfo.server.ahead import Ahead
from netinfo.server.database import Database, SnapshotStream
from netinfo.server.service import SUPERUSER
from netinfo.storage import open_store
from netinfo.storage.sqlite_source import SqliteRows
from netinfo.wire.protocol import Proc


def test_pieces_come_in_order_whole_and_from_another_thread():
    made_by: set[str] = set()

    def pieces() -> Iterator[bytes]:
        for i in range(5000):
            made_by.add(threading.current_thread().name)
            yield f"{i},".encode()

    a = Ahead(pieces(), "t-ahead")
    assert b"".join(a) == b"".join(f"{i},".encode() for i in range(5000))
    assert made_by == {"t-ahead"}
    with pytest.raises(StopIteration):
        next(a)
    assert a.close()


def test_what_the_generator_raises_is_raised_to_the_consumer_after_its_pieces():
    def pieces() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise StorageError("the store went away")

    a = Ahead(pieces())
    assert next(a) == b"a" and next(a) == b"b"
    with pytest.raises(StorageError, match="went away"):
        next(a)
    assert a.close()


def test_close_stops_a_producer_far_ahead_and_closes_its_generator(monkeypatch):
    monkeypatch.setattr(ahead_mod, "BATCH_BYTES", 10)
    closed = threading.Event()
    made = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                made.append(1)
                yield b"x" * 10
        finally:
            closed.set()

    a = Ahead(endless())
    assert next(a) == b"x" * 10
    deadline = time.monotonic() + 5
    while a._queue.qsize() < ahead_mod.BATCH_AHEAD and time.monotonic() < deadline:
        time.sleep(0.01)
    assert a._queue.full()           # it waits for room: bounded ahead of the consumer
    assert a.close() and closed.is_set()
    n = len(made)
    time.sleep(0.05)
    assert len(made) == n            # and makes nothing more


@pytest.mark.parametrize("off_loop", [False, True], ids=["sqlite", "off-loop-engine"])
def test_where_a_snapshot_stream_is_read(tmp_path, monkeypatch, off_loop):
    """SQLite's streams read on the loop's thread (its reads are CPU work, module ahead);
    an engine whose row reader says ``off_loop`` (a network round trip per read) gets
    READALL's pieces made in a worker thread, identical, and the view's connection
    closed once the thread has stopped."""
    monkeypatch.setattr(SqliteRows, "off_loop", off_loop)
    db = Database(open_store(f"sqlite:{tmp_path / 'd.sqlite'}"))
    root = db.call(Proc.ROOT, SUPERUSER, ())
    for k in range(300):
        _, root = db.call(Proc.CREATE, SUPERUSER,
                          (root, [("name", [f"n{k}"])], NI_INDEX_NULL, None))
    db.commit()
    readers: set[str] = set()
    src = db.service_for_tests().snapshot
    views = []

    def spying_snapshot():
        view = src()
        views.append(view)
        get = view._rows.fetch

        def fetch(ids, with_kids):
            readers.add(threading.current_thread().name)
            return get(ids, with_kids)
        view._rows.fetch = fetch
        return view
    monkeypatch.setattr(db._service, "snapshot", spying_snapshot)
    stream = db.readall(SUPERUSER, 0)
    assert isinstance(stream, SnapshotStream)
    body = b"".join(stream)
    assert readers == ({"snapshot-stream"} if off_loop else {threading.current_thread().name})
    monkeypatch.setattr(SqliteRows, "off_loop", not off_loop)
    again = db.readall(SUPERUSER, 0)
    assert b"".join(again) == body       # the same bytes either way
    assert stream._ahead is None and db.transfers == 0
    with pytest.raises(sqlite3.ProgrammingError):   # the reader connection was closed
        views[0]._rows._conn.execute("SELECT 1")
    db.close()
