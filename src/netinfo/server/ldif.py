"""A NetInfo tree as LDIF (RFC 2849) and back, through the RFC 2307 table
(:mod:`rfc2307`): what ``nidump ldif`` prints, for ``slapadd``/``ldapadd``, and what
``niload ldif`` reads (issue 22 item 5). Pure.

Writing. Entries come parents first (a raw tree walked in pre-order), each with the DN
and the attributes the LDAP front door shows, ``userPassword`` included (a dump is a
backup: its reader could READ the hashes over NETINFO anyway). Within an entry,
``objectClass`` comes first, then the lines of each property in the directory's own
property order (a column's attribute, or ``netinfoProperty``), then what the table derives
(``cn``, ``sn``, ...): LDAP gives attributes no order, so this is what lets ``niload
ldif`` give the directory back with its properties in their order. Values that are not
LDIF's SAFE-STRING (§"Formal syntax": a first character other than space, ``:`` and
``<``, then no NUL, CR or LF, all ASCII) go base64 (``attr:: ...``); a trailing space too,
which readers strip. Lines are not folded.

Reading (:func:`parse_ldif`): content records (``changetype: add`` is one too), ``version:
1``, comments, folded lines, base64 values; attribute options (``;lang-en``, ``;binary``)
name the attribute without them. Change records (modify, delete, modrdn), ``control:``
lines and values by URL (``:<``, which would read a file of the machine) are refused with
the line they are on (:class:`LdifError`): nothing is loaded from such input.

Placing (:func:`place_entries`): where each entry goes in the domain. See the docstring
there; in short, an entry of an RFC 2307 class (posixAccount, posixGroup, ipHost, ...)
goes into that class's directory whatever its DN (an OpenLDAP export's
``uid=ann,ou=People,dc=example,dc=com`` is ``/users/ann``), a NetInfo entry
(``netinfoDirectory``) at its DN's path below the input's first entry, and anything
else is left out, reported.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..client.raw import RawNode
from ..model import Proplist
from .rfc2307 import (
    ATTRIBUTE_TYPES,
    DN,
    MAPPINGS,
    OBJECT_CLASSES,
    PASSTHROUGH,
    PLACING_CLASSES,
    Attrs,
    DnError,
    dn_of,
    entry_attrs,
    mapping_for,
    mount_location,
    norm_dn,
    parse_dn,
    property_from_text,
    props_from_attrs,
)

__all__ = ["SLAPD_EXTRA_ATTRS", "SLAPD_EXTRA_CLASSES", "SLAPD_SCHEMAS", "LdifEntry",
           "LdifError", "Placed", "ldif_entries", "ldif_line", "ldif_record", "parse_ldif",
           "place_entries", "slapd_schema"]


# -- writing ----------------------------------------------------------------------------------

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


def _owners(path: Sequence[str]) -> dict[str, str]:
    """attribute (lower case) → the property its values come from, for *path*'s row."""
    m = mapping_for(path)
    own = {a: a for a in PASSTHROUGH}
    if m is not None:
        own.update((c.attr.lower(), c.prop) for c in m.columns)
    elif len(path) == 1:
        own["ou"] = "name"
    elif path:
        own["cn"] = "name"
    return own


def ordered_record(dn: str, path: Sequence[str], props: Proplist, attrs: Attrs) -> str:
    """One entry with its lines in the directory's property order (module docstring)."""
    where: dict[str, int] = {}
    for k, _ in props:
        where.setdefault(k, len(where))
    last = len(where)
    own = _owners(path)
    lines: list[tuple[int, str, str]] = []
    for low, (shown, values) in attrs.items():
        if low == "objectclass":
            rank = -1
        elif low == "netinfoproperty":
            for v in values:
                kv = property_from_text(v)
                lines.append((where.get(kv[0], last) if kv else last, shown, v))
            continue
        else:
            rank = where.get(own.get(low, ""), last)
        lines.extend((rank, shown, v) for v in values)
    lines.sort(key=lambda t: t[0])   # stable: a property's values keep their order
    return ldif_line("dn", dn) + "".join(ldif_line(a, v) for _, a, v in lines) + "\n"


def _name(node: RawNode) -> str | None:
    return next((vs[0] for k, vs in node.props if k == "name" and vs), None)


