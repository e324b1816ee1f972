"""The verbs every NetInfo editing tool shares, each written once (DESIGN: "One client core").

``niutil`` and ``nicl`` are thin syntax adapters over these coroutines: each maps its own
syntax onto them in its own dispatch table (niutil's ``HANDLERS``, nicl's ``COMMANDS``). A
verb takes a client (a :class:`~netinfo.client.Client` or anything with its methods: a
domain handle, nicl's raw database) and plain arguments, returns data and prints nothing.
Failures are :class:`~netinfo.errors.NiError`; the adapters turn them into their own
messages.

Directories are addressed by object number after the adapter resolved the user's path
(:func:`resolve`), because the tools word "no such directory" differently from a failed
operation. Every write reads the directory first so that its instance number is current,
and an NI_STALE answer (someone wrote in between) makes it re-read and try once more.

Spec: tools §0.4 (paths), §1.3 (niutil semantics), §3.2 (nicl commands).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import NamedTuple, TypeVar

from ..errors import NiError, Status, TooLong
from ..model import (
    NI_INDEX_NULL,
    NiId,
    Proplist,
    is_digits,
    parse_path,
    split_unescaped,
    uint_to_addr,
)
from ..netif import name_of
from ..wire.limits import MAX_DEPTH, string_problem
from .core import Client
from .domain import DomainClient, domain_name

T = TypeVar("T")


# -- plumbing ---------------------------------------------------------------------------------

async def fresh(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a read-then-write step; on NI_STALE run it once more with a fresh read."""
    try:
        return await fn()
    except NiError as e:
        if e.status != Status.STALE:
            raise
    return await fn()


async def use_master(c: Client) -> None:
    """Send reads to the master too, so that instance numbers read before a write are the
    master's (the C library's "needwrite" mode, tools §0.5). No-op for a plain client."""
    use = getattr(c, "use_master", None)
    if use is not None:
        await use()


def is_id(path: str) -> bool:
    """niutil and nicl take a path made only of (ASCII) digits as a directory ID
    (tools §0.4)."""
    return is_digits(path)


async def resolve(c: Client, path: str, start: int | None = None) -> int:
    """The object number of *path*: an ID when all digits, else a lookup path from the
    root (or from *start*). :raises NiError: NI_NODIR, NI_BADID."""
    if is_id(path):
        return (await c.self_id(int(path))).object
    return (await c.pathsearch(path, start)).object


async def find_prop(c: Client, oid: int, key: str) -> tuple[NiId, Proplist, int]:
    """Read directory *oid*: (current id, properties, index of the first *key* or -1)."""
    nid, props = await c.read(oid)
    for i, (k, _) in enumerate(props):
        if k == key:
            return nid, props, i
    return nid, props, -1


def _is_meta(key: str) -> bool:
    return key.startswith("_")


def _append_index(props: Proplist, key: str, meta_last: bool) -> int:
    """Where a new property goes: the end, or (nicl, tools §3.3) before the first meta
    property when *key* is an ordinary one, so that ordinary properties stay first."""
    if meta_last and not _is_meta(key):
        for i, (k, _) in enumerate(props):
            if _is_meta(k):
                return i
    return NI_INDEX_NULL


# -- directory paths (tools §0.4) -------------------------------------------------------------

class CreateComponent(NamedTuple):
    """One component of a path to create: how to look it up, and what to store."""

    key: str
    value: str           #: fully un-escaped (lookups remove every backslash)
    stored_value: str    #: as stored when the directory is made (only ``\\/`` un-escaped)
    stored_key: str


def create_components(path: str) -> list[CreateComponent]:
    """Components of a path to create (tools §0.4): looked up like any path, but a new
    directory stores ``key: value`` with only ``\\/`` un-escaped."""
    lookup = parse_path(path)
    raw = [r for r in split_unescaped(path, "/") if r]
    out = []
    for (key, value), r in zip(lookup, raw, strict=True):   # parse_path skips the same empties
        kv = split_unescaped(r, "=", 1)
        skey, sval = ("name", kv[0]) if len(kv) == 1 else (kv[0], kv[1])
        out.append(CreateComponent(key, value, sval.replace("\\/", "/"),
                                   skey.replace("\\/", "/")))
    return out


