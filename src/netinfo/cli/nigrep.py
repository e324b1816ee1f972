"""nigrep: search a domain's directories for properties matching a regular expression
(tools §4.2).

::

    nigrep [-T timeout] <regex> [-t] domain [directory ...]

The search is depth-first from ``/`` or from each directory given; a directory is searched
before its children, children in child order. A property matches when its key or any of
its values matches. Each match prints ``<id> <path>:  <key> <v1> <v2>...`` (two spaces
after the colon), the path made of each directory's first ``name`` value, ``dir: <id>``
for a directory without one, ``/`` for the root. Errors use the niutil exit mapping
(tools §1.5).

The expression is POSIX *extended* (ERE), unanchored, as the original compiled it with
``regcomp(REG_EXTENDED)``. Python's ``re`` speaks a Perl-like dialect, so
:func:`ere_to_python` translates the expression first; see its docstring for the mapping
and the remaining differences.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import NiError
from ..model import Proplist, first_values
from .common import (COMM_ERRORS, DEFAULT_TIMEOUT, ToolExit, UsageError, dump_json, error_text,
                     exit_code, open_for_tool, parse_timeout, tool_main)

PROG = "nigrep"
USAGE = "usage: nigrep [-T timeout] <regex> [-t] domain [directory ...]"
HELP = f"""{USAGE}

Print every property of <domain> whose key or any value matches <regex> (a POSIX extended
regular expression, unanchored), searching depth-first from / or from each <directory>.
Each match prints as: <id> <path>:  <key> <values...>

options:
  -t            <domain> is <host>/<tag> (the server's address and the domain's tag)
  -T timeout    read timeout in seconds (default 30)
  --json        print the matches as JSON instead
  --            end of options (for an expression that starts with '-')
  -h, --help    show this help and exit