def ldif_entries(tree: RawNode, base: DN, at: tuple[str, ...] = ()) -> Iterator[str]:
    """The records of the subtree *tree* whose top is the directory at NetInfo path *at*
    (names from the root; ``()``: the whole domain), parents first; a directory without
    a name has no entry, nor have its descendants (no DN names them)."""
    stack: list[tuple[RawNode, tuple[str, ...]]] = [(tree, at)]
    while stack:
        node, path = stack.pop()
        yield ordered_record(dn_of(path, base), path, node.props,
                             entry_attrs(path, node.props, base[0]))
        kids = []
        for child in node.children:
            name = _name(child)
            if name is not None:
                kids.append((child, path + (name,)))
        stack.extend(reversed(kids))


# -- the schema an OpenLDAP server needs ----------------------------------------------------------

#: the object classes and attributes of the table that OpenLDAP's own schema files
#: (core, cosine, inetorgperson, nis, misc) do not define: ours, and RFC 2307bis's
#: automount (OpenLDAP's nis.schema is RFC 2307's)
SLAPD_EXTRA_ATTRS = ("netinfoProperty", "automountInformation", "automountKey")
SLAPD_EXTRA_CLASSES = ("netinfoDirectory", "netinfoEntry", "automount")
#: the OpenLDAP schema files the rest comes from, in the order slapd needs them
SLAPD_SCHEMAS = ("core", "cosine", "inetorgperson", "nis", "misc")


def slapd_schema() -> str:
    """``nidump ldif --schema``: what :data:`SLAPD_EXTRA_ATTRS` and
    :data:`SLAPD_EXTRA_CLASSES` are, in slapd.conf's schema syntax (RFC 4512 §4.1
    descriptions, as ``cn=Subschema`` publishes them; IA5 strings with the IA5 matching
    rules OpenLDAP pairs them with)."""
    from .ldapview import class_description   # the subschema entry's own text
    lines = ["# The netinfo front door's schema beyond OpenLDAP's core, cosine,",
             "# inetorgperson, nis and misc schemas (nidump ldif --schema; docs/ldap.md).",
             ""]
    ia5 = {"ci": "caseIgnoreIA5Match", "ce": "caseExactIA5Match"}
    for name in SLAPD_EXTRA_ATTRS:
        t = ATTRIBUTE_TYPES[name]
        eq = ia5[t.equality] if t.syntax.endswith(".26") else {
            "ci": "caseIgnoreMatch", "ce": "caseExactMatch"}[t.equality]
        lines.append(f"attributetype ( {t.oid} NAME '{name}' EQUALITY {eq} SYNTAX "
                     f"{t.syntax}" + (" SINGLE-VALUE" if t.single else "") + " )")
    for name in SLAPD_EXTRA_CLASSES:
        lines.append("objectclass " + class_description(name, *OBJECT_CLASSES[name]))
    return "\n".join(lines) + "\n"


# -- reading (RFC 2849) ------------------------------------------------------------------------

class LdifError(ValueError):
    """Input that is not LDIF niload reads: *line* is where (1-based)."""

    def __init__(self, reason: str, line: int) -> None:
        super().__init__(f"line {line}: {reason}")
        self.reason = reason
        self.line = line


