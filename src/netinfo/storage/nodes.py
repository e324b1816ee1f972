"""Where the directory service finds its directories: the node-source seam.

:class:`~netinfo.server.service.DirectoryService` reads and changes directories through a
:class:`NodeSource` keyed by object number (spec §5.2), never through a store. Two sources:

:class:`MemorySource`
    the whole domain as :class:`Node` objects, built from a storage ``Image`` (the memory
    engine, tests, ``replace``/bulk loads, NeXT collections). Everything is resident.
:class:`netinfo.storage.cached.CachedSource`
    the store is the source of truth (SQLite: ``sqlite_source.SqliteSource``, the cached
    source over the engine's row reader): directories are read on demand through a
    bounded cache, and directories changed but not yet durable are pinned in memory so
    that reads see uncommitted writes (docs/architecture.md, "Representation at scale").

The service mutates a :class:`Node` in place (instance, props, children) and keeps an
undo log of those mutations; before mutating a node it calls :meth:`NodeSource.pin`, so a
lazy source can keep it resident until the store holds the change (:meth:`durable`) or
drop it when the store refused it (:meth:`rollback`).

A stream (READALL, LIST and LISTALL of a big directory) reads a :meth:`NodeSource.snapshot`
instead: a read-only view of one state that later writes do not change ("readers never
hold writers", issue 18): :class:`MemoryView` (copy-on-write) for the memory source, a
WAL read transaction of its own for the SQLite one. Pure: no I/O.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from ..model import Directory, NiId, Proplist, first_values
from ..wire.proplist import StoredProplist, encode_proplist

T = TypeVar("T")

if TYPE_CHECKING:
    from . import Image


class Node:
    """One directory of the working copy (spec §5.1): instance, parent, props, children."""

    __slots__ = ("instance", "parent", "props", "_kids", "kindex", "korder")

    def __init__(self, instance: int, parent: int, props: Proplist,
                 children: MutableSequence[int] | None = None) -> None:
        self.instance = instance
        self.parent = parent
        self.props = props          # replaced, never mutated in place (ops hold references)
        self._kids: MutableSequence[int] | None = children if children is not None else []
        # LOOKUP index of this directory's children (memory source only):
        # key -> value -> {child: None}
        self.kindex: dict[str, dict[str, dict[int, None]]] | None = None
        # child -> a number increasing along the child list (for ordering index hits)
        self.korder: dict[int, int] | None = None

    @property
    def children(self) -> MutableSequence[int]:
        """The child list, in order (spec §5.4). A list, or an ``array('I')`` on a lazy
        source (4 bytes a child)."""
        kids = self._kids
        assert kids is not None
        return kids


def list_value(props: Proplist, name: str) -> list[str] | None:
    """LIST's entry for one directory (spec §4.4, §5.5): the values of its first property
    called *name* that has at least one value (empty value lists count as absent), or
    None."""
    for k, v in props:
        if k == name and v:
            return v
    return None


def matches(props: Proplist, key: str, value: str) -> bool:
    """LOOKUP's test (spec §4.4): the first ``key`` property holds *value*."""
    vals = first_values(props, key)
    return vals is not None and value in vals


@contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic GC paused while a whole-list read decodes a directory's children into
    one reply: each collection would walk everything built so far (LISTALL of a million
    users: 53 s with it, measured; nothing built there makes a cycle)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def bounded_preorder(root: T, children_of: Callable[[T], Iterator[tuple[int, T]]],
                     kids: Callable[[T], Sequence[int]], budget: int
                     ) -> Iterator[tuple[int, T]]:
    """(number, item) for the root (0) and every directory below it, depth-first
    pre-order (spec §9.4), with one iterator per level on a stack: memory bounded by the
    tree's depth. *children_of(item)* gives an item's children in order (:data:`MISSING`
    for a number without a directory: skipped), *kids(item)* its child numbers. At most
    *budget* directories below the root: a damaged tree (a cycle) cannot make the walk
    endless."""
    yield 0, root
    stack = [children_of(root)]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            continue
        oid, item = nxt
        if item is MISSING:
            continue
        budget -= 1
        if budget < 0:
            return
        yield oid, item
        if kids(item):
            stack.append(children_of(item))


#: What a child number left without a directory reads as (spec §4.4 tolerates them).
MISSING = Node(0, 0, [])


