"""A clone keeps its master's change history (issue 24).

A clone's own commits are the master's pushes and copies (spec §9.3, §9.5): journalled
locally they would name the master as the caller and number the writes in the clone's
own sequence. So a clone's journal is *mirrored* (``Journal.mirrored``: its commits
record nothing) and filled from the master's: after every batch it commits (a push, a
copy swapped in) and at start-up, it asks the master's history program for the entries
after the last it keeps, page by page, and keeps them as they are — the master's
sequence numbers, times, callers, paths and states. The master lets its clones read
(a reserved port from a clone's address, ``server.history``).

On promotion (``nidomain -p``) the journal is the clone's own again and the domain's
numbering continues after the last entry copied, so the new master's first write follows
the old master's last in one history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..client.core import Client
from ..client.history import PAGE, query
from ..errors import NetInfoError
from ..facts import Peer, Role
from ..wire.history import Query, decode_entry
from .database import Change, Database

log = logging.getLogger("netinfo.replication")


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

    def start(self) -> None:
        """This server is a clone: mirror from now on."""
        journal = self.db.store.journal
        if journal is None:
            return
        journal.mirrored = True
        self._checked = False
        if self._unsubscribe is None:
            self._unsubscribe = self.db.subscribe(self._after_commit)
        self.want()

    def promoted(self) -> None:
        """This clone is the master now: its journal is its own, numbered on from the
        last entry copied."""
        journal = self.db.store.journal
        if journal is None:
            return
        journal.mirrored = False
        self.db.continue_numbering(journal.last_seq())

    def _after_commit(self, changes: list[Change]) -> None:
        if self.db.role is Role.CLONE:
            self.want()

    def want(self) -> None:
        """Pull soon (once, however many commits ask meanwhile)."""
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self._again:
            self._again = False
            try:
                await self.pull()
            except (NetInfoError, OSError) as e:
                log.info("cannot copy the master's history yet: %s", e)
            except Exception:
                log.exception("copying the master's history failed")

    async def pull(self) -> int:
        """Copy the master's entries after our last; how many."""
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
                # history) it is dropped and copied whole.
                got = (await query(c, Query(min_seq=last, max_seq=last, limit=1))).entries
                ours = journal.stored(last)
                if not got or ours is None or decode_entry(ours) != got[0]:
                    log.info("the history kept here is not the master's: copying it anew")
                    journal.clear()
            self._checked = True
            q = Query(oldest_first=True, min_seq=journal.last_seq() + 1, limit=PAGE)
            while True:
                page = await query(c, q)
                journal.insert(page.entries)
                n += len(page.entries)
                if not page.more:
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


__all__ = ["HistoryMirror"]
