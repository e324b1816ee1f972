"""Dumping and loading domains: what nidump and niload do, as a library (tools §2).

The tools (``cli/nidump``, ``cli/niload``) and the web manager both call these; they only
differ in where messages and progress go. Nothing here prints: messages go to a *write*
callable (text with its newlines), progress to a factory of objects with ``advance()`` and
``close()``, and failures are raised as :class:`LoadError` carrying the original's wording
(tools §2.7) and the error underneath.

* Reading: :func:`read_subtree` (``nidump -r``, the pipelined level-by-level walk of
  :mod:`netinfo.client.walk`) and :func:`read_table` (a flat format's table, one LISTALL).
* Flat loads (tools §2.6, §2.7): :class:`FlatLoad` / :func:`load_flat`. The table is read
  once (one LIST of names, then READs of just the children the input will touch, all
  pipelined), the run is planned locally with the pure helpers of :mod:`netinfo.client.flat`,
  and the CREATE and WRITE calls go out back to back, each carrying the instance its
  directory will have by then (every successful write adds 1, spec §5.3). A wrong
  prediction (NI_STALE or NI_BADID: somebody else wrote meanwhile) makes the rest of the
  input be planned again from a fresh read; re-applying a record that already went
  through gives the same directory, so nothing is lost or duplicated. Input with no
  records never touches the domain (tools §2.7), and input with a line that does not
  parse is refused whole (:class:`~netinfo.client.flat.FormatError`, nothing written).
* Raw loads (tools §2.7 "Raw load"): :func:`raw_load` replaces a directory so that a
  failure part way leaves the old subtree (check, add, remove: see the comment above
  :class:`LoadError`'s raw-load section); :func:`check_raw_input` refuses empty input
  unless asked (a failed ``nidump -r /nosuch > f`` leaves a 0-byte file).
"""

from __future__ import annotations

import asyncio
import bisect
from array import array
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ..errors import NetInfoError, NiError, Status, TooLong, error_text
from ..model import (
    NI_INDEX_NULL,
    NiId,
    Proplist,
    first_values,
    format_component,
    parse_path,
    split_unescaped,
)
from ..wire.limits import BIG_LIST_MAX, MAX_DEPTH
from ..wire.protocol import Proc
from .core import Client, ListAllStream
from .flat import (
    FORMATS,
    UPDATE_MESSAGES,
    Note,
    iter_loaded,
    plan_update,
    record_key,
    record_path,
    record_text,
    survey,
)
from .raw import (
    FormatError,
    RawNode,
    raw_children_close,
    raw_children_open,
    raw_close,
    raw_from_text,
    raw_open,
)
from .verbs import create_path
from .walk import CALL_ERRORS, WINDOW, TreeNode, pipelined, walk

__all__ = [
    "RETRIES", "LoadError", "Progress", "find_dir", "to_raw", "read_subtree",
    "read_table", "table_pieces", "write_subtree", "destroy_calls", "run_calls",
    "first_error", "destroy_tree", "Entry",
    "NameIndex", "Step", "plan_records", "step_calls", "step_requests", "FlatLoad", "load_flat",
    "create_calls", "raw_load", "check_raw_input", "path_depth", "tree_depth", "path_names",
    "names_path",
]

#: How many times a run whose instance predictions failed is planned again.
RETRIES = 5
#: Statuses that mean "the picture we planned against is out of date": plan again.
_REPLAN = (Status.STALE, Status.BADID)
#: Every failure a call can end in (NiError, communication errors, OSError).
_ERRORS = CALL_ERRORS


class Progress(Protocol):
    """What a progress factory returns (the tools' terminal bar, or nothing at all)."""

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[int], Progress]


class LoadError(NetInfoError):
    """A load stopped: *what* is the original's wording (``can't update NetInfo
    /users/bob``, ``Can't create directory``, ...), *err* the failure underneath, *state*
    what a raw load left in place when that is not simply the old subtree."""

    def __init__(self, what: str, err: BaseException, state: str = "") -> None:
        super().__init__(f"{what}: {err}")
        self.what = what
        self.err = err
        self.state = state

    def line(self) -> str:
        """The message as niload prints it: ``<what>: <reason>[ (<state>)]``."""
        state = f" ({self.state})" if self.state else ""
        return f"{self.what}: {error_text(self.err)}{state}"


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(factory: ProgressFactory | None, total: int) -> Progress:
    return factory(total) if factory is not None else _NoProgress()


# -- reading -----------------------------------------------------------------------------------

async def find_dir(c: Client, path: str) -> int | None:
    """The directory at *path*, or None when it does not exist (nidump: exit 0, §2.1)."""
    try:
        return (await c.pathsearch(path)).object
    except NiError as e:
        if e.status == Status.NODIR:
            return None
        raise


def to_raw(nodes: dict[int, TreeNode], top: int) -> RawNode:
    """A walked subtree as a :class:`RawNode` tree (iterative: any depth)."""
    made = {oid: RawNode(list(n.props or []), []) for oid, n in nodes.items()}
    for oid, n in nodes.items():
        made[oid].children = [made[k] for k in n.kids]
    return made[top]


async def read_subtree(c: Client, path: str,
                       progress: Callable[[int], None] | None = None) -> RawNode | None:
    """``nidump -r``: the subtree at *path*, or None when it does not exist (or went away
    during the walk). *progress(n)* is told of directories as they are read."""
    oid = await find_dir(c, path)
    if oid is None:
        return None
    try:
        nodes = await walk(c, oid, progress=progress)
    except NiError as e:
        if e.status == Status.BADID:   # the directory went away after the lookup
            return None
        raise
    return to_raw(nodes, oid)


async def read_table(c: Client, fmt: str) -> tuple[bool, list[Proplist]]:
    """A flat format's records (the directory itself for a non-table format such as
    resolv.conf): (whether the directory exists, records)."""
    found, pieces = await table_pieces(c, fmt)
    records: list[Proplist] = []
    async for piece in pieces:
        records += piece
    return found, records


#: Tables of up to this many children are read with one LISTALL held whole; bigger ones
#: with a LISTALL taken as it arrives (:func:`table_pieces`), so no reply is held whole.
LISTALL_TABLE = 20_000
#: Directories read per window by the streaming dumps.
DUMP_WINDOW = 2_000


