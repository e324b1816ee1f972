"""What an LDAP reader sees of an entry: filter evaluation (RFC 4511 §4.5.1.7, three-valued),
attribute selection (``*``, ``+``, typesOnly, §4.5.1.8), the rootDSE (RFC 4512 §5.1) and
the schema subentry (§4.2). Pure: entries are :data:`rfc2307.Attrs`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..wire.ber import OCTET_STRING, SEQUENCE, SET, tlv
from ..wire.ldap import (
    F_APPROX, F_EQUAL, F_GE, F_LE, OID_PAGED_RESULTS, OID_PASSWD_MODIFY, OID_STARTTLS,
    OID_WHOAMI, And, Attribute, Compare, Extensible, Filter, Not, Or, Present, Substrings,
)
from .rfc2307 import (
    ATTRIBUTE_TYPES, OBJECT_CLASSES, AttrType, Attrs, attr_type,
)

#: The DN of the schema subentry (RFC 4512 §4.2), as OpenLDAP names it.
SCHEMA_DN = "cn=Subschema"


def selection_size(wanted: tuple[str, ...]) -> int:
    """The characters of an attribute selection (what a table keyed by it holds)."""
    return sum(map(len, wanted)) + len(wanted)
#: Matching rules known by OID or name in an extensible match (RFC 4517 §4.2):
#: rule → equality kind; any other rule makes the match Undefined (RFC 4511 §4.5.1.7.7).
MATCHING_RULES = {
    "2.5.13.2": "ci", "caseignorematch": "ci", "2.5.13.5": "ce", "caseexactmatch": "ce",
    "2.5.13.14": "int", "integermatch": "int", "2.5.13.17": "oct",
    "octetstringmatch": "oct", "1.3.6.1.4.1.1466.109.114.2": "ci",
    "caseignoreia5match": "ci", "1.3.6.1.4.1.1466.109.114.1": "ce", "caseexactia5match": "ce",
}

Tri = bool | None   # True, False, Undefined


def _norm(kind: str, v: str) -> str | int | None:
    """A value as its equality rule compares it (RFC 4518 string prep, simplified to
    space folding and case folding); None when it is not of the syntax (Undefined)."""
    if kind == "ci":
        return " ".join(v.casefold().split())
    if kind == "ce":
        return " ".join(v.split())
    if kind == "int":
        t = v.strip()
        try:
            return int(t) if t and len(t) <= 40 else None
        except ValueError:
            return None
    return v


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _values(attrs: Attrs, name: str, hidden: frozenset[str]) -> list[str] | None:
    """The values of *name*, [] when absent, None when hidden from this reader."""
    key = name.lower()
    if key in hidden:
        return None
    got = attrs.get(key)
    return got[1] if got is not None else []


def _compare(kind: str, op: int, values: list[str], asserted: str) -> Tri:
    a = _norm(kind, asserted)
    if a is None:
        return None
    undefined = False
    for v in values:
        n = _norm(kind, v)
        if n is None:
            undefined = True
            continue
        if op == F_EQUAL or op == F_APPROX:
            if n == a:
                return True
        elif isinstance(n, int) is isinstance(a, int):
            if (op == F_GE and n >= a) or (op == F_LE and n <= a):   # type: ignore[operator]
                return True
    return None if undefined else False


def evaluate(f: Filter, attrs: Attrs, hidden: frozenset[str] = frozenset(),
             dn_values: Iterable[tuple[str, str]] = ()) -> Tri:
    """Filter *f* against an entry: True, False or Undefined (None) (RFC 4511 §4.5.1.7).
    Attributes in *hidden* (lower-case) are Undefined for this reader: a filter can
    neither match nor count on them (a substring filter must not read a hash out)."""
    if isinstance(f, Compare):
        values = _values(attrs, f.attr, hidden)
        if values is None:
            return None
        if not values:
            return False
        return _compare(attr_type(f.attr).equality, f.op, values, _text(f.value))
    if isinstance(f, And):
        result: Tri = True
        for t in f.terms:
            r = evaluate(t, attrs, hidden, dn_values)
            if r is False:
                return False
            if r is None:
                result = None
        return result
    if isinstance(f, Or):
        result = False
        for t in f.terms:
            r = evaluate(t, attrs, hidden, dn_values)
            if r is True:
                return True
            if r is None:
                result = None
        return result
    if isinstance(f, Not):
        r = evaluate(f.term, attrs, hidden, dn_values)
        return None if r is None else not r
    if isinstance(f, Present):
        if f.attr.lower() in hidden:
            return None
        return f.attr.lower() in attrs or f.attr.lower() == "objectclass"
    if isinstance(f, Substrings):
        values = _values(attrs, f.attr, hidden)
        if values is None:
            return None
        kind = "ci" if attr_type(f.attr).equality != "ce" else "ce"
        return any(_substrings(str(_norm(kind, v)), kind, f) for v in values)
    return _extensible(f, attrs, hidden, dn_values)


def _substrings(v: str, kind: str, f: Substrings) -> bool:
    pos = 0
    end = len(v)
    if f.initial is not None:
        init = str(_norm(kind, _text(f.initial)))
        if not v.startswith(init):
            return False
        pos = len(init)
    if f.final is not None:
        fin = str(_norm(kind, _text(f.final)))
        if not v.endswith(fin) or end - len(fin) < pos:
            return False
        end -= len(fin)
    for part in f.any:
        p = str(_norm(kind, _text(part)))
        i = v.find(p, pos, end)
        if i < 0:
            return False
        pos = i + len(p)
    return True


def _extensible(f: Extensible, attrs: Attrs, hidden: frozenset[str],
                dn_values: Iterable[tuple[str, str]]) -> Tri:
    """RFC 4511 §4.5.1.7.7 for a server with the matching rules of
    :data:`MATCHING_RULES` only: an unknown rule is Undefined; no rule means the
    type's equality; no type means every attribute the rule applies to."""
    kind: str | None = None
    if f.rule is not None:
        kind = MATCHING_RULES.get(f.rule.lower())
        if kind is None:
            return None
    asserted = _text(f.value)
    pairs: list[tuple[str, list[str]]] = []
    if f.attr is not None:
        values = _values(attrs, f.attr, hidden)
        if values is None:
            return None
        pairs.append((f.attr, values))
        if f.dn_attributes:
            pairs.extend((a, [v]) for a, v in dn_values if a.lower() == f.attr.lower())
    else:
        if kind is None:
            return None   # neither rule nor type: not a valid assertion
        pairs.extend((shown, vs) for key, (shown, vs) in attrs.items() if key not in hidden)
        if f.dn_attributes:
            pairs.extend((a, [v]) for a, v in dn_values)
    result: Tri = False
    for name, values in pairs:
        r = _compare(kind or attr_type(name).equality, F_EQUAL, values, asserted)
        if r is True:
            return True
        if r is None:
            result = None
    return result


