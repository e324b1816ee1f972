"""Bounds on what the peers of one TCP listener may hold: :class:`PeerBounds`.

One piece any listener uses, RPC or not (netinfod's data port in ``netinfod``, the
binder's programs in ``rpc``, a future LDAP door speaking BER), so that no peer — one
address, one network, or many connections each doing a little — can shut the others out
or grow the server without limit (issue 18, findings N2, N3, N17; docs/security.md
"Bounds on what one peer can hold"):

* connections per address and per network (/24 for IPv4, /64 for IPv6) under caps, and
  all of them under a global cap; at the global cap the network holding the most
  connections loses one (of its address holding the most: an idle one first, else the
  least recently active), so a newcomer from a network with fewer is let in; within the
  newcomer's own network, the address holding the most loses one when it holds more than
  the newcomer's; otherwise an idle connection makes room, or the newcomer is refused;
* reply bytes queued per connection and in total: the listener stops reading a
  connection whose queue is over :attr:`PeerLimits.queued_per_conn`
  (:meth:`PeerBounds.over`), and past :attr:`PeerLimits.queued_total` for all of them
  together the connection holding the most is dropped;
* bytes of incomplete requests (a record, a BER message) held by all connections
  together: past :attr:`PeerLimits.partial_total` the connection holding the most is
  dropped (:meth:`PeerBounds.account`);
* time: a connection whose queued replies are not taken by its peer for
  :attr:`PeerLimits.stall` seconds, whose incomplete request is not completed within
  :attr:`PeerLimits.partial_timeout`, or that has had nothing to do for
  :attr:`PeerLimits.idle_timeout` is dropped (:meth:`PeerBounds.sweep`).

Pure: no sockets and no clock of its own, and nothing of RPC. Connections are opaque
keys; the listener says what happened with the time — :meth:`~PeerBounds.admit` (a
newcomer), :meth:`~PeerBounds.active` (its peer sent something),
:meth:`~PeerBounds.account` (incomplete bytes it holds now), :meth:`~PeerBounds.queued`
(reply bytes waiting), :meth:`~PeerBounds.forget` (gone) — calls :meth:`~PeerBounds.sweep`
now and then, and the bounds call the listener's *drop* function for a connection that
must go.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)

#: KiB and MiB, for the limits below.
KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class PeerLimits:
    """The numbers (docs/security.md gives each one's origin)."""

    #: connections at once, all peers together
    total: int = 1024
    #: connections from one address: a quarter of the total, so that four hosts at their
    #: cap still leave room, and a host's own tools (200 clients at once in
    #: tests/test_hostile.py) fit
    per_address: int = 256
    #: connections from one /24 (IPv4) or /64 (IPv6): half the total
    per_network: int = 512
    #: reply bytes queued for one connection before it is no longer read
    queued_per_conn: int = 1 * MIB
    #: reply bytes queued for all connections together before the biggest is dropped
    queued_total: int = 64 * MIB
    #: seconds a connection may hold queued replies its peer takes none of
    stall: float = 30.0
    #: bytes of incomplete requests held by all connections together before the one
    #: holding the most is dropped
    partial_total: int = 64 * MIB
    #: seconds within which an incomplete request must be completed
    partial_timeout: float = 30.0
    #: seconds a connection with nothing to do stays open (clients reconnect)
    idle_timeout: float = 900.0


def network_of(addr: str) -> str:
    """The network an address is counted in: its /24 (IPv4, also IPv4-mapped IPv6) or its
    /64 (IPv6); an address that does not parse counts as a network of its own."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network((ip, bits), strict=False))


@dataclass(slots=True)
class _Entry:
    addr: str
    net: str
    last_active: float
    #: reply bytes queued for the peer (as last told)
    queued: int = 0
    #: reply bytes the peer has taken so far (as last told)
    taken: int = 0
    #: since when the queue has been waiting without the peer taking a byte, or 0
    stalled_since: float = 0.0
    #: bytes of an incomplete request held (as last told), and since when, or 0
    partial: int = 0
    partial_since: float = 0.0


@dataclass(slots=True)
class PeerStats:
    """What the bounds did, for logs, STATISTICS and tests."""

    refused: int = 0
    evicted: int = 0
    dropped_stalled: int = 0
    dropped_bytes: int = 0
    dropped_partial: int = 0
    dropped_idle: int = 0


@dataclass
class PeerBounds(Generic[C]):
    """The bounds of one listener (see the module docstring).

    *drop(conn, reason)* closes a connection (the listener then calls :meth:`forget`, or
    not: forgetting twice is harmless); *idle(conn)* says whether it has nothing to
    answer or send (a connection holding an incomplete request, :meth:`account`, is
    never idle): idle connections are evicted first, and closed after
    :attr:`PeerLimits.idle_timeout`.
    """

    limits: PeerLimits
    drop: Callable[[C, str], None]
    idle: Callable[[C], bool] = lambda _c: False
    stats: PeerStats = field(default_factory=PeerStats)

    def __post_init__(self) -> None:
        #: every admitted connection, oldest first
        self.conns: dict[C, _Entry] = {}
        self._by_addr: dict[str, dict[C, None]] = {}
        self._by_net: dict[str, dict[C, None]] = {}
        #: reply bytes queued, all connections together
        self.queued_bytes = 0
        #: bytes of incomplete requests, all connections together
        self.partial_bytes = 0

    def __len__(self) -> int:
        return len(self.conns)

    def __contains__(self, conn: object) -> bool:
        return conn in self.conns

    # -- connections ----------------------------------------------------------------------

    def admit(self, conn: C, addr: str, now: float) -> str | None:
        """Let *conn* from *addr* in; None when admitted, else why it is refused. Room
        may be made by dropping another connection (see the module docstring)."""
        net = network_of(addr)
        lim = self.limits
        mine = self._by_addr.get(addr, {})
        if len(mine) >= lim.per_address and not self._evict_idle(mine, now):
            self.stats.refused += 1
            return f"{len(mine)} connections from {addr}"
        ours = self._by_net.get(net, {})
        if len(ours) >= lim.per_network and not self._evict_idle(ours, now):
            self.stats.refused += 1
            return f"{len(ours)} connections from {net}"
        if len(self.conns) >= lim.total and not self._make_room(addr, net, now):
            self.stats.refused += 1
            return f"{len(self.conns)} connections, none to spare"
        self.conns[conn] = _Entry(addr, net, now)
        self._by_addr.setdefault(addr, {})[conn] = None
        self._by_net.setdefault(net, {})[conn] = None
        return None

    def _make_room(self, addr: str, net: str, now: float) -> bool:
        """At the global cap: the network holding the most connections loses one when it
        holds more than the newcomer's (*net*); within the newcomer's own network, the
        address holding the most loses one when it holds more than the newcomer's
        (*addr*); otherwise only an idle connection makes room. The loser's victim is an
        idle connection if it has one, else its least recently active."""
        nets = self._by_net
        if not nets:
            return False
        biggest = max(nets, key=lambda n: len(nets[n]))
        ours = nets.get(net, {})
        if biggest != net and len(nets[biggest]) > len(ours):
            self._evict(self._victim(self._top_address(nets[biggest])), "fairness", now)
            return True
        if ours:
            top = self._top_address(ours)
            if self.conns[next(iter(top))].addr != addr and \
                    len(top) > len(self._by_addr.get(addr, ())):
                self._evict(self._victim(top), "fairness", now)
                return True
        return self._evict_idle(self.conns, now)

    def _top_address(self, group: dict[C, None]) -> dict[C, None]:
        """The connections of the address holding the most of *group*."""
        by_addr = self._by_addr
        addrs = {self.conns[c].addr for c in group}
        return by_addr[max(addrs, key=lambda a: len(by_addr[a]))]

    def is_idle(self, conn: C) -> bool:
        """Nothing half-read, nothing to answer or send."""
        e = self.conns.get(conn)
        return e is not None and not e.partial and self.idle(conn)

    def _victim(self, among: dict[C, None] | dict[C, _Entry]) -> C:
        """An idle connection if any, the least recently active first."""
        idle = self.is_idle
        entries = self.conns
        return min(among, key=lambda c: (not idle(c), entries[c].last_active))

    def _evict_idle(self, among: dict[C, None] | dict[C, _Entry], now: float) -> bool:
        if not among:
            return False
        victim = self._victim(among)
        if not self.is_idle(victim):
            return False
        self._evict(victim, "idle", now)
        return True

    def _evict(self, conn: C, why: str, now: float) -> None:
        self.stats.evicted += 1
        e = self.conns[conn]
        self.forget(conn)
        self.drop(conn, f"making room ({why}; {e.addr} holds "
                        f"{len(self._by_addr.get(e.addr, ())) + 1} connections)")

    def forget(self, conn: C) -> None:
        """*conn* is gone (idempotent)."""
        e = self.conns.pop(conn, None)
        if e is None:
            return
        self.queued_bytes -= e.queued
        self.partial_bytes -= e.partial
        for index, key in ((self._by_addr, e.addr), (self._by_net, e.net)):
            group = index.get(key)
            if group is not None:
                group.pop(conn, None)
                if not group:
                    del index[key]

    def active(self, conn: C, now: float) -> None:
        """*conn*'s peer sent something."""
        e = self.conns.get(conn)
        if e is not None:
            e.last_active = now

    def last_active(self, conn: C) -> float:
        e = self.conns.get(conn)
        return e.last_active if e is not None else 0.0

    def partial(self, conn: C) -> int:
        """Bytes of an incomplete request *conn* holds (as last told)."""
        e = self.conns.get(conn)
        return e.partial if e is not None else 0

    def count(self, addr: str) -> int:
        """Connections from *addr*."""
        return len(self._by_addr.get(addr, ()))

    # -- incomplete requests --------------------------------------------------------------

    def account(self, conn: C, pending: int, now: float, fresh: bool = False) -> bool:
        """*conn* now holds *pending* bytes of an incomplete request; *fresh*: a request
        was completed since the last account, so these bytes begin another (its time
        starts now: a peer that keeps a window of requests coming always holds the
        beginning of the next one, and completes each in time). False when that put all
        connections together over :attr:`PeerLimits.partial_total` and *conn* was the
        one dropped (the connection holding the most goes)."""
        e = self.conns.get(conn)
        if e is None:
            return False
        if pending and (fresh or not e.partial):
            e.partial_since = now
        elif not pending:
            e.partial_since = 0.0
        self.partial_bytes += pending - e.partial
        e.partial = pending
        return self._shed(conn, "partial", self.limits.partial_total, "dropped_partial",
                          "bytes of incomplete requests")

    # -- queued reply bytes -----------------------------------------------------------------

    def queued(self, conn: C, queued: int, taken: int, now: float) -> bool:
        """*conn* has *queued* reply bytes waiting and its peer has taken *taken* in all.
        False when that put all connections together over their budget and *conn* was the
        one dropped (the connection holding the most goes)."""
        e = self.conns.get(conn)
        if e is None:
            return False
        if taken != e.taken or not queued:
            e.stalled_since = now if queued else 0.0
        elif not e.stalled_since:
            e.stalled_since = now
        e.taken = taken
        self.queued_bytes += queued - e.queued
        e.queued = queued
        return self._shed(conn, "queued", self.limits.queued_total, "dropped_bytes",
                          "reply bytes queued")

    def _shed(self, conn: C, held: str, budget: int, stat: str, what: str) -> bool:
        """While all connections together hold more than *budget* bytes of kind *held*
        (``partial`` or ``queued``: the entry's field, ``held + "_bytes"`` the total),
        drop the one holding the most, counting it in ``stats.<stat>``. False when *conn*
        was one of those dropped."""
        while getattr(self, held + "_bytes") > budget:
            hog = max(self.conns, key=lambda c: getattr(self.conns[c], held))
            amount = getattr(self.conns[hog], held)
            setattr(self.stats, stat, getattr(self.stats, stat) + 1)
            self.forget(hog)
            self.drop(hog, f"{amount} {what}, over the budget of {budget} for all connections")
            if hog == conn:
                return False
        return True

    def over(self, conn: C) -> bool:
        """True while *conn*'s queued replies exceed its own bound (stop reading it)."""
        e = self.conns.get(conn)
        return e is not None and e.queued > self.limits.queued_per_conn

    def sweep(self, now: float, measure: Callable[[C], tuple[int, int]]) -> None:
        """Drop connections whose peer took nothing of their queued replies for
        :attr:`PeerLimits.stall` seconds, that hold an incomplete request older than
        :attr:`PeerLimits.partial_timeout`, or that have been idle for
        :attr:`PeerLimits.idle_timeout`. *measure(conn)* gives (queued, taken) now."""
        lim = self.limits
        for conn in list(self.conns):
            if conn not in self.conns:
                continue
            queued, taken = measure(conn)
            if not self.queued(conn, queued, taken, now):
                continue
            e = self.conns[conn]
            if e.stalled_since and now - e.stalled_since > lim.stall:
                self.stats.dropped_stalled += 1
                why = f"{queued} reply bytes not taken for {lim.stall:.0f} s"
            elif e.partial and now - e.partial_since > lim.partial_timeout:
                self.stats.dropped_partial += 1
                why = f"request not completed within {lim.partial_timeout:.0f} s"
            elif now - e.last_active > lim.idle_timeout and self.is_idle(conn):
                self.stats.dropped_idle += 1
                why = f"idle for {lim.idle_timeout:.0f} s"
            else:
                continue
            self.forget(conn)
            self.drop(conn, why)


__all__ = ["PeerBounds", "PeerLimits", "PeerStats", "network_of"]