async def table_pieces(c: Client, fmt: str) -> tuple[bool, AsyncIterator[list[Proplist]]]:
    """A flat format's records, a piece at a time, in child order (tools §2.1): whether
    the directory exists, and the pieces. A table of up to :data:`LISTALL_TABLE`
    children is one LISTALL (one piece); a bigger one is one LISTALL decoded as it
    arrives (:meth:`~netinfo.client.core.Client.listall_stream`), a piece per part of
    the reply: a million users are never all in memory, and the server sends them in
    one streamed reply instead of answering a READ each (issue 20: 83 s at 1M with
    READs).

    :raises NiError: a failure other than the table being missing.
    """
    spec = FORMATS[fmt]
    oid = await find_dir(c, spec.directory)
    if oid is None:
        return False, _pieces_of([])
    try:
        if not spec.table:
            return True, _pieces_of([[(await c.read(oid))[1]]])
        kids = (await c.children(oid))[0]
        if len(kids) <= LISTALL_TABLE:
            return True, _pieces_of([list((await c.listall(oid))[1])])
        del kids
        stream = await c.listall_stream(oid)
    except NiError as e:
        if e.status != Status.BADID:
            raise
        return False, _pieces_of([])
    return True, _streamed(stream)


async def _pieces_of(pieces: list[list[Proplist]]) -> AsyncIterator[list[Proplist]]:
    for piece in pieces:
        yield piece


async def _streamed(stream: ListAllStream) -> AsyncIterator[list[Proplist]]:
    async with stream:
        async for piece in stream:
            yield piece


async def write_subtree(c: Client, path: str, write: Callable[[str], Any], *,
                        escape_backslashes: bool = True,
                        progress: Callable[[int], None] | None = None) -> bool:
    """``nidump -r`` as it reads: the subtree at *path* in the raw layout (spec §2.3),
    written through *write* depth first while the next directories are read, so memory
    is bounded by the tree's depth times :data:`DUMP_WINDOW`, not its size. The text is
    :func:`~netinfo.client.flat.raw_to_text` of the tree read. Returns False (nothing
    written) when *path* does not exist; a directory that goes away during the dump is
    left out.

    :raises NiError: any other failure. :raises CALL_ERRORS: communication failures.
    """
    oid = await find_dir(c, path)
    if oid is None:
        return False
    top = (await _read_window(c, [oid]))
    if not top:
        return False
    esc = escape_backslashes
    # One frame per directory whose children are being written: its children's
    # numbers, where the next window starts, the window read and not yet written, the
    # directory's indent, and whether a sibling brace waits for its "," or newline.
    frames: list[_Frame] = []

    def enter(props: Proplist, kids: array, indent: int) -> None:
        write(raw_open(props, indent, esc))
        if progress is not None:
            progress(1)
        if kids:
            write(raw_children_open(indent))
            frames.append(_Frame(kids, indent))
        else:
            write(raw_close(indent))
            if frames:
                frames[-1].open_brace = True

    _, props, kids = top[0]
    enter(props, kids, 0)
    if not frames:
        write("\n")
    while frames:
        f = frames[-1]
        if not f.ready and f.next < len(f.kids):
            f.ready = deque(await _read_window(c, f.kids[f.next:f.next + DUMP_WINDOW]))
            f.next += DUMP_WINDOW
            continue
        if f.ready:
            _, props, kids = f.ready.popleft()
            if f.open_brace:
                write(",\n")
                f.open_brace = False
            enter(props, kids, f.indent + 4)
            continue
        frames.pop()
        write(("\n" if f.open_brace else "") + raw_children_close(f.indent))
        if frames:
            frames[-1].open_brace = True
        else:
            write("\n")
    return True


@dataclass
class _Frame:
    kids: array
    indent: int
    next: int = 0
    ready: deque[tuple[int, Proplist, array]] = field(default_factory=deque)
    open_brace: bool = False


async def _read_window(c: Client, oids: Iterable[int]) -> list[tuple[int, Proplist, array]]:
    """READ and CHILDREN of *oids*, pipelined: (id, properties, children) of those still
    there (NI_BADID: gone, left out)."""
    ids = list(oids)
    calls: list[Callable[[], Awaitable[Any]]] = []
    for oid in ids:
        calls += [partial(c.read, oid), partial(c.children, oid)]
    results = await run_calls(calls)
    out = []
    for n, oid in enumerate(ids):
        read, kids = results[2 * n], results[2 * n + 1]
        bad = read if isinstance(read, BaseException) else \
            kids if isinstance(kids, BaseException) else None
        if bad is not None:
            if isinstance(bad, NiError) and bad.status == Status.BADID:
                continue
            raise bad
        out.append((oid, read[1], array("I", kids[0])))
    return out


# -- destroying subtrees, pipelined ------------------------------------------------------------

def destroy_calls(c: Client, nodes: dict[int, TreeNode], top: int, *, bumped: int = 0,
                  parent: NiId | None = None) -> list[Callable[[], Awaitable[Any]]]:
    """DESTROY calls for the walked subtree at *top*, leaves first, each with the
    instances its parent and itself will have by then (spec §5.3: destroying a child adds
    1 to the parent's instance; the child keeps the instance its own last destroy left).

    Without *parent* only *top*'s descendants go (top stays); with it, *top* goes too.
    *bumped*: writes to *top* issued before these calls.
    """
    gone: dict[int, int] = {}          # directory → children destroyed so far
    calls: list[Callable[[], Awaitable[Any]]] = []

    def inst(oid: int) -> int:
        return nodes[oid].id.instance + gone.get(oid, 0) + (bumped if oid == top else 0)

    def destroy(p: NiId, child: NiId) -> Callable[[], Awaitable[Any]]:
        return lambda: c.destroy(p, child)

    # Iterative post-order: (directory, its parent, index of the next child to visit).
    stack: list[list[int]] = [[top, -1, 0]]
    while stack:
        frame = stack[-1]
        oid, par, i = frame
        kids = nodes[oid].kids
        if i < len(kids):
            frame[2] += 1
            stack.append([kids[i], oid, 0])
            continue
        stack.pop()
        if oid == top:
            if parent is not None:
                calls.append(destroy(parent, NiId(oid, inst(oid))))
            continue
        calls.append(destroy(NiId(par, inst(par)), NiId(oid, inst(oid))))
        gone[par] = gone.get(par, 0) + 1
    return calls


async def run_calls(calls: list[Callable[[], Awaitable[Any]]],
                    progress: Progress | None = None) -> list[Any]:
    """:func:`~netinfo.client.walk.pipelined`, advancing *progress* per answer."""
    bar = progress
    return await pipelined(calls, WINDOW, (lambda i: bar.advance()) if bar else None)


async def _run_shown(calls: list[Callable[[], Awaitable[Any]]],
                     factory: ProgressFactory | None) -> list[Any]:
    """:func:`run_calls` with a progress object from *factory* for as many calls."""
    bar = _progress(factory, len(calls))
    try:
        return await run_calls(calls, bar)
    finally:
        bar.close()


def first_error(results: list[Any]) -> tuple[int, BaseException] | None:
    """The first failed call's index and exception, or None."""
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            return i, r
    return None


