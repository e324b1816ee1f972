"""nigrep: search a domain's directories for properties matching a regular expression
(tools §4.2).

::

    nigrep [-T timeout] <regex> [-t] domain [directory ...]

The search is depth-first from ``/`` or from each directory given; a directory is searched
before its children, children in child order. A property matches when its key or any of
its values matches. Each match prints ``<id> <path>:  <key> <v1> <v2>...`` (two spaces
after the colon), the path made of each directory's first ``name`` value, ``dir: <id>``
for a directory without one, ``/`` for the root. Errors while searching use the niutil
exit mapping (tools §1.5); a domain that cannot be opened (an unknown name, a ``-t``
argument that does not parse, a server that cannot be reached) prints the original's
lines, then the usage, and exits 1, as the original did (it called usage() whenever
do_open failed).

The expression is POSIX *extended* (ERE), unanchored, as the original compiled it with
``regcomp(REG_EXTENDED)``. Python's ``re`` speaks a Perl-like dialect, so
:func:`netinfo.client.search.ere_to_python` translates the expression first (the web manager's
search shares it); see its docstring for the mapping and the remaining differences.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from ..client.search import BadExpression, compile_ere, ere_to_python
from ..client.search import join_path as _join
from ..client.search import label as _label
from ..errors import NiError
from ..model import Proplist
from .common import (
    COMM_ERRORS,
    DEFAULT_TIMEOUT,
    ToolExit,
    UsageError,
    dump_json,
    error_text,
    exit_code,
    open_or_usage,
    parse_timeout,
    tool_main,
)

PROG = "nigrep"
#: The usage line exactly as the original prints it (stderr, exit 1), also after any
#: failure to open the domain (issue 17: compared with the original binary).
USAGE = "usage: nigrep [-T timeout] exp [-t] domain [dir ...]"
HELP = f"""{USAGE}

<exp> is a regular expression, <dir> a directory to search below.

Print every property of <domain> whose key or any value matches <regex> (a POSIX extended
regular expression, unanchored), searching depth-first from / or from each <directory>.
Each match prints as: <id> <path>:  <key> <values...>

