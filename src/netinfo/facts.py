"""Domain facts: who serves a domain, who its master is, which role this server holds,
where its parent may be and which networks it trusts, computed in one place from the
root proplist and the /machines proplists (spec §9.1, §8.2, §10.5). Pure.

Every consumer — the service (STATISTICS, BIND, RPARENT, trusted networks, the
"a clone of this domain" privilege), replication (the clone list, the master a clone
copies from), the server (the master's pushes), the client library (which server takes
writes, spec §7.5) and netinfod's start-up role — asks a :class:`DomainFacts`, so they
cannot disagree.

How a server is named (spec §9.1): root ``master`` = ``HOST/TAG``; the /machines entry
whose ``name`` holds HOST gives the master's addresses; an entry serving ``./TAG`` is a
server of this domain at that entry's address with that tag, ``../TAG`` a candidate
parent, ``NAME/TAG`` a server of the child domain NAME.

**One resolution rule for addresses.** ``ip_address`` holds dotted IPv4 addresses. A
value there that is not one (a host name, an IPv6 literal, garbage) is not an address
and is skipped wherever an address is wanted: a server resolves no names on its paths
(no DNS, which may hang), and skipping it everywhere is what keeps the consumers in
agreement. An entry's address is its first dotted value; an entry with none names no
server. (Issue 19: with a host name listed first, netinfod once took the name as the
master's address — "a clone" — while replication found no master to copy from.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from .model import Proplist, first_values, is_digits, is_ipv4

#: A network as the first three bytes of its number (classful, spec §10.5).
Network = tuple[int, int, int]


class Role(Enum):
    """What this server is for its domain (spec §9.1)."""

    MASTER = "master"
    CLONE = "clone"


@dataclass(frozen=True, slots=True)
class Peer:
    """One server of the domain, from /machines (spec §9.1)."""

    name: str
    addr: str
    tag: str


def addresses(props: Proplist) -> list[str]:
    """An entry's ``ip_address`` values that are dotted IPv4 addresses, in order (the
    module's resolution rule: anything else is not an address and is skipped)."""
    return [a for a in first_values(props, "ip_address") or () if is_ipv4(a)]


def _served(props: Proplist, prefix: str) -> list[str]:
    """Tags of an entry's ``serves`` values ``<prefix>TAG`` (TAG not empty)."""
    n = len(prefix)
    return [s[n:] for s in first_values(props, "serves") or ()
            if s.startswith(prefix) and len(s) > n]


def master_property(root: Proplist) -> tuple[str, str] | None:
    """Root ``master`` as (host, tag) (spec §9.1), or None when absent or not HOST/TAG."""
    vals = first_values(root, "master")
    if not vals or "/" not in vals[0]:
        return None
    host, _, tag = vals[0].partition("/")
    return host, tag


