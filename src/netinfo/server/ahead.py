"""Store reads that leave the event loop: a stream's pieces made ahead in a worker thread.

A snapshot stream (READALL, LIST and LISTALL of a big directory; ``database.SnapshotStream``)
reads its snapshot a chunk of directories at a time, on the event loop, in turns of a few
milliseconds (``netinfod.STREAM_TURN``). For an engine whose reads wait on something else
than this process's CPU (a network round trip: issue 23's PostgreSQL), each wait would
hold every other connection off: :class:`Ahead` runs the pieces' generator in a thread of
its own instead, a batch of about :data:`BATCH_BYTES` at a time and at most
:data:`BATCH_AHEAD` batches ahead of the connection, so the loop only hands over bytes
already made. The engine says so (``NodeSource.off_loop``, from its row reader).

SQLite does not: its reads are CPU work in this process, and making the pieces in a
thread made a small READ beside a LIST wait longer, not shorter (the thread and the loop
take turns at the interpreter lock; bench/bench_scale.py's fairness at 100,000 users:
READ p50 beside LIST 21-26 ms on the loop, 52-71 ms threaded; LISTALL and READALL within
the noise of a shared two-core machine; docs/benchmarks.md).

Only a source that is the stream's alone may be read so (a lazy engine's snapshot: its
own connection and cache); the memory engine's copy-on-write view shares the live tree
with the writers and stays on the loop.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

#: Bytes of pieces handed over at once (one queue operation per batch, not per piece).
BATCH_BYTES = 64 * 1024
#: Batches made ahead of the connection, at most (memory: about 1 MiB per stream).
BATCH_AHEAD = 16
#: How long :meth:`Ahead.close` waits for the thread to notice (it checks between pieces).
JOIN_TIMEOUT = 10.0

_END = object()


class Ahead:
    """The pieces of *pieces*, made by a worker thread ahead of their consumer.

    ``next`` returns them in order (waiting for the thread when it is behind), raises
    what the generator raised, and ``StopIteration`` at its end. :meth:`close` stops the
    thread and waits for it, so that whatever it reads can be released after."""

    def __init__(self, pieces: Iterator[bytes], name: str = "stream") -> None:
        self._queue: queue.Queue[object] = queue.Queue(BATCH_AHEAD)
        self._stop = threading.Event()
        self._batch: list[bytes] = []
        self._at = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(pieces,), name=name,
                                        daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Queue *item* unless stopped; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, pieces: Iterator[bytes]) -> None:
        end: object = _END
        batch: list[bytes] = []
        try:
            size = 0
            for piece in pieces:
                batch.append(piece)
                size += len(piece)
                if size >= BATCH_BYTES:
                    if not self._put(batch):
                        return
                    batch, size = [], 0
                if self._stop.is_set():
                    return
        except BaseException as exc:   # handed to the consumer after the pieces before it
            end = exc
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
        if batch and not self._put(batch):
            return
        self._put(end)

    def __iter__(self) -> Ahead:
        return self

    def __next__(self) -> bytes:
        if self._at < len(self._batch):
            piece = self._batch[self._at]
            self._at += 1
            return piece
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, list):
            self._batch, self._at = item, 1
            return item[0]
        self._done = True
        if isinstance(item, BaseException):
            raise item
        raise StopIteration

    def close(self) -> bool:
        """Stop the thread and wait for it; False when it did not stop in time (it is
        then left to end by itself: a daemon thread, stopped at its next piece)."""
        self._stop.set()
        self._done = True
        try:
            while True:
                self._queue.get_nowait()   # room for a put in progress
        except queue.Empty:
            pass
        self._thread.join(JOIN_TIMEOUT)
        return not self._thread.is_alive()
