"""The raw format of nidump and niload (tools spec §2.3, §2.4): ``{ "k" = ( "v" );
CHILDREN = (...) }``, as pure ``str`` ⇄ :class:`RawNode` codecs. Broken input raises
:class:`FormatError` (with the line number), never anything else.

Pure: it takes and returns ``str``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import NetInfoError
from ..model import Proplist
from ..wire.limits import BIG_LIST_MAX, MAX_DEPTH, proplist_problem, string_problem

__all__ = [
    "FormatError", "RawNode", "raw_to_text", "raw_open", "raw_children_open",
    "raw_children_close", "raw_close", "raw_from_text", "MAX_RAW_DEPTH", "INDENT_LEVELS",
]


class FormatError(NetInfoError):
    """Text that does not parse. ``str(err)`` is niload's message, e.g.
    ``Expecting semicolon ";" at line 3`` (spec §2.4).

    :ivar reason: the message without the line part.
    :ivar line: 1-based line number, or None when no line applies.
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(reason if line is None else f"{reason} at line {line}")



# -- raw format (spec §2.3, §2.4) -----------------------------------------------------------

@dataclass
class RawNode:
    """One directory of a raw dump: its properties, then its children, in order."""

    props: Proplist = field(default_factory=list)
    children: list[RawNode] = field(default_factory=list)


#: Deepest nesting raw_from_text accepts by default: the server's bound
#: (:data:`netinfo.limits.MAX_DEPTH`), so that a raw dump of anything a server holds
#: loads again; deeper input is a FormatError, not a RecursionError.
MAX_RAW_DEPTH = MAX_DEPTH
#: Levels of indentation a raw dump shows (4 spaces each); deeper directories are
#: indented as at this level. Without a cap a chain of depth d prints about 12·d² bytes
#: of blanks (1.2 GB at 10,000 levels); with it a dump grows linearly with the tree.
#: Blanks mean nothing to the parser (spec §2.4), so the dump still loads.
INDENT_LEVELS = 16
_INDENT_CAP = 4 * INDENT_LEVELS


def _pad(indent: int) -> str:
    return " " * min(indent, _INDENT_CAP)


def _quote(s: str, escape_backslashes: bool) -> str:
    # [369] escapes only '"' (spec §2.3). A backslash is printed as is, which the raw
    # parser would then drop; escape_backslashes=True makes the dump lossless.
    if escape_backslashes:
        s = s.replace("\\", "\\\\")
    return '"' + s.replace('"', '\\"') + '"'


def raw_open(props: Proplist, indent: int, escape_backslashes: bool = False) -> str:
    """A directory's opening brace and property lines at *indent* in the [369] layout
    (spec §2.3): what :func:`raw_to_text` prints before its children."""
    pad = _pad(indent)
    inner = pad + "  "
    out = [pad + "{\n"]
    for key, values in props:
        line = [inner, _quote(key, escape_backslashes), " = ( "]
        for i, v in enumerate(values):
            line.append(_quote(v, escape_backslashes))
            line.append(", " if i + 1 < len(values) else " ")
        line.append(");\n")
        out.append("".join(line))
    return "".join(out)


def raw_children_open(indent: int) -> str:
    """``CHILDREN = (`` of the directory at *indent*."""
    return _pad(indent) + "  CHILDREN = (\n"


def raw_children_close(indent: int) -> str:
    """The children list's ``)`` and the closing brace of the directory at *indent*,
    without what follows the brace (``,`` between siblings, then a newline)."""
    pad = _pad(indent)
    return pad + "  )\n" + pad + "}"


def raw_close(indent: int) -> str:
    """The closing brace of a directory without children at *indent* (what follows it,
    ``,`` or a newline, is the caller's)."""
    return _pad(indent) + "}"