async def destroy_tree(c: Client, oid: int) -> int:
    """Destroy directory *oid* and everything below it (``niload -d``); returns how many
    directories went.

    :raises NiError: the first failure. :raises CALL_ERRORS: communication failures.
    """
    for attempt in range(RETRIES + 1):
        parent_no, _ = await c.parent(oid)
        if parent_no == oid:
            raise NiError(Status.UNRELATED)   # the root cannot be removed
        parent = await c.self_id(parent_no)
        nodes = await walk(c, oid, with_props=False)
        bad = first_error(await run_calls(destroy_calls(c, nodes, oid, parent=parent)))
        if bad is None:
            return len(nodes)
        err = bad[1]
        if attempt == RETRIES or not (isinstance(err, NiError) and err.status in _REPLAN):
            raise err
        try:
            await c.self_id(oid)
        except NiError as e:
            if e.status == Status.BADID:
                return len(nodes)   # gone after all
            raise
    raise AssertionError("unreachable")


# -- flat files (tools §2.6, §2.7) -------------------------------------------------------------

@dataclass
class Entry:
    """One child of the table in the local picture the run is planned against."""

    oid: int | None                   #: None: made by this run (its CREATE is a step)
    names: list[str]                  #: current values of its name property
    props: Proplist | None = None     #: current properties, when read
    instance: int | None = None       #: instance when read
    error: BaseException | None = None  #: why it could not be read
    writes: int = 0                   #: writes planned on it so far
    create_step: int | None = None    #: the step that creates it (oid None)


class NameIndex:
    """name value → positions of the entries holding it, in child order, so that the
    first-match lookup of tools §2.7 rule 3 costs a dictionary probe."""

    def __init__(self) -> None:
        self.at: dict[str, list[int]] = {}

    def add(self, pos: int, names: list[str]) -> None:
        for n in dict.fromkeys(names):
            bisect.insort(self.at.setdefault(n, []), pos)

    def remove(self, pos: int, names: list[str]) -> None:
        for n in dict.fromkeys(names):
            lst = self.at.get(n)
            if lst:
                i = bisect.bisect_left(lst, pos)
                if i < len(lst) and lst[i] == pos:
                    del lst[i]

    def first(self, name: str) -> int | None:
        lst = self.at.get(name)
        return lst[0] if lst else None


@dataclass
class Step:
    """What one input record does (tools §2.7)."""

    record: int                      #: index in the input
    path: str | None                 #: ``<table>/<name>``; None: no name
    action: str                      #: "create", "write", "merge" or "ignore"
    entry: int = -1                  #: position of the target entry
    props: Proplist = field(default_factory=list)
    seq: int = 0                     #: earlier writes to the same directory in this run


def _names(props: Proplist) -> list[str]:
    return list(first_values(props, "name") or [])


def plan_records(records: list[Proplist], entries: list[Entry], index: NameIndex,
                 table: str, merge: bool) -> tuple[list[Step], tuple[int, str, BaseException]
                                                   | None]:
    """Replay tools §2.7 rules 1-6 over the local picture, record by record. Returns the
    steps, and (record, path, error) when a record hits a child that could not be read
    (planning stops there: rule 7)."""
    steps: list[Step] = []
    creates = 0
    for i, rec in enumerate(records):
        key = record_key(rec)
        if key is None:
            steps.append(Step(i, None, "ignore"))
            continue
        path = record_path(table, key)
        pos = index.first(key)
        if pos is None:
            action, props = plan_update(None, rec, merge)
            pos = len(entries)
            entries.append(Entry(None, _names(props), props, create_step=len(steps)))
            index.add(pos, entries[pos].names)
            steps.append(Step(i, path, action, pos, props, creates))
            creates += 1
            continue
        e = entries[pos]
        if e.error is not None or e.props is None:
            return steps, (i, path, e.error or NiError(Status.BADID))
        action, props = plan_update(e.props, rec, merge)
        steps.append(Step(i, path, action, pos, props, e.writes))
        e.writes += 1
        new_names = _names(props)
        if new_names != e.names:
            index.remove(pos, e.names)
            index.add(pos, new_names)
            e.names = new_names
        e.props = props
    return steps, None


def step_calls(c: Client, steps: list[Step], entries: list[Entry],
               table: NiId) -> tuple[list[Callable[[], Awaitable[Any]]], list[int]]:
    """The CREATE/WRITE calls of *steps*, with predicted instances; and for each call
    the index of its step."""
    loop = asyncio.get_running_loop()
    made: dict[int, asyncio.Future[NiId]] = {}   # entry → its CREATE's answer
    needed = {s.entry for s in steps if s.action in ("write", "merge")
              and entries[s.entry].oid is None}
    calls: list[Callable[[], Awaitable[Any]]] = []
    which: list[int] = []
    for n, s in enumerate(steps):
        if s.action == "ignore":
            continue
        e = entries[s.entry]
        if s.action == "create":
            fut = None
            if s.entry in needed:
                fut = made[s.entry] = loop.create_future()
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            calls.append(_create_call(c, NiId(table.object, table.instance + s.seq),
                                      s.props, fut))
        elif e.oid is not None:
            assert e.instance is not None
            calls.append(_write_call(c, NiId(e.oid, e.instance + s.seq), s.props))
        else:
            calls.append(_write_new_call(c, made[s.entry], s.seq, s.props))
        which.append(n)
    return calls, which


def step_requests(steps: list[Step], entries: list[Entry], table: NiId
                  ) -> list[tuple[int, tuple[Any, ...]]] | None:
    """The CREATE/WRITE calls of *steps* as ``(proc, args)`` for
    :meth:`~netinfo.client.core.Client.call_window`, one per step that is not "ignore";
    None when a write goes to a directory this run creates (it needs that CREATE's
    answer first: :func:`step_calls`)."""
    out: list[tuple[int, tuple[Any, ...]]] = []
    tid = table.object
    for s in steps:
        if s.action == "ignore":
            continue
        if s.action == "create":
            out.append((Proc.CREATE, (NiId(tid, table.instance + s.seq), s.props,
                                      NI_INDEX_NULL, None)))
            continue
        e = entries[s.entry]
        if e.oid is None or e.instance is None:
            return None
        out.append((Proc.WRITE, (NiId(e.oid, e.instance + s.seq), s.props)))
    return out


async def _create_into(c: Client, parent: Callable[[], Awaitable[NiId]], props: Proplist,
                       fut: asyncio.Future[NiId] | None) -> NiId:
    """CREATE under the directory *parent()* gives; settle *fut* (when given) with the
    new child's id, or with the failure, so that calls waiting for it go on or fail."""
    try:
        child, _ = await c.create(await parent(), props)
    except BaseException as e:
        if fut is not None and not fut.done():
            fut.set_exception(e)
        raise
    if fut is not None and not fut.done():
        fut.set_result(child)
    return child


def _create_call(c: Client, parent: NiId, props: Proplist,
                 fut: asyncio.Future[NiId] | None) -> Callable[[], Awaitable[Any]]:
    async def known() -> NiId:
        return parent
    return lambda: _create_into(c, known, props, fut)


