"""niload: load flat files or raw dumps from stdin into a NetInfo domain (tools §2.4-§2.7).

::

    niload passwd . < master.passwd
    niload -m hosts . < hosts           # merge into existing entries
    niload -r /users . < users.raw      # replace /users with the dump (nidump -r)

Flat formats follow the update rules of tools §2.7 exactly, through the pure helpers of
:mod:`netinfo.client.flat` (:func:`~netinfo.client.flat.record_key`,
:func:`~netinfo.client.flat.plan_update`, ...): each record in input order is looked up by
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
* Every bound a server keeps (:mod:`netinfo.wire.limits`: names and values of at most 65,535
  bytes, 65,535 values and properties, a directory one call can carry, 1,048,576
  entries, and for ``-r`` 256 levels below the root) is checked for the whole input
  before the first write or destroy; a record over one is refused like a line that does
  not parse, and ``-d`` destroys nothing (issue 18 #12). The input is held once, as
  bytes; its records are parsed and checked a piece at a time, never all held.
* With ``-v``, creating the missing table prints ``Creating NetInfo directory <t>``
  (tools §2.5); tools §2.7 rule 4 calls the same event ``creating directory: <t>``, and
  it is reported once.
* ``--help``; a progress bar on stderr for more than ~1,000 records when it is a terminal.
* ``ldif`` (issue 22; docs/ldap.md "LDIF"): LDIF from ``nidump ldif`` or an LDAP server's
  export, placed through the LDAP door's table (``server/ldif.place_entries``) and loaded
  directory by directory by the rules above, or with ``-r PATH`` (``niload -r PATH ldif
  DOMAIN``) replacing the subtree as a raw load does. Change records, URLs and input
  that does not parse are refused whole (exit 1, nothing written); ``-d`` is refused.

Exit status: 0 on success; 1 for usage errors, a domain that cannot be opened (with the
usage), a failed authentication, a table that cannot be accessed or updated, input that
does not parse, empty raw input without ``-f``, and a raw load that fails; a ``-t``
argument that does not parse exits 217-221 with the messages of tools §0.2.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from ..client import dumps
from ..client.core import Client
from ..client.domain import authenticate
from ..client.dumps import LoadError
from ..client.flat import NILOAD_FORMATS
from ..client.raw import FormatError
from ..client.verbs import use_master
from ..errors import NiError
from ..wire.limits import BIG_LIST_MAX, MAX_DEPTH, proplist_problem
from .common import (
    COMM_ERRORS,
    DEFAULT_TIMEOUT,
    Progress,
    ToolExit,
    UnknownOption,
    UsageError,
    error_text,
    open_or_usage,
    parse_timeout,
    scan_args,
    tool_main,
    usage_text,
    LDIF,
    ldif_operands,
)

if TYPE_CHECKING:
    from ..server.ldif import Placed

PROG = "niload"
EXIT_USAGE = 1
EXIT_ERROR = 1

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
format ldif: LDIF (nidump ldif's, or an LDAP server's export of RFC 2307 entries:
         posixAccount, posixGroup, ipHost, ipService, ...) through the table of the
         LDAP front door (docs/ldap.md); each entry is created, replaced or with -m
         merged like a flat file's record, in the directory its class or DN names;
         niload -r <directory> ldif <domain>: the input replaces that subtree
Input is read from stdin.
"""

#: the LDIF "format" (docs/ldap.md "LDIF"): not a flat file of one table

_ERRORS = (NiError, *COMM_ERRORS)


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
    #: ``ldif -r PATH``: the subtree the input replaces
    ldif_path: str | None = None


def parse_args(args: list[str]) -> Options:
    """niload's command line (tools §2.5); ``-t`` in either place, as nidump.

    :raises UsageError: with the original's messages.
    """
    args = ["-f" if a == "--allow-empty" else a for a in args]
    try:
        s = scan_args(PROG, args, "vdmprf", "uPT", (*NILOAD_FORMATS, LDIF))
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
    sub = ldif_operands(ops, s.tagged_domain is not None) if o.raw else None
    if sub is not None:
        o.raw = False
        o.ldif_path, ops = sub[0], [LDIF, *sub[1]]
    want = 1 if s.tagged_domain is not None else 2
    if len(ops) < want:
        raise UsageError()
    if len(ops) > want:
        raise UsageError(f"{PROG}: unknown argument: {ops[want]}")
    o.what = ops[0]
    o.domain = s.tagged_domain if s.tagged_domain is not None else ops[1]
    if not o.raw and o.what not in NILOAD_FORMATS and o.what != LDIF:
        raise UnknownFormat(f"{PROG}: unknown format: {o.what}")
    if o.what == LDIF and o.delete:
        raise UsageError(f"{PROG}: -d does not apply to ldif (-r <directory> replaces a "
                         "subtree)")
    return o


def read_stdin() -> str | bytes:
    """All of stdin, as bytes when there are bytes (the loaders decode a piece at a
    time, so a million-line input is held once, not twice); bytes that are not UTF-8
    survive (surrogateescape, as the wire)."""
    buf = getattr(sys.stdin, "buffer", None)
    if buf is None:
        return sys.stdin.read()
    return buf.read()


def say(text: str) -> None:
    """A message on stderr (``-v`` output and errors)."""
    sys.stderr.write(text + "\n")


def _flat_failure(e: LoadError) -> ToolExit:
    return ToolExit(EXIT_ERROR, f"{PROG}: {e.what}: {error_text(e.err)}")


