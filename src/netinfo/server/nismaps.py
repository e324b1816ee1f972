"""The NIS maps a NetInfo domain serves (issue 21), as one table: which directory, which
key property and which line renderer make each map. Pure: proplists in, (key, line) out.

Each line is what Linux clients parse (glibc's nss_nis reads them with the same parsers as
the flat files): ``passwd`` as /etc/passwd (7 fields, ``x`` in the password field: the
hash is in ``shadow.byname`` alone, which the server answers only to reserved ports),
``group`` as /etc/group (members from ``users``; a stored hash shows as ``x``), ``hosts`` as
/etc/hosts, ``services``, ``protocols`` and ``rpc`` as their /etc files, ``mail.aliases``
as sendmail's aliases map, ``netgroup`` as the triples of netgroup(5), ``netid.byname`` as
``uid:gid,gid…``, and the automounter's ``auto.master`` and ``auto.*`` from /mounts.

An entry whose line would break the format (a ``:`` or a newline inside a field of a
colon-separated line, a missing name or number) is left out of its map, as is one whose
key or line is longer than YP's 1,024 bytes (yp.YPMAXRECORD): a client could not read it.

The directories' layouts: spec "Standard directories" (netinfo-protocol.md), tools §2.2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..model import Proplist, first_values, is_digits, is_integer

#: (key, line) of one map entry
Entry = tuple[str, str]
#: the proplists of the children of a root directory, by its name (empty when absent)
Children = Callable[[str], Iterable[Proplist]]


def _first(props: Proplist, key: str, default: str = "") -> str:
    values = first_values(props, key)
    return values[0] if values else default


def _all(props: Proplist, key: str) -> list[str]:
    return list(first_values(props, key) or [])


def _clean(*fields: str, sep: str = ":") -> bool:
    """No field holds the separator (one character) or a line break: the fields joined
    hold neither (one C scan each instead of a generator over the fields: MATCH renders a
    line per miss, issue 21)."""
    joined = "".join(fields)
    return sep not in joined and "\n" not in joined


# -- passwd, shadow, group --------------------------------------------------------------------

def passwd_line(props: Proplist) -> str | None:
    """``name:x:uid:gid:gecos:home:shell`` (passwd(5)); None when it cannot be one."""
    name, uid, gid = _first(props, "name"), _first(props, "uid"), _first(props, "gid")
    if not name or not is_integer(uid) or not is_integer(gid):
        return None
    fields = (name, "x", uid, gid, _first(props, "realname"), _first(props, "home"),
              _first(props, "shell"))
    return ":".join(fields) if _clean(*fields) else None


def _days(seconds: str) -> str:
    """NetInfo's ``change`` / ``expire`` (seconds since 1970, 0: none) as shadow's days."""
    return str(int(seconds) // 86400) if is_digits(seconds) and int(seconds) else ""


def shadow_line(props: Proplist) -> str | None:
    """``name:hash:lastchg:min:max:warn:inactive:expire:`` (shadow(5)): the stored hash
    (a ``passwd`` without values locks the account: ``*``); the password must be
    changed when ``change`` is past (lastchg 0), the account ends at ``expire``."""
    name, uid = _first(props, "name"), _first(props, "uid")
    if not name or not is_integer(uid):
        return None
    values = first_values(props, "passwd")
    crypt = values[0] if values else "*"
    change = _first(props, "change")
    fields = (name, crypt, "0" if _days(change) else "", "", "", "", "",
              _days(_first(props, "expire")), "")
    return ":".join(fields) if _clean(*fields) else None


def group_line(props: Proplist) -> str | None:
    """``name:passwd:gid:m1,m2`` (group(5)); a stored hash shows as ``x``."""
    name, gid = _first(props, "name"), _first(props, "gid")
    if not name or not is_integer(gid):
        return None
    stored = _first(props, "passwd", "*")
    members = [m for m in _all(props, "users") if m]
    if not _clean(*members, sep=",") or not _clean(*members):
        return None
    fields = (name, stored if stored in ("", "*") else "x", gid, ",".join(members))
    return ":".join(fields) if _clean(*fields) else None


def _one(key_prop: str, render: Callable[[Proplist], str | None]
         ) -> Callable[[Proplist], Iterator[Entry]]:
    """One entry per directory, keyed by the first value of *key_prop*."""
    def entries(props: Proplist) -> Iterator[Entry]:
        key = _first(props, key_prop)
        line = render(props)
        if key and line is not None:
            yield key, line
    return entries


# -- hosts, services, protocols, rpc, aliases -------------------------------------------------

def _blank_clean(*fields: str) -> bool:
    return not any(c in f for f in fields for c in " \t\n#") and all(fields)


def _hosts_line(ip: str, names: list[str]) -> str:
    return f"{ip}\t{' '.join(names)}"


def hosts_byname(props: Proplist) -> Iterator[Entry]:
    """Every name of a host (name and aliases), in lower case → ``ip TAB names``, its
    first address. Lower case as the Linux makefiles build this map (makedbm -l) and as
    glibc's nss_nis asks it (it lowercases the name first)."""
    names, addrs = _all(props, "name"), _all(props, "ip_address")
    if not names or not addrs or not _blank_clean(addrs[0], *names):
        return
    line = _hosts_line(addrs[0], names)
    for n in dict.fromkeys(n.lower() for n in names):
        yield n, line