def _write_call(c: Client, d: NiId, props: Proplist) -> Callable[[], Awaitable[Any]]:
    return lambda: c.write(d, props)


def _write_new_call(c: Client, made: asyncio.Future[NiId], seq: int,
                    props: Proplist) -> Callable[[], Awaitable[Any]]:
    # The first write to a child made by this run waits for its CREATE's answer; the
    # child's instance is the one CREATE returned, plus the writes before this one.
    async def call() -> NiId:
        child = await made
        return await c.write(NiId(child.object, child.instance + seq), props)
    return call


#: Tables of up to this many children are pictured with one LIST of names; bigger ones
#: with a LOOKUP per input key (:meth:`FlatLoad.picture`).
LIST_TABLE = 20_000


async def _holders(c: Client, table: NiId, name: str) -> list[int]:
    """The children of *table* holding *name* as a name (LOOKUP; NI_NODIR, spec §4.4's
    answer when none does, is an empty list)."""
    try:
        return (await c.lookup(table, "name", name))[0]
    except NiError as e:
        if e.status == Status.NODIR:
            return []
        raise


def _holding(entries: list[Entry], keys: set[str]) -> set[int | None]:
    """The entries whose names hold one of *keys* (those the plan can touch)."""
    return {ent.oid for ent in entries if not keys.isdisjoint(ent.names)}


class NameFilter:
    """Names that may be held by the table's children: a Bloom filter of 32 bits a name
    for *capacity* names (4 MiB for a million; five probes, about one false "maybe" in
    15,000 when full), never a false "no". Lets a load skip the LOOKUP of a key that no
    child can hold (:meth:`FlatLoad.picture`); a false "maybe" costs that LOOKUP, and
    stops the stream of pieces (:meth:`FlatLoad.fast_plan`) for one piece: hence the
    low rate (16 bits and three probes, one in 500, stopped most pieces of 2,000)."""

    def __init__(self, capacity: int) -> None:
        bits = 1 << 16
        while bits < 32 * capacity and bits < 1 << 30:
            bits <<= 1
        self.mask = bits - 1
        self.bits = bytearray(bits >> 3)

    def _spots(self, name: str) -> tuple[int, int, int, int, int]:
        h = hash(name) & 0xFFFFFFFFFFFFFFFF
        mask = self.mask
        a = h & mask
        b = ((h >> 32) ^ ((h * 0x9E3779B1) >> 13)) | 1   # double hashing: a + i·b
        return a, (a + b) & mask, (a + 2 * b) & mask, (a + 3 * b) & mask, (a + 4 * b) & mask

    def add(self, names: Iterable[str]) -> None:
        bits = self.bits
        for n in names:
            for b in self._spots(n):
                bits[b >> 3] |= 1 << (b & 7)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        bits = self.bits
        return all(bits[b >> 3] & (1 << (b & 7)) for b in self._spots(name))


#: Calls a flat load keeps in flight (:meth:`FlatLoad._stream`): the server batches
#: what it has read (one commit per batch), and has a window's worth to answer while
#: the load plans its next piece.
LOAD_WINDOW = 2_000


@dataclass
class _Planned:
    """A piece planned by :meth:`FlatLoad.fast_plan`: its records, steps and calls."""

    records: list[Proplist]
    steps: list[Step]
    requests: list[tuple[int, tuple[Any, ...]]]
    #: answers taken so far, and the first failed one (its index among the calls)
    got: int = 0
    bad: tuple[int, BaseException] | None = None


class _Ahead:
    """The pieces of a load, parsed one ahead in a worker thread: :meth:`take` waits
    for the next one (on the event loop's thread: a stream of pieces plans the next
    one while its calls are out), :meth:`take_async` lets the loop run meanwhile."""

    def __init__(self, pieces: Iterable[list[Proplist]]) -> None:
        self._it = iter(pieces)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="niload-parse")
        self._next: Future[list[Proplist] | None] | None = self._pool.submit(
            next, self._it, None)

    def take(self) -> list[Proplist] | None:
        """The next piece (None: the input is done); the one after it is started."""
        fut = self._next
        if fut is None:
            return None
        records = fut.result()
        self._next = None if records is None else self._pool.submit(next, self._it, None)
        return records

    async def take_async(self) -> list[Proplist] | None:
        if self._next is not None:
            await asyncio.wrap_future(self._next)
        return self.take()

    def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


