"""Database templates: the master layout of ``netinfod -m`` and the standard directories.

Pure: each function drives the domain's procedures as the superuser, so every template is
built with the same semantics (ids, instances, checksum) as a client would get over the
wire. The tools hand them a database's door (``Database.procedures``), so that each write
is recorded as a ``changes.Change``, stored with its batch and told to subscribers like a
client's (issue 19); a bare :class:`~netinfo.server.service.DirectoryService` serves too (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from ..errors import NiError
from ..model import NI_INDEX_NULL, NiId, Proplist
from .service import SUPERUSER, DirectoryService

if TYPE_CHECKING:
    from .database import Procedures

#: What a template drives: a database's door, or a service (``proc_<name>`` methods).
Target: TypeAlias = "DirectoryService | Procedures"


def _child(svc: Target, parent: int, props: Proplist) -> int:
    pid = svc.proc_self(SUPERUSER, NiId(parent))
    child, _ = svc.proc_create(SUPERUSER, pid, props, NI_INDEX_NULL)
    return child.object


def _set_root(svc: Target, name: str, values: list[str]) -> None:
    root = svc.proc_root(SUPERUSER)
    _, props = svc.proc_read(SUPERUSER, root)
    props = [p for p in props if p[0] != name] + [(name, values)]
    svc.proc_write(SUPERUSER, root, props)


def ensure_dir(svc: Target, name: str,
               extra: Sequence[tuple[str, list[str]]] = ()) -> int:
    """The top-level directory *name*, created when missing."""
    try:
        found, _ = svc.proc_lookup(SUPERUSER, NiId(0), "name", name)
        return found[0]
    except NiError:
        return _child(svc, 0, [("name", [name]), *extra])


def create_master(svc: Target, tag: str, hostname: str, addresses: list[str]) -> None:
    """``netinfod -m``: root ``master`` = ``<hostname>/<tag>``; /machines/<hostname> with its
    addresses serving ``./<tag>`` (spec §6.2 CREATEMASTER, §7.4: a domain lists its own server)."""
    _set_root(svc, "master", [f"{hostname}/{tag}"])
    machines = ensure_dir(svc, "machines")
    _child(svc, machines, [("name", [hostname]), ("ip_address", list(addresses)),
                           ("serves", [f"./{tag}"])])


def create_clone(svc: Target, master_name: str, master_addr: str,
                 master_tag: str) -> None:
    """``netinfod -c``: ``master`` = ``<master_name>/<master_tag>`` and /machines/<master_name>
    with its address serving ``./<master_tag>`` (spec §6.2 CREATECLONE). The data itself
    comes from the master by READALL."""
    _set_root(svc, "master", [f"{master_name}/{master_tag}"])
    machines = ensure_dir(svc, "machines")
    _child(svc, machines, [("name", [master_name]), ("ip_address", [master_addr]),
                           ("serves", [f"./{master_tag}"])])


def create_local(svc: Target, parent_tag: str = "network") -> None:
    """The ``local`` domain template (spec §12.3): ``master localhost/local``, an empty
    ``trusted_networks``, /machines ``localhost serves ./local`` and ``broadcasthost serves
    ../<parent_tag>`` (binding to the parent by broadcast), and the standard directories."""
    _set_root(svc, "master", ["localhost/local"])
    _set_root(svc, "trusted_networks", [])
    machines = ensure_dir(svc, "machines")
    _child(svc, machines, [("name", ["localhost"]), ("ip_address", ["127.0.0.1"]),
                           ("serves", ["./local"])])
    _child(svc, machines, [("name", ["broadcasthost"]), ("ip_address", ["255.255.255.255"]),
                           ("serves", [f"../{parent_tag}"])])
    populate_standard(svc)


def add_serves(svc: Target, machine: str, value: str) -> None:
    """Append *value* (``NAME/TAG``) to the ``serves`` of /machines/<machine>."""
    machines = svc.proc_lookup(SUPERUSER, NiId(0), "name", "machines")[0][0]
    found = svc.proc_lookup(SUPERUSER, NiId(machines), "name", machine)[0][0]
    mid = svc.proc_self(SUPERUSER, NiId(found))
    names = svc.proc_listprops(SUPERUSER, mid)[0]
    svc.proc_createname(SUPERUSER, mid, names.index("serves"), value, NI_INDEX_NULL)


def create_network_root(svc: Target, hostname: str, addresses: list[str]) -> None:
    """``nibindd --init``'s ``network`` root: a master served by *hostname* that lists this
    host's local domain as its child ``<hostname>/local``, with the standard directories."""
    create_master(svc, "network", hostname, addresses)
    add_serves(svc, hostname, f"{hostname}/local")
    populate_standard(svc)


def create_local_under_network(svc: Target) -> None:
    """``nibindd --init``'s ``local`` domain: the template (spec §12.3) whose localhost
    also serves ``../network``, so that it binds to the network root served on this host
    without broadcasting."""
    create_local(svc)
    add_serves(svc, "localhost", "../network")


