"""Domain handles for the web manager: one per domain for anonymous reading, one per
(session, domain) for a session that logged in, all on the server's event loop.

Handles connect without a reserved source port (``privileged=False``) even when the web
server runs as root: otherwise netinfod would take every browser for the local superuser
(spec §10.2, tools §0.5). A logged-in session's handle carries its AUTH_UNIX credential;
the server checks it on each write and applies ``_writers``. Reads and writes both go to
the master when it answers (the library's "needwrite" mode, tools §0.5), so the instance
numbers a page shows are the ones its writes will be checked against.

A handle whose connection closed (the server's idle timeout, a restart) is reopened on
next use; a list of children is cached per directory instance, so paging through a
100,000-child directory costs one LIST per change of the directory (issue #12).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from ..client.domain import DomainClient, open_domain
from ..client.verbs import use_master
from ..client.walk import CALL_ERRORS, pipelined
from ..errors import NiError, Status
from ..model import first_values
from ..netif import is_local, port_owner
from .domains import DomainPolicy
from .paging import PAGE, Listing, clamp, label, page_of
from .sessions import Credential, Session

log = logging.getLogger("netinfo.web")

T = TypeVar("T")

#: RPC timeout of the manager's calls, seconds.
TIMEOUT = 10.0
#: Anonymous handles kept open at once (one per domain name as written: ``.`` and
#: ``./`` are two), the least recently used closed beyond it.
HANDLES = 64
#: Cached child lists (directory instances) kept at once.
LIST_CACHE = 32
#: Children above which a directory's first page comes from CHILDREN and READs of that
#: page while its LIST (a second or so at 100,000 children) is fetched in the background.
BIG = 2000


class OwnerRefusal(NiError):
    """A write without a credential refused by the manager itself (NI_PERM): it runs as
    the user that owns the domain's (unprivileged) server, which would take the call for
    its superuser's (docs/security.md)."""

    status = Status.PERM


def acts_as_owner(c: DomainClient) -> bool:
    """True when this manager runs as the non-root user whose local server *c* talks to:
    that server takes every call of ours without a credential for the superuser's (its
    owner, docs/security.md), so a visitor who did not log in must not write through it.
    The listening socket's owner is read from /proc/net."""
    euid = os.geteuid()
    t = c.conn.transport
    peer = t.get_extra_info("peername") if t is not None else None
    if euid == 0 or not peer or not is_local(peer[0], frozenset()):
        return False
    return port_owner(peer[1], udp=False) == euid


def _alive(c: DomainClient) -> bool:
    t = c.conn.transport
    return t is not None and not t.is_closing() and not c.conn.closed.done()