@dataclass
class LdifEntry:
    """One content record: its DN as written, the line it starts on, and its attribute
    values in input order (``(attribute, value)``, options dropped)."""

    dn: str
    line: int
    values: list[tuple[str, str]] = field(default_factory=list)

    def attrs(self) -> list[tuple[str, list[str]]]:
        """The values gathered by attribute (names as first written), in input order."""
        out: dict[str, tuple[str, list[str]]] = {}
        for a, v in self.values:
            have = out.setdefault(a.lower(), (a, []))
            if v not in have[1]:
                have[1].append(v)
        return list(out.values())

    def classes(self) -> set[str]:
        return {v.lower() for a, v in self.values if a.lower() == "objectclass"}


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, logical line): folded lines joined (a line starting with one space
    continues the one before, RFC 2849 note 2), comments dropped with their
    continuations, a blank line given as ``""``."""
    cur: list[str] = []
    start = 0
    comment = False
    for n, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if line.startswith(" ") and (cur or comment):
            if not comment:
                cur.append(line[1:])
            continue
        if cur:
            yield start, "".join(cur)
            cur = []
        comment = line.startswith("#")
        if comment:
            continue
        if not line.strip():
            yield n, ""
            continue
        if line.startswith(" "):
            raise LdifError("a continuation line with no line before it", n)
        cur, start = [line], n
    if cur:
        yield start, "".join(cur)


def _value(rest: str, attr: str, n: int) -> str:
    """The value after ``attr:`` (*rest* starts after the first colon)."""
    if rest.startswith(":"):
        try:
            raw = base64.b64decode(rest[1:].strip(), validate=True)
        except (binascii.Error, ValueError):
            raise LdifError(f"{attr}: a base64 value that does not decode", n) from None
        return raw.decode("utf-8", "surrogateescape")
    if rest.startswith("<"):
        raise LdifError(f"{attr}: values by URL (:<) are not read", n)
    return rest.lstrip(" ")


_CHANGE_REFUSED = ("niload ldif reads content records (an export, slapcat, nidump ldif); "
                   "apply changes with ldapmodify against netinfod's LDAP door")


def parse_ldif(text: str) -> list[LdifEntry]:
    """The content records of *text* (module docstring). :raises LdifError:."""
    entries: list[LdifEntry] = []
    cur: LdifEntry | None = None
    first = True
    for n, line in _logical_lines(text):
        if not line:
            cur = None
            continue
        attr, colon, rest = line.partition(":")
        if not colon:
            if line == "-":
                raise LdifError(f"a change record's '-' line: {_CHANGE_REFUSED}", n)
            raise LdifError(f"no ':' in {line[:40]!r}", n)
        name = attr.strip()
        low = name.lower()
        if cur is None:
            if first and low == "version":
                first = False
                if rest.strip() != "1":
                    raise LdifError(f"LDIF version {rest.strip()!r} (only 1 is known)", n)
                continue
            first = False
            if low != "dn":
                raise LdifError(f"a record must start with dn:, not {name}:", n)
            cur = LdifEntry(_value(rest, "dn", n).strip(), n)
            entries.append(cur)
            continue
        if low == "dn":
            raise LdifError("a second dn: in one record (records end with a blank line)", n)
        if low == "changetype":
            kind = rest.strip().lower()
            if kind != "add" or cur.values:
                raise LdifError(f"changetype: {kind}: {_CHANGE_REFUSED}", n)
            continue
        if low == "control":
            raise LdifError(f"control: lines belong to change records: {_CHANGE_REFUSED}", n)
        base_name = name.split(";", 1)[0]
        if not base_name or not (base_name[0].isalpha() or base_name[0].isdigit()):
            raise LdifError(f"{name!r} is not an attribute name", n)
        cur.values.append((base_name, _value(rest, base_name, n)))
    return entries


# -- placing --------------------------------------------------------------------------------

#: attributes a directory server keeps about an entry (RFC 4512 §3.4 and OpenLDAP's):
#: left out without a word, as no NetInfo property means them
OPERATIONAL = frozenset({
    "structuralobjectclass", "entryuuid", "entrycsn", "creatorsname", "createtimestamp",
    "modifiersname", "modifytimestamp", "contextcsn", "entrydn", "subschemasubentry",
    "hassubordinates", "numsubordinates", "pwdchangedtime", "pwdhistory",
    "pwdfailuretime", "pwdaccountlockedtime", "memberof",
})


@dataclass
class Placed:
    """Where the entries of an input go.

    *tables*: directory path (names from the root) → the records of its children, in
    input order of the directories (parents before children) and of the records; two
    entries that name the same directory (an export's ``ftp/tcp`` and ``ftp/udp``
    services, a host's ``ipHost`` and ``ieee802Device`` entries) are one record with the
    values of both. *tree*: the same as a raw tree under the top entry (for ``-r``).
    *notes*: what was left out, one line each."""

    tables: dict[tuple[str, ...], list[Proplist]] = field(default_factory=dict)
    tree: RawNode = field(default_factory=RawNode)
    top: str = ""
    notes: list[str] = field(default_factory=list)
    count: int = 0


def _rel_path(dn: DN, top: DN) -> tuple[str, ...] | None:
    """The RDN values of *dn* below *top*, most general first, or None when *dn* is not
    at or below *top*."""
    if len(dn) < len(top) or (top and norm_dn(dn[len(dn) - len(top):]) != norm_dn(top)):
        return None
    return tuple(v for _, v in reversed(dn[:len(dn) - len(top)]))


def _entry_name(directory: str, rdn: tuple[str, str], attrs: dict[str, list[str]]) -> str:
    """The name of an entry placed by its class: its RDN value when the RDN is the row's
    naming attribute, else that attribute's first value (``cn=Ann Smith`` with ``uid:
    ann`` is ``ann``); an automount entry without ``cn`` is named by the location its
    automountInformation gives, as /mounts names NFS mounts."""
    m = MAPPINGS[directory]
    if rdn[0].lower() == m.rdn.lower():
        return rdn[1]
    have = attrs.get(m.rdn.lower())
    if have:
        return have[0]
    if directory == "mounts":
        loc = mount_location(attrs)
        if loc:
            return loc
    return rdn[1]


def _merge_into(have: list[tuple[str, list[str]]], more: list[tuple[str, list[str]]]) -> None:
    index = {a.lower(): vs for a, vs in have}
    for a, vs in more:
        got = index.get(a.lower())
        if got is None:
            have.append((a, list(vs)))
            index[a.lower()] = have[-1][1]
        else:
            got.extend(v for v in vs if v not in got)


def _ordered_props(path: Sequence[str], attrs: list[tuple[str, list[str]]],
                   values: list[tuple[str, str]]) -> Proplist:
    """:func:`props_from_attrs` with the properties in the order the entry first mentions
    them (what :func:`ordered_record` wrote); those it does not mention keep the table's
    order, after them."""
    props = props_from_attrs(path, attrs)
    own = _owners(path)
    first: dict[str, int] = {}
    for i, (a, v) in enumerate(values):
        low = a.lower()
        if low == "netinfoproperty":
            kv = property_from_text(v)
            key = kv[0] if kv else None
        else:
            key = own.get(low)
        if key is not None:
            first.setdefault(key, i)
    end = len(values)
    return sorted(props, key=lambda kv: first.get(kv[0], end))


def place_entries(entries: list[LdifEntry], at: tuple[str, ...] | None = None) -> Placed:
    """Where each of *entries* goes.

    The input's first entry is its top: the domain's root (the base entry of
    ``nidump ldif``, or of an export: ``dc=example,dc=com``), or with *at* (``niload
    ldif -r PATH``) the directory at *at*. Every other entry must lie below it.

    Without *at*: an entry of an RFC 2307 class (:data:`rfc2307.PLACING_CLASSES`)
    becomes a child of that class's directory (``/users``, ``/groups``, ...), named by
    its RDN or the row's naming attribute; an entry of class ``netinfoDirectory`` (any
    directory ``nidump ldif`` wrote) goes at its DN's path below the top; anything else
    (an export's ``ou=People`` container, an entry of a schema NetInfo has no table for)
    is left out, with a note. The top's own properties are not loaded (the root's are
    the domain's own: its master, its trusted networks).

    With *at*: every entry goes at its DN's path below the top, as ``niload -r`` puts a
    raw dump's directories, and :attr:`Placed.tree` holds them, the top's properties
    included.

    Attributes no table row keeps (an export's ``shadowMax``, ``givenName``) are left out,
    named in one note; the directory server's own (``entryUUID``, ...) silently.
    :raises LdifError: an entry not below the top, or a DN that does not parse.
    """
    out = Placed()
    if not entries:
        return out
    try:
        top = parse_dn(entries[0].dn)
    except DnError as err:
        raise LdifError(f"dn {entries[0].dn!r}: {err}", entries[0].line) from None
    out.top = entries[0].dn
    base = tuple(at or ())
    # one record per directory: path → (attributes, every value in input order)
    found: dict[tuple[str, ...], tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]] = {}
    left_out: list[str] = []
    dropped: dict[str, int] = {}
    not_crypt = 0
    for ent in entries:
        try:
            dn = parse_dn(ent.dn)
        except DnError as err:
            raise LdifError(f"dn {ent.dn!r}: {err}", ent.line) from None
        rel = _rel_path(dn, top)
        if rel is None:
            raise LdifError(f"dn {ent.dn!r} is not below the input's first entry "
                            f"{out.top!r}", ent.line)
        attrs = ent.attrs()
        by = {a.lower(): vs for a, vs in attrs}
        classes = ent.classes()
        path: tuple[str, ...]
        if at is not None or not rel:
            path = base + rel
        else:
            placing = sorted({PLACING_CLASSES[c] for c in classes if c in PLACING_CLASSES})
            if len(placing) > 1:
                left_out.append(f"{ent.dn} (classes of {', '.join(placing)})")
                continue
            if placing:
                path = (placing[0], _entry_name(placing[0], dn[0], by))
            elif "netinfodirectory" in classes:
                path = rel
            else:
                left_out.append(ent.dn)
                continue
        if any(not n for n in path):
            raise LdifError(f"dn {ent.dn!r}: an empty name", ent.line)
        keep = []
        for a, vs in attrs:
            low = a.lower()
            if low in OPERATIONAL:
                continue
            keep.append((a, vs))
        if path in found:
            _merge_into(found[path][0], keep)
            found[path][1].extend(ent.values)
        else:
            found[path] = (keep, list(ent.values))
    for path, (attrs, values) in found.items():
        rel_to = path[len(base):]
        if not rel_to and at is None:
            continue   # the root: its properties are the domain's own
        props = _ordered_props(path, attrs, values) if path else _root_props(attrs)
        kept = _kept_attrs(path, props, attrs)
        for a, _ in attrs:
            if a.lower() not in kept:
                dropped[a] = dropped.get(a, 0) + 1
        pw = next((vs for k, vs in props if k == "passwd"), [])
        if any(v and v.startswith("{") for v in pw):
            not_crypt += 1
        out.count += 1
        if not rel_to:
            out.tree.props = props
        else:
            out.tables.setdefault(path[:-1], []).append(props)
    if at is not None:
        out.tree = _tree(out.tree.props, base, out.tables)
    if left_out:
        more = f" (and {len(left_out) - 3} more)" if len(left_out) > 3 else ""
        out.notes.append(f"{len(left_out)} entries of no NetInfo directory left out: "
                         + "; ".join(left_out[:3]) + more)
    if dropped:
        out.notes.append("attributes no NetInfo property keeps, left out: " + ", ".join(
            f"{a} ({n})" for a, n in sorted(dropped.items())))
    if not_crypt:
        out.notes.append(f"{not_crypt} userPassword values are not crypt strings "
                         "({SSHA}, ...): those users cannot log in until nipasswd sets one")
    return out


def _root_props(attrs: list[tuple[str, list[str]]]) -> Proplist:
    """The root directory's properties from the base entry (``-r /``): its
    netinfoProperty values, in order."""
    props: Proplist = []
    index: dict[str, list[str]] = {}
    for a, vs in attrs:
        if a.lower() != "netinfoproperty":
            continue
        for v in vs:
            kv = property_from_text(v)
            if kv is None:
                continue
            have = index.get(kv[0])
            if have is None:
                props.append((kv[0], []))
                have = index[kv[0]] = props[-1][1]
            if kv[1] is not None:
                have.append(kv[1])
    return props


def _kept_attrs(path: Sequence[str], props: Proplist,
                attrs: list[tuple[str, list[str]]]) -> set[str]:
    """The attributes (lower case) of an entry that something kept: objectClass, the
    naming ones, netinfoProperty, the passthrough ones and the row's columns and derived
    attributes."""
    kept = {"objectclass", "netinfoproperty", "dc", "o", "ou", "cn", "uid", *PASSTHROUGH}
    m = mapping_for(path)
    if m is not None:
        kept.update(c.attr.lower() for c in m.columns)
        kept.update(a.lower() for a in m.derived)
        if m.directory == "users":
            kept.add("sn")
    return kept


def _tree(top_props: Proplist, base: tuple[str, ...],
          tables: dict[tuple[str, ...], list[Proplist]]) -> RawNode:
    """The records of *tables* as a raw tree under *base* (``-r``)."""
    root = RawNode(props=top_props)
    nodes: dict[tuple[str, ...], RawNode] = {base: root}
    for parent, records in tables.items():
        holder = nodes.get(parent)
        if holder is None:   # a directory whose entry the input lacks: name only
            holder = _make(nodes, parent)
        for props in records:
            name = next((vs[0] for k, vs in props if k == "name" and vs), "")
            node = RawNode(props=props)
            holder.children.append(node)
            nodes[parent + (name,)] = node
    return root


def _make(nodes: dict[tuple[str, ...], RawNode], path: tuple[str, ...]) -> RawNode:
    parent = nodes.get(path[:-1]) or _make(nodes, path[:-1])
    node = RawNode(props=[("name", [path[-1]])])
    parent.children.append(node)
    nodes[path] = node
    return node