class NodeSource:
    """The directories of one domain, by object number (the service's only view of them).

    The mapping part (``get``, ``in``, ``[]``, assignment, ``del``, ``pop``, ``len``) is
    what the service's procedures use; the rest lets a lazy source answer whole-list reads
    without loading every directory."""

    #: True when directories are read on demand (the store is the source of truth)
    lazy = False
    #: True for a snapshot view that is its stream's alone and whose reads wait on
    #: something else than this process's CPU (a network round trip): the stream then
    #: reads it in a worker thread (``server.ahead``)
    off_loop = False

    def get(self, oid: int, default: Node | None = None) -> Node | None:
        raise NotImplementedError

    def peek(self, oid: int) -> Node | None:
        """:meth:`get` for a directory read once: a source with a cache need not keep
        it (``CachedSource.peek``)."""
        return self.get(oid)

    def __getitem__(self, oid: int) -> Node:
        n = self.get(oid)
        if n is None:
            raise KeyError(oid)
        return n

    def __contains__(self, oid: object) -> bool:
        raise NotImplementedError

    def __setitem__(self, oid: int, node: Node) -> None:
        raise NotImplementedError

    def __delitem__(self, oid: int) -> None:
        raise NotImplementedError

    def pop(self, oid: int, default: Node | None = None) -> Node | None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def pin(self, oid: int, node: Node) -> None:
        """*node* (directory *oid*) is about to change: keep it until it is durable."""

    def take(self) -> None:
        """The changes so far were taken for a commit (``take_pending``)."""

    def durable(self) -> None:
        """The changes last taken are in the store."""

    def rollback(self) -> None:
        """The store refused the changes: every pinned node's state is the store's again."""

    def highest(self) -> int:
        """The largest object number in use, -1 for none."""
        raise NotImplementedError

    def gaps(self) -> list[int]:
        """Every unused number below :meth:`highest` (spec §5.2), ascending."""
        raise NotImplementedError

    def freed(self) -> dict[int, int]:
        """Destroyed numbers not reused → their last instance (spec §5.3)."""
        raise NotImplementedError

    def stored_checksum(self) -> int | None:
        """The checksum the store holds with its last commit (spec §5.6), if any."""
        return None

    def stored_meta(self, key: str) -> int | None:
        """The service's counter *key* as last committed (``storage.Meta``), if any."""
        return None

    def instances(self) -> Iterator[tuple[int, int]]:
        """(object, instance) of every directory, in no particular order."""
        raise NotImplementedError

    def items(self) -> Iterator[tuple[int, Node]]:
        """(object, node) of every directory, in no particular order (tests, images)."""
        raise NotImplementedError

    def lookup(self, oid: int, node: Node, key: str, value: str) -> list[int] | None:
        """LOOKUP's matches among *node*'s children in child-list order (spec §4.4, §5.4),
        or None when the service should search itself."""
        return None

    def lookup_stored(self, oid: int, key: str,
                      value: str) -> tuple[list[int], Node | bytes | None] | None:
        """LOOKUP's children of *oid* for *value* with the first one read once (its node,
        or its stored proplist bytes), without the service's bookkeeping; None when the
        caller is to ask LOOKUP (here always: ``CachedSource.lookup_stored``)."""
        return None

    def lookup_first(self, oid: int, node: Node, key: str,
                     value: str) -> tuple[bool, Node | StoredProplist | None]:
        """LOOKUPREAD's child (spec §4.4: the first match in child-list order) as
        (answered, the child — or only its stored proplist when it is not in memory —
        or None when nothing matches); (False, None) when the service should search
        itself (:meth:`lookup`)."""
        return False, None

    def stored_first(self, oid: int, key: str, value: bytes) -> bytes | None:
        """LOOKUPREAD's child as its stored proplist bytes, when the source has them at
        hand without building a node (``CachedSource.stored_first``); None: ask
        :meth:`lookup_first` (here always)."""
        return None

    def children_of(self, node: Node) -> Iterator[tuple[int, Node]]:
        """(child, its node) along *node*'s child list; :data:`MISSING` for a number
        without a directory."""
        get = self.get
        for c in node.children:
            yield c, get(c) or MISSING

    def listall(self, node: Node) -> Sequence[Proplist]:
        """LISTALL's proplists (spec §4.4), one per child in order ([] for a number
        without a directory)."""
        with no_gc():
            return [c.props for _, c in self.children_of(node)]

    def listall_wire(self, node: Node) -> Iterator[bytes]:
        """LISTALL's proplists as XDR (:func:`~netinfo.wire.protocol.encode_proplist`), one
        per child in order, produced as they are taken (a streamed reply)."""
        for _, c in self.children_of(node):
            yield encode_proplist(c.props)

    def list_values(self, node: Node, name: str) -> Iterator[tuple[int, list[str] | None]]:
        """LIST's entries (spec §4.4, §5.5): per child in order, the values of its first
        property called *name* that has at least one value, or None."""
        for c, cn in self.children_of(node):
            yield c, list_value(cn.props, name)

    def preorder(self) -> Iterator[Directory]:
        """Every directory, depth-first pre-order from the root (spec §9.4), in memory
        bounded by the tree's depth."""
        root = self.get(0)
        if root is None:
            return
        for oid, n in bounded_preorder(root, self.children_of, lambda n: n.children, len(self)):
            yield Directory(NiId(oid, n.instance), n.props, n.parent, n.children)

    def readall_pieces(self) -> Iterator[bytes] | None:
        """:meth:`preorder` already encoded for READALL, when this source can do it
        without decoding (None: the caller encodes :meth:`preorder`)."""
        return None

    def statistics(self) -> Proplist:
        """What STATISTICS adds about this source (none by default)."""
        return []

    def snapshot(self, checksum: int) -> NodeSource:
        """A read-only view of this source as it is now, unchanged by later writes, for a
        stream (READALL, LIST and LISTALL of a big directory) that must read one
        consistent state while writes go on ("readers never hold writers", issue 18).
        *checksum* is the domain's checksum now (a view whose store keeps its own
        ignores it). The view must be :meth:`close`-d."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what a :meth:`snapshot` view holds (a no-op for a live source)."""