class Pool:
    """Open domain handles, keyed by (session id or "", domain name)."""

    def __init__(self, timeout: float = TIMEOUT, policy: DomainPolicy | None = None) -> None:
        self.timeout = timeout
        #: which domains may be opened, and the resolver (issue 18: never any server)
        self.policy = policy if policy is not None else DomainPolicy()
        self._handles: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop,
                                                   DomainClient]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        #: (domain, directory, instance) → [(child id, names)]: what a directory holds
        #: at one instance is the same whoever reads it
        self._lists: OrderedDict[tuple[str, int, int],
                                 list[tuple[int, list[str]]]] = OrderedDict()
        #: background LISTs under way, by the key they will fill
        self._warming: dict[tuple[str, int, int], asyncio.Task[None]] = {}

    async def connect(self, domain: str) -> DomainClient:
        """A new handle on *domain*, if :attr:`policy` admits it (unprivileged: spec
        §10.2). :raises DomainRefused:."""
        return await open_domain(await self.policy.admit(domain), timeout=self.timeout,
                                 privileged=False, retries=2)

    async def _open(self, domain: str, cred: Credential | None) -> DomainClient:
        c = await self.connect(domain)
        if cred is not None:
            c.set_password(cred.password, cred.uid)
        try:
            await use_master(c)
        except CALL_ERRORS as e:   # reads stay on the server that answered
            log.info("master of %s not reachable: %r", domain, e)
        return c

    async def handle(self, session: Session | None, domain: str) -> DomainClient:
        """The handle for *domain* as *session* sees it (its credential, if any)."""
        cred = session.creds.get(domain) if session is not None else None
        key = (session.id if cred is not None and session is not None else "", domain)
        loop = asyncio.get_running_loop()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            got = self._handles.pop(key, None)
            if got is not None:
                hloop, c = got
                if hloop is loop and _alive(c):
                    self._handles[key] = got        # the most recently used now
                    return c
                if hloop is loop:
                    await c.close()
            c = await self._open(domain, cred)
            self._handles[key] = (loop, c)
            self._trim()
            return c

    def _trim(self) -> None:
        """Close the least recently used anonymous handles beyond :data:`HANDLES`."""
        anon = [k for k in self._handles if not k[0]]
        for key in anon[:max(0, len(anon) - HANDLES)]:
            _close_soon(*self._handles.pop(key))
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]

    async def run(self, session: Session | None, domain: str,
                  fn: Callable[[DomainClient], Awaitable[T]], *, retry: bool = True,
                  own_credential: bool = False) -> T:
        """``fn(handle)``; a read (*retry*) whose connection broke is tried once more on a
        new connection. Writes are never repeated, and never made without a credential
        through a server this manager owns (:class:`OwnerRefusal`), unless *fn* writes on
        a connection of its own with a credential (*own_credential*)."""
        c = await self.handle(session, domain)
        if not retry and not own_credential and (
                session is None or domain not in session.creds) and acts_as_owner(c):
            raise OwnerRefusal()
        try:
            return await fn(c)
        except NiError:
            raise
        except (ConnectionError, OSError):
            self.forget(session, domain)
            if not retry:
                raise
        return await fn(await self.handle(session, domain))

    def forget(self, session: Session | None, domain: str) -> None:
        """Drop a broken handle (closed on its own loop if possible)."""
        for key in ((session.id if session else "", domain), ("", domain)):
            got = self._handles.pop(key, None)
            if got is not None:
                _close_soon(*got)

    def end_session(self, session_id: str) -> None:
        """Close every handle of a session that ended or logged out."""
        for key in [k for k in self._handles if k[0] == session_id]:
            _close_soon(*self._handles.pop(key))

    def end_credential(self, session_id: str, domain: str) -> None:
        got = self._handles.pop((session_id, domain), None)
        if got is not None:
            _close_soon(*got)

    async def page(self, session: Session | None, domain: str, oid: int, offset: int = 0,
                   text: str = "") -> Listing:
        """One page of *oid*'s children, filtered by *text* (:func:`paging.page_of`).

        The directory's instance (one SELF) says whether the cached LIST still holds. A
        big directory seen for the first time, without a filter, is answered from
        CHILDREN (ids only) and pipelined READs of the page's children, while its LIST
        is fetched in the background for the filter and later pages.
        """
        async def go(c: DomainClient) -> Listing:
            inst = (await c.self_id(oid)).instance
            key = (domain, oid, inst)
            cached = self._lists.get(key)
            if cached is None and not text.strip():
                ids, nid = await c.children(oid)
                if len(ids) > BIG:
                    at = clamp(offset, len(ids))
                    part = ids[at:at + PAGE]
                    reads = await pipelined([partial(c.read, i) for i in part])
                    # after the READs: the server answers a connection's calls in order
                    self._warm(session, domain, oid, (domain, oid, nid.instance))
                    rows = []
                    for cid, got in zip(part, reads, strict=True):
                        names = [] if isinstance(got, BaseException) else list(
                            first_values(got[1], "name") or ())
                        rows.append((cid, label(cid, names), names))
                    return Listing(len(ids), len(ids), at, rows, "")
            if cached is None and key in self._warming:
                await asyncio.shield(self._warming[key])   # the LIST already under way
                cached = self._lists.get(key)
            if cached is None:
                cached = await self._list(c, domain, oid)
            else:
                self._lists.move_to_end(key)
            return page_of(cached, offset, text)
        return await self.run(session, domain, go)

    async def _list(self, c: DomainClient, domain: str,
                    oid: int) -> list[tuple[int, list[str]]]:
        """LIST of *oid*'s names, kept under the instance it answered with."""
        entries, nid = await c.list(oid, "name")
        got = [(cid, list(v or ())) for cid, v in entries]
        self._lists[(domain, oid, nid.instance)] = got
        while len(self._lists) > LIST_CACHE:
            self._lists.popitem(last=False)
        return got

    def _warm(self, session: Session | None, domain: str, oid: int,
              key: tuple[str, int, int]) -> None:
        """Fetch a big directory's LIST in the background (at most one per instance)."""
        if key in self._warming or key in self._lists:
            return

        async def fetch() -> None:
            try:
                await self.run(session, domain, lambda c: self._list(c, domain, oid))
            except (NiError, *CALL_ERRORS) as e:
                log.info("background LIST of %s in %s failed: %r", oid, domain, e)
            finally:
                self._warming.pop(key, None)
        self._warming[key] = asyncio.get_running_loop().create_task(fetch())

    async def close(self) -> None:
        """Close every handle (the server is stopping)."""
        loop = asyncio.get_running_loop()
        for task in list(self._warming.values()):
            task.cancel()
        for hloop, c in list(self._handles.values()):
            if hloop is loop:
                await c.close()
        self._handles.clear()
        self._lists.clear()
        self.policy.close()


def _close_soon(loop: asyncio.AbstractEventLoop, c: DomainClient) -> None:
    try:
        if loop.is_closed():
            return
        if loop is asyncio.get_running_loop():
            loop.create_task(c.close())
        else:
            loop.call_soon_threadsafe(lambda: loop.create_task(c.close()))
    except RuntimeError:
        pass


__all__ = ["Pool", "TIMEOUT", "OwnerRefusal", "acts_as_owner"]
