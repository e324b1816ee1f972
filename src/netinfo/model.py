"""Pure NetInfo data: ids, properties, directories, and the path grammar.

A property is a ``(name, values)`` pair; :class:`Property` is the public named form and
any 2-tuple is accepted wherever a property is expected (decoders build plain tuples,
which compare equal to :class:`Property`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

#: "No index" / "append at the end" (spec conventions).
NI_INDEX_NULL = 0xFFFFFFFF


class NiId(NamedTuple):
    """``ni_id``: directory number and instance (version) (spec §2)."""

    object: int
    instance: int = 0


class Property(NamedTuple):
    """``ni_property``: a name and its ordered values (spec §5.1)."""

    name: str
    values: list[str]


Proplist = list[tuple[str, list[str]]]


@dataclass(slots=True)
class Directory:
    """``ni_object``: one directory as the wire carries it (READALL, storage images)."""

    id: NiId
    props: Proplist = field(default_factory=list)
    parent: int = 0
    children: Sequence[int] = field(default_factory=list)

    def get(self, name: str) -> list[str] | None:
        """Values of the first property called *name* (spec §5.1), or None."""
        for k, v in self.props:
            if k == name:
                return v
        return None


def first_values(props: Proplist, name: str) -> list[str] | None:
    """Values of the first property named *name* in *props*, or None (spec §5.1)."""
    for k, v in props:
        if k == name:
            return v
    return None


# -- numbers typed by users (tools §1.2, §1.3, §3.2) ----------------------------------------

#: What C's ``isspace`` skips before a number (the C locale).
_C_SPACE = " \t\n\v\f\r"
_ASCII_DIGITS = frozenset("0123456789")


def is_digits(text: str) -> bool:
    """True when *text* is one or more ASCII digits ``0``-``9``.

    ``str.isdigit`` is not the test: it accepts ``²`` or ``١``, which ``int`` then
    refuses (or reads as another number); the tools take only what C's ``isdigit`` does.
    """
    # isdigit of an ASCII string accepts exactly 0-9 (and is False for "")
    return text.isascii() and text.isdigit()


def atoi(text: str) -> int:
    """C ``atoi`` (used by the original tools for indexes, scopes and ``-T``, tools §1.2):
    blanks, an optional ``+``/``-``, then the leading ASCII digits; 0 when there are
    none. Never raises: ``"1²"`` is 1, ``"x"`` is 0, ``"-1"`` is -1."""
    s = text.lstrip(_C_SPACE)
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    n = 0
    for ch in s:
        if ch not in _ASCII_DIGITS:
            break
        n = n * 10 + ord(ch) - 48
    return sign * n


def is_integer(text: str) -> bool:
    """An optional sign then ASCII digits, nothing else (niutil's ``-insertval`` index,
    tools §1.3)."""
    return is_digits(text[1:] if text[:1] in ("+", "-") else text)


# -- directory paths (spec §7.6, tools §0.4) ------------------------------------------------

class PathComponent(NamedTuple):
    key: str
    value: str


def split_unescaped(text: str, sep: str, limit: int = -1) -> list[str]:
    """Split on *sep* where it is not preceded by a backslash, at most *limit* times
    (-1: no limit); the escapes are kept in the parts."""
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep and limit != 0:
            parts.append("".join(cur))
            cur = []
            limit -= 1
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(text: str) -> str:
    """Remove every backslash, keeping the character it escapes (tools §0.4)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            if text[i] != "\\":
                out.append(text[i])
            i += 1
    return "".join(out)


def parse_path(path: str) -> list[PathComponent]:
    """Parse a directory path into ``(key, value)`` components.

    Leading slashes and runs of slashes are skipped; a bare ``value`` means
    ``name=value``; ``\\`` escapes ``/`` and ``=`` (spec §7.6, tools §0.4).
    ``"/"`` (or ``""``) is the root: an empty list.
    """
    comps = []
    for raw in split_unescaped(path, "/"):
        if not raw:
            continue
        kv = split_unescaped(raw, "=")
        if len(kv) == 1:
            comps.append(PathComponent("name", unescape(kv[0])))
        else:
            comps.append(PathComponent(unescape(kv[0]), unescape("=".join(kv[1:]))))
    return comps


def format_component(key: str, value: str) -> str:
    """Inverse of one component of :func:`parse_path` (escapes ``/``, ``=``, ``\\``)."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("/", "\\/").replace("=", "\\=")
    return esc(value) if key == "name" else f"{esc(key)}={esc(value)}"


#: The TCP/UDP port range a user may name (0 is "any port", never a server's).
PORT_MIN, PORT_MAX = 1, 65535


def split_host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 literal
    (``::1``) → (host, port or None). Brackets are dropped from an IPv6 literal.

    :raises ValueError: a message naming the bad part (no host, a port that is not a
        number in 1-65535, an unclosed ``[``, a bracketed text that is not IPv6).
    """
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"no ']' after the IPv6 address in {text}")
        host, rest = text[1:close], text[close + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after [{host}]")
        return host, parse_port(rest[1:])
    if text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"bad address {text!r} (write an IPv6 address with a port "
                             "as [address]:port)") from None
        return text, None
    host, colon, port = text.partition(":")
    if not host:
        raise ValueError("no host" + (f" before ':{port}'" if colon else ""))
    return host, (parse_port(port) if colon else None)


def parse_port(text: str) -> int:
    """A port a user typed: ASCII digits, 1-65535. :raises ValueError: naming it."""
    if not is_digits(text):
        raise ValueError(f"bad port {text!r} (not a number)")
    n = int(text)
    if not PORT_MIN <= n <= PORT_MAX:
        raise ValueError(f"bad port {text} (not in {PORT_MIN}-{PORT_MAX})")
    return n


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:111``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def addr_to_uint(addr: str) -> int:
    """Dotted IPv4 → NetInfo's numeric address: a.b.c.d as a<<24|b<<16|c<<8|d
    (spec conventions). :raises ValueError: not an IPv4 address."""
    return int(ipaddress.IPv4Address(addr))


def is_ipv4(addr: str) -> bool:
    """A dotted-quad IPv4 address (never a host name: servers resolve no names on a
    request's path, so a name in /machines cannot stall them on DNS)."""
    try:
        ipaddress.IPv4Address(addr)
    except ValueError:
        return False
    return True


def uint_to_addr(n: int) -> str:
    """NetInfo's numeric address → dotted IPv4."""
    return str(ipaddress.IPv4Address(n & 0xFFFFFFFF))