class FlatLoad:
    """One flat-format load into a domain (``niload <format>``, tools §2.7).

    *write* gets the ``-v`` text (and the no-name notice) with its newlines; *progress*
    makes a progress object for a number of calls. Failures raise :class:`LoadError` with
    niload's wording ("can't update NetInfo <t>/<name>", ...).
    """

    def __init__(self, c: Client, fmt: str | None, *, merge: bool = False,
                 delete: bool = False, verbose: bool = False,
                 write: Callable[[str], Any] | None = None,
                 progress: ProgressFactory | None = None, table: str | None = None) -> None:
        self.c = c
        #: the directory loaded into: the format's, or *table* (``niload ldif`` loads the
        #: records of each directory its input names, one FlatLoad each)
        self.table = table if table is not None else FORMATS[fmt or ""].directory
        self.merge = merge
        self.delete = delete
        self.verbose = verbose
        self.write = write or (lambda text: None)
        self.progress = progress
        #: what the run did: how many records were created, replaced, merged
        self.counts: dict[str, int] = {}
        #: children of the table (counted at the start and by each LIST, then grown by
        #: this run's creates); whether the run has moved to LOOKUP pictures
        self.size = 0
        self.big: bool | None = None
        #: whether a record of the piece being planned brings more than one name
        self.many_names = False
        #: every name the table's children can hold, while this run knows them: the
        #: names LISTed at its start (a table of at most LIST_TABLE children) and those
        #: its own writes brought; and the table's instance those writes left. While the
        #: table is at that instance nobody else added or removed a child, so a key the
        #: filter does not hold needs no LOOKUP (a bulk load into a new or small table
        #: asks one SELF per piece instead of one LOOKUP per record). None: not known.
        self.known: NameFilter | None = None
        self.expected = -1
        #: records in the whole input (run()'s total), to size the filter
        self.total = 0

    def say(self, text: str) -> None:
        self.write(text + "\n")

    async def table_dir(self) -> int:
        """Find the table, after ``delete`` has destroyed it; create it when missing."""
        t = self.table
        oid: int | None
        try:
            oid = (await self.c.pathsearch(t)).object
        except NiError as e:
            if e.status != Status.NODIR:
                raise LoadError(f"can't access NetInfo directory {t}", e) from None
            oid = None
        except _ERRORS as e:
            raise LoadError(f"can't access NetInfo directory {t}", e) from None
        if oid is not None and self.delete:
            if self.verbose:
                self.say(f"Deleting exiting NetInfo directory {t}")  # sic (tools §2.5)
            try:
                gone = await destroy_tree(self.c, oid)
            except _ERRORS as e:
                raise LoadError(f"can't delete NetInfo directory {t}", e) from None
            if self.verbose:   # a deletion says how much it removed (issue #9)
                self.say(f"{t}: {gone} directories removed")
            oid = None
        if oid is None:
            if self.verbose:
                self.say(f"Creating NetInfo directory {t}")
            try:
                oid = await create_path(self.c, t)
            except _ERRORS as e:
                raise LoadError(f"can't create NetInfo directory {t}", e) from None
        return oid

    async def picture(self, oid: int, keys: set[str]) -> tuple[NiId, list[Entry], NameIndex]:
        """The table as the plan needs it: the children that hold one of *keys* as a
        name, in child order, with their properties and instances (pipelined READs).

        A table of up to :data:`LIST_TABLE` children (counted at the start, then by each
        LIST and this run's creates) is read with one LIST of names, and every child is
        an entry; a bigger one with one LOOKUP per
        key, so a run over a million users never holds the whole table: tools §2.7 only
        asks for the first child holding a name, and children that hold none of the
        input's keys cannot change the plan. Each LOOKUP answers in child order; when no
        child holds two of the keys and no record brings two names (so no entry can
        gain a key during the piece), those answers in turn are as good as child order
        for every question the plan asks. Otherwise the order comes from CHILDREN."""
        lookup_keys = keys
        try:
            if self.known is not None:
                table = await self.c.self_id(oid)
                if table.instance == self.expected:
                    lookup_keys = {k for k in keys if k in self.known}
                else:
                    self.known = None   # someone else changed the table: ask again
            if self.big is None:
                kids, table = await self.c.children(oid)
                self.size = len(kids)
                del kids
            # a table this run grows past the limit moves to LOOKUPs, never back
            self.big = self.big or self.size > LIST_TABLE
            if not self.big and self.known is None:
                listed, table = await self.c.list(oid, "name")
                self.size = len(listed)
                if self.expected < 0:   # the run's first picture: learn every name
                    self.known = NameFilter(len(listed) + self.total)
                    for _, vals in listed:
                        self.known.add(vals or ())
        except _ERRORS as e:
            raise LoadError(f"can't list NetInfo {self.table}", e) from None
        if not self.big and lookup_keys is keys:
            entries = [Entry(cid, list(vals or [])) for cid, vals in listed]
            holders = _holding(entries, keys)
            wanted = [(cid, ent) for (cid, _), ent in zip(listed, entries, strict=True)
                      if cid in holders]
        else:
            if lookup_keys is keys:
                try:
                    # the instance planned with is taken first: a change during the
                    # LOOKUPs makes the piece's first write NI_STALE (planned again)
                    table = await self.c.self_id(oid)
                except _ERRORS as e:
                    raise LoadError(f"can't list NetInfo {self.table}", e) from None
            found = await run_calls([partial(_holders, self.c, table, k)
                                     for k in lookup_keys])
            bad = first_error(found)
            if bad is not None:
                raise LoadError(f"can't list NetInfo {self.table}", bad[1])
            order: list[int] = []
            seen: set[int] = set()
            exact = self.many_names
            for ids in found:
                for cid in ids:
                    if cid in seen:
                        exact = True
                    else:
                        seen.add(cid)
                        order.append(cid)
            if exact:
                try:
                    kids = (await self.c.children(oid))[0]
                except _ERRORS as e:
                    raise LoadError(f"can't list NetInfo {self.table}", e) from None
                order = [cid for cid in kids if cid in seen]
                del kids
            wanted = [(cid, Entry(cid, [])) for cid in order]
            entries = [ent for _, ent in wanted]
        index = NameIndex()
        results = await run_calls([partial(self.c.read, cid) for cid, _ in wanted])
        for (_, ent), r in zip(wanted, results, strict=True):   # one result per call
            if isinstance(r, BaseException):
                ent.error = r
            else:
                ent.instance, ent.props = r[0].instance, list(r[1])
                ent.names = _names(ent.props)
        for pos, ent in enumerate(entries):
            index.add(pos, ent.names)
        return table, entries, index

    def report(self, records: list[Proplist], steps: list[Step]) -> None:
        """``-v`` output for *steps* (and the no-name notice) (tools §2.7). A step whose
        action is "fail" only shows its record: its error follows."""
        for s in steps:
            if self.verbose:
                self.write("\nProcessing input item:\n" + record_text(records[s.record]))
            if s.action == "ignore":
                self.say("input item has no name - ignored")
            elif s.action in UPDATE_MESSAGES and s.path is not None:
                self.counts[s.action] = self.counts.get(s.action, 0) + 1
                if self.verbose:
                    self.say(UPDATE_MESSAGES[s.action].format(path=s.path))

    async def run(self, pieces: Iterable[list[Proplist]], total: int = 0) -> int:
        """Load the records, a piece at a time (memory is bounded by a few pieces, not
        the input); returns 0. *total*: how many records in all, for the progress bar.
        *pieces* is advanced in a worker thread, one piece ahead.

        The first piece, and any piece whose keys the table may already hold, is
        planned against a fresh picture of the table (:meth:`picture`) and its calls
        sent and answered before the next piece (:meth:`_run_piece`). A run of pieces
        that only create (their keys are in no child, :attr:`known`) is streamed
        instead (:meth:`_stream`): each is planned while the one before is still out,
        against the table it will leave, so the server always has a window of calls.

        :raises LoadError:."""
        self.total = total
        oid = await self.table_dir()
        bar = _progress(self.progress, total)
        ahead = _Ahead(pieces)
        try:
            first = True
            while (records := await ahead.take_async()) is not None:
                if not records:
                    continue
                if not first:
                    todo = await self._stream(oid, records, ahead, bar)
                else:
                    todo = [records]
                for piece in todo:
                    await self._run_piece(oid, piece, bar, first)
                    first = False
        finally:
            ahead.close()
            bar.close()
        return 0

    def fast_plan(self, oid: int, records: list[Proplist]) -> _Planned | None:
        """*records* planned without reading the table, or None when that cannot be
        done: the run knows every name the table can hold (:attr:`known`, the table
        at :attr:`expected`, which counts the creates of the pieces still out), none
        of the piece's keys is among them, and no record writes to a directory another
        record of the piece creates (a name twice). Then every record is a create
        (tools §2.7 rule 4), each carrying the instance the table will have once the
        calls sent before it are done; the names and the instance are taken as if the
        piece went through (a failure stops the stream and forgets them)."""
        known = self.known
        if known is None or self.expected < 0:
            return None
        for r in records:
            key = record_key(r)
            if key is not None and key in known:
                return None
        table = NiId(oid, self.expected)
        entries: list[Entry] = []
        steps, _ = plan_records(records, entries, NameIndex(), self.table, self.merge)
        requests = step_requests(steps, entries, table)
        if requests is None:
            return None
        creates = 0
        for st in steps:
            if st.action != "ignore":
                known.add(_names(st.props))
                creates += 1
        self.size += creates
        self.expected += creates
        return _Planned(records, steps, requests)

    async def _stream(self, oid: int, records: list[Proplist], ahead: _Ahead,
                      bar: Progress) -> list[list[Proplist]]:
        """Stream the pieces that :meth:`fast_plan` can plan, from *records* on, through
        one window (:meth:`Client.call_each`: the next piece is planned once the calls
        of this one are all sent, while they are answered; a piece is reported once
        its last answer is in). Returns the pieces left to :meth:`_run_piece`: the one
        that stopped the stream; after a failure that means the picture was out of
        date (NI_STALE, NI_BADID: somebody else wrote), the rest of the failed piece
        and every piece sent after it (planned again from a fresh read, as the records
        of one piece are). Any other failure raises :class:`LoadError` with the steps
        up to it reported.

        :raises LoadError:."""
        out: deque[_Planned] = deque()   # sent, not all answered, in order
        failed: list[_Planned] = []      # the first piece with a failed call, and after
        left: list[list[Proplist]] = []
        #: the directories made by the CREATEs answered after the first failed call
        after: list[NiId] = []

        def settle() -> None:
            while out and out[0].got == len(out[0].requests):
                done = out.popleft()
                if failed or done.bad is not None:
                    failed.append(done)
                else:
                    self.report(done.records, done.steps)

        def each(result: Any) -> None:
            bar.advance()
            p = out[0]
            if isinstance(result, BaseException):
                if p.bad is None:
                    p.bad = (p.got, result)
            elif failed or p.bad is not None:
                after.append(result[0])
            p.got += 1
            settle()

        def calls() -> Iterator[tuple[int, tuple[Any, ...]]]:
            recs: list[Proplist] | None = records
            while recs is not None and not failed:
                if recs:
                    planned = self.fast_plan(oid, recs)
                    if planned is None:
                        left.append(recs)
                        return
                    out.append(planned)
                    settle()   # a piece of ignored records has no call to wait for
                    yield from planned.requests
                recs = ahead.take()

        await self.c.call_each(calls(), window=LOAD_WINDOW, each=each)
        if not failed:
            return left
        # The stream's predictions are void from here: read the table again.
        self.known, self.expected = None, -2
        planned = failed[0]
        assert planned.bad is not None
        which = [n for n, st in enumerate(planned.steps) if st.action != "ignore"]
        step_at = which[planned.bad[0]]
        step, err = planned.steps[step_at], planned.bad[1]
        if isinstance(err, NiError) and err.status in _REPLAN:
            self.report(planned.records, planned.steps[:step_at])
            # Somebody else wrote to the table (its instance moved); the CREATEs after
            # the first that failed can have lined up with the new instance and gone
            # through, some perhaps making a name that other writer made meanwhile.
            # They are taken away again, so that the rest is planned from the table as
            # the stream left it before the failure (as one piece's calls are).
            await self._take_back(oid, after)
            return [planned.records[step.record:], *(p.records for p in failed[1:]), *left]
        self.report(planned.records, planned.steps[:step_at] +
                    [Step(step.record, step.path, "fail")])
        raise LoadError(f"can't update NetInfo {step.path}", err)

    async def _take_back(self, oid: int, made: list[NiId]) -> None:
        """DESTROY the directories *made* under the table, one at a time with their
        instances and the table's read just before (another writer may still be at
        work). One already gone is left, and so is one whose instance is no longer the
        one made (another writer changed it, or its number was freed and taken again:
        it is theirs now; the plan made again sees it). :raises LoadError: one cannot
        be destroyed."""
        for child in made:
            for attempt in range(RETRIES + 1):
                try:
                    parent = await self.c.self_id(oid)
                    now = await self.c.self_id(child.object)
                    if now.instance != child.instance:
                        break
                    await self.c.destroy(parent, now)
                except NiError as e:
                    if e.status == Status.BADID:
                        break   # gone already: nothing to take back
                    if e.status == Status.STALE and attempt < RETRIES:
                        continue
                    raise LoadError(f"can't update NetInfo {self.table}", e) from None
                except _ERRORS as e:
                    raise LoadError(f"can't update NetInfo {self.table}", e) from None
                break

    async def _run_piece(self, oid: int, records: list[Proplist], bar: Progress,
                         first: bool) -> None:
        keys = {k for k in map(record_key, records) if k is not None}
        self.many_names = any(len(first_values(r, "name") or ()) > 1 for r in records)
        for attempt in range(RETRIES + 1):
            table, entries, index = await self.picture(oid, keys)
            if first and attempt == 0 and self.verbose:
                self.say(f"Netinfo {self.table} contains {self.size} items")
            steps, unreadable = plan_records(records, entries, index, self.table,
                                             self.merge)
            requests = step_requests(steps, entries, table)
            if requests is not None:   # no call waits for another: one window, no tasks
                which = [n for n, s in enumerate(steps) if s.action != "ignore"]
                results = await self.c.call_window(requests, window=WINDOW,
                                                   done=lambda i: bar.advance())
            else:
                calls, which = step_calls(self.c, steps, entries, table)
                results = await run_calls(calls, bar)
            bad = first_error(results)
            if bad is not None:
                n, err = bad
                at = which[n]
                step = steps[at]
            elif unreadable is not None:
                i, path, err = unreadable
                at = len(steps)
                step = Step(i, path, "fail")
                steps.append(step)
            else:
                self.report(records, steps)
                creates = sum(s.action == "create" for s in steps)
                self.size += creates
                if attempt == 0 and self.known is not None and self.expected != -2:
                    for s in steps:
                        if s.action != "ignore":
                            self.known.add(_names(s.props))
                    self.expected = table.instance + creates
                else:
                    self.known, self.expected = None, -2   # never again in this run
                return
            if isinstance(err, NiError) and err.status in _REPLAN and attempt < RETRIES:
                # Our picture was out of date: report what went through, plan the rest
                # of the input again from a fresh read.
                self.report(records, steps[:at])
                records = records[step.record:]
                continue
            self.report(records, steps[:at] + [Step(step.record, step.path, "fail")])
            raise LoadError(f"can't update NetInfo {step.path}", err)
        raise AssertionError("unreachable")


