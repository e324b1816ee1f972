"""nibindd: serve every NetInfo database of a directory (tools §4.6, spec §6).

``nibindd [--dir DIR] [--store URL] [--bind ADDR] [--portmapper auto|system|embedded] [--init]
[--trust-local] [--max-copy-mb N] [-v]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from ..client.binding import portmapper_address
from ..errors import ConfigError, StorageError
from ..netif import bind_problem, hostname, served_addresses
from ..server.database import (
    DatabaseInUse,
    catalog_of,
    netinfo_dir,
    open_database,
)
from ..storage import Catalog, open_catalog
from ..server.nibindd import RPCBIND_SOCKET, Nibindd, PortmapperTaken, run_nibindd
from ..wire.nibind import valid_tag
from ..server.proctitle import name_process
from ..server.templates import create_local_under_network, create_network_root, set_password
from .netinfod import positive_number
from .rootpass import RootPasswordError, locked_notice, root_password_hash

PROG = "nibindd"


def nis_pair(text: str) -> tuple[str, str]:
    """``NISDOMAIN=TAG`` of --nis-domain."""
    nisdomain, sep, tag = text.partition("=")
    if not sep or not nisdomain or not valid_tag(tag):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NISDOMAIN=TAG")
    return nisdomain, tag


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve every NetInfo database "
                                "(DIR/*.nidb), the NIBIND program and, when no rpcbind runs, "
                                "a portmapper.")
    p.add_argument("--dir", help="database directory (default $NETINFO_DIR or /var/db/netinfo)")
    p.add_argument("--store", metavar="URL",
                   help="serve every domain stored at this catalog URL instead of DIR/*.nidb "
                        "(postgresql://.../DBNAME: every domain of that database; each "
                        "netinfod gets the URL with domain=TAG; new domains are created "
                        "there)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on, for nibindd, its netinfods and an embedded "
                        "portmapper (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--portmapper", choices=("auto", "system", "embedded"), default="auto",
                   help="register with the system rpcbind, or run our own portmapper on "
                        "port 111 (or NETINFO_PORTMAPPER's port); auto picks rpcbind when "
                        "one answers")
    p.add_argument("--init", action="store_true",
                   help="first run: create a 'local' domain bound to a 'network' root "
                        "domain served here, when they do not exist")
    p.add_argument("--root-password-file", metavar="FILE",
                   help="with --init: root's password in the new domains, the first line "
                        "of FILE ('-': standard input); without it a terminal is asked, "
                        "else root stays locked")
    p.add_argument("--trust-local", action="store_true",
                   help="run every netinfod with --trust-local: any local caller, of any "
                        "uid, is the superuser (for tests; without it the user running "
                        "nibindd is the superuser of its domains, spec §10.2)")
    p.add_argument("--max-copy-mb", type=positive_number, metavar="N",
                   help="run every netinfod with --max-copy-mb N: a clone abandons a copy "
                        "of its domain larger than N MB (netinfod's default otherwise)")
    p.add_argument("--nis-domain", action="append", default=[], metavar="NISDOMAIN=TAG",
                   type=nis_pair,
                   help="run TAG's netinfod with --nis-domain NISDOMAIN: it serves NIS "
                        "domain NISDOMAIN from NetInfo domain TAG (repeatable)")
    p.add_argument("--nis-hierarchy", action="store_true",
                   help="run the netinfods that serve NIS with --nis-hierarchy: their maps "
                        "hold the ancestor domains' entries too")
    p.add_argument("--rpcbind-socket", metavar="PATH", nargs="?", const=RPCBIND_SOCKET,
                   help="with the embedded portmapper: answer rpcbind's local socket too "
                        f"(default {RPCBIND_SOCKET}), where libtirpc services such as "
                        "ypbind register; for a host where no rpcbind runs")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    # the LDAP front door of one tag's netinfod (issue 22; docs/ldap.md)
    p.add_argument("--ldap-tag", metavar="TAG", default="network",
                   help="the tag whose netinfod gets the --ldap* options (default network)")
    for opt, meta in (("--ldap", "ADDR:PORT"), ("--ldaps", "ADDR:PORT"),
                      ("--ldap-cert", "FILE"), ("--ldap-key", "FILE"), ("--ldap-base", "DN"),
                      ("--ldap-resident-mb", "M")):
        p.add_argument(opt, metavar=meta, help=f"passed to netinfod --ldap-tag as {opt}")
    return p


def init_domains(directory: Path, root_crypt: str | None = None,
                 bind: str = "0.0.0.0", catalog: Catalog | None = None) -> list[str]:
    """Create ``local`` (spec §12.3 template) and a ``network`` root when missing.

    The network root lists this host as its server (``./network``) and its local domain as
    the child ``<host>/local``; the local domain names the network server on 127.0.0.1 as
    its parent (``../network``) besides the usual broadcasthost entry, so that binding works
    on one machine without broadcasts.

    Root's ``passwd`` is *root_crypt* (a crypt string), else ``*`` (locked). The host is
    listed at :func:`served_addresses` of *bind*.

    The domains are made in *catalog* when given (``--store``), else in *directory*.

    :raises DatabaseInUse: a database of *directory* is held by a running process.
    """
    made = []
    host = hostname()
    addrs = served_addresses(bind)
    for tag, build in (("network", lambda svc: create_network_root(svc, host, addrs)),
                       ("local", create_local_under_network)):
        if (catalog or catalog_of(directory)).exists(tag):
            continue
        with open_database(directory, tag, create=True,
                           store=None if catalog is None else catalog.url(tag)) as db:
            # through the database's door: the writes are recorded and told (issue 19)
            build(db.procedures)
            if root_crypt is not None:
                set_password(db.procedures, "root", root_crypt)
            db.commit()
        made.append(tag)
    return made


def databases_in_use(directory: Path, catalog: Catalog | None = None
                     ) -> DatabaseInUse | None:
    """The first database of *directory* (or *catalog*) another process holds, if any: a
    second nibindd on one directory would otherwise start servers that fight over its
    databases. (A PostgreSQL domain's writer lock is taken by its netinfod, which exits
    naming the holder: ``Catalog.check_free``.)"""
    catalog = catalog or catalog_of(directory)
    for tag in catalog.domains():
        try:
            catalog.check_free(tag)
        except DatabaseInUse as e:
            return e
        except OSError:
            continue
    return None


def directory_problem(directory: Path) -> str | None:
    """Why nibindd would serve nothing from *directory* (None: it can serve from it)."""
    # (is it so?, the reason): the first that applies is said.
    checks = (
        (lambda: not directory.exists(), "it does not exist (--init creates it)"),
        (lambda: not directory.is_dir(), "it is not a directory"),
        (lambda: not os.access(directory, os.R_OK | os.X_OK), "it is not readable"),
    )
    for applies, why in checks:
        if applies():
            return why
    return None


async def serve(args: argparse.Namespace) -> int:
    directory = netinfo_dir(args.dir)
    # Everything that can refuse is asked before anything is created (--init) or bound.
    try:
        portmapper_address()
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    problem = bind_problem(args.bind)
    if problem:
        print(f"{PROG}: cannot listen on {args.bind}: {problem}", file=sys.stderr)
        return 2
    catalog: Catalog | None = None
    if args.store is not None:
        try:
            catalog = open_catalog(args.store)
            catalog.domains()   # reachable, and a catalog there
        except (ValueError, StorageError) as e:
            print(f"{PROG}: cannot serve the domains of {args.store}: {e}", file=sys.stderr)
            return 2
    problem = None if args.init or catalog is not None else directory_problem(directory)
    if problem:
        print(f"{PROG}: serving nothing from {directory}: {problem}", file=sys.stderr)
        return 2
    busy = databases_in_use(directory, catalog)
    if busy is not None:
        print(f"{PROG}: {busy}", file=sys.stderr)
        return 2
    child_args = ["--trust-local"] if args.trust_local else []
    if args.max_copy_mb is not None:
        child_args += ["--max-copy-mb", str(args.max_copy_mb)]
    nb = Nibindd(directory, args.bind, args.portmapper, child_args or None, args.store)
    for nisdomain, tag in args.nis_domain:
        nb.nis_domains.setdefault(tag, []).append(nisdomain)
    nb.nis_hierarchy = args.nis_hierarchy
    nb.rpcbind_socket = args.rpcbind_socket
    nb.tag_args[args.ldap_tag] = [
        part for opt in ("ldap", "ldaps", "ldap_cert", "ldap_key", "ldap_base",
                         "ldap_resident_mb")
        if getattr(args, opt) is not None
        for part in ("--" + opt.replace("_", "-"), os.path.abspath(getattr(args, opt))
                     if opt in ("ldap_cert", "ldap_key") else getattr(args, opt))]
    try:
        await nb.claim_portmapper()
    except PortmapperTaken as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    if args.init:
        home = nb.catalog
        if catalog is None:
            directory.mkdir(parents=True, exist_ok=True)
        try:
            crypted = None
            if not (home.exists("network") and home.exists("local")):
                crypted = root_password_hash(args.root_password_file, "the new domains")
            made = init_domains(directory, crypted, args.bind, catalog)
        except (DatabaseInUse, RootPasswordError, StorageError) as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 2
        for tag in made:
            print(f"{PROG}: created {home.where(tag)}", file=sys.stderr)
        if made and crypted is None:
            print(locked_notice(PROG, "the new domains", "'nipasswd root' (local) and "
                                "'nipasswd / root' (network)"), file=sys.stderr)
    try:
        await nb.start()
    except PortmapperTaken as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROG}: cannot start: {e}", file=sys.stderr)
        return 2
    where = "system rpcbind" if nb.system_rpcbind else f"portmapper port {nb.pmap_port}"
    tags = ", ".join(nb.served_tags()) or (f"no databases yet (none in "
                                          f"{args.store or directory}; "
                                          "nidomain -m TAG creates one)")
    print(f"{PROG}: serving {tags} (nibind udp={nb.server.udp_port} "
          f"tcp={nb.server.tcp_port}, {where})", file=sys.stderr, flush=True)
    if nb.pmap_port != 111 and "NETINFO_PORTMAPPER" in os.environ:
        print(f"{PROG}: clients need NETINFO_PORTMAPPER={os.environ['NETINFO_PORTMAPPER']}",
              file=sys.stderr, flush=True)
    await run_nibindd(nb)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # run as a program, not called in-process: name the process
        name_process(PROG, sys.argv[1:])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{PROG}[%(process)d] %(levelname)s %(message)s",
                        stream=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