def uses_dn_attributes(f: Filter) -> bool:
    """Does *f* match against DN components anywhere (an extensible match with
    dnAttributes)? Only then does the search take each entry's DN apart."""
    if isinstance(f, Extensible):
        return f.dn_attributes
    if isinstance(f, And | Or):
        return any(uses_dn_attributes(t) for t in f.terms)
    if isinstance(f, Not):
        return uses_dn_attributes(f.term)
    return False


def equality_terms(f: Filter) -> list[tuple[str, str]]:
    """The (attribute lower-cased, value) equalities every match must satisfy (those of a
    top-level AND, or the filter itself): what an index can narrow the candidates by."""
    terms = f.terms if isinstance(f, And) else (f,)
    return [(t.attr.lower(), _text(t.value)) for t in terms
            if isinstance(t, Compare) and t.op == F_EQUAL]


# -- attribute selection (RFC 4511 §4.5.1.8) -------------------------------------------------

def select(attrs: Attrs, wanted: tuple[str, ...], types_only: bool,
           hidden: frozenset[str], operational: Attrs) -> tuple[Attribute, ...]:
    """The attributes returned: all user attributes for an empty list or ``*``,
    operational ones (*operational*, and those of the entry itself) only when named or
    with ``+``; ``1.1`` alone means none (§4.5.1.8)."""
    want = {w.lower() for w in wanted}
    everything = not want or "*" in want
    plus = "+" in want
    out: list[Attribute] = []
    for source, is_op in ((attrs, False), (operational, True)):
        for key, (shown, values) in source.items():
            if key in hidden:
                continue
            op = is_op or attr_type(shown).operational
            if not (key in want or (plus if op else everything)):
                continue
            out.append((shown, () if types_only else tuple(
                v.encode("utf-8", "surrogateescape") for v in values)))
    return tuple(out)


#: attribute name as shown → (its encoding as an AttributeDescription, whether it is
#: operational), for :func:`encode_selected`
_HEADS: dict[str, tuple[bytes, bool]] = {}
#: an attribute list asked for → (the names lower-cased, everything, ``+``)
_WANTS: dict[tuple[str, ...], tuple[frozenset[str], bool, bool]] = {}
_MAX_MEMO = 1024


