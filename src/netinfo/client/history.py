"""Reading a domain's change history (issue 24) over the history program, and what a
directory looked like at a point in it.

:func:`query` asks one page (``wire.history``); :func:`entries` pages through every
match. :class:`Past` answers "what was directory D, and which were its children, right
after change B" from the journal and the domain as it is now: a directory's state after
B is the ``before`` of the first later change that touched it, or its present state when
none did; a child list is the present one with the later CREATEs and DESTROYs under it
undone, newest first (each DESTROY's entry knows where the child stood).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..errors import NiError, Status
from ..model import NiId, first_values
from ..wire.history import (
    HISTORY_PROG,
    HISTORY_VERS,
    NO_DIR,
    PROC_QUERY,
    WHOLE_TREE,
    Entry,
    Page,
    Query,
    State,
    decode_page,
    encode_query,
)
from ..wire.protocol import Proc
from .core import Client

#: entries a call asks for at a time
PAGE = 500
MASK32 = 0xFFFFFFFF


async def _conn(client: Client) -> Any:
    """The connection history calls go to: the master's where the client knows it (the
    journal whose callers and times are the writes' own)."""
    master = getattr(client, "master_connection", None)
    return await master() if master is not None else client.conn


async def query(client: Client, q: Query) -> Page:
    """One page of entries. :raises NiError: the server's status (NI_PERM: anonymous)."""
    conn = await _conn(client)
    u = await conn.call(HISTORY_PROG, HISTORY_VERS, PROC_QUERY, encode_query(q),
                        client.auth, client.timeout)
    status, page = decode_page(bytes(u.data[u.pos:]))
    if status != 0 or page is None:
        raise NiError(Status(status) if status in Status._value2member_map_ else Status.FAILED)
    return page


async def entries(client: Client, q: Query, most: int | None = None) -> AsyncIterator[Entry]:
    """Every entry matching *q*, page after page (at most *most*)."""
    n = 0
    q = q._replace(limit=min(q.limit, PAGE) if q.limit else PAGE)
    while True:
        page = await query(client, q)
        for e in page.entries:
            yield e
            n += 1
            if most is not None and n >= most:
                return
        if not page.more:
            return
        q = q._replace(cursor=page.cursor)


async def entry(client: Client, seq: int) -> Entry | None:
    """Entry *seq*, or None (trimmed, never made, or not the caller's to read)."""
    page = await query(client, Query(min_seq=seq, max_seq=seq, limit=1))
    return page.entries[0] if page.entries else None


async def last_seq_at(client: Client, until: int) -> int:
    """The sequence number of the last change made before *until* (µs); 0: none kept."""
    page = await query(client, Query(until=until, limit=1))
    return page.entries[0].seq if page.entries else 0


def dir_of(e: Entry, oid: int) -> tuple[State | None, State | None] | None:
    """(before, after) of *oid* in *e*, or None when *e* did not touch it."""
    for d in e.touched:
        if d.id == oid:
            return d.before, d.after
    return None


def changed(before: State | None, after: State | None) -> bool:
    """A change of existence or of properties (not of the instance alone, which every
    CREATE and DESTROY gives the parent)."""
    if before is None or after is None:
        return before is not after
    return list(before.props) != list(after.props) or before.parent != after.parent


def _name(st: State) -> str | None:
    names = first_values(st.props, "name")
    return names[0] if names else None