def hosts_byaddr(props: Proplist) -> Iterator[Entry]:
    """Every address of a host → ``ip TAB names``."""
    names, addrs = _all(props, "name"), _all(props, "ip_address")
    if not names or not addrs or not _blank_clean(*addrs, *names):
        return
    for ip in dict.fromkeys(addrs):
        yield ip, _hosts_line(ip, names)


def _service(props: Proplist) -> tuple[list[str], str, list[str]] | None:
    names, port, protos = _all(props, "name"), _first(props, "port"), _all(props, "protocol")
    if not names or not is_digits(port) or not protos or not _blank_clean(*names, *protos) \
            or any("/" in p for p in protos):
        return None
    return names, port, list(dict.fromkeys(protos))


def _service_line(names: list[str], port: str, proto: str) -> str:
    return f"{names[0]}\t{port}/{proto}" + "".join(f" {a}" for a in names[1:])


def services_byname(props: Proplist) -> Iterator[Entry]:
    """``port/protocol`` → the /etc/services line, one per protocol (the key the
    Linux makefiles give this map, which getservbyport asks)."""
    found = _service(props)
    if found is not None:
        names, port, protos = found
        for proto in protos:
            yield f"{port}/{proto}", _service_line(names, port, proto)


def services_byservicename(props: Proplist) -> Iterator[Entry]:
    """``name/protocol`` for every name and protocol, and the bare ``name`` (its first
    protocol) → the /etc/services line (what getservbyname asks)."""
    found = _service(props)
    if found is not None:
        names, port, protos = found
        for name in dict.fromkeys(names):
            for proto in protos:
                yield f"{name}/{proto}", _service_line(names, port, proto)
            yield name, _service_line(names, port, protos[0])


def _numbered(props: Proplist) -> tuple[list[str], str] | None:
    names, number = _all(props, "name"), _first(props, "number")
    if not names or not is_digits(number) or not _blank_clean(*names):
        return None
    return names, number


def _numbered_line(names: list[str], number: str) -> str:
    return f"{names[0]}\t{number}" + "".join(f" {a}" for a in names[1:])


def numbered_byname(props: Proplist) -> Iterator[Entry]:
    """protocols.byname, rpc.byname: every name → ``name TAB number aliases``."""
    found = _numbered(props)
    if found is not None:
        for n in dict.fromkeys(found[0]):
            yield n, _numbered_line(*found)


def numbered_bynumber(props: Proplist) -> Iterator[Entry]:
    """protocols.bynumber, rpc.bynumber: the number → the line."""
    found = _numbered(props)
    if found is not None:
        yield found[1], _numbered_line(*found)


