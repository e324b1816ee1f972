"""nidump: print a NetInfo table as a flat file, or a subtree in the raw format (tools §2).

::

    nidump passwd .
    nidump -r /users .
    nidump -r /users -t 127.0.0.1/network      # the code's order (tools §2.1)
    nidump -t -r /users 127.0.0.1/network      # the man page's order

Argument orders. The man page writes ``nidump [-t] {-r directory | format} domain``;
the original code's usage is ``nidump [-r] [-T timeout] {directory | format} [-t] domain``
and its ``-t`` swallowed the next argument as the domain. Both are accepted (tools §2.1
recommends it): ``-t`` takes the next word as the domain only when that word could be a
``host/tag`` (it contains a ``/``, does not start with ``/`` or ``-``, and is not a format
name); otherwise ``-t`` is a plain flag and the domain is the last operand. ``-r`` is a
flag: the first operand is then a directory path (tools §0.4). A third operand is
ignored ([208]'s mount-map name). ``-T`` is accepted anywhere.

Output is exactly the original's (tools §2.2, §2.3), with two deliberate changes: ``-r``
escapes a backslash in a key or value as ``\\\\``. The [369] tool printed it bare, and its
own ``niload -r`` then dropped it, so a value such as ``fs:\\/export`` did not survive a
backup and restore. Escaping it makes ``nidump -r | niload -r`` give back the same tree
whatever it holds (the issue's requirement); text without backslashes prints unchanged.
And ``-r`` indents directories deeper than 16 levels as at level 16
(:data:`~netinfo.client.flat.INDENT_LEVELS`): four blanks a level made a chain's dump
about 12·depth² bytes (1.2 GB at 10,000 levels, issue 18 N7); blanks mean nothing to
``niload -r``, and real trees are a handful of levels deep.

Exit status (tools §2.1): 0 on success, also when a format's table does not exist
(nothing is printed then, except bootptab's header); 1 for usage errors (an unknown
format prints just the usage, which lists the formats, Appendix B), a domain that cannot
be opened (the message with its reason, then the usage), a read that fails part way, an
output error, and -- unlike the original, which printed nothing and exited 0 -- a ``-r``
directory that does not exist (``nidump: can't read directory /nosuch: No such
directory``); a ``-t`` argument that does not parse prints the messages of tools §0.2
and exits 217–221, as the shared domain opener does for every tool (tools §1.5). nidump
never authenticates. ``mountmaps`` ([208]) is a format again: it dumps ``/mountmaps``.

Beyond the original: ``ldif`` (issue 22; docs/ldap.md "LDIF"): the domain, or with
``-r PATH`` (``nidump ldif -r PATH DOMAIN`` or ``nidump -r PATH ldif DOMAIN``) a subtree,
as the RFC 2307 entries of the LDAP front door, under ``dc=TAG,dc=netinfo`` or
``--base DN``; ``ldif --schema`` prints the schema OpenLDAP needs besides its own.
``--help``; ``--json`` (the records each flat format prints, or the
raw tree, as JSON); reads in batches (one LISTALL per table; ``-r`` walks the tree level
by level with READ and CHILDREN calls pipelined on one connection); a progress bar on
stderr for big ``-r`` dumps when stderr is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..client import dumps
from ..client.core import Client
from ..client.flat import FORMATS, NIDUMP_FORMATS, RECORD_FORMATS
from ..client.raw import RawNode
from ..errors import NiError, Status
from .common import (
    COMM_ERRORS,
    DEFAULT_TIMEOUT,
    LDIF,
    Progress,
    ToolExit,
    UsageError,
    dump_json,
    error_text,
    open_or_usage,
    parse_timeout,
    props_json,
    scan_args,
    tool_main,
    usage_text,
    ldif_operands,
)

PROG = "nidump"
EXIT_USAGE = 1

#: The usage text exactly as the original prints it, after no arguments and after an
#: unknown format alike (stderr, exit 1; tools §2.1, Appendix B).
USAGE = usage_text(PROG, "[-r] [-T timeout] {directory | format} [-t] domain",
                   NIDUMP_FORMATS)

HELP_EXTRA = """\
options: -r (the operand is a directory path: dump that subtree in raw format),
         -t (the domain is <host>/<tag>; either before the operands or right before
             the domain), -T <timeout> (RPC timeout in seconds, default 30),
         --json (machine-readable output), --help (this text)
format ldif: the whole domain as RFC 2307 LDIF under dc=TAG,dc=netinfo, what the
         LDAP front door serves (docs/ldap.md), for slapadd or ldapadd;
         nidump ldif -r <directory> <domain>: that subtree only;
         --base <DN>: the domain's DN (netinfod --ldap-base) instead of dc=TAG,dc=netinfo;
         nidump ldif --schema: the schema OpenLDAP needs beyond its core, cosine,
         inetorgperson, nis and misc schemas (slapd.conf syntax)
