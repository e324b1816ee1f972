"""DirectoryService: the NetInfo semantics of one domain, pure and synchronous.

One method per NETINFO procedure (``proc_<name>``, named in :data:`protocol.PROCEDURES`),
each taking the :class:`Caller` first and then the decoded arguments, returning the result
body or raising :class:`~netinfo.errors.NiError`. The service holds the working copy of the
domain; every change is appended to :attr:`DirectoryService.pending` as store operations
(``storage/__init__.py``), which the server commits durably before it answers. Each write
also leaves its record, taken by :meth:`DirectoryService.take_write` (the authenticated
caller, every directory it touched with its state before and after, its ops), which the
database makes a ``changes.Change``; the undo log restores directories from the same
before-images.

Spec sections: §4.2–§4.4 (procedures), §5 (data model, ids, instances, checksum),
§10.2–§10.4 (write validation and ``_writers``), §8 (what RPARENT and BIND read).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import NiError, Status, StorageError
from ..facts import (
    DomainFacts,
    Network,
    admits,
    classful_network,  # noqa: F401 - importable here, as before
    master_property,
    trusted_networks,
)
from ..model import Directory, NiId, Proplist, addr_to_uint, first_values, uint_to_addr
from ..passwords import VerifiedPasswords
from ..storage import RESET, Free, Image, KidDel, KidIns, Meta, Op, Put
from ..storage.changes import Caller, DirState, Touched
from ..storage.nodes import MISSING, MemorySource, Node, NodeSource, no_gc
from ..wire.limits import MAX_DEPTH
from ..wire.proplist import StoredProplist, WireProplist, encode_proplist
from ..wire.protocol import Proc
from ..wire.xdr import BIG_LIST_MAX, LIST_MAX
from . import quota

MASK32 = 0xFFFFFFFF
#: Children count from which LOOKUP builds a per-(directory, key) index. Apple's server
#: indexed directories of 32 children and more (spec §5.4); the result is the same.
INDEX_THRESHOLD = 32
#: LOOKUP indexes kept at once (each a (directory, key) pair), least recently used
#: dropped first.
INDEX_MAX = 256
SERVER_VERSION = "opennetinfo-0.1"


#: The caller used by in-process administration (creating templates, imports).
SUPERUSER = Caller(superuser=True, user="root")


class ReadAll(NamedTuple):
    """What READALL sends (spec §9.4): the checksum, highest id + 1, then every
    directory in depth-first pre-order."""

    checksum: int
    highest: int
    objects: Iterator[Directory]
    #: the same directories already encoded as READALL pieces, when the source can make
    #: them without decoding (``NodeSource.readall_pieces``); None: encode ``objects``
    pieces: Iterator[bytes] | None = None


@dataclass(slots=True)
class ServerInfo:
    """Facts about the serving process that STATISTICS reports (spec §4.4)."""

    tag: str = "local"
    hostname: str = "localhost"
    addresses: list[str] = field(default_factory=list)
    clone: bool = False
    clones: int = 0
    binding: str = "unknown"
    #: the parent server found by the search of spec §8.2: (address, tag), or None
    parent: tuple[str, str] | None = None
    #: ``netinfod -n``: a root whatever /machines says (spec §8.2, Apple)
    forced_root: bool = False
    connections: int = 0
    #: what replication reports in STATISTICS (clone states, last copy), set by it
    replication: list[tuple[str, list[str]]] = field(default_factory=list)
    #: per procedure number: [calls, total microseconds]
    counters: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in Proc])


_fv = first_values


def tree_damage(image: Image) -> str | None:
    """What makes *image* unusable as a tree, or None: a directory listed as a child
    more than once (twice in one list, under two parents, the root as a child, or a
    cycle such as a directory in its own child list). Every walk of the tree -- reads,
    dumps, searches, statistics -- would otherwise never end or recurse without bound.

    Tolerated: a child number without a record (just unlinked by DESTROY, spec §4.4)
    and directories no parent lists (unreachable, so harmless)."""
    records, children = image.records, image.children
    seen: set[int] = set()
    for parent, kids in children.items():
        if parent not in records:
            continue   # the child list of a directory that is gone: nothing reaches it
        for k in kids:
            if k not in records:
                continue
            if k in seen or k == 0:
                return f"directory {k} is listed as a child more than once"
            seen.add(k)
    return None


#: LIST and LISTALL of a directory with more children than this are answered in pieces
#: as the peer takes them (Database.stream), never built whole (issue 10).
STREAM_CHILDREN = 4096


def _wire(n: Node) -> Proplist:
    """*n*'s properties as a :class:`~netinfo.wire.protocol.WireProplist`, encoded once and
    kept on the node: later READs and LOOKUPREADs of an unchanged directory send those
    bytes (a directory read from the store has them already). A write replaces
    ``n.props`` with a new list, which is encoded again when next read."""
    props = n.props
    if type(props) is not WireProplist:
        props = n.props = WireProplist(props, encode_proplist(props))
    return props


def _own(props: Proplist) -> Proplist:
    """A caller's proplist as the service may keep it: copied, so that the caller's later
    edits cannot reach the tree, unless it cannot change (a WireProplist decoded from a
    call keeps its bytes, which the store then writes as they are)."""
    if type(props) is WireProplist:
        return props
    return [(k, list(v)) for k, v in props]


class DirectoryService:
    """The directory semantics of one NetInfo domain (spec §4–§5, §10)."""

    def __init__(self, image: Image | None = None, info: ServerInfo | None = None, *,
                 source: NodeSource | None = None) -> None:
        """Serve *image* (loaded whole, checked by :func:`tree_damage`) or, given
        *source*, the directories it reads on demand (docs/architecture.md,
        "Representation at scale")."""
        self.info = info or ServerInfo()
        #: store operations not yet committed
        self.pending: list[Op] = []
        #: who the write in progress is made by, once authenticated (spec §10.2)
        self._caller: Caller = SUPERUSER
        #: the write in progress: directory → its state before it (None: created by it),
        #: captured when the write first touches it (:meth:`take_write`)
        self._before: dict[int, DirState | None] = {}
        #: the write in progress: where its ops begin in :attr:`pending`
        self._mark = 0
        #: the write in progress: position of each directory it created
        self._created_at: dict[int, int] = {}
        from .auth import Authenticator  # noqa: PLC0415 - auth imports Caller from here
        #: every credential's door, with the failure limiter (spec §10.2; module ``auth``);
        #: the owner (database.Database) replaces it with one that names the domain
        self.authenticator = Authenticator(self.check_user)
        #: the password checks of check_user, recent successes remembered (passwords)
        self.verified = VerifiedPasswords()
        #: the LOOKUP indexes that exist, least recently used first
        self._lru: OrderedDict[tuple[Node, str], None] = OrderedDict()
        #: how to take back the uncommitted changes: (function, *args), applied in reverse
        self._undo: list[tuple[Any, ...]] = []
        #: the same for the operations last taken by take_pending, until durable()
        self._taken: list[tuple[Any, ...]] = []
        if source is not None:
            self._attach(source)
        else:
            self._load(image or Image())

    # -- loading and bookkeeping --------------------------------------------------------------

    def _load(self, image: Image) -> None:
        """:raises StorageError: the image's tree is damaged (:func:`tree_damage`)."""
        damage = tree_damage(image)
        if damage is not None:
            raise StorageError(f"damaged database: {damage}")
        self._attach(MemorySource(image))

    def _attach(self, source: NodeSource) -> None:
        """Serve the directories of *source*. Nothing here is O(n) for a lazy source: the
        checksum is the one stored with the last commit (spec §5.6: Apple kept a running
        sum in the store), the highest number one query, and the unused numbers below it
        are searched on the first CREATE that needs one (spec §5.2)."""
        self._lru = OrderedDict()
        self._nodes = source
        self._freed = dict(source.freed())
        created = False
        if 0 not in source:
            # Directory 0 always exists; a new database gets an empty root (spec §4.4 ROOT).
            inst = self._freed.pop(0, 0) + 1
            source[0] = Node(inst, 0, [])
            self.pending.append(Put(0, inst, 0, []))
            created = True
        self._next_new = source.highest() + 1
        self._free_heap: list[int] = []
        #: True until the unused numbers below _next_new are in the heap (lazy sources)
        self._gaps_unscanned = source.lazy
        if not source.lazy:
            self._free_heap = source.gaps()
            heapq.heapify(self._free_heap)
        stored = source.stored_checksum()
        if source.lazy and stored is not None and not created:
            self.checksum = stored
        else:
            self.checksum = self.compute_checksum()
        self.loaded_checksum = stored
        #: what anonymous callers have added (``quota``), as last committed
        self.anon_usage = quota.Usage(source.stored_meta(quota.DIRS_KEY) or 0,
                                      source.stored_meta(quota.BYTES_KEY) or 0)

    @property
    def source(self) -> NodeSource:
        """Where the directories are read from (the node-source seam, ``nodes``)."""
        return self._nodes

    def compute_checksum(self) -> int:
        """Σ (object+1) × instance over all directories, mod 2³² (spec §5.6), from scratch."""
        return sum((k + 1) * i for k, i in self._nodes.instances()) & MASK32

    def replace(self, image: Image) -> None:
        """Swap in a whole new database (full transfer, bulk load) and queue a reset."""
        self._undo.append((self._restore, (self._nodes, self._freed, self._free_heap,
                                           self._next_new, self.checksum,
                                           self.loaded_checksum, self._lru,
                                           self._gaps_unscanned, self.anon_usage)))
        self.pending.append(RESET)
        self._load(image)
        nodes = self._nodes
        assert isinstance(nodes, MemorySource)
        for oid, n in nodes.items():
            self.pending.append(Put(oid, n.instance, n.parent, n.props))
            for i, c in enumerate(n.children):
                self.pending.append(KidIns(oid, i, c))
        for oid, inst in self._freed.items():
            self.pending.append(Free(oid, inst))

    def reload(self, image: Image | None = None, *, source: NodeSource | None = None) -> None:
        """Drop everything not committed and continue from *image* or *source* (the last
        durable state), keeping :attr:`info`."""
        self.pending = []
        self._undo, self._taken = [], []
        if source is not None:
            self._attach(source)
        else:
            self._load(image or Image())

    def take_pending(self) -> list[Op]:
        """The store operations of every change since the last call, to be committed.
        Until :meth:`durable` (or the next call), :meth:`rollback` can still take the
        changes back if the store fails to commit them."""
        ops, self.pending = self.pending, []
        self._taken, self._undo = self._undo, []
        self._nodes.take()
        return ops

    def durable(self) -> None:
        """The operations last taken are on disk: they can no longer be rolled back."""
        self._taken = []
        self._nodes.durable()

    def rollback(self) -> None:
        """Take back the changes of the last :meth:`take_pending` and every change since
        (their store failed to commit them): the working copy is again what the store
        holds, without reloading the domain. The LOOKUP indexes of the directories
        involved are rebuilt lazily."""
        undo = self._taken + self._undo
        self._taken, self._undo = [], []
        for fn, *args in reversed(undo):
            fn(*args)
        self._nodes.rollback()
        self.pending = []

    def _drop_index(self, n: Node) -> None:
        n.kindex = None
        n.korder = None

    def _restore(self, state: tuple[Any, ...]) -> None:
        (self._nodes, self._freed, self._free_heap, self._next_new, self.checksum,
         self.loaded_checksum, self._lru, self._gaps_unscanned, self.anon_usage) = state

    def __len__(self) -> int:
        return len(self._nodes)

    def directory(self, oid: int) -> Directory:
        """A copy of directory *oid* as an ``ni_object``. :raises NiError: BADID."""
        n = self._get(oid)
        return Directory(NiId(oid, n.instance), list(n.props), n.parent, list(n.children))

    def iter_preorder(self) -> Iterator[Directory]:
        """Every directory, depth-first pre-order from the root (spec §9.4), produced
        as taken (a lazy source reads them from the store in bounded memory)."""
        return self._nodes.preorder()

    def highest_id(self) -> int:
        """Largest object number + 1, as NeXT clones expect in READALL (spec §9.4)."""
        return self._nodes.highest() + 1

    def image(self) -> Image:
        """The working copy as a storage :class:`Image` (for tests and transfers)."""
        from ..storage import Record
        img = Image(checksum=self.checksum, freed=dict(self._freed))
        for oid, n in self._nodes.items():
            img.records[oid] = Record(n.instance, n.parent, [(k, list(v)) for k, v in n.props])
            if n.children:
                img.children[oid] = list(n.children)
        return img

    def _get(self, oid: int) -> Node:
        n = self._nodes.get(oid)
        if n is None:
            raise NiError(Status.BADID)
        return n

    def _id(self, oid: int) -> NiId:
        return NiId(oid, self._get(oid).instance)

    # -- write plumbing (spec §4.3) ---------------------------------------------------------

    def _validate(self, caller: Caller) -> Caller:
        """Step 1: write validation by role (spec §10.3): a clone takes only its master's
        updates; a master authenticates the caller (§10.2). Returns who the caller is."""
        if self.info.clone and not caller.from_master:
            raise NiError(Status.RDONLY)
        if caller.credential is not None and not (caller.superuser or caller.from_master):
            caller = self.authenticate(caller)
        self._caller = caller
        self._before = {}
        self._created_at = {}
        self._mark = len(self.pending)
        return caller

    def take_write(self) -> tuple[Caller, tuple[Touched, ...], tuple[Op, ...]]:
        """The record of the write just made (the last write procedure that succeeded):
        who made it, the directories it touched with their states before and after, in
        the order first touched, and its storage ops (``changes.Change``)."""
        get, created_at = self._nodes.get, self._created_at
        new = tuple.__new__   # the NamedTuples without their Python-level __new__
        touched = []
        for oid, was in self._before.items():
            n = get(oid)
            if n is None:
                now = None
            else:
                pos = was[2] if was is not None else created_at.get(oid, -1)
                now = new(DirState, (n.instance, n.parent, pos, n.props))
            touched.append(new(Touched, (oid, was, now)))
        mark = self._mark
        ops = tuple(self.pending[mark:]) if mark else tuple(self.pending)
        self._mark = len(self.pending)
        return self._caller, tuple(touched), ops

    def _before_image(self, oid: int, n: Node) -> None:
        """Keep *n*'s state before the write in progress changes it (first touch only):
        a reference to its proplist, never a copy (props are replaced, not changed). Its
        position is None: no write moves a directory it keeps (the parent's child list,
        perhaps a million numbers not read from the store, is not searched for it)."""
        if oid not in self._before:
            was = self._before[oid] = tuple.__new__(
                DirState, (n.instance, n.parent, None, n.props))
            # the undo log takes the directory back from the same before-image
            self._undo.append((self._put_back, n, was))

    @staticmethod
    def _put_back(n: Node, was: DirState) -> None:
        """Undo: *n*'s instance and props as they were before a write (its before-image)."""
        n.instance = was.instance
        n.props = was.props

    def authenticate(self, caller: Caller) -> Caller:
        """AUTH_UNIX on a master (spec §10.2 step 3): the inverted machinename is the
        password of the /users entry whose ``uid`` is the credential's uid, checked by
        :attr:`authenticator` (which limits failures per peer)."""
        cred = caller.credential
        assert cred is not None
        return self.authenticator.authenticate(cred.uid, cred.password, caller)

    def check_user(self, who: str | int, password: str) -> tuple[str, bool]:
        """(user name, superuser) of the /users entry *who* names — by ``uid`` when an
        int, else by ``name`` — when *password* is its password (spec §10.2 step 3).

        Every matching user is tried (Apple); one matches when its ``passwd`` is
        missing, empty or ``""`` (NeXT and Apple), or when ``crypt(password, passwd)``
        equals it. uid 0 makes the superuser ``root``; members of /groups/admin are
        superusers unless ``promote_admins`` is NO. No such user: NI_NOUSER; no match:
        NI_AUTHERROR. No limiter here: callers go through :attr:`authenticator`.
        """
        label, candidates = self.user_candidates(who)
        for stored, outcome in candidates:
            if stored is None or self.verified(password, stored):
                return settle(outcome)
        raise NiError(Status.AUTHERROR, f"{label}: wrong password")

    def user_candidates(self, who: str | int) -> tuple[str, list[Candidate]]:
        """:meth:`check_user` up to the password checks, for a caller that checks the
        hashes elsewhere (the LDAP door, in a worker thread): the label of *who* and the
        matching users in order, each (its crypt string, or None when any password
        matches it; the outcome when it matches). Reads the tree: call it where writes
        are made (the event loop). :raises NiError: NI_NOUSER."""
        by_uid = isinstance(who, int)
        label = f"uid {who}" if by_uid else f"user {who!r}"
        root = self._nodes[0]
        found = self._matches(0, root, "name", "users")
        if not found:
            raise NiError(Status.NOUSER, f"{label}: no /users directory")
        users = self._nodes[found[0]]
        hits = self._matches(found[0], users, "uid" if by_uid else "name", str(who))
        if not hits:
            raise NiError(Status.NOUSER, f"{label}: no such user")
        out: list[Candidate] = []
        for oid in hits:
            props = self._nodes[oid].props
            authority = _fv(props, "authentication_authority")
            if authority and authority[0] not in (";basic;", ""):
                continue  # ShadowHash / Password Server: out of scope (spec §10.2)
            stored = _fv(props, "passwd")
            uid = who if by_uid else (_fv(props, "uid") or [""])[0]
            names = _fv(props, "name")
            outcome: tuple[str, bool] | NiError
            if str(uid) == "0":
                outcome = ("root", True)
            elif not names:
                outcome = NiError(Status.NOUSER, f"{label}: user has no name")
            else:
                # Apple: members of /groups/admin are promoted unless promote_admins is NO.
                outcome = (names[0], self._promote_admins() and names[0] in self._admins())
            out.append((stored[0] if stored and stored[0] != "" else None, outcome))
        return label, out

    def _promote_admins(self) -> bool:
        vals = _fv(self._nodes[0].props, "promote_admins")
        return not vals or vals[0] not in ("NO", "no", "No", "N", "n", "0")

    def _admins(self) -> list[str]:
        """``users`` of /groups/admin (spec §10.2, Apple)."""
        found = self._matches(0, self._nodes[0], "name", "groups")
        if not found:
            return []
        admin = self._matches(found[0], self._nodes[found[0]], "name", "admin")
        if not admin:
            return []
        return _fv(self._nodes[admin[0]].props, "users") or []

    def root_without_password(self) -> list[str]:
        """Names of uid-0 users anyone can authenticate as: no ``passwd``, or an empty
        one (spec §10.2 accepts any password then). netinfod warns about them."""
        found = self._matches(0, self._nodes[0], "name", "users")
        if not found:
            return []
        out = []
        for oid in self._matches(found[0], self._nodes[found[0]], "uid", "0"):
            props = self._nodes[oid].props
            stored = _fv(props, "passwd")
            if stored is None or not stored or stored[0] == "":
                out.append((_fv(props, "name") or ["?"])[0])
        return out

    def _target(self, i: NiId) -> Node:
        """Step 2: the target exists and the caller's instance is current."""
        n = self._nodes.get(i[0])
        if n is None:
            raise NiError(Status.BADID)
        if n.instance != i[1]:
            raise NiError(Status.STALE)
        return n

    @staticmethod
    def _admits(values: list[str] | None, caller: Caller) -> bool:
        """Apple's membership rule: ``*`` admits everyone, else the user by name (§10.4)."""
        if values is None:
            return False
        if "*" in values:
            return True
        return caller.user is not None and caller.user in values

    def _check_dir(self, n: Node, caller: Caller, unlocking: bool = False) -> None:
        """Step 4, directory-level permission (spec §10.4)."""
        if _fv(n.props, "_locked") is not None and not (unlocking and caller.is_root):
            # Apple: a locked directory refuses directory-level writes, even root's. The
            # superuser may still remove `_locked` itself, or nothing could unlock it.
            raise NiError(Status.RDONLY)
        if caller.is_root:
            return
        if not self._admits(_fv(n.props, "_writers"), caller):
            raise NiError(Status.PERM)

    def _check_prop(self, n: Node, caller: Caller, prop: str) -> None:
        """Step 4 for value edits: directory-level, else ``_writers_<prop>`` (Apple, §10.4).

        A ``_locked`` directory is read-only for value edits too (tools §0.5)."""
        if _fv(n.props, "_locked") is not None:
            raise NiError(Status.RDONLY)
        if caller.is_root:
            return
        if self._admits(_fv(n.props, "_writers"), caller):
            return
        if not self._admits(_fv(n.props, "_writers_" + prop), caller):
            raise NiError(Status.PERM)

    def _touched(self, oid: int, n: Node) -> NiId:
        """Step 5: instance +1, checksum += (oid+1), queue the record (spec §5.3, §5.6)."""
        self._before_image(oid, n)   # ... which the undo log restores the instance from
        self._nodes.pin(oid, n)
        self._undo.append((setattr, self, "checksum", self.checksum))
        n.instance = (n.instance + 1) & MASK32
        self.checksum = (self.checksum + oid + 1) & MASK32
        self.pending.append(Put(oid, n.instance, n.parent, n.props))
        return NiId(oid, n.instance)

    def _set_props(self, oid: int, n: Node, props: Proplist) -> NiId:
        if quota.is_anonymous(self._caller):
            self._charge(0, quota.size(props) - quota.size(n.props))
        self._before_image(oid, n)   # ... which the undo log restores the props from
        self._nodes.pin(oid, n)
        old = n.props
        n.props = props
        parent = self._nodes.get(n.parent)
        if parent is not None and parent.kindex is not None and oid != 0:
            self._undo.append((self._drop_index, parent))
            self._reindex(parent, oid, old, props)
        return self._touched(oid, n)

    def _charge(self, dirs: int, nbytes: int) -> None:
        """Count an anonymous write against the domain's quota (``quota``; issue 18 N4),
        before anything changes; the new usage is committed with the write.
        :raises NiError: NI_NOSPACE past the quota."""
        used = self.anon_usage
        new = quota.charge(used, quota.limits(self._nodes[0].props), dirs, nbytes)
        if new == used:
            return
        self._undo.append((setattr, self, "anon_usage", used))
        self.anon_usage = new
        self.pending.append(Meta(quota.DIRS_KEY, new.dirs))
        self.pending.append(Meta(quota.BYTES_KEY, new.bytes))

    def _give_back(self, parent: Node, child: Node) -> None:
        """A DESTROY in a directory anyone may write to (``_writers`` ``*``) gives its
        room back to the anonymous quota, whoever destroys (``quota``)."""
        if "*" in (_fv(parent.props, "_writers") or ()):
            self._charge(-1, -quota.size(child.props))

    # -- the LOOKUP index ----------------------------------------------------------------------

    def _reindex(self, parent: Node, child: int, old: Proplist, new: Proplist) -> None:
        assert parent.kindex is not None
        for key, byval in parent.kindex.items():
            ov, nv = _fv(old, key), _fv(new, key)
            if ov == nv:
                continue
            for v in ov or ():
                s = byval.get(v)
                if s is not None:
                    s.pop(child, None)
                    if not s:
                        del byval[v]
            for v in nv or ():
                byval.setdefault(v, {})[child] = None

    def _index_for(self, n: Node, key: str) -> dict[str, dict[int, None]]:
        """The LOOKUP index of *n*'s children by *key*. At most :data:`INDEX_MAX`
        indexes exist at once, the least recently used one dropped first: anyone may ask
        for any key, and an index is kept only while it is worth its memory."""
        lru = self._lru
        if n.kindex is None:
            n.kindex = {}
        idx = n.kindex.get(key)
        if idx is None:
            idx = {}
            nodes = self._nodes
            for c in n.children:
                for v in _fv((nodes.get(c) or MISSING).props, key) or ():
                    idx.setdefault(v, {})[c] = None
            n.kindex[key] = idx
            lru[(n, key)] = None
            lru.move_to_end((n, key))
            while len(lru) > INDEX_MAX:
                old, okey = next(iter(lru))
                del lru[(old, okey)]
                if old.kindex is not None:
                    old.kindex.pop(okey, None)
                    if not old.kindex:
                        old.kindex = None
        else:
            lru.move_to_end((n, key))
        return idx

    def _order(self, n: Node) -> dict[int, int]:
        if n.korder is None:
            n.korder = {c: i for i, c in enumerate(n.children)}
        return n.korder

    def _matches(self, oid: int, n: Node, key: str, value: str) -> list[int]:
        """Children whose first ``key`` property has ``value``, in child-list order (§4.4)."""
        nodes = self._nodes
        found = nodes.lookup(oid, n, key, value)
        if found is not None:  # a lazy source answers from the store's index
            return found
        if len(n.children) < INDEX_THRESHOLD:
            out = []
            for c in n.children:
                vals = _fv((nodes.get(c) or MISSING).props, key)
                if vals is not None and value in vals:
                    out.append(c)
            return out
        hits = self._index_for(n, key).get(value)
        if not hits:
            return []
        if len(hits) == 1:
            return list(hits)
        order = self._order(n)
        return sorted(hits, key=order.__getitem__)

    def _link_child(self, poid: int, parent: Node, child: int, where: int,
                    props: Proplist) -> None:
        self._nodes.pin(poid, parent)
        kids = parent.children
        self._undo.append((self._unlink_raw, parent, child))
        if where >= len(kids):
            if parent.korder is not None:
                parent.korder[child] = (parent.korder[kids[-1]] + 1) if kids else 0
            kids.append(child)
        else:
            kids.insert(where, child)
            parent.korder = None
        if parent.kindex is not None:
            self._reindex(parent, child, [], props)

    def _unlink_raw(self, parent: Node, child: int) -> None:
        parent.children.remove(child)
        self._drop_index(parent)

    def _unlink_child(self, poid: int, parent: Node, child: int, props: Proplist) -> int:
        """Take *child* out of *parent*'s child list; where it was."""
        self._nodes.pin(poid, parent)
        at = parent.children.index(child)
        del parent.children[at]
        self._undo.append((self._drop_index, parent))
        self._undo.append((parent.children.insert, at, child))
        if parent.korder is not None:
            parent.korder.pop(child, None)
        if parent.kindex is not None:
            self._reindex(parent, child, props, [])
        return at

    # -- read procedures (spec §4.2: instances ignored, current ids returned) ------------------

    def proc_ping(self, caller: Caller) -> None:
        return None

    def proc_root(self, caller: Caller) -> NiId:
        return NiId(0, self._nodes[0].instance)

    def proc_self(self, caller: Caller, i: NiId) -> NiId:
        return self._id(i[0])

    def proc_parent(self, caller: Caller, i: NiId) -> tuple[int, NiId]:
        n = self._get(i[0])
        return (n.parent, NiId(i[0], n.instance))

    def proc_read(self, caller: Caller, i: NiId) -> tuple[NiId, Proplist]:
        n = self._get(i[0])
        return (NiId(i[0], n.instance), _wire(n))

    def proc_children(self, caller: Caller, i: NiId) -> tuple[Sequence[int], NiId]:
        n = self._get(i[0])
        return (n.children, NiId(i[0], n.instance))

    def proc_lookup(self, caller: Caller, i: NiId, key: str, value: str) -> tuple[list[int], NiId]:
        n = self._get(i[0])
        found = self._matches(i[0], n, key, value)
        if not found:
            raise NiError(Status.NODIR)
        return (found, NiId(i[0], n.instance))

    def proc_lookupread(self, caller: Caller, i: NiId, key: str,
                        value: str) -> tuple[NiId, Proplist | StoredProplist]:
        n = self._get(i[0])
        answered, child = self._nodes.lookup_first(i[0], n, key, value)
        if not answered:
            found = self._matches(i[0], n, key, value)
            child = self._nodes[found[0]] if found else None
        if child is None:
            raise NiError(Status.NODIR)
        # The id is the searched directory's, not the child's (spec §4.4 LOOKUPREAD).
        return (NiId(i[0], n.instance),
                child if isinstance(child, StoredProplist) else _wire(child))

    def proc_list(self, caller: Caller, i: NiId,
                  name: str) -> tuple[list[tuple[int, list[str] | None]], NiId]:
        n = self._get(i[0])
        with no_gc():
            entries = list(self._nodes.list_values(n, name))
        return (entries, NiId(i[0], n.instance))

    def list_stream(self, caller: Caller, i: NiId, name: str
                    ) -> tuple[int, Iterator[tuple[int, list[str] | None]], NiId] | None:
        """LIST of a directory of more than :data:`STREAM_CHILDREN` children as (count,
        entries produced as they are taken, id); None: answer it whole (a smaller one,
        or one past the protocol's limit, whose answer is NI_NOSPACE).
        :raises NiError: BADID."""
        n = self._get(i[0])
        if not STREAM_CHILDREN < len(n.children) <= BIG_LIST_MAX:
            return None
        return len(n.children), self._nodes.list_values(n, name), NiId(i[0], n.instance)

    def listall_stream(self, caller: Caller, i: NiId
                       ) -> tuple[NiId, int, Iterator[bytes]] | None:
        """LISTALL likewise: (id, count, the proplists in XDR as they are taken)."""
        n = self._get(i[0])
        if not STREAM_CHILDREN < len(n.children) <= BIG_LIST_MAX:
            return None
        return NiId(i[0], n.instance), len(n.children), self._nodes.listall_wire(n)

    def snapshot(self) -> NodeSource:
        """A read-only view of the domain as it is now, which later writes do not change
        (``NodeSource.snapshot``; close it when done): what a stream reads."""
        return self._nodes.snapshot(self.checksum)

    @staticmethod
    def list_in(view: NodeSource, i: NiId, name: str
                ) -> tuple[int, Iterator[tuple[int, list[str] | None]], NiId]:
        """:meth:`list_stream` read from a :meth:`snapshot` *view*. :raises NiError: BADID."""
        n = view.get(i[0])
        if n is None:
            raise NiError(Status.BADID)
        return len(n.children), view.list_values(n, name), NiId(i[0], n.instance)

    @staticmethod
    def listall_in(view: NodeSource, i: NiId) -> tuple[NiId, int, Iterator[bytes]]:
        """:meth:`listall_stream` read from a :meth:`snapshot` *view*.
        :raises NiError: BADID."""
        n = view.get(i[0])
        if n is None:
            raise NiError(Status.BADID)
        return NiId(i[0], n.instance), len(n.children), view.listall_wire(n)

    @staticmethod
    def readall_in(view: NodeSource) -> ReadAll:
        """READALL's whole database (spec §9.4) read from a :meth:`snapshot` *view*: its
        checksum, highest number + 1 and directories are those of one state."""
        return ReadAll(view.stored_checksum() or 0, view.highest() + 1, view.preorder(),
                       view.readall_pieces())

    def proc_listall(self, caller: Caller, i: NiId) -> tuple[NiId, Sequence[Proplist]]:
        n = self._get(i[0])
        return (NiId(i[0], n.instance), self._nodes.listall(n))

    def proc_readprop(self, caller: Caller, i: NiId, idx: int) -> tuple[list[str], NiId]:
        n = self._get(i[0])
        if idx >= len(n.props):
            raise NiError(Status.NOPROP)
        return (n.props[idx][1], NiId(i[0], n.instance))

    def proc_listprops(self, caller: Caller, i: NiId) -> tuple[list[str], NiId]:
        n = self._get(i[0])
        return ([k for k, _ in n.props], NiId(i[0], n.instance))

    def proc_readname(self, caller: Caller, i: NiId, idx: int, nidx: int) -> tuple[NiId, str]:
        n = self._get(i[0])
        if idx >= len(n.props):
            raise NiError(Status.NOPROP)
        vals = n.props[idx][1]
        if nidx >= len(vals):
            raise NiError(Status.NONAME)
        return (NiId(i[0], n.instance), vals[nidx])

    # -- write procedures (spec §4.3 order: validate, target, ranges, permission, apply) ----

    def proc_create(self, caller: Caller, parent: NiId, props: Proplist, where: int,
                    target: NiId | None = None) -> tuple[NiId, NiId]:
        caller = self._validate(caller)
        p = self._target(parent)
        if target is not None and target[0] in self._nodes:
            raise NiError(Status.ALIVE)
        self._check_dir(p, caller)
        if len(p.children) >= BIG_LIST_MAX:
            raise NiError(Status.NOSPACE, f"a directory holds at most {BIG_LIST_MAX} children")
        # directories nest at most MAX_DEPTH levels (limits.py); a clone takes what its
        # master made, so an old deeper tree still replicates
        if not caller.from_master and self._depth(parent[0]) >= MAX_DEPTH:
            raise NiError(Status.NOSPACE, f"directories nest at most {MAX_DEPTH} levels")
        if quota.is_anonymous(caller):
            self._charge(1, quota.size(props))
        self._undo.append((setattr, self, "_next_new", self._next_new))
        if target is not None:
            oid, inst = target[0], target[1]
            self._claim(oid)
        else:
            oid = self._allocate()
            self._undo.append((heapq.heappush, self._free_heap, oid))
            inst = (self._freed.get(oid, 0) + 1) & MASK32  # NeXT: continue the slot (§5.3)
        if oid in self._freed:
            self._undo.append((self._freed.__setitem__, oid, self._freed.pop(oid)))
        props = _own(props)
        self._nodes[oid] = Node(inst, parent[0], props)
        self._undo.append((self._nodes.pop, oid))
        self._undo.append((setattr, self, "checksum", self.checksum))
        self.checksum = (self.checksum + (oid + 1) * inst) & MASK32
        self.pending.append(Put(oid, inst, parent[0], props))
        self._before_image(parent[0], p)
        self._before[oid] = None
        self._link_child(parent[0], p, oid, where, props)
        at = min(where, len(p.children) - 1)
        self._created_at[oid] = at
        self.pending.append(KidIns(parent[0], at, oid))
        return (NiId(oid, inst), self._touched(parent[0], p))

    def warm(self, caller: Caller, args: tuple[Any, ...]) -> None:
        """Read what a write with *args* is about to read, changing nothing: the
        directories it names with their parents, child lists and ancestors, the number a
        CREATE would take, and the user entries a credential is checked against. A lazy
        source whose reads are round trips fetches here what it misses (off the event
        loop, ``server.storeio``), before the write changes anything (``Database``).
        Errors are the write's to find."""
        nodes = self._nodes
        for arg in args:
            if not isinstance(arg, NiId):
                continue
            n = nodes.get(arg[0])
            if n is None:
                continue
            n.children  # noqa: B018 - its child list, read
            oid = n.parent   # its ancestors (_set_props, _depth)
            for _ in range(MAX_DEPTH + 1):
                up = nodes.get(oid) if oid != arg[0] else None
                if up is None or oid == 0 or up.parent == oid:
                    break
                oid = up.parent
        if len(args) == 4 and isinstance(args[0], NiId) and isinstance(args[2], int):
            # CREATE: the number it takes (spec §5.2; _allocate)
            target = args[3]
            if isinstance(target, NiId):
                target[0] in nodes  # noqa: B015 - read
            else:
                if self._gaps_unscanned:
                    nodes.gaps()
                if self._free_heap:
                    self._free_heap[0] in nodes  # noqa: B015 - read
                self._next_new in nodes  # noqa: B015 - read
        cred = caller.credential
        if cred is not None and not (caller.superuser or caller.from_master):
            try:
                self.user_candidates(cred.uid)
            except NiError:
                pass

    def _depth(self, oid: int) -> int:
        """Levels from the root down to *oid* (the root: 0), counted up to one past
        :data:`~netinfo.wire.limits.MAX_DEPTH` (a parent chain that loops stops there too)."""
        depth = 0
        while oid != 0 and depth <= MAX_DEPTH:
            n = self._nodes.get(oid)
            if n is None or n.parent == oid:
                break
            oid = n.parent
            depth += 1
        return depth

    def _allocate(self) -> int:
        """The lowest unused object number (spec §5.2)."""
        heap, nodes = self._free_heap, self._nodes
        if self._gaps_unscanned:
            # A lazy source's unused numbers, searched once, on the first CREATE
            # (spec §5.2: the lowest unused number).
            self._gaps_unscanned = False
            for k in nodes.gaps():
                heapq.heappush(heap, k)
        while heap:
            oid = heapq.heappop(heap)
            if oid not in nodes:
                return oid
        oid = self._next_new
        while oid in nodes:  # taken by a CREATE with target_id (or a rolled-back claim)
            oid += 1
        self._next_new = oid + 1
        return oid

    def _claim(self, oid: int) -> None:
        """Take a specific number (CREATE with target_id, spec §4.4)."""
        if oid >= self._next_new:
            for k in range(self._next_new, oid):
                heapq.heappush(self._free_heap, k)
            self._next_new = oid + 1
        # a number below _next_new stays in the heap and is skipped lazily when popped

    def proc_destroy(self, caller: Caller, parent: NiId, child: NiId) -> NiId:
        caller = self._validate(caller)
        p = self._target(parent)
        # Both ids are validated for writing first (spec §4.3 step 2, §4.4 DESTROY); then
        # whether the child is the parent's at all, then whether it is empty.
        c = self._nodes.get(child[0])
        if c is not None and c.instance != child[1]:
            raise NiError(Status.STALE)
        if child[0] not in p.children:
            raise NiError(Status.UNRELATED)
        if c is not None and c.children:
            raise NiError(Status.NOTEMPTY)
        self._check_dir(p, caller)
        if c is not None:
            self._give_back(p, c)
        oid = child[0]
        self._before_image(parent[0], p)
        at = self._unlink_child(parent[0], p, oid, c.props if c is not None else [])
        if c is not None:
            self._before[oid] = DirState(c.instance, c.parent, at, c.props)
        self.pending.append(KidDel(parent[0], oid))
        if c is not None:
            del self._nodes[oid]
            self._undo.append((self._nodes.__setitem__, oid, c))
            if oid in self._freed:
                self._undo.append((self._freed.__setitem__, oid, self._freed[oid]))
            else:
                self._undo.append((self._freed.pop, oid, None))
            self._freed[oid] = c.instance
            heapq.heappush(self._free_heap, oid)
            self._undo.append((setattr, self, "checksum", self.checksum))
            self.checksum = (self.checksum - (oid + 1) * c.instance) & MASK32
            self.pending.append(Free(oid, c.instance))
        return self._touched(parent[0], p)

    def proc_write(self, caller: Caller, i: NiId, props: Proplist) -> NiId:
        caller = self._validate(caller)
        n = self._target(i)
        self._check_dir(n, caller)
        return self._set_props(i[0], n, _own(props))

    def proc_createprop(self, caller: Caller, i: NiId, prop: tuple[str, list[str]],
                        where: int) -> NiId:
        caller = self._validate(caller)
        n = self._target(i)
        self._check_dir(n, caller)
        if len(n.props) >= LIST_MAX:  # the proplist could no longer be sent (spec §2)
            raise NiError(Status.NOSPACE, f"a directory holds at most {LIST_MAX} properties")
        props = list(n.props)
        props.insert(min(where, len(props)), (prop[0], list(prop[1])))
        return self._set_props(i[0], n, props)

    def _prop_index(self, n: Node, idx: int) -> tuple[str, list[str]]:
        if idx >= len(n.props):
            raise NiError(Status.NOPROP)
        return n.props[idx]

    def proc_destroyprop(self, caller: Caller, i: NiId, idx: int) -> NiId:
        caller = self._validate(caller)
        n = self._target(i)
        name, _ = self._prop_index(n, idx)
        self._check_dir(n, caller, unlocking=(name == "_locked"))
        props = list(n.props)
        del props[idx]
        return self._set_props(i[0], n, props)

    def proc_writeprop(self, caller: Caller, i: NiId, idx: int, values: list[str]) -> NiId:
        caller = self._validate(caller)
        n = self._target(i)
        name, _ = self._prop_index(n, idx)
        self._check_prop(n, caller, name)
        props = list(n.props)
        props[idx] = (name, list(values))
        return self._set_props(i[0], n, props)

    def proc_renameprop(self, caller: Caller, i: NiId, idx: int, newname: str) -> NiId:
        caller = self._validate(caller)
        n = self._target(i)
        _, vals = self._prop_index(n, idx)
        self._check_dir(n, caller)
        props = list(n.props)
        props[idx] = (newname, vals)
        return self._set_props(i[0], n, props)

    def _edit_values(self, caller: Caller, i: NiId, idx: int, nidx: int | None,
                     edit: Callable[[list[str]], object]) -> NiId:
        caller = self._validate(caller)
        n = self._target(i)
        name, vals = self._prop_index(n, idx)
        if nidx is not None and nidx >= len(vals):
            raise NiError(Status.NONAME)
        self._check_prop(n, caller, name)
        if nidx is None and len(vals) >= LIST_MAX:  # CREATENAME: the list is full (spec §2)
            raise NiError(Status.NOSPACE, f"a property holds at most {LIST_MAX} values")
        vals = list(vals)
        edit(vals)
        props = list(n.props)
        props[idx] = (name, vals)
        return self._set_props(i[0], n, props)

    def proc_createname(self, caller: Caller, i: NiId, idx: int, name: str,
                        where: int) -> NiId:
        return self._edit_values(caller, i, idx, None,
                                 lambda vals: vals.insert(min(where, len(vals)), name))

    def proc_destroyname(self, caller: Caller, i: NiId, idx: int, nidx: int) -> NiId:
        return self._edit_values(caller, i, idx, nidx, lambda vals: vals.pop(nidx))

    def proc_writename(self, caller: Caller, i: NiId, idx: int, nidx: int, name: str) -> NiId:
        return self._edit_values(caller, i, idx, nidx,
                                 lambda vals: vals.__setitem__(nidx, name))

    # -- binding, statistics, replication entry points ---------------------------------------

    def machines(self) -> list[Proplist]:
        """The proplists of /machines' children (empty when there is no /machines)."""
        root = self._nodes[0]
        found = self._matches(0, root, "name", "machines")
        if not found:
            return []
        m = self._nodes[found[0]]
        return [c.props for _, c in self._nodes.children_of(m)]

    def facts(self) -> DomainFacts:
        """Who serves this domain, who its master is, its parent candidates (spec §9.1,
        §8.2), from the root and /machines as they are now (module ``facts``)."""
        return DomainFacts(self._nodes[0].props, self.machines())

    def parent_candidates(self) -> list[tuple[str, str]]:
        """(address, parent tag) for every /machines ``serves ../TAG`` entry (spec §8.2 step 3)."""
        return self.facts().parent_candidates()

    def is_forced_root(self) -> bool:
        """``netinfod -n`` or root ``isRoot`` = YES (spec §8.2, §11)."""
        if self.info.forced_root:
            return True
        vals = _fv(self._nodes[0].props, "isRoot")
        return bool(vals and vals[0] in ("YES", "yes", "Yes", "Y", "y", "1"))

    def proc_rparent(self, caller: Caller) -> tuple[str, int]:
        """The parent binding (spec §4.4 RPARENT, §8.2).

        No ``../`` candidates (or ``isRoot``): NI_NETROOT. Otherwise the binding the
        server's parent search found, or NI_NORESPONSE while it has found none.
        """
        if self.is_forced_root() or not self.parent_candidates():
            raise NiError(Status.NETROOT)
        if self.info.parent is None:
            raise NiError(Status.NORESPONSE)
        addr, tag = self.info.parent
        return (tag, addr_to_uint(addr))

    def serves_child(self, tag: str, addr: int) -> bool:
        """NETINFO BIND: does /machines list *addr* serving ``NAME/tag``? (spec §4.4 BIND)"""
        return self.facts().serves_child(tag, uint_to_addr(addr))

    def trusted_networks(self) -> list[Network] | None:
        """Root ``trusted_networks`` as classful network byte triples (spec §10.5), or None
        when absent (everyone may connect). Names resolve through /networks/<name>."""
        return trusted_networks(self._nodes[0].props, self._network_address)

    def _network_address(self, name: str) -> str | None:
        root = self._nodes[0]
        found = self._matches(0, root, "name", "networks")
        if not found:
            return None
        hits = self._matches(found[0], self._nodes[found[0]], "name", name)
        if not hits:
            return None
        addr = _fv(self._nodes[hits[0]].props, "address")
        return addr[0] if addr else None

    def admits_tcp(self, addr: str, local: bool) -> bool:
        """May a TCP connection from *addr* stay open? (spec §10.5: only TCP is filtered;
        the server's own addresses always may; an empty list admits only those.)"""
        return admits(self.trusted_networks(), addr, local)

    def master_property(self) -> tuple[str, str] | None:
        """Root ``master`` as (host, tag) (spec §9.1), or None."""
        return master_property(self._nodes[0].props)

    def master_address(self) -> str | None:
        """The master's address: the first dotted ``ip_address`` of /machines/<master
        host> (spec §9.1; a host name there is skipped, module ``facts``)."""
        return self.facts().master_address

    def clone_serves(self, addr: str) -> bool:
        """Does /machines list *addr* as a server of this domain other than the master
        itself (:meth:`facts.DomainFacts.clone_serves`)?"""
        return self.facts().clone_serves(addr)

    def domain_servers(self) -> list[str]:
        """``ip/tag`` for every /machines entry serving ``./tag`` (spec §4.4 STATISTICS)."""
        return self.facts().domain_servers()

    def proc_statistics(self, caller: Caller) -> Proplist:
        """``checksum`` first, then Apple's set (spec §4.4 STATISTICS)."""
        stats: Proplist = [("checksum", [str(self.checksum)])]
        if caller.checksum_only:
            return stats
        info = self.info
        tagvals = [info.tag, "clone" if info.clone else "master"]
        if not info.clone:
            tagvals.append(str(info.clones))
        counters = info.counters
        stats += [
            ("server_version", [SERVER_VERSION]),
            ("tag", tagvals),
            ("ip_address", list(info.addresses)),
            ("hostname", [info.hostname]),
            ("domain_servers", self.domain_servers()),
            ("write_locked", ["NO"]),
            ("notify_threads", ["0"]),
            ("notifications_pending", ["0"]),
            ("authentications", ["0", "0", "0", "0"]),
            ("readall_proxies", ["0"]),
            ("cleanup_wait", ["1800"]),
            ("total_calls", [str(sum(c[0] for c in counters))]),
            ("binding", [info.binding]),
            ("connections", [str(info.connections)]),
        ]
        for p in Proc:
            calls, micros = counters[p]
            stats.append((p.name.lower(), [str(int(p)), str(calls), str(micros)]))
        stats += [(k, list(v)) for k, v in info.replication]
        stats += self.source.statistics()
        return stats

    def proc_crashed(self, caller: Caller, checksum: int) -> None:
        """A master ignores CRASHED (spec §4.4); clones resynchronise (replication issue)."""
        return None

    def proc_resync(self, caller: Caller) -> int:
        """Bare NI_OK; a master without clones has nothing to push (spec §4.4)."""
        return Status.OK

    def proc_bind(self, caller: Caller, tag: str, addr: int) -> bool:
        """NETINFO BIND (spec §4.4): True when /machines lists the child (answered with an
        empty success); False otherwise (the server answers SYSTEM_ERR, see protocol)."""
        return self.serves_child(tag, addr)

    def readall_wanted(self, caller: Caller, checksum: int) -> bool:
        """Whether READALL sends the database (False: the caller's *checksum* is
        current). :raises NiError: as :meth:`proc_readall`."""
        if self.info.clone:
            raise NiError(Status.NOTMASTER)
        if not (caller.is_root or self.clone_serves(caller.addr)):
            # The whole domain, passwords included, goes only to this domain's own
            # servers (its clones) and the local superuser (issue "security").
            raise NiError(Status.PERM)
        return checksum != self.checksum

    def proc_readall(self, caller: Caller, checksum: int) -> ReadAll | None:
        """READALL (spec §4.4, §9.4): the whole database in pre-order, or None when the
        caller's *checksum* is current (the reply then carries checksum 0).

        The directories are produced lazily, as the stream is written.

        :raises NiError: NI_NOTMASTER on a clone; NI_PERM unless the caller is the
            superuser or an address /machines lists as serving this domain (a clone).
        """
        if not self.readall_wanted(caller, checksum):
            return None
        return ReadAll(self.checksum, self.highest_id(), self.iter_preorder(),
                       self._nodes.readall_pieces())



#: one user :meth:`DirectoryService.check_user` may match: its crypt string (None: any
#: password matches) and what authenticating as it gives (or the error it raises)
Candidate = tuple[str | None, tuple[str, bool] | NiError]


def settle(outcome: tuple[str, bool] | NiError) -> tuple[str, bool]:
    """A :data:`Candidate`'s outcome once its password matched. :raises NiError:"""
    if isinstance(outcome, NiError):
        raise outcome
    return outcome


def check_password(password: str, stored: str) -> bool:
    """``crypt(password, stored) == stored`` for DES crypt and the modern crypt formats
    (spec §10.2; ``passwords``)."""
    from ..passwords import verify  # noqa: PLC0415 - libpass loads on the first write
    return verify(password, stored)
