"""A store's round trips kept off the event loop (issue 23 item 3).

An engine whose reads and commits wait on a server (PostgreSQL: ``Store.side_reader``
is not None) would hold every connection of netinfod for a network round trip at each
cache miss and each commit. :class:`StoreIO` moves both to threads:

* **reads**: the cached source reads through ``cached.WaitingRows``. A door sets its
  ``no_wait`` around a call; a read the cache cannot answer raises ``cached.StoreWait``
  naming it before the call has changed anything; the door hands it to :meth:`fetch`,
  which runs it (the hot reads on connections the event loop drives itself, when the
  engine has them: ``Store.loop_reader``; the others in one of :data:`READ_THREADS`
  reader threads, each with a connection of its own, never the writer's), offers the
  result to the source and lets the door run the call again: it then finds the result
  and goes on (to the next miss, if any). Calls
  that do not fetch ahead (a write after its warm-up, the other doors) wait for the
  read on a reader of the loop's own (:meth:`read`): correct, only not free of the
  round trip.
* **commits**: one thread, :data:`COMMIT_THREADS`, runs ``Store.commit`` of a batch on the
  writer's connection (``Database.settle``): the batch's replies wait for it, the other
  connections are answered meanwhile. One commit is in flight at a time; writes made
  meanwhile stay pinned in the cached source and go with the next.

SQLite needs neither: its reads are local and its commits are short (the fsync stays on
the loop, measured in issue 19).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import StorageError
from ..storage.cached import RowReader, StoreWait, run_read

#: Reader threads, each with a connection of its own to the store's server: two keep
#: both cores of a small machine busy when several clients miss at once; more add
#: connections without adding cores.
READ_THREADS = 2
#: Commit threads: one (one commit in flight; the next batch's writes wait pinned).
COMMIT_THREADS = 1

T = TypeVar("T")


class StoreIO:
    """The reader and commit threads of one database's store (see the module)."""

    def __init__(self, make_reader: Callable[[], RowReader],
                 loop_reader: Any = None) -> None:
        self._make_reader = make_reader
        #: the engine's hot reads run on the loop itself (``Store.loop_reader``), or None
        self._loop = loop_reader
        #: the reader of the reads the loop waits for (:meth:`read`), opened on first use
        self._direct: RowReader | None = None
        self._local = threading.local()
        self._readers: list[RowReader] = []
        self._readers_lock = threading.Lock()
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="ni-read")
        self._commits = ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="ni-commit")

    def _reader(self) -> RowReader:
        reader: RowReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._make_reader()
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    def _run(self, name: str, args: tuple[object, ...]) -> object:
        """In a reader thread: reader method *name* with *args*."""
        return run_read(self._reader(), name, args)

    def read(self, name: str, args: tuple[object, ...]) -> object:
        """Reader method *name* with *args*, waited for where it is asked (a call that
        does not fetch ahead: ``cached.WaitingRows``), on a reader of the loop's own: a
        round trip, as before the threads, but never on the writer's connection, which
        a commit in flight holds."""
        reader = self._direct
        if reader is None:
            reader = self._direct = self._make_reader()
        return run_read(reader, name, args)

    def fetch(self, wait: StoreWait, then: Callable[[], None]) -> None:
        """Start the read *wait* names; once its result (or its failure: the call that
        asked then fails with it) is offered to the source it came from, ``then()``, on
        the loop. The engine's hot reads run on the loop itself (``Store.loop_reader``),
        the others in a reader thread."""
        rows, key = wait.rows, wait.key
        settles = rows.settles

        def done(value: object, exc: BaseException | None) -> None:
            if exc is None:
                rows.offer(key, value, settles)
            else:
                rows.failed(key, exc, settles)
            then()
        name, args = key
        if self._loop is not None and name in self._loop.names:
            self._loop.read(name, args, done)
            return

        def ran(fut: asyncio.Future[object]) -> None:
            if fut.cancelled():
                done(None, StorageError("the read was cancelled"))
            elif fut.exception() is not None:
                done(None, fut.exception())
            else:
                done(fut.result(), None)
        asyncio.get_running_loop().run_in_executor(self._reads, self._run, name, args
                                                   ).add_done_callback(ran)

    def writer(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``fn(*args)`` started in the commit thread, which alone uses the writer's
        connection (``Store.commit``, ``Store.keep_alive``), in the order asked: its
        future (awaited by a door through ``asyncio.wrap_future``, or waited for by a
        caller that commits itself)."""
        return self._commits.submit(fn, *args)

    def close(self) -> None:
        """Stop the threads (a commit in flight finishes first) and close their
        connections."""
        self._commits.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()
        if self._loop is not None:
            self._loop.close()
        if self._direct is not None:
            self._direct.close()
            self._direct = None