"""


@dataclass
class Options:
    """A parsed nidump command line."""

    raw: bool = False
    what: str = ""          #: the format name, or the directory path with -r
    domain: str = ""
    tagged: bool = False
    timeout: float = DEFAULT_TIMEOUT
    json: bool = False
    help: bool = False
    #: ``ldif`` only: the subtree's path (``-r``), the base DN (``--base``)
    ldif_path: str | None = None
    base: str | None = None
    #: ``ldif --schema``: print the schema slapd needs besides its own, read nothing
    schema: bool = False


def take_base(prog: str, args: list[str]) -> tuple[list[str], str | None]:
    """``--base DN`` or ``--base=DN`` taken out of *args* (the LDIF format's option).
    :raises UsageError: no DN follows."""
    out: list[str] = []
    base: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--base":
            if i + 1 >= len(args):
                raise UsageError(f"{prog}: --base needs a DN")
            base = args[i + 1]
            i += 2
            continue
        if a.startswith("--base="):
            base = a[7:]
        else:
            out.append(a)
        i += 1
    return out, base


def parse_args(args: list[str]) -> Options:
    """nidump's command line, in either order (module docstring). :raises UsageError:."""
    args, base = take_base(PROG, args)
    schema = "--schema" in args
    args = [a for a in args if a != "--schema"]
    s = scan_args(PROG, args, "r", "T", (*NIDUMP_FORMATS, LDIF))
    o = Options(raw="r" in s.flags, tagged="t" in s.flags, json="--json" in s.flags,
                help="--help" in s.flags, timeout=parse_timeout(s.values.get("T"), prog=PROG))
    if o.help:
        return o
    ops = s.operands
    if schema:
        if not ops or ops[0] != LDIF or len(ops) > 2 or o.raw:
            raise UsageError(f"{PROG}: --schema is for the ldif format only")
        o.what, o.schema = LDIF, True
        return o
    sub = ldif_operands(ops, s.tagged_domain is not None) if o.raw else None
    if sub is not None:
        o.raw = False
        o.ldif_path, ops = sub[0], [LDIF, *sub[1]]
        if not o.ldif_path.startswith("/"):
            raise UsageError(f"{PROG}: ldif -r needs an absolute directory path, "
                             f"found {o.ldif_path}")
    if base is not None:
        o.base = base
    ops = list(ops)
    if s.tagged_domain is not None:
        if not ops:
            raise UsageError()
        o.what, o.domain = ops[0], s.tagged_domain
    else:
        if len(ops) < 2:
            raise UsageError()
        o.what, o.domain = ops[0], ops[1]
    if not o.raw and o.what != LDIF and (o.what not in FORMATS or not FORMATS[o.what].nidump):
        raise UsageError()   # the usage lists the known formats (Appendix B)
    if o.base is not None and o.what != LDIF:
        raise UsageError(f"{PROG}: --base is for the ldif format only")
    if o.what == LDIF and o.json:
        raise UsageError(f"{PROG}: --json does not apply to ldif")
    return o


# -- progress ---------------------------------------------------------------------------------

class LazyProgress:
    """A :class:`Progress` that only starts once more than ~1,000 items were seen (the
    total of a tree walk is unknown until it ends)."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream
        self.seen = 0
        self.bar: Progress | None = None

    def advance(self, n: int = 1) -> None:
        self.seen += n
        if self.bar is not None:
            self.bar.advance(n)
        elif self.seen > Progress.THRESHOLD:
            self.bar = Progress(self.label, None, self.stream)
            self.bar.advance(self.seen)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- JSON ---------------------------------------------------------------------------------------

def raw_json(tree: RawNode) -> dict[str, Any]:
    """``--json`` for ``-r``: ``{"properties": [...], "children": [...]}`` recursively."""
    out: dict[str, Any] = {"properties": props_json(tree.props), "children": []}
    stack = [(tree, out)]
    while stack:
        node, obj = stack.pop()
        for child in node.children:
            cobj = {"properties": props_json(child.props), "children": []}
            obj["children"].append(cobj)
            stack.append((child, cobj))
    return out


# -- the dump ----------------------------------------------------------------------------------

class OutputFailed(Exception):
    """Writing a dump that streams failed (a full disk): *error* is the OSError, told
    apart from a failure to read the domain, which is also an OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def write_streamed(text: str) -> None:
    """:func:`write_out` while the domain is still being read."""
    try:
        write_out(text)
    except OSError as e:
        raise OutputFailed(e) from e


def write_out(text: str) -> None:
    """Write *text* to stdout byte-exact: values may hold any bytes (surrogateescape)."""
    buf = getattr(sys.stdout, "buffer", None)
    if buf is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buf.write(text.encode("utf-8", "surrogateescape"))
    buf.flush()


class BufferedOut:
    """What a streaming dump writes through: pieces gathered and written to stdout (by
    :func:`write_out`) about 64 KiB at a time, the rest at :meth:`flush`."""

    SIZE = 1 << 16

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= self.SIZE:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            text = "".join(self.parts)
            self.parts, self.size = [], 0
            write_streamed(text)


async def dump_raw(c: Client, o: Options) -> Callable[[], None]:
    """Dump the subtree: written as it is read (bounded memory, any size); with
    ``--json`` read whole, then printed by what this returns.

    :raises NiError: NI_NODIR when the path does not exist. The original printed nothing
        and exited 0, so ``nidump -r /nosuch . > backup.raw`` left an empty "backup"
        that ``niload -r`` would have restored as nothing (issue #9); it is an error now.
    """
    progress = LazyProgress(PROG)
    try:
        if not o.json:
            out = BufferedOut()
            try:
                # escape_backslashes: the lossless choice (module docstring).
                if not await dumps.write_subtree(c, o.what, out.write,
                                                 escape_backslashes=True,
                                                 progress=progress.advance):
                    raise NiError(Status.NODIR)
            finally:
                out.flush()
            return lambda: None
        tree = await dumps.read_subtree(c, o.what, progress=progress.advance)
    finally:
        progress.close()
    if tree is None:
        raise NiError(Status.NODIR)
    return lambda: dump_json(raw_json(tree))


async def dump_flat(c: Client, o: Options) -> Callable[[], None]:
    """Dump the format's table. A format printed record by record
    (:data:`~netinfo.client.flat.RECORD_FORMATS`) is written as it is read, a piece at a
    time (:func:`netinfo.client.dumps.table_pieces`: one LISTALL, decoded as it arrives for
    a big table); the others, and ``--json``, are read whole, then printed by what this
    returns."""
    spec = FORMATS[o.what]
    if o.what in RECORD_FORMATS and not o.json:
        found, pieces = await dumps.table_pieces(c, o.what)
        async for piece in pieces:
            write_streamed(spec.to_text(piece))
        if not found and spec.dump_when_missing:
            write_streamed(spec.to_text([]))
        return lambda: None
    found, records = await dumps.read_table(c, o.what)
    if o.json:
        # The records that give output, i.e. those the format does not skip.
        empty = spec.to_text([])
        shown = [r for r in records if spec.to_text([r]) != empty]
        return lambda: dump_json({"format": o.what, "directory": spec.directory,
                                  "records": [props_json(r) for r in shown]})
    if not found and not spec.dump_when_missing:
        return lambda: None
    return lambda: write_out(spec.to_text(records))


async def dump_ldif(c: Client, o: Options) -> Callable[[], None]:
    """The domain, or with ``-r`` the subtree, as LDIF (issue 22 item 5; ``server/ldif``),
    written as it is made. :raises UsageError: a --base that is not a DN."""
    from ..server.ldif import ldif_entries   # only here: nidump's start-up stays lean
    from ..server.rfc2307 import DnError, default_base, parse_dn
    try:
        base = parse_dn(o.base if o.base is not None else
                        default_base(getattr(c, "tag", None) or "local"))
    except DnError as e:
        raise ToolExit(EXIT_USAGE, f"{PROG}: --base {o.base}: {e}") from None
    if not base:
        raise ToolExit(EXIT_USAGE, f"{PROG}: --base needs a DN")
    where = o.ldif_path or "/"
    at = await dumps.path_names(c, where) if where != "/" else ()
    progress = LazyProgress(PROG)
    try:
        tree = await dumps.read_subtree(c, where, progress=progress.advance)
    finally:
        progress.close()
    if tree is None:
        raise NiError(Status.NODIR)
    out = BufferedOut()
    try:
        for record in ldif_entries(tree, base, at):
            out.write(record)
    finally:
        out.flush()
    return lambda: None


async def _main(o: Options) -> int:
    if o.schema:
        from ..server.ldif import slapd_schema
        write_out(slapd_schema())
        return 0
    # tools §2.1/§2.7: a domain that cannot be opened (a -t argument that does not parse
    # included: the original called usage() whenever do_open failed) prints the usage
    # after the reason and exits 1.
    c = await open_or_usage(PROG, o.domain, USAGE, tagged=o.tagged, timeout=o.timeout)
    try:
        c.timeout = c.write_timeout = o.timeout
        try:
            show = await (dump_raw(c, o) if o.raw else dump_ldif(c, o) if o.what == LDIF
                          else dump_flat(c, o))
        except OutputFailed as e:
            raise e.error from None   # stdout failed, not the domain: guarded says so
        except (NiError, *COMM_ERRORS) as e:
            where = o.what if o.raw else (o.ldif_path or "/") if o.what == LDIF \
                else FORMATS[o.what].directory
            raise ToolExit(EXIT_USAGE, f"{PROG}: can't read directory {where}: "
                           f"{error_text(e)}") from None
        show()
        return 0
    finally:
        await c.close()


def main(argv: list[str] | None = None) -> int:
    """``nidump``: returns the exit status (tools §2.1)."""
    return tool_main(argv, parse_args, USAGE, USAGE + HELP_EXTRA, _main, bulk=True, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
