"""Replication over the network: a master's pusher and a clone's synchroniser (spec §9).

One :class:`Replicator` runs in each netinfod. On a master it subscribes to the domain's
:class:`~netinfo.server.database.Database`: every durable batch of writes is queued for each clone
that is in step, and after ``update_latency`` seconds delivered as the same calls the
clients sent (spec §9.3) — NIBIND GETREGISTER at the clone's address, then TCP from a
reserved source port, AUTH_NONE, pipelined. A clone whose update fails is marked out of
date and skipped until it copies the domain again: a READALL from the clone's address
*and a reserved port* whose whole transfer was taken marks it in step (a READALL answered
"current" changes nothing), and so does the clone answering our own STATISTICS with our
checksum. At start-up a master sends CRASHED(checksum) to every clone (§9.6); RESYNC and
every ``cleanup_wait`` seconds it sends RESYNC to all of them, coalesced: one fan-out per
:data:`RESYNC_INTERVAL`, one connection in flight per clone and message.

Roles change only by the operator's hand (docs/security.md): a master never demotes itself
because a peer says it is the master (it logs it); ``nidomain -p`` promotes a clone, and a
master becomes a clone when its own root ``master`` property is changed to name another
server (a superuser's write on the master itself). Its database is then kept aside
(``Database.keep_aside``) before any copy can replace it.

On a clone it copies the domain from the master (GETREGISTER of the master's tag, then
READALL with its own checksum, §9.5) at start-up, on CRASHED with another checksum, when a
pushed update fails here, on RESYNC and every ``cleanup_wait``. The copy is streamed: the
reply is decoded as it arrives (``Client.readall_stream``) and its directories are written
by a worker thread, a batch at a time through a short queue, into a new store beside the
live one (``Database.new_copy``: ``FILE.temp`` for SQLite, the schema ``ni_NAME~copy``
for PostgreSQL), which is then swapped in at
once (``Database.adopt``: after a crash the store holds the old tree or the new, never a
mix). Memory follows the batches, not the domain, and the old copy serves reads until the
swap. The master's updates that arrive meanwhile follow its snapshot, so they wait
(:meth:`Replicator.held`) and are applied to the new copy. NI_MASTERBUSY is retried with
backoff, never taken as final. Copies are bounded: one starts at least
:func:`copy_interval` after the last one ended, and one larger than ``max_copy`` bytes
(``netinfod --max-copy-mb``) is abandoned with the old copy kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..client import binding
from ..client.core import Client, ReadAllStream
from ..errors import NetInfoError, NiError, Status, StorageError
from ..facts import Peer, Role
from ..model import first_values
from ..storage.changes import Caller, Update, update_for
from ..wire.protocol import Proc
from ..wire.readall import WireObject
from .database import Change, Database
from .history_mirror import HistoryMirror
from .service import SUPERUSER

log = logging.getLogger("netinfo.replication")

#: Apple's defaults (spec §11): seconds between a write and its push, between checks.
UPDATE_LATENCY = 2.0
CLEANUP_WAIT = 1800.0
#: Backoff of a clone whose master is busy or unreachable: first and largest wait.
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
#: Longest wait between two nudges of an out-of-date clone.
NUDGE_MAX = 5.0
#: A READALL stream that sends nothing for this long is given up.
TRANSFER_TIMEOUT = 600.0
#: A master fans RESYNC out to its clones at most once per this many seconds; RESYNCs
#: arriving meanwhile are coalesced into one fan-out at the end of the window (N8).
RESYNC_INTERVAL = 10.0
#: A clone starts a copy (a READALL that transfers) no sooner than this many seconds ...
COPY_INTERVAL_MIN = 10.0
#: ... and this many times the last copy's duration after the last copy ended: a clone
#: keeps its master busy (writes refused) at most about 1/11 of the time (N13).
COPY_INTERVAL_FACTOR = 10.0
#: Default bound of one copy's READALL reply, bytes (``netinfod --max-copy-mb``): 2 GiB,
#: about 7.5 million users at the 267 MB per million measured (docs/benchmarks.md).
MAX_COPY_BYTES = 2048 * 1024 * 1024
#: Repeated log lines of one kind and peer: at most one per this many seconds.
LOG_INTERVAL = 60.0
#: Directories per batch handed to the thread writing a copy, and batches queued for it
#: at most: the memory a copy takes beyond the old domain's cache.
COPY_BATCH = 4096
COPY_QUEUE = 2


@dataclass
class CloneState:
    """What a master knows of one clone."""

    peer: Peer
    in_step: bool = False
    queue: list[Update] = field(default_factory=list)
    last_push: float | None = None
    flushing: bool = False
    #: a READALL of the clone's is streaming its snapshot: the writes committed after
    #: the snapshot are queued, and pushed once the transfer was taken whole
    copying: bool = False
    #: procedures (RESYNC, CRASHED) with a connection to this clone in flight: one each
    sending: set[int] = field(default_factory=set)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_push)) \
            if self.last_push else "never"
        state = "in-step" if self.in_step else "copying" if self.copying else "out-of-date"
        return f"{self.peer.addr}/{self.peer.tag} {state} queued={len(self.queue)} " \
               f"last_push={when}"


class CopyTooLarge(StorageError):
    """A copy's READALL reply exceeded ``max_copy`` bytes: it is abandoned (N18)."""