def raw_to_text(tree: RawNode, *, escape_backslashes: bool = False) -> str:
    """``nidump -r``: *tree* in the exact [369] layout (spec §2.3), ending in a newline.

    With *escape_backslashes* a backslash in a key or value is written ``\\\\`` so that
    :func:`raw_from_text` gives it back; the original printed it bare (the default).
    The pieces (:func:`raw_open`, ...) are those the streaming dump writes as it reads.
    """
    out: list[str] = []
    # An explicit stack instead of recursion: any depth prints.
    # Items: (node, indent, suffix after its closing brace) or a literal string.
    stack: list[tuple[RawNode, int, str] | str] = [(tree, 0, "")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node, indent, last = item
        out.append(raw_open(node.props, indent, escape_backslashes))
        if node.children:
            out.append(raw_children_open(indent))
            stack.append(raw_children_close(indent) + last + "\n")
            n = len(node.children)
            for i in range(n - 1, -1, -1):
                stack.append((node.children[i], indent + 4, "," if i + 1 < n else ""))
        else:
            out.append(raw_close(indent) + last + "\n")
    return "".join(out)


# One token after optional blanks: a punctuation character, a quoted string (a backslash
# escapes the next character; written unrolled so matching stays linear), a bare word,
# which ends at a blank or at one of {}(),;" but not at '=' (spec §2.4), a '"' that never
# closes, or the end of the text.
_BLANKS = " \t\n\r\f\v"
_RAW_TOKEN = re.compile(
    r'[' + _BLANKS + r']*+(?:(?P<punct>[{}(),;=])'
    r'|"(?P<str>[^"\\]*+(?:\\.[^"\\]*+)*+)"|(?P<word>[^' + _BLANKS + r'{}(),;"]+)'
    r'|(?P<open>")|(?P<eof>\Z))', re.DOTALL)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)

# A token is (kind, text, offset); kind is the punctuation character itself, or "str"
# (quoted), "word" (bare) or "eof". Offsets become line numbers only for error messages.
_Tok = tuple[str, str, int]