def nameless(path: str) -> str | None:
    """Why *path* would create a directory without a name, or None: an empty path (it
    names no directory), or a component whose key or value is empty (``/users/name=``)
    (issue #9: ``niutil -create . ''`` is refused rather than "succeeding" on the root)."""
    if not path:
        return "an empty path names no directory"
    if is_id(path):
        return None
    for comp in create_components(path):
        if not comp.stored_key:
            return f"empty key in component ={comp.stored_value}"
        if not comp.stored_value:
            return f"empty value in component {comp.stored_key}="
    return None


async def create_path(c: Client, path: str, start: int | None = None,
                      dots: bool = False) -> int:
    """``niutil -create``: make every missing component of *path* (tools §1.3).

    Existing components are followed; a missing one becomes a new child holding only
    ``key: value``. With *dots* (nicl), ``.`` and ``..`` components mean "here" and "the
    parent". Returns the last directory's number; an existing path is not an error.

    :raises TooLong: a component over 65,535 bytes, or an absolute path deeper than
        :data:`~netinfo.wire.limits.MAX_DEPTH`: before the first call, nothing created.
    """
    if is_id(path):
        return (await c.self_id(int(path))).object
    comps = create_components(path)
    _check_components(comps, absolute=not dots and (start is None or path.startswith("/")))
    cur = (await c.root()).object if start is None or path.startswith("/") else start
    for comp in comps:
        if dots and comp.key == "name" and comp.value in (".", ".."):
            if comp.value == "..":
                cur = (await c.parent(cur))[0]
            continue
        try:
            found, _ = await c.lookup(cur, comp.key, comp.value)
            cur = found[0]
            continue
        except NiError as e:
            if e.status != Status.NODIR:
                raise
        cur = await fresh(partial(_make_child, c, cur, comp))
    return cur


def _check_components(comps: list[CreateComponent], absolute: bool) -> None:
    """Refuse a path to create before the first call when a component could not be sent
    or stored (over 65,535 bytes), or an absolute path is deeper than a server allows
    (:data:`~netinfo.wire.limits.MAX_DEPTH`): a refusal part way would leave the components
    above it created (issue 18).

    :raises TooLong: saying which bound, in one line."""
    for comp in comps:
        for text in (comp.key, comp.value, comp.stored_key, comp.stored_value):
            why = string_problem(text)
            if why is not None:
                raise TooLong(why)
    if absolute and len(comps) > MAX_DEPTH:
        raise TooLong(f"a path of {len(comps)} levels is deeper than a server allows "
                      f"({MAX_DEPTH} levels)")


async def _make_child(c: Client, parent: int, comp: CreateComponent) -> int:
    """Create *comp* under *parent* from a fresh read of its instance."""
    pid = await c.self_id(parent)
    child, _ = await c.create(pid, [(comp.stored_key, [comp.stored_value])], NI_INDEX_NULL)
    return child.object


async def destroy(c: Client, oid: int) -> int:
    """``niutil -destroy``: remove directory *oid* and its whole subtree, children first
    (tools §1.3); returns how many directories went. The root has no parent to be
    removed from: NI_UNRELATED, and nothing is touched."""
    parent, _ = await c.parent(oid)
    if parent == oid:
        raise NiError(Status.UNRELATED)
    return await _destroy_tree(c, parent, oid)


async def _destroy_tree(c: Client, parent: int, oid: int) -> int:
    kids, _ = await c.children(oid)
    gone = 0
    for k in list(kids):
        gone += await _destroy_tree(c, oid, k)

    async def step() -> None:
        await c.destroy(await c.self_id(parent), await c.self_id(oid))
    await fresh(step)
    return gone + 1


# -- property edits (tools §1.3) --------------------------------------------------------------

async def createprop(c: Client, oid: int, key: str, values: list[str],
                     meta_last: bool = False) -> None:
    """Replace the first *key*'s values in place, or append a new property (zero values
    allowed)."""
    async def step() -> None:
        nid, props, i = await find_prop(c, oid, key)
        if i >= 0:
            await c.writeprop(nid, i, list(values))
        else:
            await c.createprop(nid, key, list(values), _append_index(props, key, meta_last))
    await fresh(step)