class DomainFacts:
    """The facts of one domain as its root and /machines say them (spec §9.1).

    *root* is the root directory's proplist, *machines* the proplists of /machines'
    children (in order). Nothing here does I/O or resolves a name.
    """

    __slots__ = ("master_name", "_machines", "_master")

    def __init__(self, root: Proplist, machines: Sequence[Proplist]) -> None:
        #: root ``master`` as (host, tag), or None
        self.master_name = master_property(root)
        self._machines = machines
        self._master: Peer | bool | None = False

    # -- the master ------------------------------------------------------------------------

    def master_entry(self) -> Proplist | None:
        """The /machines entry whose ``name`` holds the master's host, or None."""
        if self.master_name is None:
            return None
        host = self.master_name[0]
        return next((p for p in self._machines if host in (first_values(p, "name") or ())),
                    None)

    def master_addresses(self) -> list[str]:
        """Every dotted address of the master's host (the client library matches its
        server list against them, spec §7.5)."""
        entry = self.master_entry()
        return addresses(entry) if entry is not None else []

    @property
    def master(self) -> Peer | None:
        """The master as (host, first dotted address, tag), or None when root ``master``
        is missing or its host has no dotted address in /machines."""
        if self._master is False:
            addrs = self.master_addresses()
            self._master = (Peer(self.master_name[0], addrs[0], self.master_name[1])
                            if addrs and self.master_name is not None else None)
        assert self._master is not True
        return self._master

    @property
    def master_address(self) -> str | None:
        """The master's address (spec §9.1): the first dotted ``ip_address`` of
        /machines/<master host>."""
        m = self.master
        return m.addr if m is not None else None

    # -- servers ---------------------------------------------------------------------------

    @property
    def servers(self) -> list[Peer]:
        """Every server of this domain: an entry's ``serves ./TAG`` at its address, in
        /machines order (entries without a dotted address name no server)."""
        out: list[Peer] = []
        for props in self._machines:
            addrs = addresses(props)
            if not addrs:
                continue
            name = (first_values(props, "name") or [addrs[0]])[0]
            out.extend(Peer(name, addrs[0], tag) for tag in _served(props, "./"))
        return out

    def clones(self, is_own: Callable[[str], bool], own_tag: str) -> list[Peer]:
        """A master's clones: every server but this one (its own address, its own tag)."""
        return [p for p in self.servers if not (is_own(p.addr) and p.tag == own_tag)]

    def own_entry(self, is_own: Callable[[str], bool], own_tag: str) -> Peer | None:
        """This server as /machines lists it, or None."""
        return next((p for p in self.servers if is_own(p.addr) and p.tag == own_tag), None)

    def listed_server(self, addr: str) -> Peer | None:
        """The server of this domain at *addr*, as /machines lists it."""
        addr = addr.removeprefix("::ffff:")
        return next((p for p in self.servers if p.addr == addr), None)

    def domain_servers(self) -> list[str]:
        """``ip/tag`` for every dotted address of every entry serving ``./tag`` (spec
        §4.4 STATISTICS; the client library's server list, §7.4 step 2)."""
        return [f"{a}/{t}" for a, t in self.server_addresses()]

    def server_addresses(self) -> list[tuple[str, str]]:
        """(address, tag) for every dotted address of every entry serving ``./tag``."""
        out: list[tuple[str, str]] = []
        for props in self._machines:
            addrs = addresses(props)
            for tag in _served(props, "./"):
                out.extend((a, tag) for a in addrs)
        return out

    def clone_serves(self, addr: str) -> bool:
        """Does /machines list *addr* as a server of this domain other than the master
        itself: one of its clones, which may live on the master's host under another tag?
        The master's own listing names where it answers, often this host's loopback
        address, which says nothing of a caller from there."""
        addr = addr.removeprefix("::ffff:")
        master = self.master_name
        for props in self._machines:
            if addr not in addresses(props):
                continue
            names = first_values(props, "name") or ()
            for tag in _served(props, "./"):
                if not (master is not None and master[0] in names and tag == master[1]):
                    return True
        return False

    # -- this server's role ----------------------------------------------------------------

    def role(self, tag: str, is_own: Callable[[str], bool]) -> Role:
        """A clone when root ``master`` names a master whose address is not ours, or a
        tag that is not ours (Apple; spec §9.1); a database named ``local``, or one whose
        ``master`` names no address, is a master."""
        m = self.master
        if tag == "local" or m is None:
            return Role.MASTER
        return Role.CLONE if not is_own(m.addr) or m.tag != tag else Role.MASTER

    # -- the hierarchy (spec §8) -----------------------------------------------------------

    def parent_candidates(self) -> list[tuple[str, str]]:
        """(address, parent tag) for every /machines ``serves ../TAG`` (spec §8.2 step 3)."""
        out: list[tuple[str, str]] = []
        for props in self._machines:
            addrs = addresses(props)
            if addrs:
                out.extend((addrs[0], tag) for tag in _served(props, "../"))
        return out

    def child_servers(self, name: str) -> list[tuple[str, str]]:
        """(address, tag) for every dotted address of every entry serving ``name/TAG``:
        the servers of the child domain *name* (spec §7.3)."""
        out: list[tuple[str, str]] = []
        for props in self._machines:
            addrs = addresses(props)
            for tag in _served(props, name + "/"):
                out.extend((a, tag) for a in addrs)
        return out

    def serves_child(self, tag: str, dotted: str) -> bool:
        """Does /machines list *dotted* serving ``NAME/tag`` (a child domain, spec §4.4
        BIND)?"""
        for props in self._machines:
            if dotted not in addresses(props):
                continue
            for s in first_values(props, "serves") or ():
                name, slash, t = s.partition("/")
                if slash and t == tag and name not in (".", ".."):
                    return True
        return False


