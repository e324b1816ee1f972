"""A NetInfo tree as LDIF (RFC 2849) through the RFC 2307 table (:mod:`rfc2307`): what
``nidump ldif`` prints, for ``slapadd``/``ldapadd`` (issue 22 item 5). Pure.

Entries come parents first (a raw tree walked in pre-order), each with the DN and the
attributes the LDAP front door shows, ``userPassword`` included (a dump is a backup: its
reader could READ the hashes over NETINFO anyway). Values that are not LDIF's
SAFE-STRING (§"Formal syntax": a first character other than space, ``:`` and ``<``, then
no NUL, CR or LF, all ASCII) go base64 (``attr:: ...``); a trailing space too, which
readers strip. Lines are not folded.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

from ..client.raw import RawNode
from .rfc2307 import DN, Attrs, dn_of, entry_attrs

__all__ = ["ldif_entries", "ldif_line", "ldif_record"]


def ldif_line(attr: str, value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    safe = (raw and raw[0] not in b" :<" and raw[-1:] != b" " and raw.isascii()
            and not any(b in (0, 10, 13) for b in raw)) or not raw
    if safe:
        return f"{attr}: {value}\n"
    return f"{attr}:: {base64.b64encode(raw).decode('ascii')}\n"


def ldif_record(dn: str, attrs: Attrs) -> str:
    """One entry: its ``dn:`` line, its attributes, a blank line."""
    lines = [ldif_line("dn", dn)]
    for shown, values in attrs.values():
        lines.extend(ldif_line(shown, v) for v in values)
    return "".join(lines) + "\n"


def _name(node: RawNode) -> str | None:
    return next((vs[0] for k, vs in node.props if k == "name" and vs), None)


def ldif_entries(tree: RawNode, base: DN) -> Iterator[str]:
    """The records of the domain whose root directory is *tree*, parents first; a
    directory without a name has no entry, nor have its descendants (no DN names them)."""
    stack: list[tuple[RawNode, tuple[str, ...]]] = [(tree, ())]
    while stack:
        node, path = stack.pop()
        yield ldif_record(dn_of(path, base), entry_attrs(path, node.props, base[0]))
        kids = []
        for child in node.children:
            name = _name(child)
            if name is not None:
                kids.append((child, path + (name,)))
        stack.extend(reversed(kids))