def _survey(fmt: str, text: str | bytes) -> tuple[int, list[Note]]:
    """The records an input holds and its notes, a piece at a time (a piece of plain
    lines is checked and counted without being parsed: :func:`~netinfo.client.flat.survey`)."""
    return survey(fmt, text)


async def load_flat(c: Client, fmt: str, text: str | bytes, *, merge: bool = False,
                    delete: bool = False, verbose: bool = False,
                    write: Callable[[str], Any] | None = None,
                    progress: ProgressFactory | None = None,
                    prog: str = "niload") -> FlatLoad | None:
    """Parse *text* in format *fmt* and load it (tools §2.6, §2.7). Input without records
    returns None **without touching the domain** (tools §2.7), whatever *delete* says.

    The input is read twice, a piece at a time (:func:`~netinfo.client.flat.iter_loaded`):
    once to check every line and count the records (:func:`~netinfo.client.flat.survey`:
    a piece of plain passwd lines is checked without being parsed), once to load them;
    records are never all in memory at once. *text* may be bytes (niload's stdin, held
    once).

    :raises FormatError: a line does not parse (wrong field count, ...), or makes a
        record no server could hold (a name or value over 65,535 bytes, ...:
        :func:`~netinfo.wire.limits.proplist_problem`), or there are more records than a
        directory holds: nothing is written, and with *delete* nothing is destroyed
        (issue 18 #12: the whole input is checked before the first call). The original
        skipped such lines silently and loaded the rest, so a slip in the input went
        unnoticed (issue #9). Comments, blank lines and NIS ``+`` entries are still
        skipped.
    :raises LoadError: niload's failure wording and the error underneath.
    """
    say = write or (lambda s: None)
    # the checking pass parses the whole input: in a worker thread, so that a server
    # loading a large input (the web manager) keeps answering meanwhile
    total, notes = await asyncio.to_thread(_survey, fmt, text)
    bad: list[Note] = []
    for note in notes:
        if verbose:
            say(f"{prog}: {note}\n")
        if note.kind == "skipped":
            bad.append(note)
    if bad:
        more = f"; {len(bad)} lines do not parse" if len(bad) > 1 else ""
        raise FormatError(f"{bad[0]} (nothing loaded{more})")
    if total > BIG_LIST_MAX:   # more entries than one directory holds (limits.py)
        raise FormatError(f"{total} records: a directory holds at most {BIG_LIST_MAX} "
                          "(nothing loaded)")
    if verbose:
        say(f"{total} items read from input\n")
    if not total:
        return None
    run = FlatLoad(c, fmt, merge=merge, delete=delete, verbose=verbose, write=write,
                   progress=progress)
    await run.run((loaded.records for loaded in iter_loaded(fmt, text)), total)
    return run