def copy_interval(last_took: float) -> float:
    """Seconds a clone waits after a copy that took *last_took* s before the next one."""
    return max(COPY_INTERVAL_MIN, COPY_INTERVAL_FACTOR * last_took)


class RateLimitedLog:
    """Log lines of one kind about one peer at most once per :data:`LOG_INTERVAL` s; the
    next one says how many were left out (a flood of calls must not flood the log)."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[tuple, tuple[float, int]] = {}

    def __call__(self, key: tuple, level: int, msg: str, *args: object) -> None:
        now = time.monotonic()
        last, skipped = self._last.get(key, (-1e18, 0))
        if now - last < self.interval:
            self._last[key] = (last, skipped + 1)
            return
        if len(self._last) > 4096:
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self.interval}
        self._last[key] = (now, 0)
        if skipped:
            msg += " (%d more like it in the last %.0f s)"
            args = (*args, skipped, self.interval)
        log.log(level, msg, *args)


#: Calls whose outcome replication hears of from the owner, besides the master's pushed
#: updates (spec §9.5, §9.6; READALL: when its state is fixed).
_WATCHED = frozenset({Proc.CRASHED, Proc.RESYNC, Proc.READALL})


class Replicator:
    """The replication side of one netinfod (master or clone, by ``info.clone``)."""

    def __init__(self, db: Database, tag: str, is_own: Callable[[str], bool],
                 max_copy: int = MAX_COPY_BYTES) -> None:
        self.db = db
        self.tag = tag
        self.is_own = is_own
        #: bytes of a copy's READALL reply at most (``netinfod --max-copy-mb``)
        self.max_copy = max_copy
        self.limited_log = RateLimitedLog()
        #: when the last copy ended (monotonic) and how long it took
        self._copied_at: float | None = None
        self._copy_took = 0.0
        #: the coalesced RESYNC fan-out: when the last one ran, the one scheduled
        self._resynced_at: float | None = None
        self._resync_handle: asyncio.TimerHandle | None = None
        self._considering = False
        #: set by the master's own CRASHED: the next copy need not wait (sync)
        self._urgent = asyncio.Event()
        self._unwatch_transfers: Callable[[], None] | None = None
        self.clones: dict[Peer, CloneState] = {}
        self.last_sync: float | None = None
        self.in_step = False
        self._tasks: set[asyncio.Task] = set()
        self._sync_task: asyncio.Task | None = None
        self._sync_again = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: the owner tells us of the calls that matter (until close)
        self._unwatch_calls = db.watch_calls(self.observe, _WATCHED, pushed=True)
        #: where the next copy comes from when not the master our copy names
        self._source: Peer | None = None
        #: set while a copy is being received and swapped in: the master's updates wait
        self._held: asyncio.Future[None] | None = None
        #: a clone's copy of its master's change history (issue 24)
        self.history = HistoryMirror(db, lambda: self._source or self.db.facts().master,
                                     self._connect)

    @property
    def is_clone(self) -> bool:
        """The role the database's owner holds (:attr:`Database.role`)."""
        return self.db.role is Role.CLONE

    # -- root properties (spec §11) -------------------------------------------------------

    def _seconds(self, name: str, default: float, low: float, high: float) -> float:
        vals = first_values(self.db.root_props(), name)
        try:
            v = float(vals[0]) if vals else default
        except ValueError:
            v = default
        return min(max(v, low), high)

    def update_latency(self) -> float:
        return self._seconds("update_latency", UPDATE_LATENCY, 0.0, 7200.0)

    def cleanup_wait(self) -> float:
        return self._seconds("cleanup_wait", CLEANUP_WAIT, 1.0, 36000.0)

    # -- life ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.is_clone:
            self.history.start()
            self.sync()
        else:
            self.rebuild_clones(first=True)
            self._unsubscribe = self.db.subscribe(self._on_commit)
            self._watch_transfers()
            self._spawn(self._master_start())
            self._spawn(self._nudge_out_of_date())
        self._spawn(self._periodic())
        self.publish()

    async def _master_start(self) -> None:
        """A master coming up tells every clone to check its copy with CRASHED(checksum)
        (spec §9.6). It also asks them who the master is, only to say so: a listed server
        that claims to be the master (one promoted while we were away, or anyone who
        answers at a clone's address) never makes this one a clone (N5: that would
        replace the domain with whatever the claimant sends). The operator decides
        (docs/security.md): root ``master`` written here to name the new master demotes
        this server, keeping its database aside."""
        for st in list(self.clones.values()):
            self._spawn(self._send_one(st.peer, Proc.CRASHED, (self.db.checksum,)))
        for st in list(self.clones.values()):
            if await self._claims_master(st.peer):
                log.warning("%s/%s (%s) says it is the master of %s: this server stays "
                            "the master (no role changes on a peer's word). If that server "
                            "was promoted, make this one its clone, as root here: niutil "
                            "-createprop . / master %s/%s", st.peer.addr, st.peer.tag,
                            st.peer.name, self.tag, st.peer.name, st.peer.tag)

    async def _statistics(self, peer: Peer, privileged: bool = True
                          ) -> dict[str, list[str]] | None:
        """*peer*'s STATISTICS (spec §4.4) as a dict, or None when it does not answer."""
        try:
            c = await self._connect(peer, privileged=privileged)
            try:
                return dict(await c.statistics())
            finally:
                await c.close()
        except (NetInfoError, OSError):
            return None

    async def _claims_master(self, peer: Peer) -> bool:
        """Does *peer* say it is a master of the domain (STATISTICS ``tag``, spec §4.4)?"""
        stats = await self._statistics(peer, privileged=False)
        tag = (stats or {}).get("tag") or []
        return len(tag) > 1 and tag[1] == "master"

    def _names_another_master(self) -> bool:
        """Does root ``master`` name a server other than this one (spec §9.1, as
        ``netinfod``: :meth:`facts.DomainFacts.role`)? A database named ``local`` is
        never a clone."""
        return self.db.facts().role(self.tag, self.is_own) is Role.CLONE

    def _demote(self) -> None:
        """Root ``master`` was changed here to name another server (the operator's
        demotion): keep the database this server mastered aside, then become a clone of
        the named master and copy the domain from it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._resync_handle is not None:
            self._resync_handle.cancel()
            self._resync_handle = None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        try:
            kept = self.db.keep_aside(f"mastered-{stamp}")
        except StorageError as e:
            log.error("root master names another server, but the database this server "
                      "mastered cannot be kept aside (%s): staying the master", e)
            self._unsubscribe = self.db.subscribe(self._on_commit)
            return
        self.clones = {}
        self.db.set_role(Role.CLONE)
        self.history.start()
        self.db.info.clones = 0
        mp = self.db.facts().master_name
        log.warning("root master now names %s: this server is a clone from now on; the "
                    "database it mastered is kept as %s", "/".join(mp or ("?", "?")),
                    kept or "(nothing: the store is not a file)")
        self.sync()

    def promote(self) -> None:
        """Make this clone the domain's master (``nidomain -p``, beyond the original):
        root ``master`` names this server, written here and pushed to the other servers,
        which follow it (a clone takes a master from a listed server that claims to be
        one when its own is gone; an old master coming back becomes a clone)."""
        if not self.is_clone:
            log.info("promote: already the master")
            return
        me = self.db.facts().own_entry(self.is_own, self.tag)
        if me is None:
            log.warning("promote: /machines lists no entry of this host serving ./%s",
                        self.tag)
            return
        self.db.set_role(Role.MASTER)
        self.history.promoted()
        root, props = self.db.call(Proc.READ, SUPERUSER,
                                   (self.db.call(Proc.ROOT, SUPERUSER, ()),))
        names = [k for k, _ in props]
        value = [f"{me.name}/{self.tag}"]
        if "master" in names:
            self.db.call(Proc.WRITEPROP, SUPERUSER, (root, names.index("master"), value))
        else:
            self.db.call(Proc.CREATEPROP, SUPERUSER, (root, ("master", value), 0))
        self.db.commit()
        log.warning("promoted: this server is the master of %s now", self.tag)
        self.rebuild_clones(first=True)
        self._unsubscribe = self.db.subscribe(self._on_commit)
        self._watch_transfers()
        for st in self.clones.values():
            self._spawn(self._send_one(st.peer, Proc.CRASHED, (self.db.checksum,)))
        self._spawn(self._nudge_out_of_date())

    def _watch_transfers(self) -> None:
        if self._unwatch_transfers is None:
            self._unwatch_transfers = self.db.watch_transfers(self._transfer_done)

    async def close(self) -> None:
        self._unwatch_calls()
        await self.history.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._unwatch_transfers is not None:
            self._unwatch_transfers()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self._resync_handle is not None:
            self._resync_handle.cancel()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.cleanup_wait())
            if self.is_clone:
                self.sync()
            else:
                self.resync_clones()

    async def _nudge_out_of_date(self) -> None:
        """Beyond the original: a master looks at each out-of-date clone every 2 s,
        growing to :data:`NUDGE_MAX`, until it is in step: a clone whose STATISTICS
        (asked by us, at its listed address) show our checksum is in step again;
        otherwise it is told to copy the domain (RESYNC, one connection at a time). So a
        clone cut off for a while converges soon after it is back, not at its next
        cleanup_wait."""
        wait = BACKOFF_FIRST * 4
        while True:
            await asyncio.sleep(wait)
            if self.is_clone:
                return
            behind = [st for st in self.clones.values() if not st.in_step]
            if not behind:
                wait = BACKOFF_FIRST * 4
                continue
            for st in behind:
                if not await self._caught_up(st):
                    await self._send_one(st.peer, Proc.RESYNC, ())
            wait = min(wait * 2, NUDGE_MAX)

    async def _caught_up(self, st: CloneState) -> bool:
        """Mark *st* in step when the clone, asked by us, reports our checksum. Our
        checksum is read after its answer: a write committed meanwhile (not queued for
        an out-of-date clone) changes it, so it cannot be missed."""
        stats = await self._statistics(st.peer)
        if stats is None:
            return False
        theirs = (stats.get("checksum") or [""])[0]
        role = (stats.get("tag") or ["", ""])[1:2]
        if st.in_step or role != ["clone"] or theirs != str(self.db.checksum):
            return st.in_step
        if self.clones.get(st.peer) is st:
            st.in_step, st.queue = True, []
            log.info("clone %s/%s has our checksum: in step", st.peer.addr, st.peer.tag)
            self.publish()
        return True

    # -- what the server asks (Dispatcher.replicator) and the owner tells ----------------

    def held(self) -> asyncio.Future[None] | None:
        """While a copy is received and swapped in, a future done once it is: the master's
        updates wait for it (the server stops answering that connection meanwhile).
        They follow the master's snapshot (it refuses writes while it sends one), so they
        must be applied to the new copy, not to the old one the swap would drop."""
        h = self._held
        return h if h is not None and not h.done() else None

    def observe(self, proc: int, caller: Caller, args: tuple, outcome: object) -> None:
        """A call that matters to replication was answered (``Database.watch_calls``:
        CRASHED, RESYNC, READALL once its state is fixed, and every update the master
        pushed), with its outcome: a value, or the NiError it failed with."""
        if proc in (Proc.CRASHED, Proc.RESYNC) and self.is_clone and \
                not caller.from_master and caller.port < 1024:
            other = self._listed_server(caller.addr)
            if other is not None:
                if not self._considering:   # one look at a time, however many calls
                    self._considering = True
                    self._spawn(self._consider_master(other))
                return
        if proc == Proc.CRASHED:
            if self.is_clone and args and args[0] != self.db.checksum:
                self.sync(urgent=caller.from_master)
        elif proc == Proc.RESYNC:
            if self.is_clone:
                self.sync()
            else:
                self.resync_clones(rebuild=True)
        elif proc == Proc.READALL:
            self._transfer_opened(caller)
        elif caller.from_master and isinstance(outcome, NiError):
            log.info("an update from the master failed here: copying the domain again")
            self.sync()

    # -- master --------------------------------------------------------------------------

    def rebuild_clones(self, first: bool = False) -> None:
        """The clone list from /machines (spec §9.1), keeping what we knew of each."""
        peers = self.db.facts().clones(self.is_own, self.tag)
        old = self.clones
        # A clone known at start-up is assumed in step: CRASHED makes it check (§9.6).
        self.clones = {p: old.get(p) or CloneState(p, in_step=first) for p in peers}
        self.db.info.clones = len(self.clones)
        self.publish()

    def _copying_clones(self, caller: Caller) -> list[CloneState]:
        """The clones at *caller*'s address when it calls from a reserved port (spec §9.2,
        as pushes are recognised; or the local superuser); from any other port none
        (N9: any user on a clone's host could otherwise empty its queue)."""
        if self.is_clone:
            return []
        addr = caller.addr.removeprefix("::ffff:")
        mine = [st for st in self.clones.values() if st.peer.addr == addr]
        if mine and not (caller.port < 1024 or caller.superuser):
            self.limited_log(("readall-port", addr), logging.WARNING,
                             "a READALL from %s:%d (a clone's address, not a reserved "
                             "port) is not taken as the clone's copy", addr, caller.port)
            return []
        return mine

    def _transfer_opened(self, caller: Caller) -> None:
        """A READALL's snapshot was taken (or it was answered "current"): for a clone
        calling from a reserved port, the writes committed from now on are queued for it
        (the snapshot holds everything before), to be pushed once it took the transfer."""
        for st in self._copying_clones(caller):
            st.in_step, st.copying, st.queue = False, True, []

    def _transfer_done(self, caller: Caller, whole: bool) -> None:
        """A READALL transfer ended: sent whole (its last piece handed to the connection),
        the clone is in step from now on and gets what was queued since its snapshot;
        cut short, it is out of date (it copies again) and nothing is queued for it."""
        changed = False
        for st in self._copying_clones(caller):
            if not st.copying:
                continue
            st.copying, changed = False, True
            if whole:
                st.in_step = True
            else:
                st.queue = []
        if changed:
            self.publish()
            self._schedule_flush()

    def _on_commit(self, changes: list[Change]) -> None:
        if self._names_another_master():
            self._demote()
            return
        self.rebuild_clones()
        updates: list[Update] = []
        for c in changes:
            if c.proc is None:      # a whole new tree: the clones must copy it
                for st in self.clones.values():
                    st.in_step, st.copying, st.queue = False, False, []
                    self._spawn(self._send_one(st.peer, Proc.CRASHED, (self.db.checksum,)))
                updates = []
                continue
            updates.append(update_for(c.proc, c.args, c.result))
        if not updates:
            return
        for st in self.clones.values():
            if st.in_step or st.copying:
                st.queue.extend(updates)
        self._schedule_flush()

    def resync_clones(self, rebuild: bool = False) -> None:
        """RESYNC every clone: pushed after the queued updates of those in step, sent
        to the others (spec §9.3). At most one fan-out per :data:`RESYNC_INTERVAL`: a
        RESYNC arriving sooner is coalesced into one at the end of the window (N8)."""
        if self._resync_handle is not None:
            return   # one is scheduled: it does this one's work too
        now = time.monotonic()
        if self._resynced_at is not None and now - self._resynced_at < RESYNC_INTERVAL:
            loop = asyncio.get_running_loop()
            self._resync_handle = loop.call_later(
                self._resynced_at + RESYNC_INTERVAL - now, self._resync_now, True)
            return
        self._resync_now(rebuild)

    def _resync_now(self, rebuild: bool) -> None:
        self._resync_handle = None
        if self.is_clone:
            return
        self._resynced_at = time.monotonic()
        if rebuild:
            self.rebuild_clones()
        for st in self.clones.values():
            if st.in_step:
                if (Proc.RESYNC, ()) not in st.queue[-1:]:
                    st.queue.append((Proc.RESYNC, ()))
            else:
                self._spawn(self._send_one(st.peer, Proc.RESYNC, ()))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._flush_handle = loop.call_later(self.update_latency(), self._flush_all)

    def _flush_all(self) -> None:
        self._flush_handle = None
        for st in self.clones.values():
            if st.in_step and st.queue and not st.flushing:
                self._spawn(self._flush(st))

    async def _connect(self, peer: Peer, privileged: bool = True) -> Client:
        _, port = await binding.getregister(peer.addr, peer.tag, timeout=3.0)
        # A reserved source port and AUTH_NONE: how a clone knows its master (§9.2).
        return await Client.connect(peer.addr, port, peer.tag, privileged=privileged,
                                    timeout=5.0)

    async def _flush(self, st: CloneState) -> None:
        st.flushing = True
        try:
            while st.in_step and st.queue:
                batch, st.queue = st.queue, []
                c = await self._connect(st.peer)
                try:
                    results = await asyncio.gather(*(c.call(p, *a) for p, a in batch),
                                                   return_exceptions=True)
                finally:
                    await c.close()
                bad = next((r for r in results if isinstance(r, BaseException)), None)
                if bad is not None:
                    raise bad
                st.last_push = time.time()
        except (NetInfoError, OSError) as e:
            log.warning("clone %s/%s is out of date: %s", st.peer.addr, st.peer.tag, e)
            st.in_step, st.queue = False, []
        finally:
            st.flushing = False
            self.publish()
        if st.queue:
            self._schedule_flush()

    async def _send_one(self, peer: Peer, proc: int, args: tuple) -> None:
        """One call to one clone on a connection of its own; skipped when the same
        procedure to that clone is in flight already (one connection each, N8)."""
        st = self.clones.get(peer)
        if st is not None:
            if proc in st.sending:
                return
            st.sending.add(proc)
        try:
            c = await self._connect(peer)
            try:
                await c.call(proc, *args)
            finally:
                await c.close()
        except (NetInfoError, OSError) as e:
            self.limited_log(("send", proc, peer), logging.INFO, "%s to clone %s/%s: %s",
                             Proc(proc).name, peer.addr, peer.tag, e)
        finally:
            if st is not None:
                st.sending.discard(proc)

    # -- clone ---------------------------------------------------------------------------

    def _listed_server(self, addr: str) -> Peer | None:
        """The server of this domain at *addr*, as /machines lists it."""
        addr = addr.removeprefix("::ffff:")
        return self.db.facts().listed_server(addr)

    async def _consider_master(self, other: Peer) -> None:
        """Another listed server says our copy may be stale. Follow it only when it claims
        to be the master and ours is gone or no longer claims to be (a promotion). A
        clone's copy is only a copy: what it risks is bounded (copy_interval,
        ``max_copy``), and the master it would have followed never follows anyone."""
        try:
            mine = self.db.facts().master
            if mine is not None and await self._claims_master(mine):
                self.sync()
                return
            if await self._claims_master(other):
                log.warning("following %s/%s, which says it is the master now", other.addr,
                            other.tag)
                self.sync(source=other)
        finally:
            self._considering = False

    def sync(self, source: Peer | None = None, urgent: bool = False) -> None:
        """Check the master's checksum and copy the domain if it differs (spec §9.5);
        from *source* instead of the master named in our copy when given. *urgent*
        (the master's own CRASHED: its address and a reserved port) skips the wait of
        :func:`copy_interval`: a restarted master's clones converge at once."""
        if source is not None:
            self._source = source
        if urgent:
            self._urgent.set()
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_again = True
            return
        self._sync_task = self._spawn(self._sync_loop())

    async def _sync_loop(self) -> None:
        while True:
            self._sync_again = False
            await self._sync_once()
            if not self._sync_again:
                return

    async def _sync_once(self) -> None:
        wait = BACKOFF_FIRST
        if self._copied_at is not None:
            # No copy back to back (N13): a copy starts copy_interval() after the last.
            delay = self._copied_at + copy_interval(self._copy_took) - time.monotonic()
            if delay > 0 and not self._urgent.is_set():
                log.debug("next copy check in %.1f s (the last copy took %.1f s)", delay,
                          self._copy_took)
                try:
                    await asyncio.wait_for(self._urgent.wait(), delay)
                except TimeoutError:
                    pass
        self._urgent.clear()
        while True:
            master = self._source or self.db.facts().master
            if master is None:
                log.warning("no master address in /machines: cannot synchronise")
                return
            addr, tag = master.addr, master.tag
            try:
                _, port = await binding.getregister(addr, tag, timeout=3.0)
                c = await Client.connect(addr, port, tag, privileged=True, timeout=5.0)
                c.timeout = TRANSFER_TIMEOUT
                try:
                    # the master's history up to here is in the copy (history_mirror)
                    through = await self.history.master_last(c)
                    transfer = await c.readall_stream(self.db.checksum)
                    try:
                        copied = None if transfer.current else await self._copy(transfer)
                    finally:
                        transfer.close()
                finally:
                    await c.close()
            except NiError as e:
                if e.status != Status.MASTERBUSY and e.status not in (Status.NOTAG,
                                                                      Status.NORESPONSE):
                    log.warning("master %s/%s refused the copy: %s", addr, tag, e)
                    return
                log.info("master %s/%s: %s; again in %.1f s", addr, tag, e, wait)
            except StorageError as e:
                # the copy is unusable (a damaged tree, a full disk, too large): the old
                # one serves on, and the next CRASHED, RESYNC or cleanup_wait tries again
                # (no sooner than copy_interval)
                self._copied_at = time.monotonic()
                log.warning("the copy from %s/%s failed: %s", addr, tag, e)
                return
            except (NetInfoError, OSError) as e:
                log.info("master %s/%s unreachable (%s); again in %.1f s", addr, tag, e, wait)
            else:
                self.last_sync = time.time()
                self._source = None  # from now on the master our copy names
                self.history.copied(through)
                if copied is not None:  # None: we are current (checksum 0, spec §9.4)
                    count, took = copied
                    self._copied_at, self._copy_took = time.monotonic(), took
                    log.info("copied %d directories from %s/%s (checksum %d) in %.1f s",
                             count, addr, tag, self.db.checksum, took)
                self.in_step = True
                self.publish()
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, BACKOFF_MAX)

    async def _copy(self, transfer: ReadAllStream) -> tuple[int, float]:
        """Write the READALL stream into a new copy beside the live one and swap it in
        (spec §9.4, §9.5): (directories, seconds). A worker thread writes, a batch at a
        time, at most :data:`COPY_QUEUE` batches behind the stream (SQLite lets go of
        the interpreter while it works); the event loop decodes the stream and serves
        meanwhile. The master's updates wait from its snapshot until the swap.

        :raises StorageError, NetInfoError, OSError: the old copy stays.
        """
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        self._held = loop.create_future()
        pool = ThreadPoolExecutor(1, thread_name_prefix="netinfo-copy")
        copy = None
        queued: deque[asyncio.Future[None]] = deque()
        try:
            copy = await loop.run_in_executor(pool, self.db.new_copy)
            batch: list[WireObject] = []
            async for objects in transfer:
                if transfer.received > self.max_copy:
                    raise CopyTooLarge(
                        f"the copy exceeds {self.max_copy // (1024 * 1024)} MB "
                        f"(netinfod --max-copy-mb): abandoned, the old copy is kept")
                batch += objects
                if len(batch) >= COPY_BATCH:
                    queued.append(loop.run_in_executor(pool, copy.add, batch))
                    batch = []
                    while len(queued) > COPY_QUEUE or (queued and queued[0].done()):
                        await queued.popleft()
            queued.append(loop.run_in_executor(pool, copy.add, batch))
            while queued:
                await queued.popleft()
            await loop.run_in_executor(pool, copy.finish)
            if copy.checksum != transfer.checksum:
                log.warning("the master announced checksum %d, its directories make %d "
                            "(spec §5.6): keeping the latter", transfer.checksum,
                            copy.checksum)
            self.db.adopt(copy)
            done, copy = copy, None
            return done.count, time.monotonic() - t0
        finally:
            if copy is not None:
                # cancelled or failed: what was written goes (discard never raises), once
                # the thread is done with the batches in hand
                await asyncio.shield(asyncio.gather(
                    *queued, loop.run_in_executor(pool, copy.discard), return_exceptions=True))
            pool.shutdown(wait=False)
            self._held.set_result(None)

    # -- STATISTICS (spec §4.4, our additions) --------------------------------------------

    def publish(self) -> None:
        """What STATISTICS reports of replication: each clone's state on a master; the
        master, the last copy and whether it is in step on a clone."""
        info = self.db.info
        if self.is_clone:
            m = self.db.facts().master
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_sync)) \
                if self.last_sync else "never"
            info.replication = [("master_server", [f"{m.addr}/{m.tag}" if m else "unknown"]),
                                ("last_sync", [when]),
                                ("sync_state", ["in-step" if self.in_step else "syncing"])]
        else:
            info.replication = [("clone_state", [st.describe() for st in self.clones.values()])]