async def _edit_values(c: Client, oid: int, key: str, edit: Callable[[list[str]], list[str]],
                       create: bool = True, meta_last: bool = False) -> None:
    """Rewrite the first *key*'s values with *edit*; create ``key: edit([])`` when missing
    (or raise NI_NOPROP when not *create*). Nothing is written when nothing changes."""
    async def step() -> None:
        nid, props, i = await find_prop(c, oid, key)
        if i < 0:
            if not create:
                raise NiError(Status.NOPROP)
            await c.createprop(nid, key, edit([]), _append_index(props, key, meta_last))
            return
        old = list(props[i][1])
        new = edit(list(old))
        if new != old:
            await c.writeprop(nid, i, new)
    await fresh(step)


async def appendprop(c: Client, oid: int, key: str, values: list[str],
                     meta_last: bool = False) -> None:
    """Append *values* (duplicates allowed); create the property when missing."""
    await _edit_values(c, oid, key, lambda vals: vals + list(values), meta_last=meta_last)


async def mergeprop(c: Client, oid: int, key: str, values: list[str],
                    meta_last: bool = False) -> None:
    """Append the *values* not already present; create the property when missing."""
    def merge(vals: list[str]) -> list[str]:
        for v in values:
            if v not in vals:
                vals.append(v)
        return vals
    await _edit_values(c, oid, key, merge, meta_last=meta_last)


async def insertval(c: Client, oid: int, key: str, value: str, index: int,
                    create: bool = True, meta_last: bool = False) -> None:
    """Insert *value* at *index* (0-based; at or past the end, or negative, appends).
    Creates ``key: [value]`` when missing; nicl refuses instead (*create* false →
    NI_NOPROP, tools §3.2)."""
    def insert(vals: list[str]) -> list[str]:
        if 0 <= index < len(vals):
            vals.insert(index, value)
        else:
            vals.append(value)
        return vals
    await _edit_values(c, oid, key, insert, create=create, meta_last=meta_last)


async def destroyprop(c: Client, oid: int, keys: list[str], missing_ok: bool = True) -> None:
    """Remove every property called any of *keys*. A missing key is no error (niutil);
    with *missing_ok* false (nicl) the first missing key raises NI_NOPROP, before any
    change."""
    async def step() -> None:
        nid, props = await c.read(oid)
        if not missing_ok:
            have = {k for k, _ in props}
            for key in keys:
                if key not in have:
                    raise NiError(Status.NOPROP, key)
        doomed = [i for i, (k, _) in enumerate(props) if k in keys]
        for i in reversed(doomed):   # from the end, so earlier indexes stay valid
            nid = await c.destroyprop(nid, i)
    await fresh(step)


async def destroyval(c: Client, oid: int, key: str, values: list[str],
                     missing_ok: bool = True) -> None:
    """Remove every occurrence of each of *values* from the first *key*. A missing
    property or value is no error (niutil); nicl (*missing_ok* false) gets NI_NOPROP for
    a missing property."""
    try:
        await _edit_values(c, oid, key, lambda vals: [v for v in vals if v not in values],
                           create=False)
    except NiError as e:
        if e.status != Status.NOPROP or not missing_ok:
            raise


async def renameprop(c: Client, oid: int, old: str, new: str) -> None:
    """Rename the first property *old*. :raises NiError: NI_NOPROP when it is missing."""
    async def step() -> None:
        nid, _, i = await find_prop(c, oid, old)
        if i < 0:
            raise NiError(Status.NOPROP)
        await c.renameprop(nid, i, new)
    await fresh(step)


async def write_record(c: Client, oid: int, props: Proplist) -> None:
    """Replace all properties of *oid* (directory-level write)."""
    async def step() -> None:
        nid, _ = await c.read(oid)
        await c.write(nid, props)
    await fresh(step)


# -- reads ------------------------------------------------------------------------------------

async def read(c: Client, oid: int) -> Proplist:
    """Every property of *oid*, in stored order."""
    return list((await c.read(oid))[1])