def mail_aliases(props: Proplist) -> Iterator[Entry]:
    """Every name of an alias → its members, comma-separated (sendmail's map)."""
    names, members = _all(props, "name"), [m for m in _all(props, "members") if m]
    if not names or not members or not _clean(*names, *members, sep="\n"):
        return
    line = ",".join(members)
    for n in dict.fromkeys(names):
        yield n, line


# -- maps made from several directories ---------------------------------------------------------

def netgroups(children: Children, domain: str) -> Iterator[Entry]:
    """netgroup(5) from the ``netgroups`` property of /machines and /users (lookupd's
    innetgr, tools spec): each group → ``(host,-,DOMAIN)`` and ``(-,user,DOMAIN)``
    triples, in the order of the directories."""
    groups: dict[str, list[str]] = {}
    for dirname, triple in (("machines", "({},-,{})"), ("users", "(-,{},{})")):
        for props in children(dirname):
            name = _first(props, "name")
            if not name or not _blank_clean(name) or "," in name:
                continue
            for g in _all(props, "netgroups"):
                if g and _blank_clean(g):
                    groups.setdefault(g, []).append(triple.format(name, domain))
    for g, triples in groups.items():
        yield g, " ".join(triples)


def netids(children: Children, domain: str) -> Iterator[Entry]:
    """netid.byname: ``unix.UID@DOMAIN`` → ``UID:GID,gid…`` (the user's primary group
    and every group whose ``users`` names it), and ``unix.HOST@DOMAIN`` → ``0:HOST``
    for each host."""
    member_of: dict[str, list[str]] = {}
    for props in children("groups"):
        gid = _first(props, "gid")
        if is_integer(gid):
            for user in _all(props, "users"):
                member_of.setdefault(user, []).append(gid)
    for props in children("users"):
        name, uid, gid = _first(props, "name"), _first(props, "uid"), _first(props, "gid")
        if name and is_integer(uid) and is_integer(gid):
            gids = [gid] + [g for g in member_of.get(name, ()) if g != gid]
            yield f"unix.{uid}@{domain}", f"{uid}:{','.join(dict.fromkeys(gids))}"
    for props in children("machines"):
        name = _first(props, "name")
        if name and _blank_clean(name) and "@" not in name:
            yield f"unix.{name}@{domain}", f"0:{name}"


def _mount(props: Proplist) -> tuple[str, str, str] | None:
    """(mount point, options, location) of a /mounts entry (spec "Standard
    directories": name ``host:/path``, dir, opts, vfstype)."""
    where, point = _first(props, "name"), _first(props, "dir")
    if ":" not in where or not point.startswith("/") or not _blank_clean(where, point):
        return None
    opts = [o for o in _all(props, "opts") if o and _blank_clean(o)]
    vfstype = _first(props, "vfstype") or _first(props, "type")
    if vfstype and vfstype != "nfs" and _blank_clean(vfstype):
        opts.insert(0, f"fstype={vfstype}")
    return point.rstrip("/") or "/", ",".join(opts), where


def automount_map(point: str) -> tuple[str, str]:
    """The automounter's (master key, map name) of a mount point: ``/a/b/c`` is key ``c``
    of map ``auto.a_b`` under ``/a/b``; a mount point at the top is in ``auto.direct``
    (master key ``/-``)."""
    parent = point.rsplit("/", 1)[0]
    if not parent:
        return "/-", "auto.direct"
    return parent, "auto." + parent.strip("/").replace("/", "_")


def automounts(children: Children) -> Iterator[tuple[str, str, str]]:
    """(map name, key, line) of every /mounts entry: ``-opts host:/path`` keyed by the
    last part of its mount point (the whole mount point in ``auto.direct``)."""
    for props in children("mounts"):
        found = _mount(props)
        if found is None:
            continue
        point, opts, where = found
        _, name = automount_map(point)
        key = point if name == "auto.direct" else point.rsplit("/", 1)[1]
        if len(name) <= 64:
            yield name, key, (f"-{opts} {where}" if opts else where)


def auto_master(children: Children) -> Iterator[Entry]:
    """auto.master: each directory holding automounted points → its map."""
    seen: dict[str, str] = {}
    for props in children("mounts"):
        found = _mount(props)
        if found is not None:
            key, name = automount_map(found[0])
            if len(name) <= 64:
                seen.setdefault(key, name)
    yield from seen.items()