class Past:
    """The domain as it was right after change *boundary* (0: before every change kept)."""

    def __init__(self, client: Client, boundary: int) -> None:
        self.client = client
        self.boundary = boundary
        self._later: dict[int, list[Entry]] = {}

    async def later(self, oid: int) -> list[Entry]:
        """The changes after the boundary that touched *oid*, oldest first."""
        got = self._later.get(oid)
        if got is None:
            got = [e async for e in entries(self.client, Query(
                oldest_first=True, dir=oid, min_seq=self.boundary + 1))]
            self._later[oid] = got
        return got

    async def state(self, oid: int) -> State | None:
        """Directory *oid* then (None: it did not exist)."""
        for e in await self.later(oid):
            st = dir_of(e, oid)
            if st is not None:
                return st[0]
        try:
            nid, props = await self.client.read(oid)
            parent = (await self.client.parent(oid))[0] if oid else 0
        except NiError as err:
            if err.status == Status.BADID:
                return None
            raise
        return State(nid.instance, parent, -1, list(props))

    async def children(self, oid: int) -> list[int]:
        """Directory *oid*'s child list then, in order."""
        try:
            kids = list((await self.client.children(oid))[0])
        except NiError as err:
            if err.status != Status.BADID:
                raise
            kids = []
        for e in reversed(await self.later(oid)):
            if e.proc == Proc.CREATE and e.dir != oid and e.dir in kids:
                kids.remove(e.dir)
            elif e.proc == Proc.DESTROY and e.dir != oid:
                st = dir_of(e, e.dir)
                if st is not None and st[0] is not None and st[0].parent == oid:
                    pos = st[0].position
                    kids.insert(pos if pos >= 0 else len(kids), e.dir)
        return kids

    async def resolve(self, components: list[str]) -> int | None:
        """The directory at that path then (names compared with each one's first
        ``name``), walking down from the root through :meth:`children`."""
        oid = 0
        for name in components:
            for kid in await self.children(oid):
                st = await self.state(kid)
                if st is not None and _name(st) == name:
                    oid = kid
                    break
            else:
                return None
        return oid

    async def find(self, path: str, components: list[str]) -> int | None:
        """:meth:`resolve`, trying first the directory at that path now and the ones the
        journal names at that path (a big parent's children are then never all read)."""
        candidates: list[int] = []
        try:
            candidates.append((await self.client.pathsearch(path))[0])
        except NiError:
            pass
        async for e in entries(self.client, Query(path=path)):
            if e.path == path and e.dir != NO_DIR and e.dir not in candidates:
                candidates.append(e.dir)
            if len(candidates) > 16:
                break
        for oid in candidates:
            if await self._is_at(oid, components):
                return oid
        return await self.resolve(components)

    async def _is_at(self, oid: int, components: list[str]) -> bool:
        for name in reversed(components):
            st = await self.state(oid)
            if st is None or _name(st) != name:
                return False
            oid = st.parent
        return oid == 0


async def conflicts(client: Client, targets: list[Entry],
                    reverting: set[int]) -> list[tuple[int, int, Entry]]:
    """The later changes (not among *reverting*) to a directory one of *targets*
    changed: (target's seq, directory, the later change), the first per directory."""
    found: list[tuple[int, int, Entry]] = []
    for e in targets:
        for d in e.touched:
            if not changed(d.before, d.after):
                continue
            async for later in entries(client, Query(oldest_first=True, dir=d.id,
                                                    min_seq=e.seq + 1)):
                st = dir_of(later, d.id)
                if later.seq in reverting or st is None or not changed(*st):
                    continue
                found.append((e.seq, d.id, later))
                break
    return found


class CannotRevert(Exception):
    """A change that cannot be put back with NETINFO writes (a whole new tree)."""


async def revert_one(client: Client, e: Entry) -> None:
    """Put back what change *e* did, as new writes through *client* (spec §4.3): DESTROY
    what it created (children first), CREATE what it destroyed with its old number, the
    next instance (spec §5.3) and its old position, WRITE back the old proplist (old
    property order) of what it changed. A directory already as it should be is left.

    :raises CannotRevert: *e* replaced the whole tree. :raises NiError:."""
    if e.proc == WHOLE_TREE:
        raise CannotRevert(f"change {e.seq} replaced the whole tree: restore a dump instead")
    made = [d for d in e.touched if d.before is None and d.after is not None]
    gone = [d for d in e.touched if d.before is not None and d.after is None]
    edited = [d for d in e.touched if d.before is not None and d.after is not None
              and changed(d.before, d.after)]
    for d in reversed(made):
        try:
            child = await client.self_id(d.id)
        except NiError as err:
            if err.status == Status.BADID:
                continue   # already gone
            raise
        parent = await client.self_id((await client.parent(d.id))[0])
        await client.destroy(parent, child)
    for d in gone:
        b = d.before
        assert b is not None
        parent = await client.self_id(b.parent)
        where = b.position if b.position >= 0 else MASK32
        await client.create(parent, list(b.props), where,
                            NiId(d.id, (b.instance + 1) & MASK32))
    for d in edited:
        b = d.before
        assert b is not None
        await client.write(await client.self_id(d.id), list(b.props))


__all__ = ["conflicts", "revert_one", "CannotRevert", "query", "entries", "entry",
           "last_seq_at", "dir_of", "changed", "Past", "PAGE"]
