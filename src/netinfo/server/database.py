"""The owner of one open domain: :class:`Database`, and where a tag's database lives.

A :class:`Database` pairs the domain's :class:`~netinfo.server.service.DirectoryService` (all
NetInfo semantics, pure) with its :class:`~netinfo.storage.Store` and is the one place a
write becomes durable: :meth:`Database.call` runs a procedure, :meth:`Database.commit`
makes every pending write durable in one transaction and returns one :class:`Change` per
write, and subscribers (:meth:`Database.subscribe`) hear of each durable batch — the seam
for replication, the change history, live views and front doors.

On disk, one database per tag: the directory ``DIR/TAG.nidb`` (spec §13), holding our
SQLite file ``netinfo.sqlite`` and ``netinfo.sqlite.lock``, which keeps a second writer
out (and, while a clone copies its master, ``netinfo.sqlite.temp``: :meth:`Database.new_copy`).
A NeXT ``collection`` file found there instead is converted on first start, as Apple's
netinfod converted old databases (spec §13). ``open_database(..., store=URL)`` picks another engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from ..errors import (
    DamagedDirectory, NiError, RpcError, Status, StorageError, StoreDiverged, WireError,
)
from ..facts import DomainFacts, Role
from ..model import Directory
from ..storage import (
    Catalog,
    DatabaseInUse,
    Image,
    Meta,
    NewCopy,
    Op,
    Store,
    WriterLock,
    engine,
    engine_of,
)
from ..storage.cached import CachedSource, StoreWait, WaitingRows
from ..storage.changes import SEQ_KEY, Caller, Change, DirState, Touched  # noqa: F401 - re-exported
from ..storage.legacy import decode_collection
from ..storage.nodes import NodeSource
from ..storage.sqlite_catalog import SQLITE_NAME
from ..wire.proplist import pack_status
from ..wire.protocol import (
    NETINFO_PROG,
    PROCEDURES,
    RESULT_KINDS,
    Proc,
    decode_args,
    list_pieces,
    listall_pieces,
)
from ..wire.readall import iter_readall
from ..wire.rpc import AcceptStat, AuthUnix
from ..wire.xdr import Unpacker

# AUTH_FAILURES and AUTH_WINDOW stay importable from here (tests, web) as before
from .ahead import Ahead
from .auth import AUTH_FAILURES, AUTH_WINDOW, Authenticator, FailureLimiter  # noqa: F401
from .service import SUPERUSER, Candidate, DirectoryService, ServerInfo
from .indexer import Indexer
from .storeio import StoreIO

T = TypeVar("T")
log = logging.getLogger("netinfo.database")

DEFAULT_DIR = "/var/db/netinfo"
__all__ = ["Database", "DatabaseInUse", "SQLITE_NAME", "open_database", "catalog_of"]


# -- changes ------------------------------------------------------------------------------------

# Change (one write, one record) lives in the pure core (changes.py); it is re-exported here.

Subscriber = Callable[[list[Change]], None]
#: Told of one call's outcome: (procedure, caller, arguments, value or NiError).
CallWatcher = Callable[[int, Caller, tuple, Any], None]
#: Told of a READALL transfer sent whole (not a "current" answer), with its caller.
TransferWatcher = Callable[[Caller, bool], None]



# -- one writer per database --------------------------------------------------------------------

# The lock is the engine's (Engine.lock: SQLite's is a flock on FILE.lock beside the file,
# storage/sqlite_catalog.py); DatabaseInUse stays importable from here.


def check_not_in_use(directory: Path, tag: str) -> None:
    """:raises DatabaseInUse: a process holds ``DIR/TAG.nidb`` (nothing is changed)."""
    catalog_of(directory).check_free(tag)


# -- the owner ----------------------------------------------------------------------------------

class Database:
    """One open domain: its service, its store, its commits and their subscribers."""

    def __init__(self, store: Store, info: ServerInfo | None = None, *,
                 lock: WriterLock | None = None, where: str = "",
                 cache: int | None = None, cache_bytes: int | None = None) -> None:
        self.store = store
        self.where = where or store.scheme
        self._lock = lock
        #: directories the service keeps decoded (None: the engine's default)
        self.cache = cache
        #: bytes of stored proplists the service keeps decoded (None: the default)
        self.cache_bytes = cache_bytes
        source = store.source(cache, cache_bytes)
        if source is not None:
            # The store is the source of truth, read on demand (docs/architecture.md,
            # "Representation at scale"): nothing here is O(n).
            self.created = not store.exists()
            svc = DirectoryService(info=info, source=source)
        else:
            image = store.load()
            #: true when the store held no domain and an empty root was just made
            self.created = not image.records
            svc = DirectoryService(image, info)
            if image.checksum is not None and image.checksum != svc.checksum:
                log.warning("%s: stored checksum %d differs from the recomputed %d; using "
                            "the latter", self.where, image.checksum, svc.checksum)
        self._service = svc
        for message in store.found_damaged:
            log.error("%s", message)
        #: procedure → the bound service method: dispatch is one dict lookup per call
        self._handlers: dict[int, Callable[..., Any]] = {
            proc: getattr(svc, row.method) for proc, row in PROCEDURES.items()}
        self._writes = frozenset(p for p, row in PROCEDURES.items() if row.is_write)
        #: procedure → (table row, its kind's encoder, its kind's failure encoder)
        self._answers = {proc: (row, RESULT_KINDS[row.kind].encode,
                                RESULT_KINDS[row.kind].failure)
                         for proc, row in PROCEDURES.items()}
        self._changes: list[Change] = []
        #: the sequence number of the last change made (durable or pending), stored
        #: with each batch (changes.SEQ_KEY)
        self._seq = self._stored_seq(svc)
        #: ... and of the last durable one (a failed commit goes back to it)
        self._durable_seq = self._seq
        self._subscribers: list[Subscriber] = []
        #: moved whenever the tree changes without a Change saying where (a reload, a
        #: commit of writes made around :meth:`call`): a reply cache keyed on directories
        #: (``server.fastpath``) drops everything then (:meth:`read_state`)
        self._generation = 0
        self._transfer_watchers: list[TransferWatcher] = []
        #: procedure → who hears of its calls' outcomes (watch_calls), and who hears of
        #: every call the master pushed
        self._watched: dict[int, tuple[CallWatcher, ...]] = {}
        self._pushed: tuple[CallWatcher, ...] = ()
        #: snapshot streams open (READALL, LIST and LISTALL of big directories), oldest
        #: first
        self._streams: dict[SnapshotStream, None] = {}
        #: every credential's door (NETINFO's AUTH_UNIX and any later one), with the
        #: failure limiter per peer (spec §10.2; module ``auth``)
        self.authenticator = svc.authenticator = Authenticator(
            svc.check_user, FailureLimiter(
                lambda message: log.warning("%s: %s", self.where, message)))
        #: damaged directories already logged (report_damage)
        self._damage_logged: set[int] = set()
        #: why the store's connection is lost, once said (check_store); "" when it is not
        self._store_lost = ""
        #: the store's round trips off the event loop (:meth:`serve_off_loop`), or None
        self._io: StoreIO | None = None
        #: builds the sources' resident LOOKUP indexes (:meth:`serve_indexes`), or None
        self._indexer: Indexer | None = None
        #: the commit in flight in the commit thread (:meth:`settle`), or None
        self._inflight: _InFlight | None = None
        #: failed commits so far: a batch whose writes were made before the last one
        #: was rolled back with it (:class:`Batch`)
        self.epoch = 0
        if svc.pending:  # a new database: its empty root (no write: no Change)
            self._commit(unrecorded_ok=True)

    # -- reading and writing ---------------------------------------------------------------

    def read_state(self) -> int | None:
        """What a cache of read replies may rely on: None while writes are pending (a
        read then sees them, and they may still be rolled back: neither answer from a
        cache nor fill one), else a number that moves whenever the tree changed without
        a :class:`Change` telling which directories (subscribers hear of the others)."""
        if self._service.pending or self._changes or self._inflight is not None:
            return None
        return self._generation

    def is_watched(self, proc: int) -> bool:
        """Does anyone hear of calls of *proc* (:meth:`watch_calls`)? A short path that
        answers without :meth:`call` must not take those."""
        return proc in self._watched

    # -- what the doors and replication read (the service itself stays private) ----------

    def root_props(self) -> list[tuple[str, list[str]]]:
        """The root directory's properties as they are now (port numbers, replication
        timings, ``master``: spec §11); a copy."""
        return self._service.directory(0).props

    @property
    def source(self) -> NodeSource:
        """The domain's directories as they are now, read only: what a front door (NIS,
        LDAP) renders from without a NETINFO call per directory. Writes go through
        :meth:`call`; a door that enumerates a big table takes a snapshot stream
        (:class:`SnapshotStream`, after :meth:`stream_room`)."""
        return self._service.source

    def snapshot(self) -> NodeSource:
        """A read-only view of the domain as it is now, that later writes do not change
        (a WAL read transaction, or a copy-on-write view): what a door's long
        enumeration reads (an LDAP search) without holding writers off. The caller
        closes it; it counts against no stream bound (see :meth:`stream_room`)."""
        return self._service.snapshot()

    def stream_room(self, addr: str, privileged: bool) -> Status | None:
        """Room for one more snapshot stream from *addr* (None), or the status to
        answer: the bounds every enumeration shares (READALL, big LIST/LISTALL, YP ALL,
        LDAP searches)."""
        return self._room(addr, privileged)

    def root_without_password(self) -> list[str]:
        """Names of uid-0 users anyone can authenticate as (netinfod warns of them)."""
        return self._service.root_without_password()

    def user_candidates(self, who: str | int) -> tuple[str, list[Candidate]]:
        """The users a password for *who* is checked against, in order, with their
        hashes (``DirectoryService.user_candidates``): for a door that verifies the
        hashes off the event loop. :raises NiError: NI_NOUSER."""
        return self._service.user_candidates(who)

    def is_forced_root(self) -> bool:
        """``netinfod -n`` or root ``isRoot`` = YES: no parent search (spec §8.2, §11)."""
        return self._service.is_forced_root()

    def service_for_tests(self) -> DirectoryService:
        """The domain's service itself, for tests that drive or inspect it directly (a
        write made on it is stored by the next commit and reported to nobody). Never
        used by the server: every door reads through the accessors above and writes
        through :meth:`call` (issue 19: one door)."""
        return self._service

    def admits_tcp(self, addr: str, local: bool) -> bool:
        """May a connection from *addr* stay open? (root ``trusted_networks``, spec
        §10.5; ``DirectoryService.admits_tcp``)"""
        return self._service.admits_tcp(addr, local)

    def highest_id(self) -> int:
        """Largest object number + 1 (spec §9.4)."""
        return self._service.highest_id()

    def directories(self) -> Iterator[Directory]:
        """Every directory, depth-first pre-order from the root (spec §9.4), read as
        taken (``DirectoryService.iter_preorder``)."""
        return self._service.iter_preorder()

    @property
    def info(self) -> ServerInfo:
        return self._service.info

    @property
    def checksum(self) -> int:
        return self._service.checksum

    @property
    def last_seq(self) -> int:
        """The sequence number of the last durable change (``Change.seq``; 0 before any):
        what moves with every write (the NIS front door's ORDER)."""
        return self._durable_seq

    @property
    def procedures(self) -> Procedures:
        """The procedures as ``proc_<name>`` methods, each through :meth:`call`
        (:class:`Procedures`): the door for in-process writes such as templates."""
        return Procedures(self)

    # -- the domain's facts and this server's role (spec §9.1; module ``facts``) ------------

    def facts(self) -> DomainFacts:
        """Master, servers, clones, parent candidates as the root and /machines say now."""
        return self._service.facts()

    @property
    def role(self) -> Role:
        """The role this server holds: master or clone (``info.clone``, which the
        service's write validation and STATISTICS read, spec §10.3)."""
        return Role.CLONE if self.info.clone else Role.MASTER

    def set_role(self, role: Role) -> None:
        """Hold *role* from now on (start-up, a demotion, ``nidomain -p``)."""
        self.info.clone = role is Role.CLONE

    def settle_role(self, tag: str, is_own: Callable[[str], bool]) -> Role:
        """The role the domain's facts give this server as *tag* at the addresses
        *is_own* accepts (:meth:`facts.DomainFacts.role`), held from now on."""
        facts = self.facts()
        role = facts.role(tag, is_own)
        if facts.master_name is not None and facts.master is None and tag != "local":
            # spec §9.1: ip_address holds dotted addresses; a host name there is skipped
            log.warning("%s: root master names %s, but /machines lists no dotted "
                        "ip_address for %s: serving as the master", self.where,
                        "/".join(facts.master_name), facts.master_name[0])
        self.set_role(role)
        return role

    def call(self, proc: int, caller: Caller, args: tuple) -> Any:
        """Run NETINFO procedure *proc* for *caller* with decoded *args*; its value.

        A write stays pending (visible to later calls, not yet durable) until
        :meth:`commit` (or the end of the :meth:`batch` it was made in). The watchers of
        *proc* (:meth:`watch_calls`) hear of its outcome. :raises NiError: the
        procedure's status.
        """
        watchers = self._watched.get(proc, ())
        if caller.from_master:
            watchers = watchers + self._pushed
        if not watchers:
            return self._run(proc, caller, args)
        try:
            value = self._run(proc, caller, args)
        except NiError as e:
            self._tell_call(watchers, proc, caller, args, e)
            raise
        except DamagedDirectory as e:
            self._tell_call(watchers, proc, caller, args, NiError(Status.SERIAL, str(e)))
            raise
        self._tell_call(watchers, proc, caller, args, value)
        return value

    def _run(self, proc: int, caller: Caller, args: tuple) -> Any:
        if proc not in self._writes:
            return self._handlers[proc](caller, *args)
        waiting = self.waiting
        if waiting is not None and waiting.no_wait:
            # What the write will read, fetched off the loop while nothing is changed
            # (cached.StoreWait may leave here); its own reads then wait, rarely.
            self._service.warm(caller, args)
            waiting.no_wait = False
        value = self._handlers[proc](caller, *args)
        who, touched, ops = self._service.take_write()
        self._seq += 1
        self._changes.append(Change(Proc(proc), who, args, value, touched, ops, self._seq))
        return value

    def watch_calls(self, fn: CallWatcher, procs: frozenset[int] = frozenset(),
                    pushed: bool = False) -> Callable[[], None]:
        """Call ``fn(proc, caller, args, outcome)`` after each call of one of *procs*
        (and, with *pushed*, of every call the master pushed: ``caller.from_master``,
        spec §9.2) with its outcome: the value, or the :class:`NiError` it failed with
        (a damaged directory: NI_SERIAL). READALL is told when the state it sends is
        fixed (:meth:`readall`). What parent search (RPARENT) and replication (CRASHED,
        RESYNC, the master's updates) learn from, never from encoded replies. Returns
        the call that stops it."""
        for proc in procs:
            self._watched[proc] = self._watched.get(proc, ()) + (fn,)
        if pushed:
            self._pushed += (fn,)

        def stop() -> None:
            for proc in procs:
                left = tuple(f for f in self._watched.get(proc, ()) if f is not fn)
                if left:
                    self._watched[proc] = left
                else:
                    self._watched.pop(proc, None)
            self._pushed = tuple(f for f in self._pushed if f is not fn)
        return stop

    def _tell_call(self, watchers: tuple[CallWatcher, ...], proc: int, caller: Caller,
                   args: tuple, outcome: Any) -> None:
        for fn in watchers:
            try:
                fn(proc, caller, args, outcome)
            except Exception:
                log.exception("%s: call watcher %r failed", self.where, fn)

    def answer(self, proc: int, caller: Caller, args: tuple) -> bytes | None:
        """:meth:`call`, encoded as the reply body by the result-kind table (protocol);
        None when the reply is SYSTEM_ERR (BIND of a child not served here)."""
        row, encode, failure = self._answers[proc]
        try:
            value = self.call(proc, caller, args)
        except NiError as e:
            return failure(e.status)
        except DamagedDirectory as e:
            self.report_damage(e)
            return failure(Status.SERIAL)
        return encode(row, value)

    def report_damage(self, e: DamagedDirectory) -> None:
        """Log a damaged directory (issue 18 N20) once: it is read again and again, and
        each read is refused the same way (NI_SERIAL, spec §3)."""
        if e.oid in self._damage_logged:
            return
        if len(self._damage_logged) < 1024:
            self._damage_logged.add(e.oid)
        log.error("%s", e)

    def readall(self, caller: Caller, checksum: int) -> Iterator[bytes]:
        """READALL's reply body in pieces, produced as they are taken (spec §9.4), from a
        snapshot of the domain taken at the first piece (:class:`SnapshotStream`): the
        checksum, the highest number and every directory are those of one state, and
        writes go on meanwhile ("readers never hold writers", issue 18; Apple's master
        answered them NI_MASTERBUSY, spec §10.3). The caller must close an abandoned
        iterator.

        The watchers of READALL (:meth:`watch_calls`) are told, with outcome True, once
        the state sent is fixed: when the snapshot is taken, or at once when no snapshot
        is needed (replication: the writes committed after it are the ones to push to
        the clone that asked, spec §9.5).
        """
        watchers = self._watched.get(Proc.READALL, ())

        def opened() -> None:
            self._tell_call(watchers, Proc.READALL, caller, (checksum,), True)
        try:
            current = not self._service.readall_wanted(caller, checksum)
        except NiError as e:
            return iter((pack_status(e.status),))
        if current:   # nothing to send: the caller's state is the one
            opened()
            return iter_readall(None)
        busy = self._room(caller.addr, True)
        if busy is not None:
            return iter((pack_status(busy),))
        return SnapshotStream(self, caller.addr, _readall_from,
                              opened if watchers else None, privileged=True,
                              done=lambda whole: self._transfer_done(caller, whole))

    def stream(self, proc: int, caller: Caller, args: tuple) -> Iterator[bytes] | None:
        """LIST or LISTALL of a big directory (service.STREAM_CHILDREN) as reply-body
        pieces made as the peer takes them: memory and event-loop time per piece, not per
        directory, so other connections' calls are answered in between (issue 10).
        Like READALL, it reads a snapshot taken at the first piece (the count announced
        first stays true) and writes go on meanwhile. None: answer it whole
        (:meth:`answer`; also every failure).
        """
        svc = self._service
        try:
            if proc == Proc.LIST:
                if svc.list_stream(caller, *args) is None:
                    return None
                i, name = args

                def make(view: NodeSource) -> Iterator[bytes]:
                    return list_pieces(*svc.list_in(view, i, name))
            elif proc == Proc.LISTALL:
                if svc.listall_stream(caller, *args) is None:
                    return None
                (i,) = args

                def make(view: NodeSource) -> Iterator[bytes]:
                    return listall_pieces(*svc.listall_in(view, i))
            else:
                return None
        except NiError:
            return None    # answered whole, with its status
        # LIST and LISTALL answer a union: a failure is its status alone
        privileged = caller.is_root or svc.clone_serves(caller.addr)
        busy = self._room(caller.addr, privileged)
        if busy is not None:
            return iter((pack_status(busy),))
        return SnapshotStream(self, caller.addr, make, privileged=privileged)

    def _room(self, addr: str, privileged: bool) -> Status | None:
        """Room for one more snapshot stream from *addr*? None when there is, else the
        status to answer (NI_MASTERBUSY: clients retry). At most
        :data:`MAX_STREAMS_PER_ADDRESS` per address (the superuser's and this domain's
        servers' are not counted there); at :data:`MAX_STREAMS` the oldest stream of the
        address holding the most makes room when it holds more than *addr* would, or,
        for a *privileged* caller, the oldest of anyone else's: an anonymous peer cannot
        keep a clone from copying its master."""
        open_ = [st for st in self._streams if not st.privileged]   # who may lose one
        mine = sum(1 for s in open_ if s.addr == addr)
        if not privileged and mine >= MAX_STREAMS_PER_ADDRESS:
            return Status.MASTERBUSY
        if len(self._streams) < MAX_STREAMS:
            return None
        counts: dict[str, int] = {}
        for st in open_:
            counts[st.addr] = counts.get(st.addr, 0) + 1
        if not counts:
            return Status.MASTERBUSY
        top = max(counts, key=counts.__getitem__)
        if not privileged and counts[top] <= mine + 1:
            return Status.MASTERBUSY
        oldest = next(st for st in open_ if st.addr == top)
        log.warning("%s: %d snapshot streams open: closing one of %s's %d", self.where,
                    len(open_), top, counts[top])
        oldest.close("closed to make room for another peer's")
        return None

    @property
    def transfers(self) -> int:
        """Snapshot streams open (READALL, LIST and LISTALL of big directories)."""
        return len(self._streams)

    def close_streams(self, why: str) -> None:
        """Close every snapshot stream (before a copy is swapped in, at close): each
        fails at its next piece, which closes its connection."""
        for st in list(self._streams):
            st.close(why)

    def _transfer_done(self, caller: Caller, whole: bool) -> None:
        for fn in list(self._transfer_watchers):
            try:
                fn(caller, whole)
            except Exception:
                log.exception("%s: transfer watcher %r failed", self.where, fn)

    def watch_transfers(self, fn: TransferWatcher) -> Callable[[], None]:
        """Call ``fn(caller, whole)`` when each READALL transfer ends (not a "current"
        answer nor an error, which send no transfer): *whole* when its last piece was
        handed to the connection, False when it was closed before; returns the call that
        stops it. (When its snapshot is taken, READALL's call watchers hear.)"""
        self._transfer_watchers.append(fn)
        return lambda: self._transfer_watchers.remove(fn) \
            if fn in self._transfer_watchers else None

    @property
    def dirty(self) -> bool:
        """True when writes wait for :meth:`commit`."""
        return bool(self._service.pending)

    def batch(self) -> Batch:
        """A batch of calls answered together and made durable by one commit at its end
        (group commit, :class:`Batch`): what every door uses (netinfod's TCP connection
        for the calls of one read of its socket)."""
        return Batch(self)

    def commit(self) -> list[Change]:
        """Make every pending write durable in one transaction; the writes, in order.

        The store receives the batch's ops and its :class:`Change` records together;
        subscribers are then told, in commit order, never before the data is on disk.

        :raises StorageError: nothing was stored; the working copy went back to the last
            durable state (the batch is rolled back in memory, no reload) and no
            change is reported.
        """
        return self._commit()

    def _commit(self, unrecorded_ok: bool = False) -> list[Change]:
        svc = self._service
        if self._inflight is not None:
            had, epoch = bool(svc.pending), self.epoch
            self._finish(self._inflight)
            if had and self.epoch != epoch:
                raise StorageError(f"{self.where}: the batch before failed to commit; these "
                                   f"writes were rolled back with it")
        taken = self._take(unrecorded_ok)
        if taken is None:
            return []
        ops, checksum, changes, seq = taken
        try:
            self.store.commit(ops, checksum, changes)
        except StorageError as exc:
            self._failed(exc)
            raise
        self._done(changes, seq)
        return changes

    def _take(self, unrecorded_ok: bool) -> tuple[list[Op], int, list[Change], int] | None:
        """The pending writes taken for one commit: (ops, checksum, changes, change
        number), or None when there are none."""
        svc = self._service
        if not svc.pending:
            self._changes.clear()
            return None
        ops = svc.take_pending()
        changes, self._changes = self._changes, []
        unrecorded = len(ops) - sum(len(c.ops) for c in changes)
        if unrecorded and not unrecorded_ok:
            # a write made on the service, around call(): stored, reported to no one
            log.warning("%s: %d storage ops of writes not made through Database.call are "
                        "committed unrecorded (no Change, no subscriber hears)", self.where,
                        unrecorded)
        if unrecorded:
            self._generation += 1   # no Change says what these writes touched
        if self._seq != self._durable_seq:
            ops.append(Meta(SEQ_KEY, self._seq))   # the numbering survives a restart
        return ops, svc.checksum, changes, self._seq

    def _failed(self, exc: BaseException) -> None:
        """Nothing of the batch taken is stored: take it back in memory too (no reload),
        and every write made since (a later batch's, pinned behind a commit in flight)."""
        log.error("%s: commit failed; the batch's writes are rolled back: %s", self.where,
                  exc, exc_info=not isinstance(exc, StorageError))
        self._service.rollback()
        self._seq = self._durable_seq
        self._changes.clear()
        self._generation += 1
        self.epoch += 1
        if isinstance(exc, StoreDiverged):
            self._follow_store()

    def _done(self, changes: list[Change], seq: int) -> None:
        self._service.durable()
        self._durable_seq = seq
        self._tell(changes)

    # -- the store's round trips off the event loop (server.storeio, issue 23 item 3) -------

    def serve_off_loop(self) -> bool:
        """Read and commit off the event loop when the store's engine waits on a server
        (``Store.side_reader``; module ``storeio``): netinfod asks once it serves. True
        when the database now does."""
        if self._io is None:
            probe = self.store.side_reader()
            if probe is None:
                return False
            probe.close()
            self._io = StoreIO(self.store.side_reader, self.store.loop_reader())
        self._wrap_source()
        return True

    def serve_indexes(self) -> None:
        """Let the source build resident LOOKUP indexes of the big directories asked
        most (``storage.keyindex``, built off the loop by ``server.indexer``):
        netinfod asks once it serves."""
        if self._indexer is None:
            self._indexer = Indexer(self.where)
        self._wrap_source()

    def _stop_indexes(self) -> None:
        """Before a copy is swapped in: no build may hold a snapshot of the old store."""
        src = self._service.source
        if isinstance(src, CachedSource):
            src.drop_indexes()
        if self._indexer is not None:
            self._indexer.stop()

    def _wrap_source(self) -> None:
        src = self._service.source
        if not isinstance(src, CachedSource):
            return
        if self._io is not None:
            src.wait_off_loop(self._io.read)
        if self._indexer is not None:
            src.index_runner = self._indexer

    @property
    def waiting(self) -> WaitingRows | None:
        """The source's reader when its reads are kept off the loop (a door sets its
        ``no_wait`` around a call and fetches what it misses: :meth:`fetch`)."""
        src = self._service.source
        return src.waiting if isinstance(src, CachedSource) else None

    @property
    def commits_wait(self) -> bool:
        """Does a batch's commit run off the loop (:meth:`settle`)?"""
        return self._io is not None

    def fetch(self, wait: StoreWait, then: Callable[[], None]) -> None:
        """Fetch the read a call missed (``cached.StoreWait``) without waiting on the
        loop; ``then()`` once it is there: the door runs the call again."""
        assert self._io is not None
        self._io.fetch(wait, then)

    async def settle(self, epoch: int) -> None:
        """Make the pending writes durable off the event loop (the commit thread), one
        commit in flight at a time (the writes made meanwhile go with the next: group
        commit across connections). *epoch*: :attr:`epoch` when the caller's writes were
        made. :raises StorageError: they are not stored (rolled back)."""
        io = self._io
        assert io is not None
        while True:
            inflight = self._inflight
            if inflight is not None:
                try:
                    await asyncio.wrap_future(inflight.future)
                except BaseException:
                    pass   # _finish says it
                if self._inflight is inflight:
                    self._finish(inflight)
                continue
            if self.epoch != epoch:
                raise StorageError(f"{self.where}: a batch failed to commit; these writes "
                                   f"were rolled back with it")
            taken = self._take(False)
            if taken is None:
                return
            ops, checksum, changes, seq = taken
            self._inflight = _InFlight(io.writer(self.store.commit, ops, checksum, changes),
                                       changes, seq)

    def _finish(self, inflight: _InFlight) -> None:
        """The commit in flight has ended (or is waited for here, by a caller that
        commits itself): make its writes durable, or roll them back."""
        self._inflight = None
        try:
            inflight.future.result()
        except BaseException as exc:
            self._failed(exc)
            return
        self._done(inflight.changes, inflight.seq)

    def _settle_now(self) -> None:
        """Wait for the commit in flight, if any (before the store is used otherwise)."""
        if self._inflight is not None:
            self._finish(self._inflight)

    def check_store(self) -> None:
        """Between batches (netinfod, about every second): the store's connection looked
        at (``Store.keep_alive``). A lost one is said once, at once; the engine says when
        it is back; a domain found changed meanwhile is served as stored."""
        if self._service.pending or self._inflight is not None:
            return
        try:
            self.store.keep_alive()
        except StorageError as e:
            self._looked(e)
        else:
            self._looked(None)

    async def look_at_store(self) -> None:
        """:meth:`check_store`, the look itself (a reconnection, a connect timeout) in
        the commit thread when the store's round trips are kept off the loop."""
        if self._io is None:
            self.check_store()
            return
        if self._service.pending or self._inflight is not None:
            return
        try:
            await self.on_writer(self.store.keep_alive)
        except StorageError as e:
            self._looked(e)
        else:
            self._looked(None)

    async def on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` where the writer's connection is used (the change history's
        retention, a look at the connection): in the commit thread, after the commits
        asked before, when the store's round trips are kept off the loop; else here."""
        if self._io is None:
            return fn(*args)
        return await asyncio.wrap_future(self._io.writer(fn, *args))

    def _looked(self, e: StorageError | None) -> None:
        """What a look at the store's connection found (None: it is fine)."""
        if e is None:
            self._store_lost = ""
        elif isinstance(e, StoreDiverged):
            log.error("%s", e)
            self._store_lost = ""
            self._follow_store()
        else:
            if not self._store_lost:
                log.error("%s", e)
            self._store_lost = str(e)

    def _follow_store(self) -> None:
        """The store holds another tree than the one served (``StoreDiverged``: a
        database failover lost acknowledged writes, or kept a batch that was refused):
        serve what it holds, and tell the subscribers it is a whole new tree (clones
        copy it again, caches are dropped), as for :meth:`replace`."""
        try:
            self.reload()
        except StorageError:
            log.exception("%s: cannot read the store again", self.where)
            return
        log.warning("%s: serving what the store holds now (checksum %d)", self.where,
                    self._service.checksum)
        self._tell([Change(None, SUPERUSER, (), self._service.checksum, (), (), self._seq)])

    def _tell(self, changes: list[Change]) -> None:
        """Every subscriber hears of a durable batch (a failing one is logged)."""
        if changes:
            for fn in list(self._subscribers):
                try:
                    fn(changes)
                except Exception:
                    log.exception("%s: change subscriber %r failed", self.where, fn)

    def reload(self) -> None:
        """Forget every pending write and continue from what the store holds."""
        self._settle_now()
        self._changes.clear()
        self._generation += 1
        source = self.store.source(self.cache, self.cache_bytes)
        if source is not None:
            self._service.reload(source=source)
            self._wrap_source()
        else:
            self._service.reload(self.store.load())
        self._seq = self._durable_seq = self._stored_seq(self._service)

    def _stored_seq(self, svc: DirectoryService) -> int:
        """The last change's number: as stored with the domain, or the change history's
        last entry's when that is higher (a clone promoted before its first write, whose
        history is its old master's: issue 24)."""
        journal = self.store.journal
        return max(svc.source.stored_meta(SEQ_KEY) or 0,
                   journal.last_seq() if journal is not None else 0)

    def continue_numbering(self, at_least: int, exact: bool = False) -> None:
        """Number the next write after *at_least* too (a promoted clone continues its old
        master's history, issue 24); with *exact*, right after it even where this
        database counted further (a clone's count of the pushes it applied: the history
        is its old master's, numbered by it); stored with the next batch."""
        if (at_least > self._seq or (exact and at_least > 0)) and \
                not self._service.pending and self._inflight is None:
            # _seq == _durable_seq + 1 after the next write: its batch stores the number
            self._seq = self._durable_seq = at_least

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call *fn* with each durable batch of changes; returns the unsubscribe call."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def replace(self, image: Image, caller: Caller = SUPERUSER) -> list[Change]:
        """Swap in a whole new tree atomically (a clone's full transfer, an import):
        after a crash the store holds the old tree or the new one, never a mix.

        Pending writes are committed with it, in the same transaction.
        :raises StorageError: as :meth:`commit` (the old tree stays).
        """
        mark = len(self._service.pending)
        self._service.replace(image)
        self._seq += 1
        self._changes.append(Change(None, caller, (), self._service.checksum, (),
                                    tuple(self._service.pending[mark:]), self._seq))
        changes = self.commit()
        # The new tree is durable: serve it from the store again rather than from the
        # image (a lazy engine keeps only its cache resident).
        source = self.store.source(self.cache, self.cache_bytes)
        if source is not None:
            self._service.reload(source=source)
            self._wrap_source()
        return changes

    def new_copy(self) -> NewCopy:
        """A whole new tree to be written beside the live one while it serves (a clone's
        copy, spec §9.5), then swapped in by :meth:`adopt` (may be called in a worker
        thread, as the copy's own methods may)."""
        return self.store.new_copy()

    def adopt(self, copy: NewCopy, caller: Caller = SUPERUSER) -> list[Change]:
        """Swap in a finished *copy* of :meth:`new_copy` at once: the store renames it
        over the live file (after a crash the store holds the old tree or the new, never
        a mix) and the service reads the new one from the store, with its checksum,
        highest number and freed numbers (none: spec §5.3, §5.6). An engine whose copies
        are images replaces its tree with it (:meth:`replace`). Pending writes are
        committed first (to the old tree); subscribers then hear of one Change with
        ``proc`` None, as for :meth:`replace`.

        :raises StorageError: nothing was swapped.
        """
        if copy.image is not None:
            return self.replace(copy.image, caller)
        if self._service.pending or self._inflight is not None:
            self.commit()
        # A stream's read transaction would keep the old file's WAL from being
        # checkpointed before the swap (storage/sqlite.py, adopt).
        self.close_streams("the database was replaced by a new copy")
        self._stop_indexes()
        self.store.adopt(copy)
        source = self.store.source(self.cache, self.cache_bytes)
        assert source is not None, "an engine that swaps copies reads its store lazily"
        self._service.reload(source=source)
        self._wrap_source()
        # The copy holds no sequence number: the swap is numbered and stored as one
        # change, in a transaction of its own.
        self._seq = self._durable_seq + 1
        changes = [Change(None, caller, (), self._service.checksum, (), (), self._seq)]
        try:
            self.store.commit([Meta(SEQ_KEY, self._seq)], self._service.checksum, changes)
        except StorageError:
            log.exception("%s: the copy's sequence number was not stored", self.where)
        self._durable_seq = self._seq
        self._tell(changes)
        return changes

    def keep_aside(self, label: str) -> str | None:
        """Keep a copy of the domain as it is now beside the store, named with *label*
        (a master being demoted, before a copy from another master can replace it):
        where it is, or None when the store is no file (memory). Pending writes are
        committed first. :raises StorageError: nothing was kept."""
        if self._service.pending or self._inflight is not None:
            self.commit()
        return self.store.keep_aside(label)

    def close(self) -> None:
        """Commit what is pending, close the store and release the lock."""
        self.close_streams("the database was closed")
        self._stop_indexes()
        try:
            if self._service.pending or self._inflight is not None:
                self.commit()
        finally:
            try:
                if self._indexer is not None:
                    self._indexer.close()
                    self._indexer = None
                if self._io is not None:
                    self._io.close()
                    self._io = None
                self.store.close()
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the procedures as methods ------------------------------------------------------------------

#: ``proc_<name>`` → its procedure (protocol.PROCEDURES)
_BY_METHOD = {row.method: proc for proc, row in PROCEDURES.items()}


class Procedures:
    """The domain's NETINFO procedures as methods, ``proc_<name>(caller, *args)`` as on
    :class:`~netinfo.server.service.DirectoryService`, every one run through
    :meth:`Database.call`: what in-process administration drives (``templates`` for
    ``nibindd --init`` and ``netinfod -m``), so that its writes are recorded as
    :class:`Change` objects, stored with their batch and told to subscribers like any
    client's (the one door for writes, issue 19). :meth:`Database.commit` makes them
    durable."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Callable[..., Any]:
        proc = _BY_METHOD.get(name)
        if proc is None:
            raise AttributeError(name)
        call = self._db.call
        if proc == Proc.CREATE:
            def create(caller: Caller, parent: Any, props: Any, where: int,
                       target: Any = None) -> Any:
                # as the wire decodes it: with its target (None: a new number)
                return call(proc, caller, (parent, props, where, target))
            return create
        return lambda caller, *args: call(proc, caller, args)


# -- group commit ---------------------------------------------------------------------------------

class _InFlight:
    """A batch's commit running in the commit thread (``Database.settle``)."""

    __slots__ = ("future", "changes", "seq")

    def __init__(self, future: Future[None], changes: list[Change], seq: int) -> None:
        self.future = future
        self.changes = changes
        self.seq = seq


class Batch:
    """The calls of one batch (:meth:`Database.batch`): each call's reply is added as it
    is answered (:meth:`add`), and the batch's end (:meth:`close`, or leaving a ``with``
    block) makes its writes durable in one transaction (group commit) before any of its
    replies is sent, so a write is acknowledged only once it is durable. When that
    commit fails, the writes are rolled back and the reply of each call that wrote is
    replaced by what its door says a failed write answers (NETINFO: NI_NOSPACE).

    Which calls wrote the owner knows (each recorded write is numbered: :class:`Change`),
    so a door need not say; replies are opaque to the batch (bytes, a stream, an LDAP
    message). Commits run on the event loop (a batch's writes are short), or, for an
    engine whose commits wait on a server (``Database.commits_wait``), in the commit
    thread: the door then awaits :meth:`close_async`, answering other connections
    meanwhile. A batch that wrote nothing never commits another's writes.
    """

    __slots__ = ("_db", "_mark", "_writes", "_epoch", "replies", "failed", "closed")

    def __init__(self, db: Database) -> None:
        self._db = db
        #: the owner's write count when the last reply was added
        self._mark = db._seq
        #: (index in replies, what the reply becomes when the commit fails)
        self._writes: list[tuple[int, Callable[[Any], Any]]] = []
        #: the owner's failed-commit count when the batch first wrote (None: it did not)
        self._epoch: int | None = None
        #: the replies, in the order added (after close: as they are to be sent)
        self.replies: list[Any] = []
        #: True when the batch's commit failed (its writes were rolled back)
        self.failed = False
        self.closed = False

    def add(self, reply: Any, on_failure: Callable[[Any], Any] | None = None) -> None:
        """The reply of the next call of the batch. When that call wrote and the batch's
        commit fails, the reply becomes ``on_failure(reply)`` (None: kept)."""
        db = self._db
        seq = db._seq
        if seq != self._mark:
            if self._epoch is None:
                self._epoch = db.epoch
            if on_failure is not None and reply is not None:
                self._writes.append((len(self.replies), on_failure))
        self._mark = seq
        self.replies.append(reply)

    @property
    def wrote(self) -> bool:
        """Did a call of the batch write?"""
        return self._epoch is not None

    def close(self) -> list[Any]:
        """Commit the batch's writes (once); the replies, those of failed writes
        replaced."""
        if self.closed:
            return self.replies
        self.closed = True
        db = self._db
        if (db.dirty or db._inflight is not None) and \
                (self._epoch is not None or not db.commits_wait):
            try:
                db.commit()
            except StorageError:
                self._fail()
                return self.replies
        if self._epoch is not None and db.epoch != self._epoch:
            self._fail()   # rolled back with a batch committed before
        return self.replies

    def close_now(self) -> bool:
        """Close the batch at once when nothing of it waits (True): the engine commits
        on the loop, or the batch wrote nothing. False: await :meth:`close_async`."""
        if not self._db.commits_wait or self._epoch is None:
            self.close()
            return True
        return False

    async def close_async(self) -> list[Any]:
        """:meth:`close`, the commit run in the commit thread (``Database.settle``)."""
        if self.closed:
            return self.replies
        self.closed = True
        if self._epoch is not None:
            try:
                await self._db.settle(self._epoch)
            except StorageError:
                self._fail()
        return self.replies

    def _fail(self) -> None:
        self.failed = True
        for i, on_failure in self._writes:
            self.replies[i] = on_failure(self.replies[i])

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- snapshot streams ---------------------------------------------------------------------------

#: Snapshot streams open at once. Each holds a read connection of its own (three
#: descriptors, up to SNAPSHOT_CACHE_KIB of page cache) and keeps the WAL from being
#: checkpointed past its start, for at most server.STREAM_TIMEOUT seconds (and
#: server.STALL_TIMEOUT without progress): a few clones copying at once, a few dumps.
MAX_STREAMS = 16
#: ... and from one peer address (past it: NI_MASTERBUSY, which clients retry), but for
#: the superuser and this domain's servers, which may close an anonymous peer's instead.
MAX_STREAMS_PER_ADDRESS = 4


def _readall_from(view: NodeSource) -> Iterator[bytes]:
    return iter_readall(DirectoryService.readall_in(view))


def _made(make: Callable[[NodeSource], Iterator[bytes]], view: NodeSource
          ) -> Iterator[bytes]:
    """*make*'s pieces of *view*, made when the first is asked for (in the thread that
    asks: ``Ahead``); a directory not in the snapshot is its status alone."""
    try:
        pieces = make(view)
    except NiError as e:
        yield pack_status(e.status)
        return
    yield from pieces


class SnapshotStream:
    """A streamed reply body read from a snapshot of the domain (``NodeSource.snapshot``)
    taken when the first piece is asked for: the server commits the batch of writes read
    before the call first (group commit, server.py), so the caller's own earlier writes
    are in it, and every write after it goes on without waiting.

    A stream closed before its end (:meth:`close`: its connection went, a copy is being
    swapped in, another peer needed the room) fails at its next piece with
    :class:`StorageError`, so the record is cut and its connection closed, never ended
    as if it were whole.
    """

    def __init__(self, db: Database, addr: str, make: Callable[[NodeSource], Iterator[bytes]],
                 opened: Callable[[], None] | None = None, *, privileged: bool = False,
                 done: Callable[[bool], None] | None = None) -> None:
        self.db = db
        self.addr = addr
        #: the superuser's or a server of this domain's (never closed for an anonymous
        #: peer's: Database._room)
        self.privileged = privileged
        self._make = make
        self._opened = opened
        #: told once, when the stream ends: whether it was produced to its end
        self._done = done
        self._view: NodeSource | None = None
        self._pieces: Iterator[bytes] | None = None
        #: the worker thread making the pieces, for a lazy engine's view
        self._ahead: Ahead | None = None
        self._closed: str | None = None
        db._streams[self] = None

    def __iter__(self) -> SnapshotStream:
        return self

    def __next__(self) -> bytes:
        if self._closed is not None:
            raise StorageError(f"stream {self._closed}")
        if self._pieces is None:
            try:
                view = self._view = self.db._service.snapshot()
            except BaseException:
                self.close("could not be begun")
                raise
            if self._opened is not None:
                self._opened()
            if view.off_loop:
                # the view is the stream's alone and its engine's reads wait (a network
                # round trip): they leave the event loop (module ahead), the first ones
                # (the directory, its child count) too
                self._pieces = self._ahead = Ahead(_made(self._make, view),
                                                   "snapshot-stream")
            else:
                try:
                    self._pieces = self._make(view)
                except NiError as e:   # the directory is not in the snapshot
                    self._pieces = iter((pack_status(e.status),))
        try:
            return next(self._pieces)
        except StopIteration:
            self._finish(True)
            self.close("ended")
            self._closed = None
            self._pieces = iter(())
            raise
        except BaseException:
            self.close("failed")
            raise

    def _finish(self, whole: bool) -> None:
        done, self._done = self._done, None
        if done is not None and self._pieces is not None:   # only a begun transfer ends
            done(whole)

    def close(self, why: str = "closed") -> None:
        """Release the snapshot (idempotent)."""
        if self._closed is None:
            self._closed = why
        self._finish(False)
        self.db._streams.pop(self, None)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and not ahead.close():
            # still reading (it stops at its next piece): its connection must not be
            # closed under it; the daemon thread's end releases it
            log.warning("%s: a stream's reader did not stop in time", self.db.where)
            self._view = None
            return
        view, self._view = self._view, None
        if view is not None:
            view.close()


# -- in-process channel -------------------------------------------------------------------------

class LocalChannel:
    """The transport interface of :class:`~netinfo.client.Client` over a
    :class:`Database` in this process (``nicl -raw``): calls are encoded, answered
    through the same result-kind table as the server, decoded by the client, and every
    write is committed at once.
    """

    def __init__(self, db: Database, caller: Caller = SUPERUSER,
                 refused: frozenset[int] = frozenset()) -> None:
        self.db = db
        self.caller = caller
        self.refused = refused
        #: procedure → number of calls (for raw-mode statistics)
        self.calls: dict[int, int] = {}

    async def call(self, prog: int, vers: int, proc: int, args: bytes,
                   auth: AuthUnix | None, timeout: float) -> Unpacker:
        """As ``RpcConnection.call``: an unpacker at the reply body."""
        row = PROCEDURES.get(proc)
        if prog != NETINFO_PROG or row is None:
            raise RpcError("accept", AcceptStat.PROC_UNAVAIL)
        if proc in self.refused:
            raise NiError(Status.FAILED, "not available in raw mode")
        try:
            decoded = decode_args(row, args)
        except (WireError, ValueError):
            raise RpcError("accept", AcceptStat.GARBAGE_ARGS) from None
        self.calls[proc] = self.calls.get(proc, 0) + 1
        body = self.db.answer(proc, self.caller, decoded)
        if row.is_write:
            try:
                self.db.commit()
            except StorageError as e:
                raise NiError(Status.NOSPACE, str(e)) from None
        if body is None:
            raise RpcError("accept", AcceptStat.SYSTEM_ERR)
        return Unpacker(body)

    def close(self) -> None:
        self.db.close()


# -- where databases live -----------------------------------------------------------------------

def netinfo_dir(explicit: str | None = None) -> Path:
    """``--dir``, else ``$NETINFO_DIR``, else /var/db/netinfo (DESIGN: netinfod interface)."""
    return Path(explicit or os.environ.get("NETINFO_DIR") or DEFAULT_DIR)


def catalog_of(directory: Path) -> Catalog:
    """The domains of a database directory (``DIR/TAG.nidb``: the SQLite engine's
    catalog, ``storage.sqlite_catalog``): what nibindd serves, creates and destroys."""
    return engine("sqlite").catalog(str(directory))


def nidb_path(directory: Path, tag: str) -> Path:
    return Path(catalog_of(directory).where(tag))


def database_exists(directory: Path, tag: str) -> bool:
    return catalog_of(directory).exists(tag)


def open_database(directory: Path, tag: str, info: ServerInfo | None = None,
                  create: bool = False, store: str | None = None,
                  cache: int | None = None, cache_bytes: int | None = None,
                  standby: bool = False,
                  announce: Callable[[str], None] | None = None) -> Database:
    """Open (or, with *create*, make) the database of *tag*, locked for this process.

    *store* is a store URL (``sqlite:///path``, ``memory:``) used instead of
    ``DIR/TAG.nidb/netinfo.sqlite``; *cache* the number of directories kept decoded
    (``netinfod --cache``; None: the engine's default) and *cache_bytes* the bytes of
    their stored proplists (``netinfod --cache-mb``). A SQLite file is locked by
    ``FILE.lock`` beside it; an engine with a lock of its own is claimed
    (``Store.claim``), with *standby* waiting for it (telling *announce* who holds it).

    :raises FileNotFoundError: no database and *create* is false.
    :raises DatabaseInUse: another process holds it (nothing was changed).
    :raises StorageError: the store cannot be opened or a NeXT collection does not decode.
    :raises ValueError: an unknown store scheme.
    """
    if store is None:
        catalog = catalog_of(directory)
        p = Path(catalog.where(tag))
        sqlite_file = p / SQLITE_NAME
        collection = p / "collection"
        if not sqlite_file.exists() and not collection.exists() and not create:
            raise FileNotFoundError(f"no database for tag {tag!r} in {directory}")
        if not create and sqlite_file.exists() and sqlite_file.stat().st_size == 0:
            # A truncated file is not a new domain: serving it would lose everything.
            raise StorageError(f"database {p} is empty (0 bytes): restore it from a dump, "
                               f"or start with -m to create a new domain in its place")
        catalog.create(tag)
        url, where = catalog.url(tag), catalog.where(tag)
    else:
        url, collection = store, None
        scheme, _, rest = store.partition(":")
        where = (rest[2:] if rest.startswith("//") else rest) or store
        if scheme == "sqlite" and not create and not Path(where).exists():
            raise FileNotFoundError(f"no database for tag {tag!r} at {store}")
    eng, path = engine_of(url)
    lock = eng.lock(path, where)
    try:
        # A copy a crash interrupted is never the domain (spec §9.5: a leftover .temp
        # is discarded): only the lock's holder writes one, so it can go now.
        eng.discard_leftovers(path)
        st = eng.open(path)
        try:
            st.claim(wait=standby, announce=announce)
            if not st.exists():
                if collection is not None and collection.exists():
                    _convert_collection(collection, st)
                elif not create:
                    raise FileNotFoundError(f"no database for tag {tag!r} at {where}")
            return Database(st, info, lock=lock, where=where, cache=cache,
                            cache_bytes=cache_bytes)
        except BaseException:
            st.close()
            raise
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _convert_collection(collection: Path, store: Store) -> None:
    p = collection.parent
    data = collection.read_bytes()

    def extension(k: int) -> bytes | None:
        f = p / f"extension_{k}"
        return f.read_bytes() if f.exists() else None

    try:
        image = decode_collection(data, 256, extension)
    except WireError as e:
        raise StorageError(f"{p / 'collection'}: {e}") from e
    svc = DirectoryService(image)
    svc.replace(image)
    store.commit(svc.take_pending(), svc.checksum)
    log.info("converted NeXT collection %s (%d directories, checksum %d)",
             p / "collection", len(image.records), svc.checksum)
