"""niload: load flat files or raw dumps from stdin into a NetInfo domain (tools §2.4-§2.7).

::

    niload passwd . < master.passwd
    niload -m hosts . < hosts           # merge into existing entries
    niload -r /users . < users.raw      # replace /users with the dump (nidump -r)

Flat formats follow the update rules of tools §2.7 exactly, through the pure helpers of
:mod:`netinfo.formats` (:func:`~netinfo.formats.record_key`,
:func:`~netinfo.formats.plan_update`, ...): each record in input order is looked up by
its first name among the table's children (the first child whose ``name`` values hold
it, so aliases can collide), then created, replaced, or with ``-m`` merged. ``-d`` first
destroys the whole table directory and recreates it ([369]). Messages, ``-v`` output and
exit statuses are the original's.

Pipelining. The original made several round trips per record. Here the table is read
once (one LIST of names, then READs of just the children the input will touch, all
pipelined), the whole run is planned locally by replaying the rules against that
picture, and the CREATE and WRITE calls then go out back to back on the domain's one
connection, each carrying the instance its directory will have by then (every successful
write adds 1, spec §5.3). If a prediction turns out wrong (NI_STALE or NI_BADID:
somebody else wrote meanwhile), the rest of the input is planned again from a fresh read;
re-applying a record that already went through is harmless (a replacement or merge of
the same data gives the same directory), so nothing is lost or duplicated. One visible
trace remains: when another writer's changes shift the table's instance by exactly k,
creates after the first failed one can line up again and succeed in the first pass, so
under concurrent writers new entries may appear in a different order than the input's
(the original, sequential, would interleave the other writer's entries instead). Any
other error stops the run with the original's message. Because calls are in flight
together, records after the failing one may already have been written when the error
comes back (at most one window of calls); records before it always are.

Raw load (``-r``): the whole input is parsed before anything is written; then the target
(created if missing) gets the input's top-level properties, all its children are destroyed
and the input's children created, again pipelined: destroys leaves first, creates of a
directory's children as soon as its own CREATE has answered. As in the original, failures
of the load itself are reported but the exit status stays 0 (tools §2.7).

Deliberate differences from the original, all additive:

* ``passwd`` also reads ordinary 7-field /etc/passwd lines (as ``passwd.43`` does:
  class empty, change and expire 0); ``-v`` says so for each such line. Lines that are
  skipped are reported with ``-v`` too.
* Input that does not parse (``-r``) prints ``niload: <message> at line N`` and exits 1
  without writing anything.
* A record without a name prints ``input item has no name - ignored`` on stderr.
* A ``-r`` path that is not absolute exits 1 (nothing is done).
* With ``-v``, creating the missing table prints ``Creating NetInfo directory <t>``
  (tools §2.5); tools §2.7 rule 4 calls the same event ``creating directory: <t>``, and
  it is reported once.
* ``--help``; a progress bar on stderr for more than ~1,000 records when it is a terminal.

Exit status: 0 on success (and on raw-load write failures, as the original); 1 for usage
errors, a domain that cannot be opened (with the usage), a failed authentication, a
table that cannot be accessed or updated, and raw input that does not parse; a ``-t``
argument that does not parse exits 217-221 with the messages of tools §0.2.
"""

from __future__ import annotations

import asyncio
import bisect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..client import Client
from ..domain import authenticate
from ..errors import NiError, Status
from ..formats import (FORMATS, NILOAD_FORMATS, UPDATE_MESSAGES, FormatError, RawNode,
                       plan_update, raw_from_text, record_key, record_path, record_text)
from ..model import NiId, Proplist, first_values
from ..verbs import create_path, use_master
from ..walk import WINDOW, TreeNode, pipelined, walk
from .common import (COMM_ERRORS, DEFAULT_TIMEOUT, EXIT_FAILED, EXIT_TAGGED_CONNECT, Progress,
                     ToolExit, UnknownOption, UsageError, error_text, open_for_tool,
                     parse_timeout, scan_args, tool_main, usage_text)

PROG = "niload"
EXIT_USAGE = 1
EXIT_ERROR = 1
#: How many times a run whose instance predictions failed is planned again.
RETRIES = 5

#: The usage text (stderr, exit 1), listing the formats niload reads (tools §2.5).
USAGE = usage_text(PROG, "[-v] [-d] [-m] [-p] [-u <user>] [-P <password>] [-T <timeout>] "
                   "[-t] {-r <directory> | <format>} <domain>", NILOAD_FORMATS)

HELP_EXTRA = """\
options: -v (verbose, on stderr), -d (destroy and recreate the table first),
         -m (merge into existing entries), -p (prompt for a password),
         -u <user> (authenticate as <user>, implies -p), -P <password> (no prompt),
         -t (the domain is <host>/<tag>), -T <timeout> (RPC timeout, default 30),
         -r (the operand is an absolute directory path; input is a raw dump),
         --help (this text)
Input is read from stdin.
"""