#: The standard directories and entries a new domain is populated with (tools §5,
#: spec §12.1). Written for this project; values follow the usual Unix conventions.
STANDARD: list[tuple[str, Proplist, list[Proplist]]] = [
    ("users", [], [
        # Locked until a password is set (``--root-password-file`` or the prompt): a new
        # domain never admits root with an empty password (spec §10.2 would accept any).
        [("name", ["root"]), ("passwd", ["*"]), ("uid", ["0"]), ("gid", ["0"]),
         ("realname", ["System Administrator"]), ("home", ["/var/root"]), ("shell", ["/bin/sh"]),
         ("_writers_passwd", ["root"])],
        [("name", ["daemon"]), ("passwd", ["*"]), ("uid", ["1"]), ("gid", ["1"]),
         ("realname", ["System Services"]), ("home", ["/var/root"]),
         ("shell", ["/usr/bin/false"]), ("_writers_passwd", ["daemon"])],
        [("name", ["nobody"]), ("passwd", ["*"]), ("uid", ["-2"]), ("gid", ["-2"]),
         ("realname", ["Unprivileged User"]), ("home", ["/var/empty"]),
         ("shell", ["/usr/bin/false"]), ("_writers_passwd", ["nobody"])],
    ]),
    ("groups", [], [
        [("name", ["wheel"]), ("passwd", ["*"]), ("gid", ["0"]), ("users", ["root"])],
        [("name", ["daemon"]), ("passwd", ["*"]), ("gid", ["1"]), ("users", ["root"])],
        [("name", ["staff"]), ("passwd", ["*"]), ("gid", ["20"]), ("users", ["root"])],
        [("name", ["admin"]), ("passwd", ["*"]), ("gid", ["80"]), ("users", ["root"])],
        [("name", ["nobody"]), ("passwd", ["*"]), ("gid", ["-2"]), ("users", [])],
    ]),
    ("networks", [], [
        [("name", ["loopback"]), ("address", ["127"])],
    ]),
    ("protocols", [], [
        [("name", ["ip"]), ("number", ["0"])],
        [("name", ["icmp"]), ("number", ["1"])],
        [("name", ["tcp"]), ("number", ["6"])],
        [("name", ["udp"]), ("number", ["17"])],
    ]),
    ("rpcs", [], [
        [("name", ["portmapper", "portmap", "sunrpc"]), ("number", ["100000"])],
        [("name", ["netinfo"]), ("number", ["200100000"])],
        [("name", ["netinfobind"]), ("number", ["200100001"])],
    ]),
    ("services", [], [
        [("name", ["ssh"]), ("port", ["22"]), ("protocol", ["tcp"])],
        [("name", ["domain"]), ("port", ["53"]), ("protocol", ["udp", "tcp"])],
        [("name", ["sunrpc"]), ("port", ["111"]), ("protocol", ["udp", "tcp"])],
    ]),
    ("aliases", [], [
        [("name", ["postmaster"]), ("members", ["root"])],
        [("name", ["MAILER-DAEMON"]), ("members", ["postmaster"])],
        [("name", ["nobody"]), ("members", ["root"])],
    ]),
    ("mounts", [], []),
    ("printers", [("_writers", ["*"])], []),
]


def has_user(svc: Target, user: str) -> bool:
    """True when the domain has /users/<user>."""
    try:
        users = svc.proc_lookup(SUPERUSER, NiId(0), "name", "users")[0]
        return bool(users) and bool(svc.proc_lookup(SUPERUSER, NiId(users[0]), "name",
                                                     user)[0])
    except NiError:
        return False


def set_password(svc: Target, user: str, crypted: str) -> bool:
    """Set /users/<user>'s ``passwd`` to the crypt string *crypted*; False when there is
    no such user."""
    try:
        users = svc.proc_lookup(SUPERUSER, NiId(0), "name", "users")[0][0]
        found = svc.proc_lookup(SUPERUSER, NiId(users), "name", user)[0][0]
    except NiError:
        return False
    uid, props = svc.proc_read(SUPERUSER, NiId(found))
    names = [k for k, _ in props]
    if "passwd" in names:
        svc.proc_writeprop(SUPERUSER, uid, names.index("passwd"), [crypted])
    else:
        svc.proc_createprop(SUPERUSER, uid, ("passwd", [crypted]), NI_INDEX_NULL)
    return True


def populate_standard(svc: Target) -> None:
    """Add the standard top-level directories and their entries (skipping existing ones)."""
    for name, extra, entries in STANDARD:
        try:
            svc.proc_lookup(SUPERUSER, NiId(0), "name", name)
            continue
        except NiError:
            pass
        d = ensure_dir(svc, name, extra)
        for props in entries:
            _child(svc, d, props)