options:
  -t host/tag   the domain is the next argument, <host>/<tag> (the server's address
                and the domain's tag); -t may come before or after <regex>
  -T timeout    read timeout in seconds (default 30)
  --json        print the matches as JSON instead
  --            end of options (for an expression that starts with '-')
  -h, --help    show this help and exit
"""
#: READs kept in flight while walking one directory's children.
BATCH = 128
#: Deepest directory nesting followed (a guard against a corrupt parent/child cycle).
MAX_DEPTH = 256

__all__ = ["BadExpression", "compile_ere", "ere_to_python", "parse_args", "main"]


# -- arguments ---------------------------------------------------------------------------------

@dataclass
class Options:
    """A parsed nigrep command line; *pattern* is the compiled expression."""

    tagged: bool = False
    timeout: float = DEFAULT_TIMEOUT
    json: bool = False
    help: bool = False
    operands: list[str] = field(default_factory=list)
    pattern: re.Pattern[str] | None = None


def parse_args(argv: list[str]) -> Options:
    """Options may come anywhere before the directories: ``-T`` before the expression as
    the synopsis shows, or later. ``-t`` takes the next argument as the domain, as the
    original's did (niutil too reads the domain right after ``-t``): ``nigrep re -t
    host/tag`` and ``nigrep -t host/tag re`` are the same search. ``--`` makes the next
    argument an operand (an expression starting with ``-``). Once the expression and the
    domain are known, every argument is a directory. The expression is compiled here
    (:func:`compile_ere`).

    :raises UsageError: (exit 1), also for an expression that is not a valid ERE.
        ``-h``/``--help`` stops the scan (help, exit 0).
    """
    opts = Options()
    regex: str | None = None
    domain: str | None = None
    directories: list[str] = []
    i = 0
    force = False
    while i < len(argv):
        arg = argv[i]
        if (regex is not None and domain is not None) or force or not arg.startswith("-") \
                or arg == "-":
            if regex is None:
                regex = arg
            elif domain is None:
                domain = arg
            else:
                directories.append(arg)
            force = False
        elif arg == "--":
            force = True
        elif arg in ("-h", "--help"):
            opts.help = True
            return opts
        elif arg == "-t":
            opts.tagged = True
            if domain is None and i + 1 < len(argv):
                i += 1
                domain = argv[i]
        elif arg == "--json":
            opts.json = True
        elif arg == "-T":
            if i + 1 >= len(argv):
                raise UsageError(f"{PROG}: option -T needs a value")
            i += 1
            opts.timeout = parse_timeout(argv[i], prog=PROG)
        else:
            raise UsageError(f"{PROG}: unknown option {arg}")
        i += 1
    if regex is None or domain is None:
        raise UsageError()
    opts.operands = [regex, domain, *directories]
    try:
        opts.pattern = compile_ere(regex)
    except BadExpression:
        raise UsageError(f"Bad expression: {regex}") from None
    return opts


# -- the search --------------------------------------------------------------------------------

def match_line(did: int, path: str, key: str, values: list[str]) -> str:
    """``<id> <path>:  <key> <v1> <v2>...`` (tools §4.2)."""
    return f"{did} {path}:  {key}" + "".join(" " + v for v in values) + "\n"


class Grep:
    """One search: walks directories and reports matches through :meth:`emit`."""

    def __init__(self, client: Any, pattern: re.Pattern[str], as_json: bool) -> None:
        self.client = client
        self.pattern = pattern
        self.as_json = as_json
        self.found: list[dict[str, Any]] = []

    async def call(self, step: str, coro: Any) -> Any:
        """Await one library call; a failure stops the tool with ``<step>: <message>``."""
        try:
            return await coro
        except (NiError, *COMM_ERRORS) as e:
            raise ToolExit(exit_code(e), f"{step}: {error_text(e)}") from None

    def emit(self, did: int, path: str, props: Proplist) -> None:
        search = self.pattern.search
        for key, values in props:
            if search(key) or any(search(v) for v in values):
                if self.as_json:
                    self.found.append({"id": did, "path": path, "name": key,
                                       "values": list(values)})
                else:
                    sys.stdout.write(match_line(did, path, key, values))

    async def path_of(self, did: int, props: Proplist) -> str:
        """The path of a start directory, built from the first names of it and of each of
        its ancestors (PARENT, READ) up to the root."""
        root = (await self.call("ni_read", self.client.root())).object
        labels: list[str] = []
        cur, cur_props = did, props
        for _ in range(MAX_DEPTH):
            if cur == root:
                break
            labels.append(_label(cur, cur_props))
            parent, _ = await self.call("ni_read", self.client.parent(cur))
            cur = parent
            _, cur_props = await self.call("ni_read", self.client.read(cur))
        return "/" + "/".join(reversed(labels))

    async def search(self, directory: str) -> None:
        did = (await self.call("ni_pathsearch", self.client.pathsearch(directory))).object
        _, props = await self.call("ni_read", self.client.read(did))
        await self.walk(did, await self.path_of(did, props), props, 0)

    async def walk(self, did: int, path: str, props: Proplist, depth: int) -> None:
        """Report *did*, then each child in child order, depth first."""
        self.emit(did, path, props)
        if depth >= MAX_DEPTH:
            return
        kids, _ = await self.call("ni_list", self.client.children(did))
        for start in range(0, len(kids), BATCH):
            batch = kids[start:start + BATCH]
            # pipelined READs; a failure is reported when its child's turn comes, so the
            # output before it is the same as with one READ at a time
            reads = await asyncio.gather(*(self.client.read(c) for c in batch),
                                         return_exceptions=True)
            for cid, got in zip(batch, reads, strict=True):
                if isinstance(got, BaseException):
                    if isinstance(got, (NiError, *COMM_ERRORS)):
                        raise ToolExit(exit_code(got), f"ni_read: {error_text(got)}")
                    raise got
                cprops = got[1]
                await self.walk(cid, _join(path, _label(cid, cprops)), cprops, depth + 1)


async def grep(opts: Options) -> int:
    """Search the domain and print the matches (or ``--json``); returns the exit status."""
    assert opts.pattern is not None
    pattern = opts.pattern
    domain, directories = opts.operands[1], opts.operands[2:] or ["/"]
    client = await open_or_usage(PROG, domain, USAGE, tagged=opts.tagged,
                                 timeout=opts.timeout)
    g = Grep(client, pattern, opts.json)
    try:
        for directory in directories:
            await g.search(directory)
    finally:
        await client.close()
    if opts.json:
        dump_json({"expression": opts.operands[0], "domain": domain,
                   "directories": directories, "matches": g.found})
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``nigrep``: returns the exit status (tools §4.2, §1.5)."""
    return tool_main(argv, parse_args, USAGE + "\n", HELP, grep, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
