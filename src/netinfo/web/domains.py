"""Which domains the web manager opens, and how it reaches them (issue 18 item 6).

A page names its domain in ``d=``. Left unchecked, any page (another site's ``<img>``
included) could make the manager connect anywhere: a port prober, and a sink for what a
hostile server sends back. So a name is opened only when it is

* a name through the hierarchy: ``.``, ``..``, ``/``, ``/a/b``, ``./x`` — these reach the
  local domain and the servers the domains themselves list (their ``/machines``
  addresses, never host names: spec §7.3, docs/security.md);
* a ``tag@host[:port]`` whose ``host[:port]`` is the configured ``--domain``'s, one given
  with ``--allow-host`` (``HOST`` admits ``tag@HOST``, through that host's portmapper and
  nibindd; ``HOST:PORT`` admits ``tag@HOST:PORT``, that port only), or a server the
  hierarchy itself showed the manager (the servers, parent and children the Domain info
  page lists, addresses only, at most :data:`LEARNED`).

Anything else is refused (HTTP 403) before a packet leaves. A host name is resolved only
when it is admitted, in a worker thread with a :data:`DNS_TIMEOUT`, never on the event
loop, and the answer is reused for :data:`DNS_TTL` seconds.

Every reply record the manager's connections gather is bounded by :data:`MAX_REPLY`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ..client.domain import parse_direct, resolve_host, split_domain_path
from ..errors import NetInfoError, Timeout
from ..model import format_host_port, split_host_port

#: Largest reply record (one RPC answer) the manager gathers, bytes. A LIST of a
#: 100,000-child directory is about 3 MiB; the client library's own cap is 1 GiB.
MAX_REPLY = 32 * 1024 * 1024
#: Seconds a host name's resolution may take (in a worker thread).
DNS_TIMEOUT = 3.0
#: Seconds a resolved address is reused.
DNS_TTL = 300.0
#: Threads resolving names at once (only admitted names get there, so few are needed).
DNS_THREADS = 2
#: Servers learned from the hierarchy (Domain info) kept at once, least recent dropped.
LEARNED = 1024

#: (host, port or None): None is "through the host's portmapper and nibindd".
Target = tuple[str, int | None]


class DomainRefused(NetInfoError):
    """A ``d=`` naming a server the manager is not configured to reach."""


def norm_host(host: str) -> str:
    """An address in its canonical text, or a host name in lower case."""
    h = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        return h.lower().rstrip(".")


def parse_allow(text: str) -> Target:
    """An ``--allow-host`` value: ``HOST``, ``HOST:PORT``, ``[V6]:PORT``.

    :raises ValueError: what is wrong with it."""
    host, port = split_host_port(text.strip())
    if not host:
        raise ValueError(f"no host in {text!r}")
    return norm_host(host), port


def direct_target(name: str) -> tuple[int, str, str, int | None] | None:
    """Where a domain name connects straight to: (index of its ``tag@host`` component,
    tag, host, port), or None for a name through the hierarchy (as
    :func:`netinfo.client.domain.open_domain` reads it: the last such component wins)."""
    comps = split_domain_path(name)
    for i in range(len(comps) - 1, -1, -1):
        if "@" in comps[i]:
            tag, host, port = parse_direct(comps[i])
            return i, tag, host, port
    return None


def _escape(component: str) -> str:
    return component.replace("\\", "\\\\").replace("/", "\\/")


class DomainPolicy:
    """The manager's domains: the configured one, the allow-list, what the hierarchy
    showed; and the resolver that never blocks the event loop."""

    def __init__(self, default: str = ".", allow: Iterable[str] = ()) -> None:
        self.allowed: set[Target] = {parse_allow(a) for a in allow}
        got = direct_target(default)
        if got is not None:
            self.allowed.add((norm_host(got[2]), got[3]))
        self.learned: OrderedDict[Target, None] = OrderedDict()
        self._dns: dict[str, tuple[float, str]] = {}
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def learn(self, addr: str, port: int | None = None) -> None:
        """A server the hierarchy named (an address; names are never learned)."""
        try:
            key = (str(ipaddress.ip_address(addr)), port)
        except ValueError:
            return
        if key in self.allowed:
            return
        self.learned[key] = None
        self.learned.move_to_end(key)
        while len(self.learned) > LEARNED:
            self.learned.popitem(last=False)

    def admits(self, host: str, port: int | None) -> bool:
        key = (norm_host(host), port)
        return key in self.allowed or key in self.learned

    async def admit(self, name: str) -> str:
        """*name* as the manager will open it: unchanged when it goes through the
        hierarchy; with its host's address in place of a name when it connects straight
        to an admitted server.

        :raises DomainRefused: any other server. :raises DomainSyntaxError:.
        :raises Timeout: the name did not resolve within :data:`DNS_TIMEOUT`.
        """
        got = direct_target(name)
        if got is None:
            return name
        i, tag, host, port = got
        if not self.admits(host, port):
            shown = format_host_port(host, port) if port else host
            raise DomainRefused(f"{tag}@{shown} is not a domain this manager serves "
                                "(netinfo-web --domain or --allow-host)")
        addr = await self.resolve(host)
        where = format_host_port(addr, port) if port else addr
        rest = split_domain_path(name)[i + 1:]
        return "/".join([f"{tag}@{where}", *(_escape(c) for c in rest)])

    async def resolve(self, host: str) -> str:
        """*host*'s address: a literal as it is, a name from the cache or from a worker
        thread (:func:`netinfo.client.domain.resolve_host`), one lookup per name at a time."""
        h = norm_host(host)
        try:
            return str(ipaddress.ip_address(h))
        except ValueError:
            pass
        now = time.monotonic()
        hit = self._dns.get(h)
        if hit is not None and hit[0] > now:
            return hit[1]
        fut = self._pending.get(h)
        if fut is None:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="web-dns")
            fut = asyncio.wrap_future(self._pool.submit(resolve_host, h))
            self._pending[h] = fut
            fut.add_done_callback(lambda f: self._done(h, f))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), DNS_TIMEOUT)
        except TimeoutError:
            raise Timeout(f"no address for {host} within {DNS_TIMEOUT:g} s") from None

    def _done(self, host: str, fut: asyncio.Future[str]) -> None:
        self._pending.pop(host, None)
        if not fut.cancelled() and fut.exception() is None:
            self._dns[host] = (time.monotonic() + DNS_TTL, fut.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = ["DomainPolicy", "DomainRefused", "MAX_REPLY", "DNS_TIMEOUT", "DNS_TTL",
           "LEARNED", "parse_allow", "direct_target", "norm_host"]
