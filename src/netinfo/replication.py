"""Replication's pure parts: who the clones are, what a master pushes, who the master is
(spec §9). Who is who is computed by ``facts`` (one place for every consumer); the network
side lives in ``replicator``; what a transfer writes, in the store's copy
(``storage.NewCopy``).

A master pushes each committed write to its clones as the very call the client sent
(ids with their pre-write instances), CREATE with ``target_id`` set to the id it made
(spec §9.3), so that a clone applying it gets the same ids, instances and checksum. A
clone that falls behind copies the whole domain with READALL (§9.4, §9.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .facts import DomainFacts, Peer
from .model import Proplist
from .protocol import Proc

#: What a master pushes: (procedure, arguments as a client would send them).
Update = tuple[int, tuple[Any, ...]]


def clone_list(machines: Sequence[Proplist], is_own: Callable[[str], bool],
               own_tag: str) -> list[Peer]:
    """The master's clones: every /machines server of this domain but this one
    (:meth:`facts.DomainFacts.clones`, spec §9.1)."""
    return DomainFacts([], machines).clones(is_own, own_tag)


def update_for(proc: int, args: tuple[Any, ...], result: Any) -> Update:
    """The call a master pushes for one committed write (spec §9.3)."""
    if proc == Proc.CREATE:
        parent, props, where, _ = args
        child, _ = result
        return (Proc.CREATE, (parent, props, where, child))
    return (proc, args)


def master_of(root_master: str | None, machines: Sequence[Proplist]) -> tuple[str, str] | None:
    """(address, tag) of the master named by root ``master`` = ``HOST/TAG`` (spec §9.1;
    :attr:`facts.DomainFacts.master`)."""
    m = DomainFacts([("master", [root_master])] if root_master else [], machines).master
    return (m.addr, m.tag) if m is not None else None


__all__ = ["Peer", "Update", "clone_list", "master_of", "update_for"]