def _raw_tokens(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    append = toks.append
    for m in _RAW_TOKEN.finditer(text):   # consecutive: the alternatives cover everything
        kind = m.lastgroup
        if kind == "punct":
            append((m.group(kind), "", m.start(kind)))
        elif kind == "str":
            body = m.group(kind)
            append(("str", _UNESCAPE.sub(r"\1", body) if "\\" in body else body,
                    m.start(kind) - 1))
        elif kind == "word":
            append(("word", m.group(kind), m.start(kind)))
        elif kind == "open":
            raise FormatError("Unterminated quoted string", text.count("\n", 0, m.start()) + 1)
        else:
            append(("eof", "", len(text)))
            break
    return toks


class _RawParser:
    """Recursive descent over the informal grammar of spec §2.4, checking each
    directory against the bounds of :mod:`netinfo.limits` as it closes."""

    def __init__(self, text: str, max_depth: int = MAX_RAW_DEPTH) -> None:
        self.text = text
        self.max_depth = max_depth
        self.toks = _raw_tokens(text)
        self.pos = 0

    def error(self, reason: str, tok: _Tok) -> FormatError:
        return FormatError(reason, self.line(tok))

    def line(self, tok: _Tok) -> int:
        return self.text.count("\n", 0, tok[2]) + 1

    def over(self, why: str, tok: _Tok) -> FormatError:
        """A bound of :mod:`netinfo.limits` exceeded: ``line N: <why>``, as a flat
        file's line that cannot be loaded."""
        err = FormatError(f"line {self.line(tok)}: {why}")
        err.line = self.line(tok)
        return err

    def unexpected(self, tok: _Tok) -> FormatError:
        if tok[0] == "eof":
            return self.error("Unexpected end of input", tok)
        shown = tok[1] if tok[0] in ("str", "word") else tok[0]
        if len(shown) > 40:   # one readable line, whatever the input
            shown = shown[:37] + "..."
        return self.error(f'Unexpected token "{shown}"', tok)

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        if tok[0] != "eof":
            self.pos += 1
        return tok

    def accept(self, kind: str) -> bool:
        if self.toks[self.pos][0] == kind:
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, reason: str) -> None:
        if not self.accept(kind):
            raise self.error(reason, self.toks[self.pos])

    def document(self) -> RawNode:
        node = self.directory(0)
        tok = self.toks[self.pos]
        if tok[0] != "eof":
            raise self.unexpected(tok)
        return node

    def directory(self, depth: int) -> RawNode:
        # dir := ['{'] { prop | children } ['}']
        if depth > self.max_depth:
            raise self.error(f"Directories nested deeper than {self.max_depth} levels",
                             self.toks[self.pos])
        node = RawNode()
        start = self.toks[self.pos]
        braced = self.accept("{")
        while True:
            tok = self.toks[self.pos]
            kind = tok[0]
            if kind == "word" and tok[1] == "CHILDREN":
                self.children(node, depth)
            elif kind == "str" or kind == "word":
                node.props.append(self.prop())
            elif kind == "}" and braced:
                self.pos += 1
                return self.bounded(node, start)
            elif kind == "eof" or (not braced and depth > 0 and kind in ",)}"):
                # An unbraced child ends where its list goes on; a bare child must say
                # something, or "( a, , b )" would invent empty directories.
                if not braced and depth > 0 and not node.props and not node.children:
                    raise self.unexpected(tok)
                return self.bounded(node, start)
            else:
                raise self.unexpected(tok)

    def bounded(self, node: RawNode, start: _Tok) -> RawNode:
        """*node*, or a FormatError at its first line when a server could not hold it
        (:func:`~netinfo.limits.proplist_problem`, more children than a directory
        holds): refused while parsing, before anything is written."""
        why = proplist_problem(node.props)
        if why is None and len(node.children) > BIG_LIST_MAX:
            why = (f"{len(node.children)} children: a directory holds at most "
                   f"{BIG_LIST_MAX}")
        if why is not None:
            raise self.over(why, start)
        return node

    def value(self) -> str:
        tok = self.toks[self.pos]
        if tok[0] != "str" and tok[0] != "word":
            raise self.unexpected(tok)
        why = string_problem(tok[1], "a value")
        if why is not None:
            raise self.over(why, tok)
        self.pos += 1
        return tok[1]

    def prop(self) -> tuple[str, list[str]]:
        # prop := word '=' ( word | '(' [word {',' word}] ')' ) ';'
        tok = self.take()
        key = tok[1]
        why = string_problem(key, "a property name")
        if why is not None:
            raise self.over(why, tok)
        self.expect("=", 'Expecting equal "="')
        values: list[str] = []
        if self.accept("("):
            if self.toks[self.pos][0] in ("str", "word"):
                values.append(self.value())
                while self.accept(","):
                    values.append(self.value())
            self.expect(")", 'Expecting right paren ")"')
        else:
            values.append(self.value())
        self.expect(";", 'Expecting semicolon ";"')
        return (key, values)

    def children(self, node: RawNode, depth: int) -> None:
        # children := 'CHILDREN' '=' ['('] dir {',' dir} [')'] [';']
        self.take()
        self.expect("=", 'Expecting equal "="')
        paren = self.accept("(")
        if paren and self.accept(")"):      # "( )": no children
            self.accept(";")
            return
        node.children.append(self.directory(depth + 1))
        while self.accept(","):
            node.children.append(self.directory(depth + 1))
        if paren:   # an opened list must close, or what follows would land in the parent
            self.expect(")", 'Expecting right paren ")"')
        self.accept(";")


def raw_from_text(text: str, max_depth: int = MAX_RAW_DEPTH) -> RawNode:
    """``niload -r`` input: parse the tolerant raw grammar of spec §2.4.

    Every directory is checked against the bounds a server keeps (names and values of
    at most 65,535 bytes, at most 65,535 values and properties, a proplist one call can
    carry, :data:`~netinfo.limits.BIG_LIST_MAX` children, and *max_depth* levels below
    the top directory): input over any of them is refused whole, like input that does
    not parse.

    Braces around the top level are optional (a file of bare ``key = value;`` lines is
    a directory); quoted strings drop each escaping backslash; a bare word does not end at
    ``=``. The whole input is parsed before anything is returned.

    :raises FormatError: on any input that does not parse (never another exception).
    """
    return _RawParser(text, max_depth).document()

