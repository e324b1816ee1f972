"""Listening stream sockets, accepted here rather than by the event loop's own server.

Every door's listener (netinfod's TCP port, its read workers', the LDAP door's, the
binder's TCP and local sockets) is a :class:`Listener`. It accepts in Python and hands
each connection to the event loop (``connect_accepted_socket``), so what happens when
accept() fails is ours, and the same under asyncio's loop and under uvloop:

- out of descriptors or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``):
  accepting pauses for :data:`ACCEPT_RETRY_DELAY` and resumes; the connections already
  open are served meanwhile, those waiting stay queued in the kernel (its backlog) until
  they can be taken, and one log line says so at most every :data:`ACCEPT_LOG_PERIOD`
  seconds (issue 18 N19: a traceback for each failure before);
- a connection reset while queued (``ECONNABORTED``) is skipped.

uvloop's own server would instead accept and close at once whatever it cannot serve,
without a word (libuv's reserve-descriptor way), so an administrator would never learn
that the limit was reached.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl as _ssl
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Errors of accept() that mean "no descriptor or memory left" (issue 18 N19).
ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Accepting pauses this long after such an error (asyncio's own server waits as long).
ACCEPT_RETRY_DELAY = 1.0
#: At most one log line per this many seconds about them.
ACCEPT_LOG_PERIOD = 10.0
#: Connections taken per readiness of the listening socket before others get the loop
#: (asyncio's server takes its backlog's worth, 100 by default).
ACCEPT_BATCH = 128
#: A TLS handshake not done within this many seconds ends the connection (asyncio's
#: default for its servers).
TLS_HANDSHAKE_TIMEOUT = 60.0


class Listener:
    """Accepts connections on one listening socket for *factory*'s protocols (TLS
    with *ssl*), named *name* in the log. :meth:`close` stops it and closes the
    socket; the connections already made are their server's to end."""

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.BaseProtocol],
                 name: str, ssl: _ssl.SSLContext | None = None) -> None:
        self.sock = sock
        self.factory = factory
        self.name = name
        self.ssl = ssl
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        #: connections being set up (a TLS handshake)
        self._starting: set[asyncio.Task[object]] = set()
        self._last_report = float("-inf")
        self._missed = 0
        self.closed = False

    def start(self) -> Listener:
        sock = self.sock
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._ready)
        return self

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                self._failed(e)
                return
            self._take(conn)

    def _take(self, conn: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        conn.setblocking(False)
        starting = loop.create_task(loop.connect_accepted_socket(
            self.factory, conn, ssl=self.ssl,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self.ssl is not None else None))
        self._starting.add(starting)
        starting.add_done_callback(lambda t: self._started(t, conn))

    def _started(self, task: asyncio.Task[object], conn: socket.socket) -> None:
        self._starting.discard(task)
        if task.cancelled() or task.exception() is not None:
            # a handshake that failed or timed out: the peer's problem, said at debug
            # level as asyncio's server says it
            log.debug("%s: a connection ended before it started: %s", self.name,
                      "cancelled" if task.cancelled() else task.exception())
            conn.close()

    def _failed(self, e: OSError) -> None:
        """accept() failed: pause, and say so (rate-limited)."""
        loop = self._loop
        assert loop is not None
        now = time.monotonic()
        if now - self._last_report >= ACCEPT_LOG_PERIOD:
            more = f" ({self._missed} more since the last report)" if self._missed else ""
            what = "cannot accept connections" if e.errno in ACCEPT_EXHAUSTED else \
                "accept() failed"
            log.warning("%s: %s: %s; accepting paused for a second%s",
                        self.name, what, e.strerror or e, more)
            self._last_report, self._missed = now, 0
        else:
            self._missed += 1
        loop.remove_reader(self.sock.fileno())
        self._retry = loop.call_later(ACCEPT_RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if not self.closed and self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self._ready)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        for task in list(self._starting):
            task.cancel()
        self.sock.close()


async def listen_on(host: str, port: int, factory: Callable[[], asyncio.BaseProtocol],
                    name: str, ssl: _ssl.SSLContext | None = None,
                    backlog: int = 128) -> list[Listener]:
    """Listeners on every address *host* names (a name may give IPv4 and IPv6 ones),
    port *port* (0: a free one each), as the event loop's ``create_server`` binds."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    out: list[Listener] = []
    seen = set()
    try:
        for family, kind, proto, _canon, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(backlog)
            except BaseException:
                sock.close()
                raise
            out.append(Listener(sock, factory, name, ssl).start())
    except BaseException:
        for lis in out:
            lis.close()
        raise
    return out