# -- raw load (tools §2.7 "Raw load") ----------------------------------------------------------
#
# The original wrote the target's properties, destroyed all its children, then created
# the input's: a failure half way (a permission, a full disk, a lost connection) left a
# directory with part of the old tree and part of the new. NetInfo has no transaction
# spanning calls and no "move" to swap a subtree built elsewhere into place (building
# under a temporary name would also change the target's ID, and cannot work for "/").
# So the load checks, then adds, then removes (issue #9):
#
# 1. check: the target and every old directory that will lose children are rewritten
#    with their own properties, unchanged. That is the permission a CREATE or DESTROY
#    of their children and the final WRITE need (service._check_dir), so a refusal
#    (NI_PERM, a _locked directory, a clone's NI_RDONLY) comes before anything changed;
# 2. add: the input's children are created under the target, after the old ones. If
#    that fails, what was created is destroyed again: the old subtree never changed;
# 3. remove: the old children (by ID) are destroyed, leaves first;
# 4. the target gets the input's properties.
#
# Steps 3 and 4 run only once the new tree is complete and the removals were checked,
# so what remains to fail is the connection or the disk; the message then says what is
# in place. Instances are re-read at each step (others may write meanwhile), NI_STALE
# repeats the step.


def create_calls(c: Client, top: RawNode, target: int, base: int) -> tuple[
        list[Callable[[], Awaitable[Any]]], list[int]]:
    """CREATE calls for the children of *top* (pre-order), under *target* whose instance
    will be *base*, appended after its present children. A directory's children wait for
    its own CREATE's answer and then go out together, each with the instance the earlier
    siblings leave behind. Returns the calls and the indexes of those that create
    *target*'s direct children."""
    loop = asyncio.get_running_loop()
    calls: list[Callable[[], Awaitable[Any]]] = []
    tops: list[int] = []
    # (node, future of its parent's id or None for the target, index among siblings)
    stack: list[tuple[RawNode, asyncio.Future[NiId] | None, int]] = [
        (child, None, k) for k, child in reversed(list(enumerate(top.children)))]
    while stack:
        node, parent_fut, k = stack.pop()
        fut: asyncio.Future[NiId] | None = None
        if node.children:
            fut = loop.create_future()
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            stack.extend((child, fut, j) for j, child in reversed(list(enumerate(node.children))))
        if parent_fut is None:
            tops.append(len(calls))
        calls.append(_raw_create_call(c, target, base, parent_fut, k, node.props, fut))
    return calls, tops


def _raw_create_call(c: Client, target: int, base: int, parent: asyncio.Future[NiId] | None,
                     k: int, props: Proplist,
                     fut: asyncio.Future[NiId] | None) -> Callable[[], Awaitable[Any]]:
    async def where() -> NiId:
        # the k-th child of its parent: the parent's instance after k earlier CREATEs
        if parent is None:
            return NiId(target, base + k)
        p = await parent
        return NiId(p.object, p.instance + k)
    return lambda: _create_into(c, where, props, fut)


def _replan(err: BaseException) -> bool:
    return isinstance(err, NiError) and err.status in _REPLAN


async def _first_missing(c: Client, path: str) -> str | None:
    """The path of the first component of *path* that does not exist yet (what a failed
    load must take away again), or None when *path* exists."""
    raws = [r for r in split_unescaped(path, "/") if r]
    for n in range(len(raws), -1, -1):
        try:
            await c.pathsearch("/" + "/".join(raws[:n]))
        except NiError as e:
            if e.status != Status.NODIR:
                raise
            continue
        return None if n == len(raws) else "/" + "/".join(raws[:n + 1])
    return None


async def _check_removals(c: Client, nodes: dict[int, TreeNode], top: int) -> None:
    """Step 1: rewrite *top*, and each old directory below it that has children, with
    its own properties: the permission every later step needs (creating and destroying
    children of a directory, writing it), checked before anything changed. Pipelined."""
    dirs = [top] + [oid for oid, n in nodes.items() if oid != top and n.kids]
    calls: list[Callable[[], Awaitable[Any]]] = [
        partial(c.write, nodes[oid].id, list(nodes[oid].props or [])) for oid in dirs]
    bad = first_error(await run_calls(calls))
    if bad is not None:
        raise LoadError("Can't write directory" if bad[0] == 0 else
                           "Can't destroy child directories", bad[1])


