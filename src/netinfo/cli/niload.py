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
(created if missing) is replaced so that a failure part way leaves the old subtree: the
removals are checked first, the input's children are created next to the old ones (and
taken away again if that fails), only then are the old children destroyed and the
target's properties written (the comment above :class:`RawLoadError` says why this
order). Empty input is refused unless ``-f``/``--allow-empty``: a 0-byte file, as a
failed ``nidump -r /nosuch . > users.raw`` used to leave, would empty the directory.

Deliberate differences from the original, all additive:

* ``passwd`` also reads ordinary 7-field /etc/passwd lines (as ``passwd.43`` does:
  class empty, change and expire 0); ``-v`` says so for each such line. Lines that are
  skipped are reported with ``-v`` too.
* Input that does not parse (``-r``) prints ``niload: <message> at line N`` and exits 1
  without writing anything.
* A record without a name prints ``input item has no name - ignored`` on stderr.
* A ``-r`` path that is not absolute exits 1 (nothing is done).
* A raw load that fails exits 1 (the original exited 0), with the original's message
  (``Can't create directory: <err>``); the old subtree is still there. ``-v`` says how
  much a raw load removed and created, and ``-d`` how much it removed.
* A flat file with a line that does not parse (wrong field count, ...) is not loaded at
  all: ``niload: line N: <why> (nothing loaded)``, exit 1. The original skipped such
  lines silently and loaded the rest. Comments, blank lines and NIS ``+`` entries are
  still skipped.
* With ``-v``, creating the missing table prints ``Creating NetInfo directory <t>``
  (tools §2.5); tools §2.7 rule 4 calls the same event ``creating directory: <t>``, and
  it is reported once.
* ``--help``; a progress bar on stderr for more than ~1,000 records when it is a terminal.

Exit status: 0 on success; 1 for usage errors, a domain that cannot be opened (with the
usage), a failed authentication, a table that cannot be accessed or updated, input that
does not parse, empty raw input without ``-f``, and a raw load that fails; a ``-t``
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
from ..model import NiId, Proplist, first_values, split_unescaped
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
USAGE = usage_text(PROG, "[-v] [-d] [-m] [-f] [-p] [-u <user>] [-P <password>] "
                   "[-T <timeout>] [-t] {-r <directory> | <format>} <domain>", NILOAD_FORMATS)

HELP_EXTRA = """\
options: -v (verbose, on stderr), -d (destroy and recreate the table first),
         -m (merge into existing entries), -p (prompt for a password),
         -u <user> (authenticate as <user>, implies -p), -P <password> (no prompt),
         -t (the domain is <host>/<tag>), -T <timeout> (RPC timeout, default 30),
         -r (the operand is an absolute directory path; input is a raw dump),
         -f, --allow-empty (let empty input replace a -r directory with nothing),
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
    allow_empty: bool = False
    what: str = ""
    domain: str = ""
    timeout: float = DEFAULT_TIMEOUT
    help: bool = False


def parse_args(args: list[str]) -> Options:
    """niload's command line (tools §2.5); ``-t`` in either place, as nidump.

    :raises UsageError: with the original's messages.
    """
    args = ["-f" if a == "--allow-empty" else a for a in args]
    try:
        s = scan_args(PROG, args, "vdmprf", "uPT", NILOAD_FORMATS)
    except UnknownOption as e:
        raise UsageError(f"{PROG} unknown option: {e.option}") from None
    o = Options(verbose="v" in s.flags, delete="d" in s.flags, merge="m" in s.flags,
                prompt="p" in s.flags or "u" in s.values, user=s.values.get("u"),
                password=s.values.get("P"), tagged="t" in s.flags, raw="r" in s.flags,
                allow_empty="f" in s.flags,
                timeout=parse_timeout(s.values.get("T"), prog=PROG), help="--help" in s.flags)
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


async def destroy_tree(c: Client, oid: int) -> int:
    """Destroy directory *oid* and everything below it (``niload -d``); returns how many
    directories went.

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
                gone = await destroy_tree(self.c, oid)
            except _ERRORS as e:
                raise self.fail(f"can't delete NetInfo directory {t}", e) from None
            if self.o.verbose:   # a deletion says how much it removed (issue #9)
                say(f"{t}: {gone} directories removed")
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
    bad = [n for n in loaded.notes if n.kind == "skipped"]
    if bad:
        # The original skipped such lines silently (tools §2.6) and loaded the rest:
        # a slip in the input went unnoticed. Nothing is written now.
        more = f"; {len(bad)} lines do not parse" if len(bad) > 1 else ""
        raise ToolExit(EXIT_ERROR, f"{PROG}: {bad[0]} (nothing loaded{more})")
    if o.verbose:
        say(f"{len(loaded.records)} items read from input")
    if not loaded.records:
        return 0   # tools §2.7: nothing read, the database is not touched
    return await FlatLoad(c, o).run(loaded.records)


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


class RawLoadError(Exception):
    """A raw load stopped: *label* is the original's message (tools §2.7), *err* why."""

    def __init__(self, label: str, err: BaseException, state: str = "") -> None:
        super().__init__(label)
        self.label = label
        self.err = err
        self.state = state

    def line(self) -> str:
        state = f" ({self.state})" if self.state else ""
        return f"{self.label}: {error_text(self.err)}{state}"


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
        raise RawLoadError("Can't write directory" if bad[0] == 0 else
                           "Can't destroy child directories", bad[1])


async def _add(c: Client, oid: int, tree: RawNode) -> tuple[int, set[int]]:
    """Step 2: create the input's children under *oid*; on failure destroy them again.
    Returns how many directories were created, and the IDs of *oid*'s new children."""
    base = (await c.self_id(oid)).instance
    calls, tops = create_calls(c, tree, oid, base)
    progress = Progress(PROG, len(calls))
    try:
        results = await run_calls(calls, progress)
    finally:
        progress.close()
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
    raise RawLoadError("Can't create directory", bad[1], state)


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
            raise RawLoadError("Can't destroy child directories", bad[1],
                               "the new entries are in place, some old ones remain")


async def _write_top(c: Client, oid: int, props: Proplist) -> None:
    """Step 4: the target's properties become the input's."""
    for attempt in range(RETRIES + 1):
        try:
            await c.write(await c.self_id(oid), list(props))
            return
        except _ERRORS as e:
            if not (_replan(e) and attempt < RETRIES):
                raise RawLoadError("Can't write directory", e,
                                   "its children were replaced, its properties were not") \
                    from None


async def raw_load(c: Client, path: str, tree: RawNode) -> tuple[int, int]:
    """Replace the directory at *path* with *tree* (tools §2.7), so that a failure part
    way leaves the old subtree (the steps above). Creates the path if missing (and takes
    it away again when the load fails). Returns (directories removed, created).

    :raises RawLoadError: with the original's message. :raises COMM_ERRORS:.
    """
    for attempt in range(RETRIES + 1):
        try:
            missing = await _first_missing(c, path)
            oid = await create_path(c, path)
        except _ERRORS as e:
            raise RawLoadError("Can't create directory", e) from None
        try:
            nodes = await walk(c, oid)
            await _check_removals(c, nodes, oid)
            made, new = await _add(c, oid, tree)
        except RawLoadError as e:
            if missing is not None:
                await _take_away(c, missing)
            if _replan(e.err) and attempt < RETRIES:
                continue   # someone else wrote meanwhile: again, from a fresh read
            raise
        except _ERRORS as e:
            if missing is not None:
                await _take_away(c, missing)
            raise RawLoadError("Can't destroy child directories", e) from None
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


async def load_raw(c: Client, o: Options, text: str) -> int:
    if not text.strip() and not o.allow_empty:
        # A 0-byte file (a failed "nidump -r ... > file") would empty the directory.
        raise ToolExit(EXIT_ERROR, f"{PROG}: empty input: refusing to replace {o.what} "
                       "with nothing (-f or --allow-empty to do so)")
    try:
        tree = raw_from_text(text)
    except FormatError as e:
        raise ToolExit(EXIT_ERROR, f"{PROG}: {e}") from None
    try:
        removed, made = await raw_load(c, o.what, tree)
    except RawLoadError as e:
        raise ToolExit(EXIT_ERROR, e.line()) from None
    except COMM_ERRORS as e:
        raise ToolExit(EXIT_ERROR, f"Can't write directory: {error_text(e)}") from None
    if o.verbose:
        say(f"{o.what}: {removed} directories removed, {made} created")
    return 0


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
