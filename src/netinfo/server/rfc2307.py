"""A NetInfo domain as an RFC 2307 directory: ONE table from NetInfo directories to LDAP
entries, both ways, and the distinguished names. Pure (issue 22 item 3).

* :data:`MAPPINGS`: for each standard directory (``/users``, ``/groups``, ``/machines``,
  ...), the object classes of its children's entries, their naming attribute, and
  :class:`Column` rows pairing an LDAP attribute with a NetInfo property (with a
  conversion where the two differ: crypt strings carry ``{CRYPT}``, shadow dates are
  days where NetInfo keeps seconds). A directory with no row (and the children of a
  mapped directory's children) is a generic entry: ``cn`` from its names and every
  property as ``netinfoProperty: KEY=VALUE``. Properties no column takes go there too, so
  that an entry carries every property (nothing is lost by a read-modify-write).
* :data:`ATTRIBUTE_TYPES` and :data:`OBJECT_CLASSES`: the schema those entries use (RFC
  2307's OIDs, RFC 4519's and RFC 4524's core, RFC 2307bis's automount), which the schema
  subentry publishes and the filter evaluator matches by (``ldapfilter``).
* DNs: a directory's DN is its NetInfo path under the base: ``/users/ann`` is
  ``uid=ann,ou=users,BASE``, the root directory is the base entry itself. RDN values are
  the directory's first ``name`` value (spec §2.4: names are the lookup key). DN strings
  follow RFC 4514 (:func:`parse_dn`, :func:`dn_text`).

``userPassword`` (the ``passwd`` property) is *private*: the server shows it, and lets a
filter match it, only for the user's own entry or the superuser (see ``ldapserver``).

NIS maps can be derived from the same rows: a map line is the entry's attributes joined
in a fixed order (``passwd``: uid, userPassword, uidNumber, gidNumber, gecos,
homeDirectory, loginShell), each read through the row's Column, so that the two front
doors never disagree on what a property means (:data:`NIS_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..model import Proplist

#: Our own object class and attribute for what RFC 2307 has no place for, under an OID
#: arc of our own: a UUID's (ITU-T X.667, ``2.25.<uuid>``), which needs no registration.
OWN_OID_ARC = "2.25.279537888711366560951763412731075131199"
SECONDS_PER_DAY = 86400


@dataclass(frozen=True, slots=True)
class AttrType:
    """One attribute type: OID, equality (``ci`` case-ignore, ``ce`` case-exact,
    ``int`` integer, ``oct`` octets), single-valued, syntax OID, operational."""

    oid: str
    equality: str = "ci"
    single: bool = False
    syntax: str = "1.3.6.1.4.1.1466.115.121.1.15"   # Directory String
    operational: bool = False


_IA5 = "1.3.6.1.4.1.1466.115.121.1.26"
_INT = "1.3.6.1.4.1.1466.115.121.1.27"
_OCT = "1.3.6.1.4.1.1466.115.121.1.40"
_DN = "1.3.6.1.4.1.1466.115.121.1.12"
_OIDS = "1.3.6.1.4.1.1466.115.121.1.38"
_NIS = "1.3.6.1.1.1.1."

#: name → type (names as RFC 2307 / RFC 4519 spell them; looked up case-insensitively
#: through :data:`ATTRS_BY_LOWER`)
ATTRIBUTE_TYPES: dict[str, AttrType] = {
    "objectClass": AttrType("2.5.4.0", "ci", syntax=_OIDS),
    "cn": AttrType("2.5.4.3"), "sn": AttrType("2.5.4.4"),
    "ou": AttrType("2.5.4.11"), "o": AttrType("2.5.4.10"),
    "dc": AttrType("0.9.2342.19200300.100.1.25", single=True, syntax=_IA5),
    "uid": AttrType("0.9.2342.19200300.100.1.1"),
    "description": AttrType("2.5.4.13"),
    "mail": AttrType("0.9.2342.19200300.100.1.3", "ci", syntax=_IA5),
    "userPassword": AttrType("2.5.4.35", "oct", syntax=_OCT),
    "uidNumber": AttrType(_NIS + "0", "int", True, _INT),
    "gidNumber": AttrType(_NIS + "1", "int", True, _INT),
    "gecos": AttrType(_NIS + "2", "ci", True, _IA5),
    "homeDirectory": AttrType(_NIS + "3", "ce", True, _IA5),
    "loginShell": AttrType(_NIS + "4", "ce", True, _IA5),
    "shadowLastChange": AttrType(_NIS + "5", "int", True, _INT),
    "shadowExpire": AttrType(_NIS + "10", "int", True, _INT),
    "memberUid": AttrType(_NIS + "12", "ce", syntax=_IA5),
    "memberNisNetgroup": AttrType(_NIS + "13", "ce", syntax=_IA5),
    "nisNetgroupTriple": AttrType(_NIS + "14", "ce", syntax=_IA5),
    "ipServicePort": AttrType(_NIS + "15", "int", True, _INT),
    "ipServiceProtocol": AttrType(_NIS + "16", "ci"),
    "ipProtocolNumber": AttrType(_NIS + "17", "int", True, _INT),
    "oncRpcNumber": AttrType(_NIS + "18", "int", True, _INT),
    "ipHostNumber": AttrType(_NIS + "19", "ci", syntax=_IA5),
    "ipNetworkNumber": AttrType(_NIS + "20", "ci", True, _IA5),
    "macAddress": AttrType(_NIS + "22", "ci", syntax=_IA5),
    "bootParameter": AttrType(_NIS + "23", "ce", syntax=_IA5),
    "bootFile": AttrType(_NIS + "24", "ce", syntax=_IA5),
    "automountKey": AttrType(_NIS + "33", "ce", True, _IA5),
    "automountInformation": AttrType(_NIS + "32", "ce", True, _IA5),
    "rfc822MailMember": AttrType("1.3.6.1.4.1.42.2.27.2.1.15", "ci", syntax=_IA5),
    "netinfoProperty": AttrType(OWN_OID_ARC + ".1.1", "ce"),
    # operational (RFC 4512 §3.4, §5.1; RFC 5020 entryDN; X.501 hasSubordinates)
    "entryDN": AttrType("1.3.6.1.1.20", "ci", True, _DN, True),
    "subschemaSubentry": AttrType("2.5.18.10", "ci", True, _DN, True),
    "hasSubordinates": AttrType("2.5.18.9", "ci", True,
                                "1.3.6.1.4.1.1466.115.121.1.7", True),
    "structuralObjectClass": AttrType("2.5.21.9", "ci", True, _OIDS, True),
    "namingContexts": AttrType("1.3.6.1.4.1.1466.101.120.5", "ci", False, _DN, True),
    "supportedControl": AttrType("1.3.6.1.4.1.1466.101.120.13", "ci", False, _OIDS, True),
    "supportedExtension": AttrType("1.3.6.1.4.1.1466.101.120.7", "ci", False, _OIDS, True),
    "supportedLDAPVersion": AttrType("1.3.6.1.4.1.1466.101.120.15", "int", False, _INT,
                                     True),
    "supportedSASLMechanisms": AttrType("1.3.6.1.4.1.1466.101.120.14", "ci", False, _IA5,
                                        True),
    "vendorName": AttrType("1.3.6.1.1.4", "ci", True, operational=True),
    "objectClasses": AttrType("2.5.21.6", "ci", False, operational=True),
    "attributeTypes": AttrType("2.5.21.5", "ci", False, operational=True),
}
ATTRS_BY_LOWER = {name.lower(): name for name in ATTRIBUTE_TYPES}


def attr_type(name: str) -> AttrType:
    """The type of *name* (any case); an unknown name is a case-ignore string."""
    canon = ATTRS_BY_LOWER.get(name.lower())
    return ATTRIBUTE_TYPES[canon] if canon is not None else _UNKNOWN


_UNKNOWN = AttrType("", "ci")

#: object class → (OID, kind, MUST, MAY) for the schema subentry (RFC 2307 §3, RFC 4519,
#: RFC 4524, RFC 2798 inetOrgPerson, RFC 2307bis automount, misc nisMailAlias)
OBJECT_CLASSES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "top": ("2.5.6.0", "ABSTRACT", ("objectClass",), ()),
    "domain": ("0.9.2342.19200300.100.4.13", "STRUCTURAL", ("dc",), ("description",)),
    "organization": ("2.5.6.4", "STRUCTURAL", ("o",), ("description",)),
    "organizationalUnit": ("2.5.6.5", "STRUCTURAL", ("ou",), ("description",)),
    "account": ("0.9.2342.19200300.100.4.5", "STRUCTURAL", ("uid",), ("description",)),
    "inetOrgPerson": ("2.16.840.1.113730.3.2.2", "STRUCTURAL", ("cn", "sn"),
                      ("uid", "userPassword", "description", "mail")),
    "posixAccount": (_NIS[:-2] + "2.0", "AUXILIARY",
                     ("cn", "uid", "uidNumber", "gidNumber", "homeDirectory"),
                     ("userPassword", "loginShell", "gecos", "description")),
    "shadowAccount": (_NIS[:-2] + "2.1", "AUXILIARY", ("uid",),
                      ("userPassword", "shadowLastChange", "shadowExpire", "description")),
    "posixGroup": (_NIS[:-2] + "2.2", "STRUCTURAL", ("cn", "gidNumber"),
                   ("userPassword", "memberUid", "description")),
    "ipService": (_NIS[:-2] + "2.3", "STRUCTURAL",
                  ("cn", "ipServicePort", "ipServiceProtocol"), ("description",)),
    "ipProtocol": (_NIS[:-2] + "2.4", "STRUCTURAL", ("cn", "ipProtocolNumber",
                                                     "description"), ()),
    "oncRpc": (_NIS[:-2] + "2.5", "STRUCTURAL", ("cn", "oncRpcNumber", "description"), ()),
    "ipHost": (_NIS[:-2] + "2.6", "AUXILIARY", ("cn", "ipHostNumber"), ("description",)),
    "ipNetwork": (_NIS[:-2] + "2.7", "STRUCTURAL", ("cn", "ipNetworkNumber"),
                  ("description",)),
    "nisNetgroup": (_NIS[:-2] + "2.8", "STRUCTURAL", ("cn",),
                    ("nisNetgroupTriple", "memberNisNetgroup", "description")),
    "ieee802Device": (_NIS[:-2] + "2.11", "AUXILIARY", (), ("macAddress",)),
    "bootableDevice": (_NIS[:-2] + "2.12", "AUXILIARY", (), ("bootFile", "bootParameter")),
    "device": ("2.5.6.14", "STRUCTURAL", ("cn",), ("description",)),
    "automount": (_NIS[:-2] + "2.17", "STRUCTURAL",
                  ("automountKey", "automountInformation"), ("description",)),
    "nisMailAlias": ("1.3.6.1.4.1.42.2.27.1.2.5", "STRUCTURAL", ("cn",),
                     ("rfc822MailMember",)),
    "netinfoDirectory": (OWN_OID_ARC + ".2.1", "AUXILIARY", (), ("cn", "netinfoProperty")),
    # the structural class of a directory no row maps (an entry needs one: RFC 4512
    # §2.4.2, and slapadd refuses an entry without)
    "netinfoEntry": (OWN_OID_ARC + ".2.2", "STRUCTURAL", ("cn",), ("netinfoProperty",)),
    "extensibleObject": ("1.3.6.1.4.1.1466.101.120.111", "AUXILIARY", (), ()),
    "subschema": ("2.5.20.1", "AUXILIARY", (), ("objectClasses", "attributeTypes")),
}


# -- the table --------------------------------------------------------------------------------

Values = list[str]


def _crypt_out(v: Values) -> Values:
    return ["{CRYPT}" + x for x in v if x]


def _crypt_in(v: Values) -> Values:
    return [x[7:] if x[:7].upper() == "{CRYPT}" else x for x in v]


def _days_out(v: Values) -> Values:
    return [str(int(x) // SECONDS_PER_DAY) for x in v if x.isdigit() and int(x) > 0]


def _days_in(v: Values) -> Values:
    return [str(int(x) * SECONDS_PER_DAY) for x in v if x.lstrip("-").isdigit()]


@dataclass(frozen=True, slots=True)
class Column:
    """LDAP attribute *attr* ↔ NetInfo property *prop*; *first*: only the first value
    (a single-valued attribute); *out*/*back* convert the values each way."""

    attr: str
    prop: str
    first: bool = False
    out: Callable[[Values], Values] | None = None
    back: Callable[[Values], Values] | None = None


@dataclass(frozen=True, slots=True)
class Mapping:
    """How the children of one NetInfo directory are entries.

    *rdn*: the naming attribute (its value: the first ``name``); *classes*: objectClass
    values; *derive*: attributes computed from the properties (one way)."""

    directory: str
    rdn: str
    classes: tuple[str, ...]
    columns: tuple[Column, ...]
    derive: Callable[[dict[str, Values]], list[tuple[str, Values]]] | None = None
    #: the attributes *derive* makes (accepted in a write, read back as the columns say)
    derived: tuple[str, ...] = ()
    #: properties read back from the derived attributes (lower-case name → values), for
    #: an entry that does not carry them otherwise (one written by another directory)
    underive: Callable[[dict[str, Values]], dict[str, Values]] | None = None


def _user_extra(p: dict[str, Values]) -> list[tuple[str, Values]]:
    """cn (the real name, else the login name), and inetOrgPerson's sn when a real name
    gives one (the structural class is then inetOrgPerson, else account)."""
    real = [r for r in p.get("realname", []) if r.strip()]
    name = p.get("name", [""])[:1]
    if real:
        return [("objectClass", ["inetOrgPerson"]), ("cn", real[:1]),
                ("sn", [real[0].split()[-1]])]
    return [("objectClass", ["account"]), ("cn", name)]


def _mount_extra(p: dict[str, Values]) -> list[tuple[str, Values]]:
    """automountInformation: ``-opts,fstype=T server:/path`` (RFC 2307bis; autofs's
    map format), from opts, vfstype and name."""
    opts = [o for o in p.get("opts", []) if o]
    vfs = p.get("vfstype", p.get("type", []))[:1]
    opt_list = ([f"fstype={vfs[0]}"] if vfs and vfs[0] not in ("", "nfs") else []) + opts
    info = ("-" + ",".join(opt_list) + " " if opt_list else "") + p.get("name", [""])[0]
    return [("automountInformation", [info])]


def _mount_back(by: dict[str, Values]) -> dict[str, Values]:
    """:func:`_mount_extra` backwards: ``-opts,fstype=T location`` → vfstype, opts."""
    info = by.get("automountinformation", [""])[0].split()
    out: dict[str, Values] = {}
    if len(info) >= 2 and info[0].startswith("-"):
        opts = [o for o in info[0][1:].split(",") if o]
        vfs = [o[7:] for o in opts if o.startswith("fstype=")]
        if vfs:
            out["vfstype"] = vfs[:1]
        rest = [o for o in opts if not o.startswith("fstype=")]
        if rest:
            out["opts"] = rest
    return out


def mount_location(by: dict[str, Values]) -> str | None:
    """The location (``server:/path``) an automountInformation value names, lower-case
    attribute names in *by*."""
    info = by.get("automountinformation", [""])[0].split()
    return info[-1] if info else None


def _described(p: dict[str, Values]) -> list[tuple[str, Values]]:
    """RFC 2307 makes ``description`` a MUST of ipProtocol and oncRpc (OpenLDAP's
    nis.schema too): a directory without one shows its name there, and reading an entry
    back takes a description equal to the name for that (``props_from_attrs``)."""
    if any(p.get("description", [])):
        return []
    return [("description", p.get("name", [""])[:1])]


_NAME_CN = Column("cn", "name")

#: THE table (issue 22 item 3). Directory names are those of spec §2.2's flat formats.
MAPPINGS: dict[str, Mapping] = {m.directory: m for m in (
    Mapping("users", "uid", ("top", "posixAccount", "shadowAccount"), (
        Column("uid", "name", first=True), Column("uidNumber", "uid", True),
        Column("gidNumber", "gid", True), Column("gecos", "realname", True),
        Column("homeDirectory", "home", True), Column("loginShell", "shell", True),
        Column("userPassword", "passwd", True, _crypt_out, _crypt_in),
        Column("shadowLastChange", "change", True, _days_out, _days_in),
        Column("shadowExpire", "expire", True, _days_out, _days_in),
    ), _user_extra, ("cn", "sn")),
    Mapping("groups", "cn", ("top", "posixGroup"), (
        Column("cn", "name", first=True), Column("gidNumber", "gid", True),
        Column("memberUid", "users"),
        Column("userPassword", "passwd", True, _crypt_out, _crypt_in),
    )),
    Mapping("machines", "cn", ("top", "device", "ipHost", "ieee802Device", "bootableDevice"), (
        _NAME_CN, Column("ipHostNumber", "ip_address"), Column("macAddress", "en_address"),
        Column("bootParameter", "bootparams"), Column("bootFile", "bootfile", True),
    )),
    Mapping("services", "cn", ("top", "ipService"), (
        _NAME_CN, Column("ipServicePort", "port", True),
        Column("ipServiceProtocol", "protocol"),
    )),
    Mapping("protocols", "cn", ("top", "ipProtocol"), (
        _NAME_CN, Column("ipProtocolNumber", "number", True),
    ), _described, ("description",)),
    Mapping("rpcs", "cn", ("top", "oncRpc"), (
        _NAME_CN, Column("oncRpcNumber", "number", True),
    ), _described, ("description",)),
    Mapping("networks", "cn", ("top", "ipNetwork"), (
        _NAME_CN, Column("ipNetworkNumber", "address", True),
    )),
    Mapping("aliases", "cn", ("top", "nisMailAlias"), (
        _NAME_CN, Column("rfc822MailMember", "members"),
    )),
    Mapping("mounts", "cn", ("top", "automount", "netinfoDirectory"), (
        _NAME_CN, Column("automountKey", "dir", True),
    ), _mount_extra, ("automountInformation",), _mount_back),
    Mapping("netgroups", "cn", ("top", "nisNetgroup"), (
        _NAME_CN, Column("nisNetgroupTriple", "netgroup_triple"),
        Column("memberNisNetgroup", "netgroups"),
    )),
)}

def _placing() -> dict[str, str]:
    """object class (lower case) → the directory whose rows alone carry it: how an entry
    written by another directory (an OpenLDAP export) finds its NetInfo directory. Classes
    two rows share, the generic ones and ``device`` (a catch-all) place nothing."""
    seen: dict[str, list[str]] = {}
    for m in MAPPINGS.values():
        for cls in m.classes:
            seen.setdefault(cls.lower(), []).append(m.directory)
    skip = {"top", "device", *(c.lower() for c in GENERIC_CLASSES + CONTAINER_CLASSES)}
    return {cls: dirs[0] for cls, dirs in seen.items() if len(dirs) == 1 and cls not in skip}


#: NIS map → (directory, LDAP attributes joined by ":" in order): how the NIS front door
#: could read its lines through the same rows (module docstring).
NIS_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "passwd": ("users", ("uid", "userPassword", "uidNumber", "gidNumber", "gecos",
                         "homeDirectory", "loginShell")),
    "group": ("groups", ("cn", "userPassword", "gidNumber", "memberUid")),
}

#: attributes any entry may carry that no column takes: kept as the property of the same
#: name (``description: x`` is ``description = x``), shown under their own name
PASSTHROUGH = frozenset({"description", "mail"})
#: properties never shown through netinfoProperty (their column is private)
PRIVATE_PROPS = frozenset({"passwd"})
PRIVATE_ATTRS = frozenset({"userpassword"})
GENERIC_CLASSES = ("top", "netinfoEntry", "netinfoDirectory", "extensibleObject")
CONTAINER_CLASSES = ("top", "organizationalUnit", "netinfoDirectory")
#: object class (lower case) → the directory its entries belong in (:func:`_placing`)
PLACING_CLASSES = _placing()


# -- entries --------------------------------------------------------------------------------

#: an entry's attributes: lower-case name → (name as shown, values)
Attrs = dict[str, tuple[str, Values]]


def _add(attrs: Attrs, name: str, values: Values) -> None:
    """Values added to an attribute; empty strings are left out (no LDAP syntax the
    mapping uses allows an empty value: an empty NetInfo value reads as absent)."""
    key = name.lower()
    have = attrs.get(key)
    if have is None:
        values = [v for v in values if v]
        if values:
            attrs[key] = (name, values)
        return
    had = have[1]
    for v in values:
        if v and v not in had:
            had.append(v)


def property_text(key: str, value: str | None) -> str:
    """``netinfoProperty`` value: ``KEY=VALUE``, ``=`` and ``\\`` in KEY as ``\\3d``,
    ``\\5c``; a property with no values is ``KEY`` alone (*value* None)."""
    key = key.replace("\\", "\\5c").replace("=", "\\3d")
    return key if value is None else key + "=" + value


def property_from_text(text: str) -> tuple[str, str | None] | None:
    """:func:`property_text` backwards: (KEY, VALUE), VALUE None for ``KEY`` alone."""
    key, eq, value = text.partition("=")
    if not key:
        return None
    if not eq:
        return key.replace("\\3d", "=").replace("\\3D", "=").replace(
            "\\5c", "\\").replace("\\5C", "\\"), None
    return key.replace("\\3d", "=").replace("\\3D", "=").replace("\\5c", "\\").replace(
        "\\5C", "\\"), value


def _shown(c: Column, values: Values) -> Values:
    """What column *c* shows of a property holding *values*."""
    vs = values[:1] if c.first else values
    return c.out(vs) if c.out is not None else [v for v in vs if v]


def mapping_for(path: Sequence[str]) -> Mapping | None:
    """The row for a directory at NetInfo *path* (names from the root): children of a
    mapped top-level directory only."""
    return MAPPINGS.get(path[0]) if len(path) == 2 else None


def entry_attrs(path: Sequence[str], props: Proplist, base_rdn: tuple[str, str]) -> Attrs:
    """The attributes of the entry for the directory at *path* with *props* (every one,
    private ones included: the caller hides them)."""
    attrs: Attrs = {}
    p: dict[str, Values] = {}
    for k, vs in props:
        p.setdefault(k, list(vs))
    used: set[str] = set()
    lossy: set[str] = set()
    if not path:   # the root directory: the base entry
        battr, bval = base_rdn
        cls = {"dc": "domain", "o": "organization", "ou": "organizationalUnit"}.get(
            battr.lower(), "extensibleObject")
        _add(attrs, "objectClass", ["top", cls, "netinfoDirectory"])
        _add(attrs, battr, [bval])
    else:
        m = mapping_for(path)
        if m is not None:
            _add(attrs, "objectClass", list(m.classes))
            for c in m.columns:
                have = p.get(c.prop)
                if have is None:
                    continue
                used.add(c.prop)
                vs = have[:1] if c.first else have
                shown = c.out(vs) if c.out is not None else [v for v in vs if v]
                _add(attrs, c.attr, shown)
                if (c.back(shown) if c.back is not None else shown) != have or not have:
                    lossy.add(c.prop)   # also carried exactly, as netinfoProperty
            if m.derive is not None:
                for a, vs in m.derive(p):
                    _add(attrs, a, vs)
            _add(attrs, m.rdn, [path[-1]])
        elif len(path) == 1:
            _add(attrs, "objectClass", list(CONTAINER_CLASSES))
            _add(attrs, "ou", [path[0]])
            used.add("name")
        else:
            _add(attrs, "objectClass", list(GENERIC_CLASSES))
            _add(attrs, "cn", p.get("name", []) or [path[-1]])
            used.add("name")
    for k, vs in props:
        if k in PASSTHROUGH and k not in used:
            _add(attrs, k, vs)
            used.add(k)
    texts: Values = []
    for k, vs in props:
        if (k not in used or k in lossy) and k not in PRIVATE_PROPS:
            texts.extend([property_text(k, v) for v in vs] if vs else [property_text(k, None)])
    if texts and path and mapping_for(path) is not None:
        # the class that allows netinfoProperty (a directory server's schema check)
        _add(attrs, "objectClass", ["netinfoDirectory"])
    _add(attrs, "netinfoProperty", texts)
    return attrs


def rdn_attr(path: Sequence[str]) -> str:
    """The naming attribute of the directory at *path* (not the root)."""
    if len(path) == 1:
        return "ou"
    m = mapping_for(path)
    return m.rdn if m is not None else "cn"


def props_from_attrs(path: Sequence[str], attrs: Iterable[tuple[str, Values]],
                     keep: Proplist | None = None) -> Proplist:
    """The proplist of the directory at *path* whose entry has *attrs* (an add or the
    result of a modify): each column's attribute back to its property, netinfoProperty
    values back to theirs, ``name`` from the RDN first. Properties of *keep* (the
    directory's present proplist) that no attribute speaks for stay as they are, in
    place."""
    by: dict[str, Values] = {}
    for a, vs in attrs:
        by.setdefault(a.lower(), []).extend(vs)
    m = mapping_for(path)
    out: dict[str, Values] = {}
    exact: dict[str, Values] = {}
    for text in by.get("netinfoproperty", []):
        kv = property_from_text(text)
        if kv is not None and kv[0] not in PRIVATE_PROPS:
            have = exact.setdefault(kv[0], [])
            if kv[1] is not None:
                have.append(kv[1])
    if m is not None:
        for c in m.columns:
            got = by.get(c.attr.lower())
            if got is not None:
                vs = c.back(got) if c.back is not None else got
                have = out.setdefault(c.prop, [])
                have.extend(v for v in vs if v not in have)
                if c.prop in exact and set(_shown(c, exact[c.prop])) == set(got):
                    # the property's exact values, which the column shows as *got*
                    # (entry_attrs: a column that loses something, zero dates or empty
                    # or extra values, is carried as netinfoProperty too)
                    out[c.prop] = exact[c.prop]
        if m.underive is not None:
            for k, vs in m.underive(by).items():
                if k not in out and k not in exact:
                    out[k] = vs
        if "realname" not in out and m.directory == "users":
            cns = [v for v in by.get("cn", []) if v != path[-1]]
            if cns:
                out["realname"] = cns[:1]
    elif len(path) >= 2 and by.get("cn"):
        out["name"] = by["cn"]
    names = out.get("name", [])
    out["name"] = [path[-1]] + [n for n in names if n != path[-1]]
    for k in PASSTHROUGH:
        if k in by and k not in out:
            if (k == "description" and m is not None and m.derive is _described
                    and by[k] == [path[-1]] and k not in exact):
                continue   # the name shown as RFC 2307's mandatory description
            out[k] = by[k]
    # netinfoProperty speaks for the properties no column took
    out.update((k, vs) for k, vs in exact.items() if k not in out)
    result: list[tuple[str, list[str]]] = [("name", out.pop("name"))]
    for k, vs in keep or ():   # present properties keep their places
        if k in out:
            result.append((k, out.pop(k)))
        elif (k in PRIVATE_PROPS and not (m is not None and any(
                c.prop == k for c in m.columns))) or not any(vs):
            # never shown (private, or only empty values), so never dropped by a write
            result.append((k, list(vs)))
    result.extend(out.items())
    return result


def default_base(tag: str) -> str:
    """``--ldap-base``'s default: the tag as a ``dc`` under ``dc=netinfo``
    (``network`` → ``dc=network,dc=netinfo``)."""
    return dn_text((("dc", tag), ("dc", "netinfo")))


def dn_of(path: Sequence[str], base: DN) -> str:
    """The DN of the directory at NetInfo *path* under *base*: its names as RDNs, most
    specific first (``("users", "ann")`` → ``uid=ann,ou=users,BASE``)."""
    rel = tuple((rdn_attr(path[:i]), path[i - 1]) for i in range(len(path), 0, -1))
    return dn_text(rel + tuple(base))


def unknown_attrs(path: Sequence[str], names: Iterable[str],
                  base_attr: str = "dc") -> list[str]:
    """The attribute names of a write to the entry at *path* that the table cannot keep
    (undefinedAttributeType): any but objectClass, netinfoProperty, the
    :data:`PASSTHROUGH` ones, the naming attribute, and the row's columns and derived
    attributes (``cn`` for generic entries, the base's naming attribute for the root)."""
    ok = {"objectclass", "netinfoproperty", *PASSTHROUGH}
    m = mapping_for(path)
    if not path:
        ok.add(base_attr.lower())
    elif m is not None:
        ok.update(c.attr.lower() for c in m.columns)
        ok.update(a.lower() for a in m.derived)
        ok.add(m.rdn.lower())
    else:
        ok.add(rdn_attr(path).lower())
        ok.add("cn")
    return [n for n in names if n.lower() not in ok]


# -- distinguished names (RFC 4514) ------------------------------------------------------------

DN = tuple[tuple[str, str], ...]
_SPECIAL = ',+"\\<>;'


_PLAIN = frozenset(_SPECIAL + "\0")


def escape_value(v: str) -> str:
    """An RDN value in RFC 4514 §2.4 form."""
    if v and v[0] not in " #" and v[-1] != " " and _PLAIN.isdisjoint(v):
        return v   # the common case: nothing to escape
    out = []
    for i, ch in enumerate(v):
        if ch in _SPECIAL or (ch == "#" and i == 0) \
                or (ch == " " and (i == 0 or i == len(v) - 1)):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def dn_text(dn: DN) -> str:
    return ",".join(f"{a}={escape_value(v)}" for a, v in dn)


class DnError(ValueError):
    """A DN that does not parse (invalidDNSyntax)."""


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _unescape(s: str) -> str:
    out = bytearray()
    i = 0
    raw = s.encode("utf-8", "surrogateescape")
    while i < len(raw):
        b = raw[i]
        if b == 0x5C:
            if i + 1 >= len(raw):
                raise DnError("a DN ends with a backslash")
            nxt = raw[i + 1:i + 3]
            if len(nxt) == 2 and all(c in _HEX for c in nxt):   # not int()'s "+c", " c"
                out.append(int(nxt.decode("ascii"), 16))
                i += 3
                continue
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(b)
        i += 1
    return out.decode("utf-8", "surrogateescape")


#: RDNs a DN may have: a NetInfo path is at most wire.limits.MAX_DEPTH (256) deep, the
#: base adds a few
MAX_RDNS = 300


def parse_dn(text: str) -> DN:
    """RFC 4514 string → ((attr, value), ...), most specific first; attribute names as
    written, values unescaped. A multi-valued RDN (``+``) keeps its first AVA only: no
    NetInfo directory is named by two. :raises DnError:"""
    if not text.strip():
        return ()
    if "\\" not in text and "+" not in text and ";" not in text and '"' not in text:
        # the common case: no escapes, one AVA per RDN
        plain = text.split(",")
        if len(plain) > MAX_RDNS:
            raise DnError(f"a DN of more than {MAX_RDNS} RDNs")
        out = []
        for part in plain:
            attr, eq, value = part.partition("=")
            attr = attr.strip()
            if not eq or not attr or not (attr[0].isalpha() or attr[0].isdigit()):
                raise DnError(f"invalid RDN {part!r}")
            out.append((attr, value.strip(" ")))
        return tuple(out)
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch in ",;":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    if len(parts) > MAX_RDNS:
        raise DnError(f"a DN of more than {MAX_RDNS} RDNs")
    dn = []
    for part in parts:
        ava = _split_plus(part)
        attr, eq, value = ava.partition("=")
        attr = attr.strip()
        if not eq or not attr or not (attr[0].isalpha() or attr[0].isdigit()):
            raise DnError(f"invalid RDN {part!r}")
        value = value.strip(" ") if not value.endswith("\\ ") else value.lstrip(" ")
        dn.append((attr, _unescape(value)))
    return tuple(dn)


def _split_plus(part: str) -> str:
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        if part[i] == "+":
            return part[:i]
        i += 1
    return part


def norm_dn(dn: DN) -> tuple[tuple[str, str], ...]:
    """For comparing DNs: attribute names and (case-ignore naming attributes') values
    folded."""
    return tuple((a.lower(), v if attr_type(a).equality == "ce" else " ".join(
        v.casefold().split())) for a, v in dn)


__all__ = [
    "ATTRIBUTE_TYPES", "ATTRS_BY_LOWER", "AttrType", "Attrs", "CONTAINER_CLASSES", "Column",
    "DN", "DnError", "GENERIC_CLASSES", "MAPPINGS", "Mapping", "OWN_OID_ARC", "NIS_FIELDS",
    "PLACING_CLASSES", "mount_location",
    "OBJECT_CLASSES", "PASSTHROUGH", "PRIVATE_ATTRS", "PRIVATE_PROPS", "attr_type", "dn_text",
    "default_base", "dn_of", "entry_attrs", "escape_value", "mapping_for", "norm_dn",
    "parse_dn", "property_from_text", "property_text", "props_from_attrs", "rdn_attr",
    "unknown_attrs",
]