_ERRORS = (NiError, *COMM_ERRORS)
#: Statuses that mean "the picture we planned against is out of date": plan again.
_REPLAN = (Status.STALE, Status.BADID)


class UnknownFormat(UsageError):
    """``niload: unknown format: X`` goes to stdout, then the usage (tools §2.5)."""

    to_stdout = True


@dataclass
class Options:
    """A parsed niload command line."""

    verbose: bool = False
    delete: bool = False
    merge: bool = False
    prompt: bool = False
    user: str | None = None
    password: str | None = None
    tagged: bool = False
    raw: bool = False
    what: str = ""
    domain: str = ""
    timeout: float = DEFAULT_TIMEOUT
    help: bool = False


def parse_args(args: list[str]) -> Options:
    """niload's command line (tools §2.5); ``-t`` in either place, as nidump.

    :raises UsageError: with the original's messages.
    """
    try:
        s = scan_args(PROG, args, "vdmpr", "uPT", NILOAD_FORMATS)
    except UnknownOption as e:
        raise UsageError(f"{PROG} unknown option: {e.option}") from None
    o = Options(verbose="v" in s.flags, delete="d" in s.flags, merge="m" in s.flags,
                prompt="p" in s.flags or "u" in s.values, user=s.values.get("u"),
                password=s.values.get("P"), tagged="t" in s.flags, raw="r" in s.flags,
                timeout=parse_timeout(s.values.get("T")), help="--help" in s.flags)
    if o.help:
        return o
    if "--json" in s.flags:
        raise UsageError(f"{PROG} unknown option: --json")
    ops = s.operands
    want = 1 if s.tagged_domain is not None else 2
    if len(ops) < want:
        raise UsageError()
    if len(ops) > want:
        raise UsageError(f"{PROG}: unknown argument: {ops[want]}")
    o.what = ops[0]
    o.domain = s.tagged_domain if s.tagged_domain is not None else ops[1]
    if not o.raw and o.what not in NILOAD_FORMATS:
        raise UnknownFormat(f"{PROG}: unknown format: {o.what}")
    return o


def read_stdin() -> str:
    """All of stdin; bytes that are not UTF-8 survive (surrogateescape, as the wire)."""
    buf = getattr(sys.stdin, "buffer", None)
    if buf is None:
        return sys.stdin.read()
    return buf.read().decode("utf-8", "surrogateescape")


def say(text: str) -> None:
    """A message on stderr (``-v`` output and errors)."""
    sys.stderr.write(text + "\n")


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
    """:func:`~netinfo.walk.pipelined` with a progress bar."""
    return await pipelined(calls, WINDOW, (lambda i: progress.advance()) if progress else None)


def first_error(results: list[Any]) -> tuple[int, BaseException] | None:
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            return i, r
    return None


async def destroy_tree(c: Client, oid: int) -> None:
    """Destroy directory *oid* and everything below it (``niload -d``).

    :raises NiError: the first failure. :raises COMM_ERRORS:.
    """
    for attempt in range(RETRIES + 1):
        parent_no, _ = await c.parent(oid)
        if parent_no == oid:
            raise NiError(Status.UNRELATED)   # the root cannot be removed
        parent = await c.self_id(parent_no)
        nodes = await walk(c, oid, with_props=False)
        bad = first_error(await run_calls(destroy_calls(c, nodes, oid, parent=parent)))
        if bad is None:
            return
        err = bad[1]
        if attempt == RETRIES or not (isinstance(err, NiError) and err.status in _REPLAN):
            raise err
        try:
            await c.self_id(oid)
        except NiError as e:
            if e.status == Status.BADID:
                return   # gone after all
            raise


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


def _create_call(c: Client, parent: NiId, props: Proplist,
                 fut: asyncio.Future[NiId] | None) -> Callable[[], Awaitable[Any]]:
    async def call() -> NiId:
        try:
            child, _ = await c.create(parent, props)
        except BaseException as e:
            if fut is not None and not fut.done():
                fut.set_exception(e)
            raise
        if fut is not None and not fut.done():
            fut.set_result(child)
        return child
    return call


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


