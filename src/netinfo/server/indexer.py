"""Resident LOOKUP indexes built off the event loop (``storage.keyindex``; issue 23).

A served source (``cached.CachedSource``) asks for an index of a key of a directory
once the store has answered enough LOOKUPs of it; :class:`Indexer` is its
``index_runner``: it builds the index in one thread of its own (the build reads a
snapshot and sorts; the loop keeps answering from the store meanwhile) and hands it back
on the event loop, where the source applies what became durable meanwhile. One build at
a time: a second waits for the first. Before a copy is swapped in (the snapshot would
hold the old file) and at close, :meth:`Indexer.stop` cancels them and waits.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all

from ..storage.cached import IndexJob

log = logging.getLogger("netinfo.indexer")

#: Seconds :meth:`Indexer.stop` waits for a cancelled build to close its snapshot (it
#: stops at its next chunk of 4,096 rows).
STOP_WAIT = 10.0


class Indexer:
    """Runs the index builds of one database's sources (see the module)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: dict[Future[None], IndexJob] = {}

    def __call__(self, job: IndexJob) -> None:
        """Build *job* in the thread, then install it on the running loop (without one,
        as in a tool, it is abandoned: nothing is built)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            job.abandon()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ni-index")
        fut = self._pool.submit(job.run)
        self._jobs[fut] = job

        def back(_: Future[None]) -> None:
            try:
                loop.call_soon_threadsafe(self._done, fut)
            except RuntimeError:
                pass   # the loop is closed: nothing serves the index any more
        fut.add_done_callback(back)

    def _done(self, fut: Future[None]) -> None:
        job = self._jobs.pop(fut, None)
        if job is None:
            return
        if fut.exception() is not None:
            job.error = str(fut.exception())
        if job.error is not None:
            if not job.cancelled:
                log.info("%s: no resident index of %r under directory %d: %s",
                         self.where, job.key, job.oid, job.error)
        elif job.index is not None:
            log.info("%s: resident index of %r under directory %d: %d entries, %d bytes, "
                     "built in %.2f s", self.where, job.key, job.oid, job.index.entries,
                     job.index.nbytes, job.seconds)
        job.install()

    def stop(self) -> None:
        """Cancel the builds in flight and wait (at most :data:`STOP_WAIT` s) until their
        snapshots are closed."""
        for job in self._jobs.values():
            job.cancelled = True
        if self._jobs:
            wait_all(list(self._jobs), STOP_WAIT)

    def close(self) -> None:
        """:meth:`stop`, and the thread ends (a build still queued stops at its first
        chunk, which closes its snapshot)."""
        self.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