async def list_children(c: Client, oid: int,
                        key: str = "name") -> list[tuple[int, list[str]]]:
    """(child id, values of *key*) in child order; no values when the child lacks *key*."""
    entries, _ = await c.list(oid, key)
    return [(cid, list(vals or ())) for cid, vals in entries]


async def readprop(c: Client, oid: int, key: str) -> list[str]:
    """Values of the first property *key*. :raises NiError: NI_NOPROP."""
    _, props, i = await find_prop(c, oid, key)
    if i < 0:
        raise NiError(Status.NOPROP)
    return list(props[i][1])


async def readval(c: Client, oid: int, key: str, index: int) -> str | None:
    """One value of the first *key*, or None past the end. :raises NiError: NI_NOPROP."""
    vals = await readprop(c, oid, key)
    return vals[index] if 0 <= index < len(vals) else None


class Record(NamedTuple):
    """A directory with its place in the tree (nicl ``read -v``, tools §3.3)."""

    id: int
    instance: int
    parent: int
    children: list[int]
    props: Proplist


async def record(c: Client, oid: int) -> Record:
    """Directory *oid* with its instance, parent and children."""
    nid, props = await c.read(oid)
    parent, _ = await c.parent(oid)
    kids, _ = await c.children(oid)
    return Record(oid, nid.instance, parent, list(kids), list(props))


async def ancestry(c: Client, oid: int) -> list[int]:
    """*oid*, its parent, ... up to the root (nicl ``path``, tools §3.2)."""
    out = [oid]
    while oid != 0 and len(out) < 10_000:
        oid = (await c.parent(oid))[0]
        out.append(oid)
    return out


def _matches(props: Proplist, pairs: list[tuple[str, str]]) -> bool:
    for key, val in pairs:
        for k, v in props:
            if k == key:
                if val not in v:
                    return False
                break
        else:
            return False
    return True


async def search(c: Client, oid: int, scope_min: int, scope_max: int,
                 pairs: list[tuple[str, str]]) -> list[tuple[int, Proplist]]:
    """Directories of *oid*'s subtree, at depths *scope_min*..*scope_max* (0 = *oid*,
    max −1 = unlimited), whose first property of each key holds the value (tools §3.2).
    Pre-order, in child order."""
    found: list[tuple[int, Proplist]] = []

    async def visit(d: int, props: Proplist, depth: int) -> None:
        if depth >= scope_min and _matches(props, pairs):
            found.append((d, props))
        if scope_max >= 0 and depth >= scope_max:
            return
        kids, _ = await c.children(d)
        if not kids:
            return
        _, kprops = await c.listall(d)
        # two calls: a concurrent change may make the lists differ; take what pairs up
        for k, p in zip(kids, kprops, strict=False):
            await visit(k, list(p), depth + 1)

    await visit(oid, await read(c, oid), 0)
    return found


async def subtree(c: Client, oid: int) -> list[Record]:
    """Every directory of *oid*'s subtree in pre-order."""
    out: list[Record] = []
    stack = [oid]
    while stack:
        d = stack.pop()
        r = await record(c, d)
        out.append(r)
        stack.extend(reversed(r.children))
    return out


async def copy(c: Client, oid: int, new_parent: int) -> int:
    """Copy *oid*'s subtree under *new_parent* (nicl ``copy``); returns the new top. The
    subtree is read completely first, so copying a directory into itself ends."""
    tree = await subtree(c, oid)
    made: dict[int, int] = {}
    for r in tree:
        target = new_parent if r.id == oid else made[r.parent]

        async def make(target: int = target, props: Proplist = r.props) -> int:
            child, _ = await c.create(await c.self_id(target), props, NI_INDEX_NULL)
            return child.object
        made[r.id] = await fresh(make)
    return made[oid]


async def move(c: Client, oid: int, new_parent: int) -> int:
    """nicl ``move`` against a server: copy, then remove the original (tools §3.2)."""
    if oid == 0:
        raise NiError(Status.UNRELATED)
    if oid in await ancestry(c, new_parent):
        raise NiError(Status.UNRELATED)  # into its own subtree
    new = await copy(c, oid, new_parent)
    await destroy(c, oid)
    return new