# -- trusted networks (spec §10.5) ------------------------------------------------------------

def trusted_networks(root: Proplist, network_address: Callable[[str], str | None]
                     ) -> list[Network] | None:
    """Root ``trusted_networks`` as classful networks, or None when absent (everyone may
    connect). A value that is not a number is a name: *network_address* gives the
    ``address`` of /networks/<name> (or None)."""
    vals = first_values(root, "trusted_networks")
    if vals is None:
        return None
    nets = []
    for v in vals:
        if not is_digits(v.replace(".", "")):
            v = network_address(v) or ""
        net = classful_network(v)
        if net is not None:
            nets.append(net)
    return nets


def admits(nets: Iterable[Network] | None, addr: str, local: bool) -> bool:
    """May a TCP connection from *addr* stay open? (spec §10.5: the server's own addresses
    always may; no list admits everyone; an empty list only the server's own.)"""
    if nets is None or local:
        return True
    try:
        a = [int(x) for x in addr.removeprefix("::ffff:").split(".")]
    except ValueError:
        return False
    if len(a) != 4:
        return False
    for n1, n2, n3 in nets:
        if a[0] != n1:
            continue
        if n2 == 0:
            return True
        if a[1] != n2:
            continue
        if n3 == 0 or a[2] == n3:
            return True
    return False


def classful_network(value: str) -> Network | None:
    """A ``trusted_networks`` value as the first three bytes of its network (spec §10.5).

    The dotted number is read like ``inet_network`` and shifted into the class A/B/C
    position: ``10`` → 10.0.0, ``128.1`` → 128.1.0, ``192.42.172`` and ``10.0.2`` (larger
    than 65535) → their three bytes. None for a value that is not a network number.
    """
    parts = value.rstrip(".").split(".") if value else []
    if not parts or len(parts) > 4 or not all(is_digits(p) for p in parts):
        return None
    nums = [int(p) for p in parts]
    if any(x > 255 for x in nums):
        return None
    n = 0
    for x in nums:
        n = (n << 8) | x
    if len(nums) == 4:
        pass
    elif n < 256:
        n <<= 24
    elif n < 65536:
        n <<= 16
    else:
        n <<= 8
    return (n >> 24 & 255, n >> 16 & 255, n >> 8 & 255)


__all__ = ["DomainFacts", "Network", "Peer", "Role", "addresses", "admits",
           "classful_network", "master_property", "trusted_networks"]


def clone_list(machines: Sequence[Proplist], is_own: Callable[[str], bool],
               own_tag: str) -> list[Peer]:
    """The master's clones: every /machines server of this domain but this one
    (:meth:`DomainFacts.clones`, spec §9.1)."""
    return DomainFacts([], machines).clones(is_own, own_tag)


def master_of(root_master: str | None, machines: Sequence[Proplist]) -> tuple[str, str] | None:
    """(address, tag) of the master named by root ``master`` = ``HOST/TAG`` (spec §9.1;
    :attr:`DomainFacts.master`)."""
    m = DomainFacts([("master", [root_master])] if root_master else [], machines).master
    return (m.addr, m.tag) if m is not None else None