"""
#: READs kept in flight while walking one directory's children.
BATCH = 128
#: Deepest directory nesting followed (a guard against a corrupt parent/child cycle).
MAX_DEPTH = 256


# -- POSIX ERE → Python re -------------------------------------------------------------------

class BadExpression(ValueError):
    """The expression is not a valid POSIX extended regular expression."""


#: POSIX character classes in the C locale, as Python set items.
_CLASSES = {
    "alpha": "A-Za-z",
    "digit": "0-9",
    "alnum": "0-9A-Za-z",
    "upper": "A-Z",
    "lower": "a-z",
    "xdigit": "0-9A-Fa-f",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": "!-/:-@\\[-`{-~",
    "print": " -~",
    "graph": "!-~",
    "cntrl": "\\x00-\\x1f\\x7f",
}
#: RE_DUP_MAX: the largest bound allowed in an interval ``{m,n}``.
DUP_MAX = 255


def _set_char(c: str) -> str:
    """A literal character inside a Python ``[...]`` set."""
    return "\\" + c if c in "\\]-^[&~|" else c


def _bracket(ere: str, i: int) -> tuple[str, int]:
    """Translate the bracket expression starting after ``[`` at *i*; returns the Python
    set and the index after the closing ``]``."""
    n = len(ere)
    neg = i < n and ere[i] == "^"
    if neg:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= n:
            raise BadExpression("brackets ([ ]) not balanced")
        c = ere[i]
        if c == "]" and not first:
            i += 1
            break
        first = False
        # one "end point": a character, a collating symbol [.x.] or an equivalence class
        # [=x=]; or a character class [:name:], which cannot start or end a range.
        if c == "[" and i + 1 < n and ere[i + 1] in ".=:":
            kind = ere[i + 1]
            close = ere.find(kind + "]", i + 2)
            if close < 0:
                raise BadExpression("brackets ([ ]) not balanced")
            name = ere[i + 2:close]
            i = close + 2
            if kind == ":":
                if name not in _CLASSES:
                    raise BadExpression("invalid character class")
                items.append(_CLASSES[name])
                continue
            if len(name) != 1:  # only single-character collating elements exist in C
                raise BadExpression("invalid collating element")
            lo = name
        else:
            lo = c
            i += 1
        # a range lo-hi, unless the '-' is the last character before ']'
        if i + 1 < n and ere[i] == "-" and ere[i + 1] != "]":
            if ere[i + 1] == "[" and i + 2 < n and ere[i + 2] in ".=":
                kind = ere[i + 2]
                close = ere.find(kind + "]", i + 3)
                if close < 0:
                    raise BadExpression("brackets ([ ]) not balanced")
                hi = ere[i + 3:close]
                if len(hi) != 1:
                    raise BadExpression("invalid collating element")
                i = close + 2
            elif ere[i + 1] == "[" and i + 2 < n and ere[i + 2] == ":":
                raise BadExpression("invalid character range")
            else:
                hi = ere[i + 1]
                i += 2
            if ord(hi) < ord(lo):
                raise BadExpression("invalid character range")
            items.append(_set_char(lo) + "-" + _set_char(hi))
        else:
            items.append(_set_char(lo))
    return "[" + ("^" if neg else "") + "".join(items) + "]", i


def ere_to_python(ere: str) -> str:
    """Translate a POSIX extended regular expression into Python ``re`` syntax.

    The mapping (compile the result with ``re.DOTALL``, match with ``search``):

    * Ordinary characters, ``.``, ``^``, ``|``, ``( )``, ``* + ?`` and intervals
      ``{m}``, ``{m,}``, ``{m,n}`` mean the same in both. Groups become ``(?:...)``: an
      ERE has no use for capturing, and ``(?`` constructs cannot arise.
    * ``.`` matches a newline in POSIX (no ``REG_NEWLINE``): hence ``re.DOTALL``.
      ``$`` matches only at the very end of the string: it becomes ``\\Z`` (Python's
      ``$`` would also match before a final newline).
    * ``\\c`` outside brackets is the literal ``c`` for every ``c``, as in the BSD regex
      library the original used. So ``\\d``, ``\\w``, ``\\b`` or ``\\1`` do **not** get
      Python's (or GNU's) meaning: they match ``d``, ``w``, ``b``, ``1``.
    * Inside a bracket expression a backslash is an ordinary character; ``]`` first is
      literal; ``-`` first or last is literal; ``[:class:]`` (C locale: alpha, digit,
      alnum, upper, lower, xdigit, space, blank, punct, print, graph, cntrl) becomes
      explicit ranges; ``[.c.]`` and ``[=c=]`` are the single character ``c``. Python
      set metacharacters (``\\ [ ^ - & ~ |``) are escaped where they are literal.
    * ``{`` followed by a digit starts an interval (bounds at most 255, m <= n); any
      other ``{``, and any ``}``, is literal. (Python would read ``{,3}`` as ``{0,3}``.)
    * Rejected, as the BSD ``regcomp`` rejects them: an empty expression, an empty group
      or alternative (``()``, ``a|``, ``|a``), a repetition with nothing to repeat
      (``*a``, ``(+a)``, ``^*``) or applied twice (``a**``, ``a+?``: in Python these
      would be lazy or possessive quantifiers), an unmatched ``(`` or ``)``, a trailing
      ``\\``, a bad range or class.

    Remaining difference: POSIX picks the leftmost *longest* match and Python the
    leftmost *first* one. nigrep only asks whether a string matches at all, and the two
    rules agree on that, so the output is the same.

    :raises BadExpression: the expression is not a valid ERE.
    """
    out: list[str] = []
    n = len(ere)
    i = 0
    depth = 0
    # what the previous token was: "start" (start of a branch), "atom", "anchor", "repeat"
    prev = "start"
    branch_empty = True
    if not ere:
        raise BadExpression("empty (sub)expression")
    while i < n:
        c = ere[i]
        if c == "(":
            out.append("(?:")
            depth += 1
            prev, branch_empty = "start", True
            i += 1
        elif c == ")":
            if depth == 0:
                raise BadExpression("parentheses not balanced")
            if branch_empty:
                raise BadExpression("empty (sub)expression")
            out.append(")")
            depth -= 1
            prev, branch_empty = "atom", False
            i += 1
        elif c == "|":
            if branch_empty:
                raise BadExpression("empty (sub)expression")
            out.append("|")
            prev, branch_empty = "start", True
            i += 1
        elif c in "*+?" or (c == "{" and i + 1 < n and ere[i + 1] in "0123456789"):
            if prev == "repeat":
                raise BadExpression("repetition-operator operand invalid")
            if prev != "atom":
                raise BadExpression("repetition-operator operand invalid")
            if c == "{":
                m = re.match(r"\{([0-9]+)(,([0-9]*))?\}", ere[i:])
                if m is None:
                    raise BadExpression("invalid repetition count(s)")
                lo = int(m.group(1))
                hi = None if m.group(2) and not m.group(3) else int(m.group(3) or lo)
                if lo > DUP_MAX or (hi is not None and (hi > DUP_MAX or hi < lo)):
                    raise BadExpression("invalid repetition count(s)")
                out.append(m.group(0))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
            prev = "repeat"
        elif c == "^":
            out.append("^")
            prev, branch_empty = "anchor", False
            i += 1
        elif c == "$":
            out.append(r"\Z")
            prev, branch_empty = "anchor", False
            i += 1
        elif c == ".":
            out.append(".")
            prev, branch_empty = "atom", False
            i += 1
        elif c == "[":
            text, i = _bracket(ere, i + 1)
            out.append(text)
            prev, branch_empty = "atom", False
        elif c == "\\":
            if i + 1 >= n:
                raise BadExpression("trailing backslash (\\)")
            out.append(re.escape(ere[i + 1]))
            prev, branch_empty = "atom", False
            i += 2
        else:
            out.append(re.escape(c))
            prev, branch_empty = "atom", False
            i += 1
    if depth:
        raise BadExpression("parentheses not balanced")
    if branch_empty:
        raise BadExpression("empty (sub)expression")
    return "".join(out)


def compile_ere(ere: str) -> re.Pattern[str]:
    """The compiled Python form of a POSIX ERE. :raises BadExpression:."""
    try:
        return re.compile(ere_to_python(ere), re.DOTALL)
    except re.error as e:  # should not happen after translation; reject all the same
        raise BadExpression(str(e)) from None


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
    """Options may come anywhere before the domain: ``-T`` before the expression and ``-t``
    after it, as the synopsis shows, or the other way round. ``--`` makes the next argument
    an operand (an expression starting with ``-``). From the domain on, every argument is
    a directory. The expression is compiled here (:func:`compile_ere`).

    :raises UsageError: (exit 1), also for an expression that is not a valid ERE.
        ``-h``/``--help`` stops the scan (help, exit 0).
    """
    opts = Options()
    i = 0
    force = False
    while i < len(argv):
        arg = argv[i]
        if len(opts.operands) >= 2 or force or not arg.startswith("-") or arg == "-":
            opts.operands.append(arg)
            force = False
        elif arg == "--":
            force = True
        elif arg in ("-h", "--help"):
            opts.help = True
            return opts
        elif arg == "-t":
            opts.tagged = True
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
    if len(opts.operands) < 2:
        raise UsageError()
    try:
        opts.pattern = compile_ere(opts.operands[0])
    except BadExpression:
        raise UsageError(f"Bad expression: {opts.operands[0]}") from None
    return opts


# -- the search --------------------------------------------------------------------------------

def _label(did: int, props: Proplist) -> str:
    """A directory's path component: its first ``name`` value, else ``dir: <id>``."""
    names = first_values(props, "name")
    return names[0] if names else f"dir: {did}"


def _join(parent: str, label: str) -> str:
    return ("" if parent == "/" else parent) + "/" + label


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
    client = await open_for_tool(PROG, domain, tagged=opts.tagged, timeout=opts.timeout)
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
