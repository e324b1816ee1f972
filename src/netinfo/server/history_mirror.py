"""A clone keeps its master's change history (issue 24).

A clone's own commits are the master's pushes and copies (spec §9.3, §9.5): journalled
locally they would name the master as the caller and number the writes in the clone's
own sequence. So a clone's journal is *mirrored* (``Journal.mirrored``: its commits
record nothing) and filled from the master's through the history program (a reserved
port from a clone's address reads everything, ``server.history``): the master's
entries kept as they are — its sequence numbers, times, callers, paths and states.
Nothing is added to what the master pushes (spec §9.3: an original NeXT/Apple clone gets
the same calls, byte for byte); only our clones ask, on a program of our own.

**Never ahead of the data.** The clone keeps master entry *k* only once write *k* is in
its own data, so a promoted clone's history is exactly the writes it holds. It knows
which entries those are from two kinds of evidence:

* a pushed write: the master pushes its writes in commit order, after committing them
  (their entries with them), and the clone applies them in that order. A write's
  :func:`key` — its procedure and the (number, instance after) of each directory it
  left, instances being unique per number (spec §5.3) — is the same on both sides, so
  the master's entry of the last write of a pushed batch, and every entry before it,
  are in the clone's data;
* a copy or a "current" answer (spec §9.4, §9.5): the master's last entry read *before*
  the READALL (:meth:`HistoryMirror.master_last`), since the copy's snapshot is taken
  after it.

**Tight.** Every pushed batch the clone commits starts a copy of the entries up to its
last write (one at a time, coalesced, in order, each run a transaction of the clone's
store); a failed one is retried with backoff (:data:`RETRY_FIRST` to
:data:`RETRY_MAX`) until it succeeds, for at most :data:`RETRY_FOR` seconds, then at the
next push; at start-up and after every copy, the copy's evidence does it. The journal is
the clone's store's, so it survives a restart; at start-up the clone checks that its last
entry is the master's (else it starts over).

On promotion (``nidomain -p``) the journal is the clone's own again and the domain's
numbering continues right after the last entry copied, so the new master's first write
follows the old master's last in one history with no gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..client.core import Client
from ..client.history import PAGE, query
from ..errors import NetInfoError
from ..facts import Peer, Role
from ..wire.history import Entry, Query, decode_entry
from .database import Change, Database

log = logging.getLogger("netinfo.replication")

#: A failed copy of the master's entries is tried again after this many seconds,
#: doubling up to the second, for at most the third, and at the next push after that.
RETRY_FIRST, RETRY_MAX, RETRY_FOR = 0.25, 10.0, 120.0
#: The most entries a copy holds while it looks for the one of the last pushed write.
BUFFER_MAX = 20 * PAGE

#: A write as both sides see it: procedure, (number, instance after) of what it left.
Key = tuple[int, frozenset[tuple[int, int]]]


def key(proc: int, touched: Iterable[tuple[int, Any, Any]]) -> Key:
    """The key of a write (a ``Change``'s or an ``Entry``'s touched directories)."""
    return proc, frozenset((t[0], t[2].instance) for t in touched if t[2] is not None)


def entry_key(e: Entry) -> Key:
    return key(e.proc, e.touched)


class HistoryMirror:
    """Copies the master's journal into a clone's (see the module docstring)."""

    def __init__(self, db: Database, master: Callable[[], Peer | None],
                 connect: Callable[[Peer], Awaitable[Client]]) -> None:
        self.db = db
        self.master = master
        self.connect = connect
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._unsubscribe: Callable[[], None] | None = None
        #: whether our last entry was found to be the master's since mirroring began
        self._checked = False
        #: the master's entries up to this number are in our data (a copy's evidence)
        self._bound = 0
        #: the last pushed write we applied whose entry is not copied yet
        self._pushed: Key | None = None

    def start(self) -> None:
        """This server is a clone: mirror from now on."""
        journal = self.db.store.journal
        if journal is None:
            return
        journal.mirrored = True
        self._checked = False
        self._bound = 0   # what we keep is evidence once found to be the master's
        self._pushed = None
        if self._unsubscribe is None:
            self._unsubscribe = self.db.subscribe(self._after_commit)

    def promoted(self) -> None:
        """This clone is the master now: its journal is its own, numbered on right after
        the last entry copied."""
        journal = self.db.store.journal
        if journal is None:
            return
        journal.mirrored = False
        self._pushed = None
        self.db.continue_numbering(journal.last_seq(), exact=True)

    def _after_commit(self, changes: list[Change]) -> None:
        if self.db.role is not Role.CLONE:
            return
        pushed = [c for c in changes if c.proc is not None and c.caller.from_master]
        if pushed:
            last = pushed[-1]
            assert last.proc is not None
            self._pushed = key(int(last.proc), last.touched)
            self.want()

    async def master_last(self, c: Client) -> int:
        """The master's last entry's number, asked on *c* (a connection to it) just
        before a READALL: evidence for :meth:`copied`; 0 when it keeps none or has no
        history program (an original master)."""
        if self.db.store.journal is None:
            return 0
        try:
            page = await query(c, Query(limit=1))
        except (NetInfoError, OSError):
            return 0
        return page.entries[0].seq if page.entries else 0

    def copied(self, through: int) -> None:
        """Our data now holds the master's writes up to entry *through* (a copy, or a
        READALL answered "current", after :meth:`master_last` gave *through*)."""
        if through > self._bound:
            self._bound = through
            self.want()

    def want(self) -> None:
        """Copy soon (once, however many commits ask meanwhile)."""
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        wait, since = RETRY_FIRST, time.monotonic()
        while self._again:
            self._again = False
            try:
                await self.pull()
                wait, since = RETRY_FIRST, time.monotonic()
            except (NetInfoError, OSError) as e:
                if time.monotonic() - since > RETRY_FOR:
                    log.info("cannot copy the master's history (%s): again at the next "
                             "push", e)
                    return
                log.info("cannot copy the master's history yet (%s): again in %.2f s",
                         e, wait)
                self._again = True
                await asyncio.sleep(wait)
                wait = min(2 * wait, RETRY_MAX)
            except Exception:
                log.exception("copying the master's history failed")

    async def pull(self) -> int:
        """Copy the master's entries after our last that our data holds; how many."""
        journal = self.db.store.journal
        peer = self.master()
        if journal is None or peer is None or not journal.mirrored:
            return 0
        c = await self.connect(peer)
        n = 0
        try:
            last = journal.last_seq()
            if last and not self._checked:
                # Our history must be the master's: its entry at our last number, the
                # same; else (a new clone's own template writes, another master's
                # history) it is dropped and copied anew.
                got = (await query(c, Query(min_seq=last, max_seq=last, limit=1))).entries
                ours = journal.stored(last)
                if not got or ours is None or decode_entry(ours) != got[0]:
                    log.info("the history kept here is not the master's: copying it anew")
                    journal.clear()
                else:   # kept only once in our data (a previous run's evidence)
                    self._bound = max(self._bound, last)
            self._checked = True
            pushed = self._pushed
            bound = self._bound
            q = Query(oldest_first=True, min_seq=journal.last_seq() + 1, limit=PAGE)
            held: list[Entry] = []   # past the bound, before the pushed write's entry
            while True:
                page = await query(c, q)
                keep: list[Entry] = []
                for e in page.entries:
                    held.append(e)
                    if e.seq <= bound:
                        keep += held
                        held = []
                    elif pushed is not None and entry_key(e) == pushed:
                        keep += held
                        held = []
                        bound = self._bound = max(self._bound, e.seq)
                        if self._pushed == pushed:
                            self._pushed = None
                        pushed = None
                journal.insert(keep)
                n += len(keep)
                if not page.more or not page.entries or (
                        pushed is None and page.entries[-1].seq >= bound):
                    return n
                if len(held) > BUFFER_MAX:
                    log.info("the master's history has no entry of the last pushed write "
                             "among the next %d: copied up to %d", len(held), bound)
                    return n
                q = q._replace(cursor=page.cursor)
        finally:
            await c.close()

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


__all__ = ["HistoryMirror", "key", "entry_key"]
