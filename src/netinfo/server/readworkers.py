"""netinfod's read workers (issue 20 item 3, ``netinfod --read-workers N``): reads served
by more than one process on the same store, so that read throughput grows with cores.

One process owns the domain (the :class:`~netinfo.server.database.Database`: the
writer's lock, group commit, replication, parent search, the UDP port, NIS, LDAP, the
history program). It starts N worker processes (``netinfod TAG --read-worker-fds ...``,
the same program) that each open the SQLite file read only (WAL: readers never block the
writer nor each other) with a node cache and a short-path reply table of their own, and
serve TCP connections on the owner's port:

- **The port.** The owner's listening socket and one more per worker are bound to the
  same address and port with ``SO_REUSEPORT``; the kernel spreads new connections over
  the listening sockets of the group (the owner takes its share too). The owner binds
  the workers' sockets (a reserved port needs no privilege in the worker) and each
  worker calls ``listen`` once it is ready, so no connection waits for a worker still
  starting; a dead worker's socket is closed (what waited in its queue is reset, as
  with any listener closed) and its successor gets a new one. The portmapper and
  nibindd registrations stay the owner's, one.
- **What a worker answers.** A call record whose header is one of :data:`LOCAL_HEADS`:
  RPC 2, NETINFO 2, an AUTH_NONE credential, a procedure that only reads the tree
  (:data:`LOCAL_PROCS`: PING, ROOT, SELF, PARENT, READ, CHILDREN, LOOKUP, LIST,
  READPROP, LISTPROPS, READNAME, LISTALL, LOOKUPREAD; big LIST/LISTALL streamed from
  the worker's own snapshot); with the NIS door on (and no ``--nis-hierarchy``: the
  ancestors' maps are the owner's), also YP NULL, DOMAIN, DOMAIN_NONACK and MATCH
  (:data:`YP_LOCAL_HEADS`, any credential: the door reads none), from a ``NisDoor`` of
  the worker's whose kept answers every write the ring reports drops. It goes through
  the worker's own ``Dispatcher`` (short path included), so its bytes are the owner's.
- **Anything else moves the connection to the owner.** At the first record that is not
  a local read (a write, a credential, STATISTICS, READALL, BIND, RPARENT, CRASHED,
  RESYNC, YP's ORDER, FIRST, NEXT, ALL, ..., the history program, garbage) the worker
  answers the reads before it, waits until their replies have left, and hands the
  connection itself over: its
  socket (``SCM_RIGHTS`` on a UNIX ``SOCK_SEQPACKET`` pair) with the bytes read but not
  answered. The owner serves it from then on as if it had accepted it: the peer's
  address, port and uid (``Dispatcher.caller_for``: reserved port, owner uid, the
  master's pushes), ``trusted_networks``, the failure limiter, streams, the group
  commit — nothing is relayed, so nothing can differ. A connection that wrote stays
  with the owner.
- **Read-your-writes across connections.** The owner subscribes to its database
  (``Database.subscribe``: after the commit is durable, before any reply of the batch
  is sent) and publishes in a shared-memory ring (:class:`Ring`, a ``memfd``) the
  numbers of the directories each write touched and of their parents before and after
  (what ``FastPath.changed`` drops), then moves the ring's position. A worker compares
  the position with its own before it answers each batch of records (and when it
  accepts a connection): when it moved, it forgets those directories in its node cache
  and its reply table, then reads the store, which by then holds the commit. So a
  read sent after a write's reply was received sees the write, on any connection. A
  whole new tree (``Change.proc`` None: a clone's copy swapped in, an import) reopens
  the worker's connection and drops everything, as does a worker that fell a ring
  behind (:data:`RING_ENTRIES`).
- **Lifetime.** A worker dies with its owner (``PR_SET_PDEATHSIG``, and the end of its
  control socket); a worker that dies is logged and started again (at most
  :data:`MAX_RESTARTS` within :data:`RESTART_WINDOW` seconds, then the owner says it
  serves without it). SIGTERM to the owner stops the workers (TERM, then KILL after
  :data:`STOP_TIMEOUT`) before it closes the domain.
- **Bounds.** Each process applies ``peers.PeerLimits`` to its own connections (per
  address, per network, in all, queued and incomplete bytes) and
  ``database.MAX_STREAMS`` to its own snapshots: with N workers a peer may hold up to
  N + 1 times each per-process bound. A handed-over connection counts with the owner.
- UDP stays with the owner (PING, BIND; lenient reads; YP over UDP), as do LDAP (a port
  of its own) and STATISTICS's counters: a worker's calls are not in the owner's.

SQLite only: another engine has no file a second process could read (memory) or is a
server of its own (PostgreSQL: run more netinfods, ``--standby``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import mmap
import os
import signal
import socket
import struct
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Sequence

from ..netif import is_local
from ..storage.cached import CachedSource
from ..storage.changes import Change
from ..wire import rpc
from ..wire.protocol import NETINFO_PROG, NETINFO_VERS, Proc
from ..wire.yp import YPPROG, YPVERS, YpProc
from .database import Database
from .fastpath import FastPath
from .listener import Listener
from .netinfod import NetInfoServer, ServerConfig, TcpConnection, listen_socket, yp_program
from .nis import NisDoor

log = logging.getLogger("netinfo.server")

#: The procedures a worker answers itself: they read the tree and nothing else (spec §4).
LOCAL_PROCS = (Proc.PING, Proc.ROOT, Proc.SELF, Proc.PARENT, Proc.READ, Proc.CHILDREN,
               Proc.LOOKUP, Proc.LIST, Proc.READPROP, Proc.LISTPROPS, Proc.READNAME,
               Proc.LISTALL, Proc.LOOKUPREAD)
#: Bytes 4..28 of such a call (msg_type CALL, RPC 2, NETINFO 2, the procedure, AUTH_NONE
#: credential flavor): one set lookup per record.
LOCAL_HEADS = frozenset(struct.pack(">IIIIII", rpc.CALL, rpc.RPC_VERSION, NETINFO_PROG,
                                    NETINFO_VERS, p, 0) for p in LOCAL_PROCS)
#: The YP procedures a worker answers when the NIS door is on (and no
#: ``--nis-hierarchy``: the ancestors' maps are the owner's): NULL, DOMAIN,
#: DOMAIN_NONACK and the hot one, MATCH (its door's kept answers dropped at every write
#: the ring reports). ORDER, FIRST, NEXT, ALL, MASTER, MAPLIST, XFR, CLEAR: the owner.
YP_LOCAL_PROCS = (YpProc.NULL, YpProc.DOMAIN, YpProc.DOMAIN_NONACK, YpProc.MATCH)
#: Bytes 4..24 of such a call (any credential: the door does not read it).
YP_LOCAL_HEADS = frozenset(struct.pack(">IIIII", rpc.CALL, rpc.RPC_VERSION, YPPROG, YPVERS,
                                       p) for p in YP_LOCAL_PROCS)
#: Directory numbers the ring holds; a worker further behind drops everything.
RING_ENTRIES = 1 << 16
#: The ring entry that says "everything changed" (a whole new tree).
ALL = 0xFFFFFFFF
_HEAD = 64   # the position (8 bytes) and room, before the entries
#: A worker dying more often than this within RESTART_WINDOW seconds is not restarted.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 3.0
#: How often the owner looks for dead workers.
WATCH_PERIOD = 0.5
#: Bytes of a handed-over connection's unanswered records per control message, and in
#: all (past it the connection is closed: a client pipelining that much is dropped).
CHUNK = 32 * 1024
MAX_HANDOFF = 64 << 20
#: A worker's accept queue.
LISTEN_BACKLOG = 128
#: Seconds a worker waits for the owner to take a handed-over connection.
SEND_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1
_HANDOFF = struct.Struct(">cQ")


class Ring:
    """The owner's invalidations in shared memory: a position (entries written so far,
    only growing) and the last :data:`RING_ENTRIES` directory numbers. The owner writes
    the entries, then the position (one aligned 8-byte store); a worker reads the
    position, then the entries, then checks that none was overwritten meanwhile."""

    def __init__(self, fd: int, create: bool) -> None:
        size = _HEAD + 4 * RING_ENTRIES
        if create:
            os.ftruncate(fd, size)
        self.fd = fd
        self._map = mmap.mmap(fd, size)
        self._pos = ctypes.c_uint64.from_buffer(self._map, 0)
        self._entries = memoryview(self._map)[_HEAD:].cast("I")

    @classmethod
    def new(cls) -> Ring:
        return cls(os.memfd_create("netinfod-ring", 0), create=True)

    @property
    def position(self) -> int:
        return self._pos.value

    def publish(self, ids: Sequence[int]) -> None:
        """Owner: *ids* changed (published before the batch's replies are sent)."""
        if not ids:
            return
        if len(ids) > RING_ENTRIES // 2:
            ids = [ALL]
        pos = self._pos.value
        entries = self._entries
        for i, oid in enumerate(ids):
            entries[(pos + i) % RING_ENTRIES] = oid
        self._pos.value = pos + len(ids)

    def since(self, pos: int) -> tuple[int, list[int] | None]:
        """Worker: (the position now, the numbers published after *pos*), or None for
        the numbers when they are lost (too far behind): drop everything."""
        now = self._pos.value
        if now == pos:
            return now, []
        if now - pos > RING_ENTRIES:
            return now, None
        entries = self._entries
        ids = [entries[i % RING_ENTRIES] for i in range(pos, now)]
        if self._pos.value - pos > RING_ENTRIES:
            return now, None   # overwritten while read
        return now, ids

    def close(self) -> None:
        self._entries.release()
        del self._pos
        with contextlib.suppress(BufferError):
            self._map.close()


def touched_ids(changes: Iterable[Change]) -> list[int]:
    """What a batch's readers must read again: every directory a write touched and its
    parents before and after (``FastPath.changed``'s set); ``[ALL]`` for a whole new
    tree."""
    out: dict[int, None] = {}
    for c in changes:
        if c.proc is None:
            return [ALL]
        for t in c.touched:
            out[t.id] = None
            if t.before is not None:
                out[t.before.parent] = None
            if t.after is not None:
                out[t.after.parent] = None
    return list(out)


# -- the owner's side ---------------------------------------------------------------------------

class AdoptedConnection(TcpConnection):
    """A connection a worker handed over: served as if accepted here, the bytes the
    worker read but did not answer fed first."""

    def __init__(self, server: NetInfoServer, unread: bytes) -> None:
        super().__init__(server)
        self._unread = unread

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        unread, self._unread = self._unread, b""
        if unread and not transport.is_closing():
            self.data_received(unread)


class _Worker:
    """One worker process as the owner sees it."""

    def __init__(self, index: int, listener: socket.socket) -> None:
        self.index = index
        self.listener = listener
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: socket.socket | None = None
        #: a handoff being received: (socket, bytes expected, chunks)
        self.pending: tuple[socket.socket, int, list[bytes]] | None = None
        self.deaths: deque[float] = deque()
        self.given_up = False
        #: set when the worker listens (its b"R" message)
        self.ready = asyncio.Event()


class ReadWorkers:
    """The owner's read workers: started, watched, restarted, stopped; the ring they
    read; the connections they hand over."""

    def __init__(self, server: NetInfoServer, db: Database, count: int,
                 command: Sequence[str]) -> None:
        self.server = server
        self.db = db
        #: the worker's command line, its descriptors appended (``--read-worker-fds``)
        self.command = list(command)
        self.ring = Ring.new()
        assert server.tcp_socket is not None
        self.workers = [_Worker(i, listen_socket(server.tcp_socket)) for i in range(count)]
        self._unsubscribe = db.subscribe(self._changed)
        #: Database.read_state when last looked at (moves without a Change)
        self._state = db.read_state()
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        #: connections the workers handed over, in all (tests, logs)
        self.adopted = 0

    def _changed(self, changes: list[Change]) -> None:
        self.ring.publish(touched_ids(changes))

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w.proc is not None]

    async def start(self, timeout: float = 30.0) -> None:
        """Start the workers and wait until each listens (or *timeout*: logged; it is
        watched and restarted like any other)."""
        for w in self.workers:
            self._spawn(w)
        self._watch = asyncio.ensure_future(self._watch_workers())
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in self.workers)),
                                   timeout)
        except TimeoutError:
            log.warning("read workers not all ready after %.0f s", timeout)

    def _spawn(self, w: _Worker) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fds = (w.listener.fileno(), theirs.fileno(), self.ring.fd)
            w.proc = subprocess.Popen(
                [*self.command, "--read-worker-fds",
                 ",".join(map(str, (*fds, os.getpid())))],
                pass_fds=fds, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        ours.setblocking(False)
        w.control = ours
        w.pending = None
        w.ready.clear()
        loop.add_reader(ours.fileno(), self._readable, w)
        log.info("read worker %d started (pid %d)", w.index, w.proc.pid)

    def _drop_control(self, w: _Worker) -> None:
        if w.control is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(w.control.fileno())
            w.control.close()
            w.control = None
        if w.pending is not None:
            w.pending[0].close()
            w.pending = None

    def _readable(self, w: _Worker) -> None:
        sock = w.control
        if sock is None:
            return
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, CHUNK + 64, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("read worker %d: control socket: %s", w.index, e)
                self._drop_control(w)
                return
            if not data and not fds:
                self._drop_control(w)   # the worker is gone; the watcher restarts it
                return
            self._message(w, data, fds)

    def _message(self, w: _Worker, data: bytes, fds: list[int]) -> None:
        kind = data[:1]
        if kind == b"R" and not fds:
            w.ready.set()
            return
        if kind == b"H" and len(fds) == 1 and len(data) >= _HANDOFF.size:
            if w.pending is not None:
                w.pending[0].close()
            total = _HANDOFF.unpack_from(data)[1]
            sock = socket.socket(fileno=fds[0])
            w.pending = (sock, total, [data[_HANDOFF.size:]])
        elif kind == b"D" and w.pending is not None and not fds:
            w.pending[2].append(data[1:])
        else:
            for fd in fds:
                os.close(fd)
            log.warning("read worker %d: unexpected control message", w.index)
            return
        sock, total, chunks = w.pending
        got = sum(map(len, chunks))
        if got < total:
            return
        w.pending = None
        self._adopt(sock, b"".join(chunks), w.index)

    def _adopt(self, sock: socket.socket, unread: bytes, index: int) -> None:
        self.adopted += 1
        with contextlib.suppress(OSError):
            log.debug("connection from %s handed over by read worker %d",
                      sock.getpeername()[0], index)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(
            lambda: AdoptedConnection(self.server, unread), sock))

        def done(t: asyncio.Task[object]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.warning("a connection handed over by a read worker failed: %s",
                            t.exception())
                sock.close()
        task.add_done_callback(done)

    async def _watch_workers(self) -> None:
        while not self._closing:
            await asyncio.sleep(WATCH_PERIOD)
            state = self.db.read_state()
            if state is not None and state != self._state:
                # the tree changed with no Change saying where (a write made around
                # Database.call, logged by the owner): every worker drops everything
                self._state = state
                self.ring.publish([ALL])
            for w in self.workers:
                if w.proc is None or w.given_up or w.proc.poll() is None:
                    continue
                status = w.proc.returncode
                self._drop_control(w)
                now = time.monotonic()
                w.deaths.append(now)
                while w.deaths and now - w.deaths[0] > RESTART_WINDOW:
                    w.deaths.popleft()
                if len(w.deaths) > MAX_RESTARTS:
                    w.given_up = True
                    log.error("read worker %d (pid %d) ended with status %s, the %d-th time "
                              "within %d s: not restarted; the other processes serve its "
                              "share", w.index, w.proc.pid, status, len(w.deaths),
                              RESTART_WINDOW)
                    w.listener.close()   # out of the port's group
                    continue
                log.warning("read worker %d (pid %d) ended with status %s; starting it "
                            "again", w.index, w.proc.pid, status)
                # Its socket leaves the port's group (what waited in its queue is
                # reset, as with any listener closed); the new worker joins with a
                # new one when it is ready.
                w.listener.close()
                assert self.server.tcp_socket is not None
                w.listener = listen_socket(self.server.tcp_socket)
                self._spawn(w)

    async def close(self) -> None:
        """Stop every worker (TERM, then KILL after :data:`STOP_TIMEOUT`) and wait for
        them."""
        self._closing = True
        self._unsubscribe()
        if self._watch is not None:
            self._watch.cancel()
        procs = [w.proc for w in self.workers if w.proc is not None]
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        until = time.monotonic() + STOP_TIMEOUT
        for p in procs:
            while p.poll() is None and time.monotonic() < until:
                await asyncio.sleep(0.02)
            if p.poll() is None:
                log.warning("read worker (pid %d) did not stop: killed", p.pid)
                p.kill()
                p.wait()
        for w in self.workers:
            self._drop_control(w)
            w.listener.close()
        self.ring.close()


# -- the worker's side -------------------------------------------------------------------------

def is_local_read(record: bytes, yp: bool = False) -> bool:
    """Does a worker answer *record* itself (:data:`LOCAL_HEADS`; with *yp*, also
    :data:`YP_LOCAL_HEADS`)?"""
    return record[4:28] in LOCAL_HEADS or (yp and record[4:24] in YP_LOCAL_HEADS)


class WorkerConnection(TcpConnection):
    """A client of a worker: local reads answered here, in order; at the first other
    record the connection is handed to the owner (see the module's text)."""

    server: WorkerServer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server.sync()   # trusted_networks read as the owner last wrote them
        super().connection_made(transport)

    def _lane_open(self) -> bool:
        self.server.sync()
        return not self._handing

    def _answer(self) -> None:
        server = self.server
        if self._handing:
            return
        server.sync()
        backlog = self.backlog
        n = len(backlog)
        i = 0
        yp = server.nis is not None
        while i < n and is_local_read(backlog[i], yp):
            i += 1
        if i == n:
            super()._answer()
            return
        if i:
            items = list(backlog)
            rest = deque(items[i:])
            self.backlog = deque(items[:i])
            super()._answer()
            self.backlog.extend(rest)
            transport = self.transport
            if self.backlog[0] is not rest[0] or self._stream is not None \
                    or transport is None or transport.is_closing():
                return   # reads still to answer first (_continue comes back)
        self._hand_over()

    _handing = False

    def _hand_over(self) -> None:
        """Give the connection to the owner once every reply answered here has left."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._handing = True
        transport.pause_reading()
        loop = asyncio.get_running_loop()

        def when_sent() -> None:
            t = self.transport
            if t is None or t.is_closing():
                return
            if t.get_write_buffer_size():
                loop.call_later(0.001, when_sent)   # the sweeper drops a stalled peer
                return
            unread = b"".join(rpc.frame(r) for r in self.backlog) + self.reader.unread()
            self.backlog.clear()
            sock = t.get_extra_info("socket")
            if len(unread) > MAX_HANDOFF or sock is None \
                    or not self.server.hand_over(sock.fileno(), unread):
                log.warning("closing %s: it could not be handed to the owner",
                            self.caller.addr)
            t.abort()   # the owner holds the socket: this closes only our descriptor
        when_sent()


class WorkerServer(NetInfoServer):
    """A read worker: the domain's file read only, TCP connections on its share of the
    owner's port, every call that is not a local read handed to the owner."""

    def __init__(self, db: Database, config: ServerConfig, own_addresses: list[str], *,
                 control: socket.socket, ring: Ring) -> None:
        super().__init__(db, config, own_addresses)
        # Its callers are never the owner's uid here: anything needing that is handed
        # over (no /proc/net read per connection).
        self.dispatcher.owner = None
        self.control = control
        self.ring = ring
        self.pos = ring.position
        row = self.dispatcher.programs[NETINFO_PROG]
        fast = getattr(row.fast, "__self__", None)
        self.fast: FastPath | None = fast if isinstance(fast, FastPath) else None
        self.store = db.store
        #: the NIS front door's worker half (MATCH and friends), or None
        self.nis: NisDoor | None = None
        #: connections handed over, invalidations applied, full drops (tests, logs)
        self.handed = 0
        self.dropped_all = 0

    def sync(self) -> None:
        """Apply the owner's invalidations published since the last call."""
        if self.ring.position == self.pos:
            return
        self.pos, ids = self.ring.since(self.pos)
        if self.nis is not None:
            self.nis.forget()   # any write: as the owner's door drops its MATCH answers
        if ids is None or ALL in ids:
            self.dropped_all += 1
            reopen = getattr(self.store, "reopen", None)
            if ids is not None and reopen is not None:
                reopen()   # a new file may have been swapped in
            self.db.reload()   # a new source: empty cache; the reply table follows
            return
        source = self.db.source
        forget = source.forget if isinstance(source, CachedSource) else None
        fast = self.fast
        for oid in ids:
            if forget is not None:
                forget(oid)
            if fast is not None:
                fast.drop(oid)

    def hand_over(self, fd: int, unread: bytes) -> bool:
        """Send connection *fd* and its unread bytes to the owner (blocking, bounded by
        :data:`SEND_TIMEOUT`)."""
        chunks = [unread[i:i + CHUNK] for i in range(0, len(unread), CHUNK)] or [b""]
        try:
            socket.send_fds(self.control, [_HANDOFF.pack(b"H", len(unread)) + chunks[0]],
                            [fd])
            for c in chunks[1:]:
                self.control.sendall(b"D" + c)
        except OSError as e:
            log.warning("handing a connection to the owner failed: %s", e)
            return False
        self.handed += 1
        return True

    async def start_worker(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        listener.listen(LISTEN_BACKLOG)   # joins the port's group now that we serve
        self._tcp = Listener(listener, lambda: WorkerConnection(self),
                             f"netinfod {self.config.tag} (read worker)").start()
        self.tcp_socket = listener
        self.tcp_port = listener.getsockname()[1]
        self._sweeper = asyncio.ensure_future(self._sweep())
        self.control.sendall(b"R")   # ready

def die_with_parent() -> None:
    """SIGTERM when the owner dies (Linux ``PR_SET_PDEATHSIG``); best effort."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)   # (libc's symbols: see proctitle)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def parse_fds(text: str) -> tuple[int, int, int, int]:
    """``--read-worker-fds LISTENER,CONTROL,RING,OWNER_PID``."""
    parts = text.split(",")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"bad --read-worker-fds {text!r}")
    a, b, c, d = (int(p) for p in parts)
    return a, b, c, d


async def run_worker(db: Database, config: ServerConfig, own_addresses: list[str],
                     fds: str, nis_domains: Sequence[str] = ()) -> int:
    """Serve as a read worker until SIGTERM, the owner's end or the control socket's."""
    listen_fd, control_fd, ring_fd, owner = parse_fds(fds)
    die_with_parent()
    if os.getppid() != owner:
        return 1   # the owner is already gone
    control = socket.socket(fileno=control_fd)
    control.settimeout(SEND_TIMEOUT)
    ring = Ring(ring_fd, create=False)
    listener = socket.socket(fileno=listen_fd)
    server = WorkerServer(db, config, own_addresses, control=control, ring=ring)
    if nis_domains:
        own = frozenset(own_addresses)
        # no resident maps (nisresident): a worker forgets everything at each write
        server.nis = NisDoor(db, nis_domains, lambda a: is_local(a, own), db.info.hostname,
                             resident_bytes=0)
        server.dispatcher.add_program(yp_program(server.nis)(server.dispatcher))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def owner_gone() -> None:
        try:
            data = control.recv(16, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            stop.set()
    loop.add_reader(control.fileno(), owner_gone)
    await server.start_worker(listener)
    await stop.wait()
    loop.remove_reader(control.fileno())
    await server.close()
    ring.close()
    control.close()
    return 0


__all__ = ["ALL", "LOCAL_PROCS", "ReadWorkers", "Ring", "WorkerServer", "is_local_read",
           "run_worker", "touched_ids"]