def encode_selected(dn: str, attrs: Attrs, wanted: tuple[str, ...], hidden: frozenset[str],
                    operational: Attrs) -> bytes:
    """``encode_op(SearchEntry(dn, select(attrs, wanted, False, hidden, operational)))``
    in one go, the same bytes: the entry's SearchResultEntry for a search that is not
    typesOnly, with the attribute names' encodings and the attribute list's reading
    remembered."""
    w = _WANTS.get(wanted)
    if w is None:
        want = frozenset(x.lower() for x in wanted)
        w = (want, not want or "*" in want, "+" in want)
        if len(_WANTS) >= _MAX_MEMO:
            _WANTS.clear()
        _WANTS[wanted] = w
    want, everything, plus = w
    parts = []
    heads = _HEADS
    for source, is_op in ((attrs, False), (operational, True)):
        for key, (shown, values) in source.items():
            if key in hidden:
                continue
            h = heads.get(shown)
            if h is None:
                if len(heads) >= _MAX_MEMO:
                    heads.clear()
                h = heads[shown] = (tlv(OCTET_STRING, shown.encode("utf-8", "surrogateescape")),
                                    attr_type(shown).operational)
            if not (key in want or (plus if (is_op or h[1]) else everything)):
                continue
            if len(values) == 1:   # most are: SET { OCTET STRING } written at once
                b = values[0].encode("utf-8", "surrogateescape")
                n = len(b)
                if n < 0x7E:
                    parts.append(tlv(SEQUENCE, h[0] + bytes((0x31, n + 2, 0x04, n)) + b))
                    continue
            vs = []
            for v in values:
                b = v.encode("utf-8", "surrogateescape")
                vs.append(b"\x04" + bytes((len(b),)) + b if len(b) < 0x80
                          else tlv(OCTET_STRING, b))
            parts.append(tlv(SEQUENCE, h[0] + tlv(SET, b"".join(vs))))
    return tlv(0x64, tlv(OCTET_STRING, dn.encode("utf-8", "surrogateescape"))
               + tlv(SEQUENCE, b"".join(parts)))


# -- rootDSE and schema ----------------------------------------------------------------------

SUPPORTED_CONTROLS = (OID_PAGED_RESULTS,)
SUPPORTED_EXTENSIONS = (OID_STARTTLS, OID_WHOAMI, OID_PASSWD_MODIFY)


def root_dse(base: str, tls: bool) -> Attrs:
    """The rootDSE (RFC 4512 §5.1): naming context, controls, extensions, versions.
    StartTLS is advertised only where it can be had (*tls*)."""
    ext = [e for e in SUPPORTED_EXTENSIONS if tls or e != OID_STARTTLS]
    return {
        "objectclass": ("objectClass", ["top", "extensibleObject"]),
        "namingcontexts": ("namingContexts", [base]),
        "supportedcontrol": ("supportedControl", list(SUPPORTED_CONTROLS)),
        "supportedextension": ("supportedExtension", ext),
        "supportedldapversion": ("supportedLDAPVersion", ["3"]),
        "supportedsaslmechanisms": ("supportedSASLMechanisms", []),
        "subschemasubentry": ("subschemaSubentry", [SCHEMA_DN]),
        "vendorname": ("vendorName", ["opennetinfo"]),
    }


def _attr_description(name: str, t: AttrType) -> str:
    eq = {"ci": "caseIgnoreMatch", "ce": "caseExactMatch", "int": "integerMatch",
          "oct": "octetStringMatch"}[t.equality]
    return (f"( {t.oid} NAME '{name}' EQUALITY {eq} SYNTAX {t.syntax}"
            + (" SINGLE-VALUE" if t.single else "")
            + (" NO-USER-MODIFICATION USAGE directoryOperation" if t.operational else "")
            + " )")


def class_description(name: str, oid: str, kind: str, must: tuple[str, ...],
                       may: tuple[str, ...]) -> str:
    def oids(names: tuple[str, ...]) -> str:
        return names[0] if len(names) == 1 else "( " + " $ ".join(names) + " )"
    return (f"( {oid} NAME '{name}'" + ("" if name == "top" else " SUP top")
            + f" {kind}" + (f" MUST {oids(must)}" if must else "")
            + (f" MAY {oids(may)}" if may else "") + " )")


def schema_entry() -> Attrs:
    """The subschema subentry (RFC 4512 §4.2) of the schema the mapping uses."""
    return {
        "objectclass": ("objectClass", ["top", "subentry", "subschema", "extensibleObject"]),
        "cn": ("cn", ["Subschema"]),
        "attributetypes": ("attributeTypes", [
            _attr_description(n, t) for n, t in ATTRIBUTE_TYPES.items()]),
        "objectclasses": ("objectClasses", [
            class_description(n, *row) for n, row in OBJECT_CLASSES.items()]),
    }


__all__ = ["MATCHING_RULES", "SCHEMA_DN", "SUPPORTED_CONTROLS", "SUPPORTED_EXTENSIONS",
           "Tri", "class_description", "encode_selected", "equality_terms", "evaluate",
           "root_dse", "selection_size",
           "schema_entry", "select", "uses_dn_attributes"]
