"""Replication's pure parts: who the clones are, what a master pushes, who the master is
(spec §9). The network side lives in ``replicator``; what a transfer writes, in the
store's copy (``storage.NewCopy``).

A master pushes each committed write to its clones as the very call the client sent
(ids with their pre-write instances), CREATE with ``target_id`` set to the id it made
(spec §9.3), so that a clone applying it gets the same ids, instances and checksum. A
clone that falls behind copies the whole domain with READALL (§9.4, §9.5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .model import Proplist, first_values, is_ipv4
from .protocol import Proc

#: What a master pushes: (procedure, arguments as a client would send them).
Update = tuple[int, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Peer:
    """One other server of the domain, from /machines (spec §9.1)."""

    name: str
    addr: str
    tag: str


def clone_list(machines: Iterable[Proplist], is_own: Callable[[str], bool],
               own_tag: str) -> list[Peer]:
    """The master's clones: every /machines entry with a ``serves`` value ``./T``, by its
    first ``ip_address``, excluding this server itself (its own address with its own
    tag). Names need DNS and are skipped (spec §9.1; no DNS on a server's paths)."""
    out = []
    for props in machines:
        addrs = first_values(props, "ip_address") or []
        if not addrs or not is_ipv4(addrs[0]):
            continue
        name = (first_values(props, "name") or [addrs[0]])[0]
        for s in first_values(props, "serves") or []:
            if not s.startswith("./") or len(s) < 3:
                continue
            tag = s[2:]
            if is_own(addrs[0]) and tag == own_tag:
                continue
            out.append(Peer(name, addrs[0], tag))
    return out


def update_for(proc: int, args: tuple[Any, ...], result: Any) -> Update:
    """The call a master pushes for one committed write (spec §9.3)."""
    if proc == Proc.CREATE:
        parent, props, where, _ = args
        child, _ = result
        return (Proc.CREATE, (parent, props, where, child))
    return (proc, args)


def master_of(root_master: str | None, machines: Iterable[Proplist]) -> tuple[str, str] | None:
    """(address, tag) of the master named by root ``master`` = ``HOST/TAG`` (spec §9.1)."""
    if not root_master or "/" not in root_master:
        return None
    host, _, tag = root_master.partition("/")
    for props in machines:
        if host in (first_values(props, "name") or ()):
            addrs = first_values(props, "ip_address") or []
            if addrs and is_ipv4(addrs[0]):
                return addrs[0], tag
    return None


__all__ = ["Peer", "Update", "clone_list", "master_of", "update_for"]