class FlatLoad:
    """One ``niload <format>`` run (tools §2.7)."""

    def __init__(self, c: Client, o: Options) -> None:
        self.c = c
        self.o = o
        self.spec = FORMATS[o.what]
        self.table = self.spec.directory

    def fail(self, what: str, err: BaseException) -> ToolExit:
        return ToolExit(EXIT_ERROR, f"{PROG}: {what}: {error_text(err)}")

    async def table_dir(self) -> int:
        """Find the table, after ``-d`` has destroyed it; create it when missing."""
        t = self.table
        oid: int | None
        try:
            oid = (await self.c.pathsearch(t)).object
        except NiError as e:
            if e.status != Status.NODIR:
                raise self.fail(f"can't access NetInfo directory {t}", e) from None
            oid = None
        except COMM_ERRORS as e:
            raise self.fail(f"can't access NetInfo directory {t}", e) from None
        if oid is not None and self.o.delete:
            if self.o.verbose:
                say(f"Deleting exiting NetInfo directory {t}")  # sic (tools §2.5)
            try:
                await destroy_tree(self.c, oid)
            except _ERRORS as e:
                raise self.fail(f"can't delete NetInfo directory {t}", e) from None
            oid = None
        if oid is None:
            if self.o.verbose:
                say(f"Creating NetInfo directory {t}")
            try:
                oid = await create_path(self.c, t)
            except _ERRORS as e:
                raise self.fail(f"can't create NetInfo directory {t}", e) from None
        return oid

    async def picture(self, oid: int, keys: set[str]) -> tuple[NiId, list[Entry], NameIndex]:
        """The table as the plan needs it: every child's names (one LIST), and the
        properties and instances of those the input can hit (pipelined READs)."""
        try:
            listed, table = await self.c.list(oid, "name")
        except _ERRORS as e:
            raise self.fail(f"can't list NetInfo {self.table}", e) from None
        entries = [Entry(cid, list(vals or [])) for cid, vals in listed]
        index = NameIndex()
        for pos, ent in enumerate(entries):
            index.add(pos, ent.names)
        wanted = [(cid, ent) for (cid, _), ent in zip(listed, entries, strict=True)
                  if not keys.isdisjoint(ent.names)]
        results = await run_calls([partial(self.c.read, cid) for cid, _ in wanted])
        for (_, ent), r in zip(wanted, results, strict=True):   # one result per call
            if isinstance(r, BaseException):
                ent.error = r
            else:
                ent.instance, ent.props = r[0].instance, list(r[1])
        return table, entries, index

    def report(self, records: list[Proplist], steps: list[Step]) -> None:
        """``-v`` output for *steps* (and the no-name notice) (tools §2.7). A step whose
        action is "fail" only shows its record: its error follows."""
        for s in steps:
            if self.o.verbose:
                sys.stderr.write("\nProcessing input item:\n" + record_text(records[s.record]))
            if s.action == "ignore":
                say("input item has no name - ignored")
            elif self.o.verbose and s.action in UPDATE_MESSAGES:
                say(UPDATE_MESSAGES[s.action].format(path=s.path))

    async def run(self, records: list[Proplist]) -> int:
        oid = await self.table_dir()
        keys = {k for k in map(record_key, records) if k is not None}
        for attempt in range(RETRIES + 1):
            table, entries, index = await self.picture(oid, keys)
            if attempt == 0 and self.o.verbose:
                say(f"Netinfo {self.table} contains {len(entries)} items")
            steps, unreadable = plan_records(records, entries, index, self.table,
                                             self.o.merge)
            calls, which = step_calls(self.c, steps, entries, table)
            progress = Progress(PROG, len(calls))
            try:
                results = await run_calls(calls, progress)
            finally:
                progress.close()
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
                return 0
            if isinstance(err, NiError) and err.status in _REPLAN and attempt < RETRIES:
                # Our picture was out of date: report what went through, plan the rest
                # of the input again from a fresh read.
                self.report(records, steps[:at])
                records = records[step.record:]
                continue
            self.report(records, steps[:at] + [Step(step.record, step.path, "fail")])
            raise self.fail(f"can't update NetInfo {step.path}", err)
        raise AssertionError("unreachable")


async def load_flat(c: Client, o: Options, text: str) -> int:
    spec = FORMATS[o.what]
    loaded = spec.from_text(text)
    if o.verbose:
        for note in loaded.notes:
            say(f"{PROG}: {note}")
        say(f"{len(loaded.records)} items read from input")
    if not loaded.records:
        return 0   # tools §2.7: nothing read, the database is not touched
    return await FlatLoad(c, o).run(loaded.records)


# -- raw load (tools §2.7 "Raw load") ----------------------------------------------------------

def create_calls(c: Client, top: RawNode, target: int, base: int) -> tuple[
        list[Callable[[], Awaitable[Any]]], int]:
    """CREATE calls for the children of *top* (pre-order), under *target* whose instance
    will be *base*. A directory's children wait for its own CREATE's answer and then go
    out together, each with the instance the earlier siblings leave behind."""
    loop = asyncio.get_running_loop()
    calls: list[Callable[[], Awaitable[Any]]] = []
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
        calls.append(_raw_create_call(c, target, base, parent_fut, k, node.props, fut))
    return calls, len(calls)