class MemorySource(NodeSource, dict[int, Node]):
    """Every directory resident, as a dict of :class:`Node` (built from an ``Image``).

    Its :meth:`snapshot` views are copy-on-write: a directory's state is copied into
    each open view just before it first changes (the service pins a node before
    mutating it, and every insertion or removal goes through this mapping), so a view
    costs memory for what changes while it is open, never a copy of the domain."""

    def __init__(self, image: Image | None = None) -> None:
        dict.__init__(self)
        self._freed: dict[int, int] = {}
        self._checksum: int | None = None
        self._meta: dict[str, int] = {}
        #: open snapshot views, told of every change before it is made
        self._views: list[MemoryView] = []
        if image is not None:
            # 100,000 nodes built with the cyclic GC on took 12 s (it ran over and over
            # across the whole image); nothing here makes cycles
            with no_gc():
                for oid, rec in image.records.items():
                    self[oid] = Node(rec.instance, rec.parent, rec.props,
                                     list(image.children.get(oid, ())))
            self._freed = dict(image.freed)
            self._checksum = image.checksum
            self._meta = dict(image.meta)

    get = dict.get  # type: ignore[assignment]
    __getitem__ = dict.__getitem__
    __contains__ = dict.__contains__
    __len__ = dict.__len__
    items = dict.items  # type: ignore[assignment]

    def _before(self, oid: int) -> None:
        """Directory *oid* is about to change: every open view keeps its state now."""
        node = dict.get(self, oid)
        for v in self._views:
            v.keep(oid, node)

    def pin(self, oid: int, node: Node) -> None:
        if self._views:
            self._before(oid)

    def __setitem__(self, oid: int, node: Node) -> None:
        if self._views:
            self._before(oid)
        dict.__setitem__(self, oid, node)

    def __delitem__(self, oid: int) -> None:
        if self._views:
            self._before(oid)
        dict.__delitem__(self, oid)

    def pop(self, oid: int, default: Node | None = None) -> Node | None:  # type: ignore[override]
        if self._views and oid in self:
            self._before(oid)
        return dict.pop(self, oid, default)

    def snapshot(self, checksum: int) -> MemoryView:
        view = MemoryView(self, checksum)
        self._views.append(view)
        return view

    def highest(self) -> int:
        return max(self, default=-1)

    def gaps(self) -> list[int]:
        return [i for i in range(self.highest()) if i not in self]

    def freed(self) -> dict[int, int]:
        return self._freed

    def stored_checksum(self) -> int | None:
        return self._checksum

    def stored_meta(self, key: str) -> int | None:
        return self._meta.get(key)

    def instances(self) -> Iterator[tuple[int, int]]:
        return ((k, n.instance) for k, n in self.items())


class MemoryView(NodeSource):
    """A :meth:`MemorySource.snapshot`: the live directories, except those changed since
    the view was taken, whose earlier state the source handed over (:meth:`keep`). Every
    node it gives out is a copy (its own child list), so a walk along a child list is
    never changed under it."""

    def __init__(self, live: MemorySource, checksum: int) -> None:
        self._live: MemorySource | None = live
        #: directory → its state when the view was taken (None: it did not exist)
        self._kept: dict[int, Node | None] = {}
        self._checksum = checksum
        self._len = len(live)

    def keep(self, oid: int, node: Node | None) -> None:
        """*oid* is about to change; *node* is its current state (None: absent)."""
        if oid not in self._kept:
            self._kept[oid] = None if node is None else Node(
                node.instance, node.parent, node.props, list(node.children))

    def get(self, oid: int, default: Node | None = None) -> Node | None:
        if oid in self._kept:
            return self._kept[oid] or default
        live = self._live
        n = dict.get(live, oid) if live is not None else None
        if n is None:
            return default
        # props are replaced on a write, never changed in place: sharing them is safe
        return Node(n.instance, n.parent, n.props, list(n.children))

    def __contains__(self, oid: object) -> bool:
        return isinstance(oid, int) and self.get(oid) is not None

    def __len__(self) -> int:
        return self._len

    def highest(self) -> int:
        live = self._live
        top = max((k for k in live if k not in self._kept), default=-1) if live else -1
        kept = [k for k, n in self._kept.items() if n is not None]
        return max(top, *kept) if kept else top

    def stored_checksum(self) -> int | None:
        return self._checksum

    def close(self) -> None:
        live, self._live = self._live, None
        if live is not None and self in live._views:
            live._views.remove(self)
        self._kept = {}