async def create_child(c: Client, parent: int, props: Proplist) -> int:
    """A new child of *parent* holding *props* (nicl ``load``)."""
    async def make() -> int:
        child, _ = await c.create(await c.self_id(parent), props, NI_INDEX_NULL)
        return child.object
    return await fresh(make)


async def versions(c: Client) -> list[tuple[int, int]]:
    """(id, instance) of every directory, pre-order (nicl ``history``)."""
    return [(r.id, r.instance) for r in await subtree(c, 0)]


# -- domain-level verbs -----------------------------------------------------------------------

class Parent(NamedTuple):
    """Where a server's parent domain is served (``-rparent``)."""

    address: str
    tag: str
    host: str      #: the address's host name when it resolves, else the address


async def rparent(c: Client, numeric: bool = False) -> Parent:
    """RPARENT of the connected server, the address resolved back to a name unless
    *numeric* (tools §1.4). :raises NiError: NI_NETROOT at the root."""
    tag, addr_n = await c.rparent()
    addr = uint_to_addr(addr_n)
    host = addr
    if not numeric:
        try:
            loop = asyncio.get_running_loop()
            host = (await asyncio.wait_for(
                loop.run_in_executor(None, name_of, addr), 5.0))
        except (OSError, TimeoutError):
            host = addr
    return Parent(addr, tag, host)


async def resync(c: Client) -> None:
    """RESYNC: the master tells its clones to resync, a clone checks itself (§1.3)."""
    await c.resync()


async def statistics(c: Client) -> Proplist:
    """The server's statistics as a property list."""
    return list(await c.statistics())


async def domainname(c: Client) -> str:
    """The absolute domain name (tools §0.2)."""
    if not isinstance(c, DomainClient):
        raise NiError(Status.FAILED, "not a served domain")
    return await domain_name(c)



# -- passwords (tools nipasswd, web "Set password"; spec §10.2, §10.4) -------------------------

def user_path(name: str) -> str:
    """The path of user *name*'s directory, ``/users/<name>`` with the name escaped."""
    return "/users/" + name.replace("\\", "\\\\").replace("/", "\\/").replace("=", "\\=")


async def user_dir(c: Client, name: str) -> int:
    """The object number of ``/users/<name>``. :raises NiError: NI_NOUSER when there is
    no such user."""
    try:
        return (await c.pathsearch(user_path(name))).object
    except NiError as e:
        if e.status == Status.NODIR:
            raise NiError(Status.NOUSER, f"no user {name}") from None
        raise


async def user_is_locked(c: Client, name: str) -> bool:
    """True when user *name* exists and its ``passwd`` admits no password (``*``): a
    read, which anyone may make (spec §10.3)."""
    from ..passwords import is_locked  # noqa: PLC0415 - pure, but loads libpass lazily
    try:
        oid = await user_dir(c, name)
    except NiError:
        return False
    _, props, i = await find_prop(c, oid, "passwd")
    return i >= 0 and is_locked(props[i][1])


async def set_password(c: Client, user: str | NiId, crypted: str) -> None:
    """Write *crypted* (a crypt string, ``passwords.hash_password``) as a user's
    ``passwd``: *user* is a name (``/users/<name>``, read fresh, once more after
    NI_STALE) or the id of the user's directory at the instance a page showed (written at
    exactly that instance: NI_STALE when it changed). The server decides who may: the
    superuser, or a user the directory's ``_writers_passwd`` (or ``_writers``) lists,
    authenticated by *c*'s credential (spec §10.4). ``nipasswd`` and the web manager's
    "Set password" both write through here.

    :raises NiError: NI_NOUSER (no such user), NI_STALE, NI_PERM, NI_AUTHERROR ...
    """
    if isinstance(user, str):
        oid = await user_dir(c, user)
        await use_master(c)
        await createprop(c, oid, "passwd", [crypted])
        return
    nid, props, i = await find_prop(c, user.object, "passwd")
    if nid.instance != user.instance:
        raise NiError(Status.STALE)
    if i >= 0:
        await c.writeprop(user, i, [crypted])
    else:
        await c.createprop(user, "passwd", [crypted], _append_index(props, "passwd", False))