def _raw_create_call(c: Client, target: int, base: int, parent: asyncio.Future[NiId] | None,
                     k: int, props: Proplist,
                     fut: asyncio.Future[NiId] | None) -> Callable[[], Awaitable[Any]]:
    async def call() -> NiId:
        try:
            if parent is None:
                pid = NiId(target, base + k)
            else:
                p = await parent
                pid = NiId(p.object, p.instance + k)
            child, _ = await c.create(pid, props)
        except BaseException as e:
            if fut is not None and not fut.done():
                fut.set_exception(e)
            raise
        if fut is not None and not fut.done():
            fut.set_result(child)
        return child
    return call


async def raw_load(c: Client, path: str, tree: RawNode) -> None:
    """Replace the directory at *path* with *tree* (tools §2.7): create the path if
    missing, write the top-level properties, destroy all children, create the input's.
    Failures print the original's messages; the caller exits 0 regardless."""
    for attempt in range(RETRIES + 1):
        try:
            oid = await create_path(c, path)
        except _ERRORS as e:
            say(f"Can't create directory: {error_text(e)}")
            return
        try:
            nodes = await walk(c, oid, with_props=False)
        except _ERRORS as e:
            say(f"Can't destroy child directories: {error_text(e)}")
            return
        top = nodes[oid]
        labels: list[str] = ["Can't write directory"]
        calls: list[Callable[[], Awaitable[Any]]] = [
            partial(c.write, NiId(oid, top.id.instance), list(tree.props))]
        destroys = destroy_calls(c, nodes, oid, bumped=1)
        calls += destroys
        labels += ["Can't destroy child directories"] * len(destroys)
        # After the write and the destroys of its own children, the target's instance:
        base = top.id.instance + 1 + len(top.kids)
        creates, n = create_calls(c, tree, oid, base)
        calls += creates
        labels += ["Can't create directory"] * n
        progress = Progress(PROG, len(calls))
        try:
            results = await run_calls(calls, progress)
        finally:
            progress.close()
        bad = first_error(results)
        if bad is None:
            return
        i, err = bad
        if isinstance(err, NiError) and err.status in _REPLAN and attempt < RETRIES:
            continue   # someone else wrote meanwhile: do it all again from a fresh read
        say(f"{labels[i]}: {error_text(err)}")
        return


async def load_raw(c: Client, o: Options, text: str) -> int:
    try:
        tree = raw_from_text(text)
    except FormatError as e:
        raise ToolExit(EXIT_ERROR, f"{PROG}: {e}") from None
    try:
        await raw_load(c, o.what, tree)
    except COMM_ERRORS as e:
        say(f"Can't write directory: {error_text(e)}")
    return 0   # sic: the original exits 0 whatever the raw load did (tools §2.7)


# -- main --------------------------------------------------------------------------------------

async def _main(o: Options) -> int:
    # A relative -r path is refused before anything else happens.
    if o.raw and not o.what.startswith("/"):
        raise ToolExit(EXIT_USAGE, "Raw load requires an absolute directory pathname, "
                       f"found {o.what}")
    try:
        c = await open_for_tool(PROG, o.domain, tagged=o.tagged, timeout=o.timeout)
    except ToolExit as e:
        if e.code not in (EXIT_FAILED, EXIT_TAGGED_CONNECT):
            raise   # a -t argument that does not parse: tools §0.2 messages, 217-221
        raise ToolExit(EXIT_USAGE, *e.lines, *USAGE.rstrip("\n").split("\n")) from None
    try:
        c.timeout = c.write_timeout = o.timeout
        if o.prompt or o.password is not None:
            try:
                await authenticate(c, o.user, o.password, o.prompt and o.password is None)
            except _ERRORS as e:
                raise ToolExit(EXIT_ERROR, f"{PROG}: can't authenticate as "
                               f"{o.user or 'root'}: {error_text(e)}") from None
        try:
            await use_master(c)   # reads and writes on the master's connection
        except _ERRORS as e:
            raise ToolExit(EXIT_ERROR, f"{PROG}: can't connect to master for domain "
                           f"{o.domain}: {error_text(e)}") from None
        text = read_stdin()
        try:
            if o.raw:
                return await load_raw(c, o, text)
            return await load_flat(c, o, text)
        except COMM_ERRORS as e:
            raise ToolExit(EXIT_ERROR, f"{PROG}: {error_text(e)}") from None
    finally:
        await c.close()


def main(argv: list[str] | None = None) -> int:
    """``niload``: returns the exit status (tools §2.5, §2.7)."""
    return tool_main(argv, parse_args, USAGE, USAGE + HELP_EXTRA, _main, bulk=True, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
