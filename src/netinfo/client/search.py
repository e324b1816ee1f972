"""Searching domains as nigrep and nifind do (tools §4.2, §4.3), as a library.

* :func:`ere_to_python` / :func:`compile_ere`: POSIX extended regular expressions (what
  nigrep's ``regcomp(REG_EXTENDED)`` accepted) in Python's ``re`` dialect.
* :func:`grep`: every property of a subtree whose key or any value matches, depth first,
  a directory before its children, children in child order (tools §4.2), with the path
  nigrep prints (first ``name`` values, ``dir: <id>`` without one).
* :func:`find_up`: where a directory path exists in a domain and each domain above it,
  up to the root (nifind's default search, tools §4.3).

``cli/nigrep`` and the web manager share these; nothing here prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import NiError, Status
from ..model import Proplist, first_values
from .core import Client
from .domain import DomainClient, domain_name, open_parent
from .walk import CALL_ERRORS

__all__ = ["BadExpression", "ere_to_python", "compile_ere", "Match", "label", "join_path",
           "path_of", "grep", "Found", "find_up"]

# -- POSIX ERE → Python re (tools §4.2) ------------------------------------------------------

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


# -- grep (tools §4.2) ------------------------------------------------------------------------

@dataclass
class Match:
    """One matching property: the directory's id and path, the key and its values."""

    id: int
    path: str
    key: str
    values: list[str]


def label(did: int, props: Proplist) -> str:
    """A directory's path component: its first ``name`` value, else ``dir: <id>``."""
    names = first_values(props, "name")
    return names[0] if names else f"dir: {did}"


def join_path(parent: str, name: str) -> str:
    """*parent* path + one component, as nigrep builds paths (``/`` + name at the root)."""
    return ("" if parent == "/" else parent) + "/" + name


async def path_of(c: Client, did: int, max_depth: int = 256) -> str:
    """The nigrep path of *did*: first names of it and its ancestors up to the root."""
    root = (await c.root()).object
    labels: list[str] = []
    cur = did
    for _ in range(max_depth):
        if cur == root:
            break
        _, props = await c.read(cur)
        labels.append(label(cur, props))
        cur = (await c.parent(cur))[0]
    return "/" + "/".join(reversed(labels))


async def grep(c: Client, pattern: re.Pattern[str], start: int = 0, *, limit: int = 1000,
               max_dirs: int = 200_000) -> tuple[list[Match], bool]:
    """Matches in *start*'s subtree in nigrep's order (tools §4.2): (matches, complete).

    Stops after *limit* matches or *max_dirs* directories (complete is then False), so a
    browser's search stays bounded. Each directory's children are read with one LISTALL.
    """
    found: list[Match] = []
    _, props = await c.read(start)
    stack: list[tuple[int, str, Proplist]] = [(start, await path_of(c, start), props)]
    seen = 0
    search = pattern.search
    while stack:
        did, path, props = stack.pop()
        seen += 1
        for key, values in props:
            if search(key) or any(search(v) for v in values):
                found.append(Match(did, path, key, list(values)))
                if len(found) >= limit:
                    return found, False
        if seen >= max_dirs:
            return found, False
        kids, _ = await c.children(did)
        if not kids:
            continue
        _, kprops = await c.listall(did)
        # two calls: a concurrent change may make the lists differ; take what pairs up
        pairs = list(zip(kids, kprops, strict=False))
        for cid, cp in reversed(pairs):
            stack.append((cid, join_path(path, label(cid, cp)), list(cp)))
    return found, True


# -- find up the hierarchy (tools §4.3) --------------------------------------------------------

@dataclass
class Found:
    """nifind's answer for one domain: its name and the directory's id (None: absent)."""

    domain: str
    id: int | None
    error: str | None = None


async def find_up(c: DomainClient, path: str, max_depth: int = 32) -> list[Found]:
    """Search *path* in *c*'s domain and each domain above it, up to the root (tools §4.3:
    ``<dir> found in <domain>, id = <n>``). *c* stays open; parents are closed."""
    out: list[Found] = []
    cur = c
    try:
        for _ in range(max_depth):
            try:
                name = await domain_name(cur)
            except (*CALL_ERRORS,):
                name = "%s@%s" % (cur.server[1], cur.server[0])
            try:
                out.append(Found(name, (await cur.pathsearch(path)).object))
            except NiError as e:
                out.append(Found(name, None, None if e.status == Status.NODIR else str(e)))
            except CALL_ERRORS as e:
                out.append(Found(name, None, str(e) or type(e).__name__))
            try:
                parent = await open_parent(cur)
            except CALL_ERRORS:
                break   # NI_NETROOT at the root, or a parent that does not answer
            if cur is not c:
                await cur.close()
            cur = parent
    finally:
        if cur is not c:
            await cur.close()
    return out