async def _add(c: Client, oid: int, tree: RawNode,
               progress: ProgressFactory | None) -> tuple[int, set[int]]:
    """Step 2: create the input's children under *oid*; on failure destroy them again.
    Returns how many directories were created, and the IDs of *oid*'s new children."""
    base = (await c.self_id(oid)).instance
    calls, tops = create_calls(c, tree, oid, base)
    results = await _run_shown(calls, progress)
    bad = first_error(results)
    if bad is None:
        return len(calls), {results[i].object for i in tops}
    undo_failed: BaseException | None = None
    for i in reversed(tops):
        made = results[i]
        if isinstance(made, NiId):
            try:
                await destroy_tree(c, made.object)
            except _ERRORS as e:
                undo_failed = e
    state = "" if undo_failed is None else (
        f"and some new entries could not be taken away again: {error_text(undo_failed)}")
    raise LoadError("Can't create directory", bad[1], state)


async def _remove(c: Client, oid: int, new: set[int]) -> None:
    """Step 3: destroy every child of *oid* but the *new* ones, with their subtrees (one
    another writer added meanwhile goes too: the input replaces the directory)."""
    for attempt in range(RETRIES + 1):
        nodes = await walk(c, oid, with_props=False)
        nodes[oid].kids = [k for k in nodes[oid].kids if k not in new]
        bad = first_error(await run_calls(destroy_calls(c, nodes, oid)))
        if bad is None:
            return
        if not (_replan(bad[1]) and attempt < RETRIES):
            raise LoadError("Can't destroy child directories", bad[1],
                               "the new entries are in place, some old ones remain")


async def _write_top(c: Client, oid: int, props: Proplist) -> None:
    """Step 4: the target's properties become the input's."""
    for attempt in range(RETRIES + 1):
        try:
            await c.write(await c.self_id(oid), list(props))
            return
        except _ERRORS as e:
            if not (_replan(e) and attempt < RETRIES):
                raise LoadError("Can't write directory", e,
                                   "its children were replaced, its properties were not") \
                    from None


async def raw_load(c: Client, path: str, tree: RawNode,
                   progress: ProgressFactory | None = None) -> tuple[int, int]:
    """Replace the directory at *path* with *tree* (tools §2.7), so that a failure part
    way leaves the old subtree (the steps above). Creates the path if missing (and takes
    it away again when the load fails). Returns (directories removed, created).

    :raises LoadError: with the original's message; before anything is written when
        *tree* would nest deeper below *path* than a server allows
        (:data:`~netinfo.wire.limits.MAX_DEPTH`). :raises CALL_ERRORS:.
    """
    deepest = path_depth(path) + tree_depth(tree)
    if deepest > MAX_DEPTH:
        raise LoadError("Can't create directory", TooLong(
            f"the input nests {deepest} levels deep below the root; a server allows "
            f"{MAX_DEPTH}"))
    for attempt in range(RETRIES + 1):
        try:
            missing = await _first_missing(c, path)
            oid = await create_path(c, path)
        except _ERRORS as e:
            raise LoadError("Can't create directory", e) from None
        try:
            nodes = await walk(c, oid)
            await _check_removals(c, nodes, oid)
            made, new = await _add(c, oid, tree, progress)
        except LoadError as e:
            if missing is not None:
                await _take_away(c, missing)
            if _replan(e.err) and attempt < RETRIES:
                continue   # someone else wrote meanwhile: again, from a fresh read
            raise
        except _ERRORS as e:
            if missing is not None:
                await _take_away(c, missing)
            raise LoadError("Can't destroy child directories", e) from None
        removed = len(nodes) - 1
        await _remove(c, oid, new)
        await _write_top(c, oid, tree.props)
        return removed, made
    raise AssertionError("unreachable")


async def _take_away(c: Client, path: str) -> None:
    """Best effort: remove the directory a failed load created at *path*."""
    try:
        await destroy_tree(c, (await c.pathsearch(path)).object)
    except _ERRORS:
        pass


async def path_names(c: Client, path: str, *, missing_ok: bool = False) -> tuple[str, ...]:
    """The names (first ``name`` values) of the directories along *path* below the root:
    ``/users/uid=501`` is ``("users", "ann")``, the path an LDAP DN spells. With
    *missing_ok*, components past the last existing directory are their ``name=`` values
    (what :func:`~netinfo.client.verbs.create_path` would make).

    :raises NiError: NI_NODIR when a directory on the way does not exist (or has no name,
        or is missing and not named by ``name``)."""
    comps = parse_path(path)
    names: list[str] = []
    for n in range(1, len(comps) + 1):
        sub = "/" + "/".join(format_component(k, v) for k, v in comps[:n])
        try:
            props = (await c.read(await c.pathsearch(sub)))[1]
        except NiError as e:
            if e.status != Status.NODIR or not missing_ok or any(
                    k != "name" for k, _ in comps[n - 1:]):
                raise
            return tuple(names) + tuple(v for _, v in comps[n - 1:])
        name = next((vs[0] for k, vs in props if k == "name" and vs), None)
        if name is None:
            raise NiError(Status.NODIR)
        names.append(name)
    return tuple(names)


def names_path(names: Iterable[str]) -> str:
    """:func:`path_names` backwards: the path that names those directories."""
    return "/" + "/".join(format_component("name", n) for n in names)


def path_depth(path: str) -> int:
    """How many levels below the root *path* names (``/`` 0, ``/users/bob`` 2)."""
    return sum(1 for r in split_unescaped(path, "/") if r)


def tree_depth(tree: RawNode) -> int:
    """How many levels *tree* has below its top (iterative: any depth)."""
    deepest = 0
    stack = [(tree, 0)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in node.children)
    return deepest


def check_raw_input(text: str, what: str, *, allow_empty: bool = False) -> RawNode:
    """Parse raw-load input (tools §2.4) for directory *what* before anything is
    written, checking every directory against the bounds a server keeps
    (:func:`~netinfo.client.flat.raw_from_text`), its depth included: *what*'s own depth
    plus the input's at most :data:`~netinfo.wire.limits.MAX_DEPTH`.

    :raises FormatError: it does not parse, is over a bound, or it is empty and not
        *allow_empty*: a 0-byte file (a failed ``nidump -r ... > file``) would empty
        *what*.
    """
    if not text.strip() and not allow_empty:
        raise FormatError(f"empty input: refusing to replace {what} with nothing "
                          "(-f or --allow-empty to do so)")
    room = MAX_DEPTH - path_depth(what)
    if room < 0:
        raise FormatError(f"{what} is {path_depth(what)} levels deep; a server allows "
                          f"{MAX_DEPTH}")
    try:
        return raw_from_text(text, room)
    except FormatError as e:
        if room < MAX_DEPTH and e.reason.startswith("Directories nested deeper"):
            raise FormatError(f"Directories nested deeper than {MAX_DEPTH} levels below "
                              f"the root (the input goes below {what})", e.line) from None
        raise