async def load_flat(c: Client, o: Options, text: str | bytes) -> int:
    """``niload <format>`` (tools §2.7), through :func:`netinfo.client.dumps.load_flat`."""
    try:
        await dumps.load_flat(c, o.what, text, merge=o.merge, delete=o.delete,
                              verbose=o.verbose, write=sys.stderr.write,
                              progress=partial(Progress, PROG), prog=PROG)
    except FormatError as e:
        raise ToolExit(EXIT_ERROR, f"{PROG}: {e}") from None
    except LoadError as e:
        raise _flat_failure(e) from None
    return 0


async def load_raw(c: Client, o: Options, text: str | bytes) -> int:
    """``niload -r <path>`` (tools §2.7), through :func:`netinfo.client.dumps.raw_load`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    try:
        tree = dumps.check_raw_input(text, o.what, allow_empty=o.allow_empty)
    except FormatError as e:
        raise ToolExit(EXIT_ERROR, f"{PROG}: {e}") from None
    try:
        removed, made = await dumps.raw_load(c, o.what, tree, partial(Progress, PROG))
    except LoadError as e:
        raise ToolExit(EXIT_ERROR, e.line()) from None
    except COMM_ERRORS as e:
        raise ToolExit(EXIT_ERROR, f"Can't write directory: {error_text(e)}") from None
    if o.verbose:
        say(f"{o.what}: {removed} directories removed, {made} created")
    return 0


async def load_ldif(c: Client, o: Options, text: str | bytes) -> int:
    """``niload ldif`` (docs/ldap.md "LDIF"): the whole input is parsed, placed and
    checked against every bound before anything is written; then each directory's
    records are loaded by the flat formats' rules (:class:`~netinfo.client.dumps.FlatLoad`,
    tools §2.7), parents first, or with ``-r`` the input replaces the subtree
    (:func:`~netinfo.client.dumps.raw_load`: a failure leaves the old one)."""
    from ..server.ldif import LdifError, parse_ldif, place_entries   # only for ldif
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    path = o.ldif_path
    if path is not None and not text.strip() and not o.allow_empty:
        raise ToolExit(EXIT_ERROR, f"{PROG}: empty input: refusing to replace {path} with "
                       "nothing (-f or --allow-empty to do so)")
    at = await dumps.path_names(c, path, missing_ok=True) if path not in (None, "/") \
        else (() if path == "/" else None)
    try:
        placed = place_entries(parse_ldif(text), at)
    except LdifError as e:
        raise ToolExit(EXIT_ERROR, f"{PROG}: {e} (nothing loaded)") from None
    for note in placed.notes:
        say(f"{PROG}: {note}")
    problem = _ldif_problem(placed, at)
    if problem is not None:
        raise ToolExit(EXIT_ERROR, f"{PROG}: {problem} (nothing loaded)")
    if o.verbose:
        say(f"{placed.count} items read from input")
    if path is not None:
        if not placed.count and not o.allow_empty:
            raise ToolExit(EXIT_ERROR, f"{PROG}: no entries: refusing to replace {path} "
                           "with nothing (-f or --allow-empty to do so)")
        try:
            removed, made = await dumps.raw_load(c, path, placed.tree, partial(Progress, PROG))
        except LoadError as e:
            raise ToolExit(EXIT_ERROR, e.line()) from None
        except COMM_ERRORS as e:
            raise ToolExit(EXIT_ERROR, f"Can't write directory: {error_text(e)}") from None
        if o.verbose:
            say(f"{path}: {removed} directories removed, {made} created")
        return 0
    for table, records in placed.tables.items():
        run = dumps.FlatLoad(c, None, merge=o.merge, verbose=o.verbose,
                             write=sys.stderr.write, progress=partial(Progress, PROG),
                             table=dumps.names_path(table))
        try:
            await run.run([records], len(records))
        except LoadError as e:
            raise _flat_failure(e) from None
    return 0


def _ldif_problem(placed: Placed, at: tuple[str, ...] | None) -> str | None:
    """Why the placed input cannot be loaded (a bound a server keeps), or None."""
    for table, records in placed.tables.items():
        if len(records) > BIG_LIST_MAX:
            return (f"{len(records)} entries under {dumps.names_path(table)}: a directory "
                    f"holds at most {BIG_LIST_MAX}")
        if len(table) + 1 > MAX_DEPTH:
            return f"entries nested deeper than {MAX_DEPTH} levels below the root"
        for props in records:
            why = proplist_problem(props)
            if why is not None:
                name = next((vs[0] for k, vs in props if k == "name" and vs), "?")
                return f"{dumps.names_path((*table, name))}: {why}"
    if at is not None:
        why = proplist_problem(placed.tree.props)
        if why is not None:
            return f"the input's first entry: {why}"
    return None


# -- main --------------------------------------------------------------------------------------

async def _main(o: Options) -> int:
    # A relative -r path is refused before anything else happens.
    if o.raw and not o.what.startswith("/"):
        raise ToolExit(EXIT_USAGE, "Raw load requires an absolute directory pathname, "
                       f"found {o.what}")
    if o.ldif_path is not None and not o.ldif_path.startswith("/"):
        raise ToolExit(EXIT_USAGE, "Raw load requires an absolute directory pathname, "
                       f"found {o.ldif_path}")
    # tools §2.1/§2.7: a domain that cannot be opened (a -t argument that does not parse
    # included: the original called usage() whenever do_open failed) prints the usage
    # after the reason and exits 1.
    c = await open_or_usage(PROG, o.domain, USAGE, tagged=o.tagged, timeout=o.timeout)
    try:
        c.timeout = c.write_timeout = o.timeout
        if o.prompt or o.password is not None:
            try:
                await authenticate(c, o.user, o.password, o.prompt and o.password is None,
                                   stdin_ok=False)
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
            if o.what == LDIF:
                return await load_ldif(c, o, text)
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
