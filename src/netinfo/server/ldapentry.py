"""A user's SearchResultEntry straight from its stored proplist bytes (the LDAP door's
short path for cold equality searches, ``LdapServer.quick``). Pure.

The general path decodes the proplist, builds the entry's attributes through the table
(``rfc2307.entry_attrs``), selects and encodes them (``ldapview.encode_selected``).
:func:`user_entry` reads the XDR bytes once, with ``decode_proplist``'s checks, and
writes the same SearchResultEntry for the common user (every property of /users' row
once, with one value, a name not empty; no shadow dates, no ``description`` or
``mail``):
the attributes in the order and with the values ``entry_attrs`` gives them (objectClass,
the columns, cn and sn derived from the real name, netinfoProperty for the properties
no column takes), each selected as ``encode_selected`` selects it (a plan per attribute
list and hidden set, with the attribute names' encodings, :func:`_plan`). Anything else
(a damaged proplist, a second value, an empty one, a property the table converts or
passes through, hasSubordinates asked for without the child list at hand) is None:
the caller builds the entry the general way. ``tests/test_ldap_quick.py`` holds the two
to the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..wire.ber import OCTET_STRING, SEQUENCE, SET, tlv
from ..wire.ldap import Filter
from ..wire.xdr import LIST_MAX, NAME_MAX
from .ldapview import SCHEMA_DN, evaluate, selection_size
from .rfc2307 import (
    MAPPINGS, PASSTHROUGH, PRIVATE_PROPS, _crypt_out, _user_extra, attr_type, escape_value,
)

_U32 = struct.Struct(">I").unpack_from
_USERS = MAPPINGS["users"]
# what this module writes is the users row as it stands: the columns it knows (each
# shown as it is, userPassword with {CRYPT} before it), the derived cn/sn
assert _USERS.derive is _user_extra and _USERS.rdn == "uid"
assert not PASSTHROUGH & {c.prop for c in _USERS.columns}
#: property (UTF-8) → its column's position among the entry's attributes, for the
#: columns shown as they are (or as crypt strings)
_COLUMNS: dict[bytes, int] = {}
#: properties whose column converts (shadow dates): the general way
_CONVERTED: set[bytes] = set()
for _i, _c in enumerate(_USERS.columns):
    if _c.out is None or _c.out is _crypt_out:
        assert _c.first and _c.back is (None if _c.out is None else _c.back)
        _COLUMNS[_c.prop.encode()] = _i
    else:
        _CONVERTED.add(_c.prop.encode())
_NAME = b"name"
_NAME_AT = _COLUMNS[_NAME]
_PASSWD_AT = _COLUMNS[b"passwd"]
_REAL_AT = _COLUMNS[b"realname"]
_PASSTHROUGH = frozenset(p.encode() for p in PASSTHROUGH)
_PRIVATE = frozenset(p.encode() for p in PRIVATE_PROPS)
_NCOL = len(_USERS.columns)
#: the entry's attributes in entry_attrs' order: objectClass, the columns, cn, sn,
#: netinfoProperty, then the operational ones
_SHOWN = ("objectClass", *(c.attr for c in _USERS.columns), "cn", "sn", "netinfoProperty")
_OPERATIONAL = ("entryDN", "subschemaSubentry", "hasSubordinates")
_CN, _SN, _NIPROP = _NCOL + 1, _NCOL + 2, _NCOL + 3
_ENTRYDN, _SCHEMA, _HASSUB = _NCOL + 4, _NCOL + 5, _NCOL + 6
_HEADS = tuple(tlv(OCTET_STRING, a.encode()) for a in (*_SHOWN, *_OPERATIONAL))


def _attr(head: bytes, values: list[bytes]) -> bytes:
    """One PartialAttribute, as ``encode_selected`` writes it."""
    if len(values) == 1:
        b = values[0]
        n = len(b)
        if n < 0x7E:
            return tlv(SEQUENCE, head + bytes((0x31, n + 2, 0x04, n)) + b)
    vs = [b"\x04" + bytes((len(b),)) + b if len(b) < 0x80 else tlv(OCTET_STRING, b)
          for b in values]
    return tlv(SEQUENCE, head + tlv(SET, b"".join(vs)))


def _classes(structural: str, more: bool) -> tuple[list[str], bytes]:
    values = [*_USERS.classes, structural] + (["netinfoDirectory"] if more else [])
    return values, _attr(_HEADS[0], [v.encode() for v in values])


#: (real name shown, netinfoProperty values) → objectClass's values and encoding
_CLASSES = {(real, more): _classes("inetOrgPerson" if real else "account", more)
            for real in (False, True) for more in (False, True)}
_SCHEMA_ATTR = _attr(_HEADS[_SCHEMA], [SCHEMA_DN.encode()])
_HAS = {True: _attr(_HEADS[_HASSUB], [b"TRUE"]), False: _attr(_HEADS[_HASSUB], [b"FALSE"])}

#: (attribute list, hidden) → which of the entry's attributes are written (by position)
_PLANS: dict[tuple[tuple[str, ...], frozenset[str]], tuple[bool, ...]] = {}
_MAX_PLANS = 1024
#: a selection longer than this (characters) is planned each time, never kept (an
#: anonymous search may name 65,535 attributes)
_MAX_PLAN_KEY = 1024


def _plan(wanted: tuple[str, ...], hidden: frozenset[str]) -> tuple[bool, ...]:
    """``encode_selected``'s choice for each attribute (RFC 4511 §4.5.1.8)."""
    key = (wanted, hidden)
    plan = _PLANS.get(key)
    if plan is None:
        want = frozenset(w.lower() for w in wanted)
        everything = not want or "*" in want
        plus = "+" in want
        plan = tuple(
            a.lower() not in hidden and (a.lower() in want or (
                plus if (i >= len(_SHOWN) or attr_type(a).operational) else everything))
            for i, a in enumerate((*_SHOWN, *_OPERATIONAL)))
        if selection_size(wanted) > _MAX_PLAN_KEY:
            return plan
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def user_entry(data: bytes, users_dn: str, f: Filter, wanted: tuple[str, ...],
               hidden_for: Callable[[tuple[str, ...]], frozenset[str]], has_kids: bool | None
               ) -> tuple[str, bytes | None] | None:
    """(the user's name, its SearchResultEntry — None when filter *f* does not match
    it) for the /users child whose stored proplist is *data*, searched with *f* (the
    short path's shapes: ``uid`` and ``objectClass`` equalities) and attribute list
    *wanted*, what ``hidden_for(("users", name))`` hides from the reader (a frozenset of
    lower-case names); *has_kids*: whether it has children (None: not known). None when
    this module does not write that entry (see the module)."""
    u32 = _U32
    size = len(data)
    cols: list[bytes | None] = [None] * _NCOL
    texts: list[bytes] = []
    try:
        (n,) = u32(data, 0)
        if n > LIST_MAX or n * 8 > size - 4:
            return None
        p = 4
        for _ in range(n):
            (ln,) = u32(data, p)
            if ln > NAME_MAX:
                return None
            p += 4
            key = data[p:p + ln]
            p += ln + (-ln & 3)
            (m,) = u32(data, p)
            p += 4
            if m > LIST_MAX or m * 4 > size - p:
                return None
            values = []
            for _ in range(m):
                (ln,) = u32(data, p)
                if ln > NAME_MAX:
                    return None
                p += 4
                values.append(data[p:p + ln])
                p += ln + (-ln & 3)
            i = _COLUMNS.get(key)
            if i is not None:
                if m != 1 or cols[i] is not None:
                    return None   # a column that shows less than it holds, or twice
                v = cols[i] = values[0]
                if not v:
                    if key == _NAME:
                        return None
                    if key not in _PRIVATE:
                        # shown as nothing, so carried exactly as netinfoProperty
                        texts.append(key + b"=")
            elif key in _CONVERTED or key in _PASSTHROUGH or not key:
                return None
            elif key not in _PRIVATE:
                k = key.replace(b"\\", b"\\5c").replace(b"=", b"\\3d")
                if values:
                    texts.extend([k + b"=" + v for v in values])
                else:
                    texts.append(k)
    except struct.error:
        return None
    if p != size:
        return None
    name_b = cols[_NAME_AT]
    if name_b is None:
        return None
    name = _text(name_b)
    hidden = hidden_for(("users", name))
    real_b = cols[_REAL_AT]
    real = _text(real_b) if real_b else ""
    shows_real = bool(real.strip())
    classes, classes_attr = _CLASSES[shows_real, bool(texts)]
    if evaluate(f, {"uid": ("uid", [name]), "objectclass": ("objectClass", classes)},
                hidden) is not True:
        return name, None
    plan = _plan(wanted, hidden)
    if plan[_HASSUB] and has_kids is None:
        return None
    heads = _HEADS
    parts = []
    if plan[0]:
        parts.append(classes_attr)
    for i, col in enumerate(cols):
        if col and plan[i + 1]:
            v = b"{CRYPT}" + col if i == _PASSWD_AT else col
            head = heads[i + 1]
            n = len(v)
            size = len(head) + 4 + n
            if size < 0x80:   # (_attr's short form, written here)
                parts.append(bytes((0x30, size)) + head + bytes((0x31, n + 2, 0x04, n)) + v)
            else:
                parts.append(_attr(head, [v]))
    if plan[_CN]:
        parts.append(_attr(heads[_CN], [real_b if shows_real and real_b else name_b]))
    if shows_real and plan[_SN]:
        parts.append(_attr(heads[_SN], [real.split()[-1].encode("utf-8", "surrogateescape")]))
    if texts and plan[_NIPROP]:
        parts.append(_attr(heads[_NIPROP], texts))
    dn = f"uid={escape_value(name)},{users_dn}".encode("utf-8", "surrogateescape")
    if plan[_ENTRYDN]:
        parts.append(_attr(heads[_ENTRYDN], [dn]))
    if plan[_SCHEMA]:
        parts.append(_SCHEMA_ATTR)
    if plan[_HASSUB]:
        parts.append(_HAS[bool(has_kids)])
    return name, tlv(0x64, tlv(OCTET_STRING, dn) + tlv(SEQUENCE, b"".join(parts)))


__all__ = ["user_entry"]
