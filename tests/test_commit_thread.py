"""Commits in the commit thread (``Database.settle``, ``server/storeio.py``; issue 23
item 3): one in flight, the writes made meanwhile pinned and committed with the next,
and a failed commit taking back every write made after it too, each batch answering
its failure. The engine is the memory store made to look like one whose round trips
wait (``side_reader``), whose commit waits for the test and then succeeds or fails: what
a PostgreSQL commit does when the server is slow, or lost, at the moment the test picks.
(The same machinery over the wire on PostgreSQL: tests/test_postgres_offloop.py.)"""

from __future__ import annotations

import asyncio
import threading

import pytest

from netinfo.errors import StorageError
from netinfo.model import NiId
from netinfo.server.database import Database
from netinfo.server.service import SUPERUSER, ServerInfo
from netinfo.storage.memory import MemoryStore
from netinfo.wire.protocol import Proc


class HeldStore(MemoryStore):
    """A memory store whose commits wait for :attr:`go` once :attr:`hold` is set, then
    fail when :attr:`fail` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.fail = False
        self.go = threading.Event()
        self.entered = threading.Event()
        self.threads: set[str] = set()

    def side_reader(self):
        return _NoReader()

    def commit(self, ops, checksum, changes=()):
        self.threads.add(threading.current_thread().name)
        if self.hold:
            self.entered.set()
            assert self.go.wait(10)
            if self.fail:
                raise StorageError("the server went away")
        super().commit(ops, checksum, changes)


class _NoReader:
    """The memory engine serves an image: no read leaves for the store."""

    def close(self) -> None:
        pass


def _names(db: Database) -> list[str]:
    users, _ = db.call(Proc.LOOKUP, SUPERUSER, (NiId(0, 0), "name", "users"))
    kids, _ = db.call(Proc.CHILDREN, SUPERUSER, (NiId(users[0], 0),))
    return [db.call(Proc.READ, SUPERUSER, (NiId(k, 0),))[1][0][1][0] for k in kids]


def _create(db: Database, name: str) -> object:
    """CREATE /users/NAME in a batch of its own; the batch."""
    users, _ = db.call(Proc.LOOKUP, SUPERUSER, (NiId(0, 0), "name", "users"))
    uid = db.call(Proc.SELF, SUPERUSER, (NiId(users[0], 0),))
    batch = db.batch()
    db.call(Proc.CREATE, SUPERUSER, (uid, [("name", [name])], 0xFFFFFFFF, None))
    batch.add(b"reply", lambda r: b"failed")
    return batch


@pytest.fixture
def served():
    store = HeldStore()
    db = Database(store, ServerInfo())
    db.call(Proc.CREATE, SUPERUSER, (NiId(0, 1), [("name", ["users"])], 0, None))
    db.commit()
    assert db.serve_off_loop()
    store.threads.clear()
    yield db, store
    store.go.set()
    db.close()


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_writes_behind_a_commit_in_flight_go_with_the_next_or_fall_with_it(served, fails):
    db, store = served

    async def scenario():
        store.hold, store.fail = True, fails
        first = _create(db, "ann")
        settling = asyncio.ensure_future(first.close_async())
        assert await asyncio.to_thread(store.entered.wait, 10)
        # the commit is in flight in its thread: the loop goes on, reads see ann, and
        # a second batch's write is pinned behind it
        assert "ann" in _names(db)
        assert db.read_state() is None   # no reply table fills now
        second = _create(db, "bob")
        behind = asyncio.ensure_future(second.close_async())
        await asyncio.sleep(0.05)
        assert not settling.done() and not behind.done()
        store.hold = False          # the next commit (bob's) goes straight through
        store.go.set()
        return await settling, await behind, first, second

    r1, r2, first, second = asyncio.run(scenario())
    assert store.threads and all(n.startswith("ni-commit") for n in store.threads)
    if fails:
        # the failed commit took back ann, and bob made after it: both batches failed
        assert r1 == [b"failed"] and r2 == [b"failed"] and first.failed and second.failed
        assert _names(db) == []
        assert db.epoch == 1
    else:
        assert r1 == [b"reply"] and r2 == [b"reply"]
        assert _names(db) == ["ann", "bob"]
    # what the store holds is what is served
    image = store.load()
    users = next(o for o, r in image.records.items() if r.props == [("name", ["users"])])
    stored = [image.records[k].props[0][1][0] for k in image.children.get(users, [])]
    assert stored == _names(db)


def test_a_synchronous_commit_waits_for_the_one_in_flight(served):
    """A caller that commits itself (LDAP, a replace) while a batch's commit is in the
    thread waits for it, then commits its own: both stored, in order."""
    db, store = served

    async def scenario():
        store.hold = True
        first = _create(db, "ann")
        settling = asyncio.ensure_future(first.close_async())
        assert await asyncio.to_thread(store.entered.wait, 10)
        store.hold = False
        threading.Timer(0.2, store.go.set).start()
        second = _create(db, "bob")
        second.close()              # blocks until ann's commit is done, then commits bob
        return await settling, second

    r1, second = asyncio.run(scenario())
    assert r1 == [b"reply"] and not second.failed
    assert _names(db) == ["ann", "bob"]
