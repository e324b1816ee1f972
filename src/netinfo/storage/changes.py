"""One write, one record: :class:`Change`, what the service produces for each write.

A write procedure (spec §4.3) run through :meth:`netinfo.server.database.Database.call` yields
one :class:`Change`: the procedure, the caller as authenticated (spec §10.2), the
arguments as the client sent them, the result, every directory the write touched with
its state before and after (:class:`Touched`, :class:`DirState`), and the storage ops
that make it durable. The same objects go to the store with the ops of their transaction
(``Store.commit(ops, checksum, changes)``: an engine may journal them, a shared engine may
check each touched directory's expected instance) and then to every subscriber, each
with a sequence number (``seq``) that increases by one per change, per domain, and is
stored with the batch (``storage.Meta`` :data:`SEQ_KEY`), so it survives a restart.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..model import Proplist
from ..wire.protocol import Proc
from ..wire.rpc import AuthUnix

if TYPE_CHECKING:
    from . import Op

@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the server saw it (spec §10.2)."""

    addr: str = ""
    port: int = 0
    #: local address + reserved source port: the local superuser (spec §10.2 step 1)
    superuser: bool = False
    #: authenticated user name; None = anonymous
    user: str | None = None
    #: AUTH_UNIX credential whose inverted machinename is "checksum" (spec §4.4 STATISTICS)
    checksum_only: bool = False
    #: an update pushed by this domain's master (spec §9.2)
    from_master: bool = False
    #: the AUTH_UNIX credential, authenticated on the first write (spec §10.2)
    credential: AuthUnix | None = None
    #: superuser as the owner of an unprivileged server (its own uid's local socket,
    #: docs/security.md): a call that carries a credential is checked as that user instead
    owner: bool = False

    @property
    def is_root(self) -> bool:
        """Passes every permission check: the local superuser, an authenticated user
        named ``root`` (spec §10.2, §10.4), or the master pushing an update (§9.2)."""
        return self.superuser or self.from_master or self.user == "root"


#: The ``storage.Meta`` key under which the last change's sequence number is stored.
SEQ_KEY = "change_seq"


class DirState(NamedTuple):
    """A directory's own state at one moment (spec §5.1): its instance, its parent, its
    position in the parent's child list and its proplist as stored (a reference to the
    service's list, which is replaced on a write, never changed in place: nothing is
    copied).

    ``position`` is known where a write moves the directory in or out of its parent's
    list: a CREATE's new directory (after) and a DESTROY's destroyed one (before). It is
    None for a directory a write keeps where it was (every other touched directory: no
    write moves a directory it keeps), so that a write never has to search a big parent's
    child list, which a lazy engine would first read from the store."""

    instance: int
    parent: int
    position: int | None
    props: Proplist


class Touched(NamedTuple):
    """A directory a write changed: its number, its state before (None: the write
    created it) and after (None: the write destroyed it)."""

    id: int
    before: DirState | None
    after: DirState | None


@dataclass(frozen=True, slots=True)
class Change:
    """One write made durable.

    ``proc`` is the NETINFO procedure, ``args`` its arguments as the client sent them
    (ids with the instances the write was based on: the expected instances), ``result``
    what it answered (the new id, or for CREATE the child's and the parent's new ids).
    ``caller`` is who made it, as authenticated (spec §10.2): its ``user``, ``superuser``
    (by reserved port), ``addr`` and ``port``. ``touched`` lists every directory the
    write changed, in the order first touched, with its before and after states;
    ``ops`` are the storage operations it queued; ``seq`` its sequence number in the
    domain (1, 2, ...; 0 for a change made before any was numbered).

    A whole new tree swapped in (``Database.replace``, ``Database.adopt``) is one Change
    with ``proc`` None, ``args`` and ``touched`` empty and ``result`` the new checksum.
    """

    proc: Proc | None
    caller: Caller
    args: tuple[Any, ...]
    result: Any
    touched: tuple[Touched, ...] = ()
    ops: tuple[Op, ...] = ()
    seq: int = 0

    @property
    def instance(self) -> int:
        """The written directory's instance after the write (for CREATE and DESTROY,
        the parent's); 0 for a whole new tree."""
        if self.proc is None:
            return 0
        result = self.result[1] if self.proc == Proc.CREATE else self.result
        return int(result[1])

    @property
    def expected(self) -> dict[int, int | None]:
        """Directory → the instance the store must hold for this write to apply (None:
        the number must be unused, a CREATE's new directory): what a shared engine
        checks before it applies the ops (another writer's change in between is a
        conflict, NI_STALE to the later one)."""
        return {t.id: t.before.instance if t.before is not None else None
                for t in self.touched}

    @property
    def directories(self) -> tuple[int, ...]:
        """The numbers of the directories the write touched (what a cache drops)."""
        return tuple(t.id for t in self.touched)


__all__ = ["Change", "DirState", "Touched", "SEQ_KEY"]


#: What a master pushes: (procedure, arguments as a client would send them).
Update = tuple[int, tuple[Any, ...]]


def update_for(proc: int, args: tuple[Any, ...], result: Any) -> Update:
    """The call a master pushes for one committed write (spec §9.3): the very call the
    client sent (ids with their pre-write instances), CREATE with ``target_id`` set to
    the id it made, so that a clone applying it gets the same ids, instances and
    checksum."""
    if proc == Proc.CREATE:
        parent, props, where, _ = args
        child, _ = result
        return (Proc.CREATE, (parent, props, where, child))
    return (proc, args)