# -- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MapSpec:
    """One map made from the children of one root directory: *entries* gives the (key,
    line) pairs of one child; *probe* turns a key into the (property, value) that finds
    its child through LOOKUP (the index), so a MATCH reads one directory, not the map.
    *secure*: answered only to callers on a reserved port (as ypserv does for
    shadow.byname)."""

    name: str
    directory: str
    entries: Callable[[Proplist], Iterator[Entry]]
    #: None: the key is not a stored value (hosts.byname's are lowercased): MATCH reads
    #: the map kept whole, which writes to its directory drop
    probe: Callable[[str], tuple[str, str] | None] | None
    secure: bool = False
    #: the properties *entries* reads, each through ``first_values`` alone (None: it may
    #: read anything): a MATCH then renders from those properties scanned out of the
    #: stored bytes (``proplist.stored_first_props``), the rest never decoded
    reads: frozenset[str] | None = None


def _by(prop: str) -> Callable[[str], tuple[str, str] | None]:
    return lambda key: (prop, key)


def _before_slash(prop: str) -> Callable[[str], tuple[str, str] | None]:
    return lambda key: (prop, key.split("/", 1)[0])


#: What passwd_line, shadow_line and group_line read (and the keys of their maps):
#: each through ``_first`` / ``_all``, i.e. ``first_values``.
PASSWD_READS = frozenset({"name", "uid", "gid", "realname", "home", "shell"})
SHADOW_READS = frozenset({"name", "uid", "passwd", "change", "expire"})
GROUP_READS = frozenset({"name", "gid", "passwd", "users"})

MAPS: dict[str, MapSpec] = {m.name: m for m in (
    MapSpec("passwd.byname", "users", _one("name", passwd_line), _by("name"),
            reads=PASSWD_READS),
    MapSpec("passwd.byuid", "users", _one("uid", passwd_line), _by("uid"),
            reads=PASSWD_READS),
    MapSpec("shadow.byname", "users", _one("name", shadow_line), _by("name"), secure=True,
            reads=SHADOW_READS),
    MapSpec("group.byname", "groups", _one("name", group_line), _by("name"),
            reads=GROUP_READS),
    MapSpec("group.bygid", "groups", _one("gid", group_line), _by("gid"),
            reads=GROUP_READS),
    MapSpec("hosts.byname", "machines", hosts_byname, None),
    MapSpec("hosts.byaddr", "machines", hosts_byaddr, _by("ip_address")),
    MapSpec("services.byname", "services", services_byname, _before_slash("port")),
    MapSpec("services.byservicename", "services", services_byservicename,
            _before_slash("name")),
    MapSpec("protocols.byname", "protocols", numbered_byname, _by("name")),
    MapSpec("protocols.bynumber", "protocols", numbered_bynumber, _by("number")),
    MapSpec("rpc.byname", "rpcs", numbered_byname, _by("name")),
    MapSpec("rpc.bynumber", "rpcs", numbered_bynumber, _by("number")),
    MapSpec("mail.aliases", "aliases", mail_aliases, _by("name")),
)}

#: Maps made from several directories: the function making the whole map, and the
#: directories it reads (a write to one of them drops the map's cache).
WHOLE_MAPS: dict[str, tuple[Callable[[Children, str], Iterator[Entry]], tuple[str, ...]]] = {
    "netgroup": (netgroups, ("machines", "users")),
    "netid.byname": (netids, ("users", "groups", "machines")),
    "auto.master": (lambda children, _domain: auto_master(children), ("mounts",)),
}
#: The automounter's maps other than auto.master are named after their mount points.
AUTO_PREFIX = "auto."
AUTO_DIRECTORY = "mounts"


__all__ = ["Entry", "Children", "MapSpec", "MAPS", "WHOLE_MAPS", "AUTO_PREFIX",
           "AUTO_DIRECTORY", "automounts", "automount_map", "passwd_line", "shadow_line",
           "group_line"]
