"""nibindd: serve every NetInfo database of a directory (tools §4.6, spec §6).

``nibindd [--dir DIR] [--bind ADDR] [--portmapper auto|system|embedded] [--init] [-v]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from ..binder import Nibindd, run_nibindd
from ..database import database_exists, netinfo_dir, open_database
from ..model import NI_INDEX_NULL
from ..netif import local_addresses, non_loopback
from ..service import SUPERUSER
from ..templates import create_local, create_master, populate_standard
from .netinfod import hostname

PROG = "nibindd"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve every NetInfo database "
                                "(DIR/*.nidb), the NIBIND program and, when no rpcbind runs, "
                                "a portmapper.")
    p.add_argument("--dir", help="database directory (default $NETINFO_DIR or /var/db/netinfo)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument("--portmapper", choices=("auto", "system", "embedded"), default="auto",
                   help="register with the system rpcbind, or run our own portmapper on "
                        "port 111 (or NETINFO_PORTMAPPER's port); auto picks rpcbind when "
                        "one answers")
    p.add_argument("--init", action="store_true",
                   help="first run: create a 'local' domain bound to a 'network' root "
                        "domain served here, when they do not exist")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p


def init_domains(directory) -> list[str]:
    """Create ``local`` (spec §12.3 template) and a ``network`` root when missing.

    The network root lists this host as its server (``./network``) and its local domain as
    the child ``<host>/local``; the local domain names the network server on 127.0.0.1 as
    its parent (``../network``) besides the usual broadcasthost entry, so that binding works
    on one machine without broadcasts.
    """
    made = []
    host = hostname()
    addrs = non_loopback(local_addresses())
    if not database_exists(directory, "network"):
        svc, store = open_database(directory, "network", create=True)
        create_master(svc, "network", host, addrs + ["127.0.0.1"])
        machine = svc.proc_lookup(SUPERUSER, svc.proc_root(SUPERUSER), "name", "machines")[0][0]
        me = svc.proc_lookup(SUPERUSER, svc.proc_self(SUPERUSER, _id(machine)), "name", host)
        mid = svc.proc_self(SUPERUSER, _id(me[0][0]))
        names = svc.proc_listprops(SUPERUSER, mid)[0]
        svc.proc_createname(SUPERUSER, mid, names.index("serves"), f"{host}/local",
                            NI_INDEX_NULL)
        populate_standard(svc)
        store.commit(svc.take_pending(), svc.checksum)
        store.close()
        made.append("network")
    if not database_exists(directory, "local"):
        svc, store = open_database(directory, "local", create=True)
        create_local(svc)
        machines = svc.proc_lookup(SUPERUSER, svc.proc_root(SUPERUSER), "name", "machines")
        lh = svc.proc_lookup(SUPERUSER, svc.proc_self(SUPERUSER, _id(machines[0][0])),
                             "name", "localhost")[0][0]
        lid = svc.proc_self(SUPERUSER, _id(lh))
        names = svc.proc_listprops(SUPERUSER, lid)[0]
        svc.proc_createname(SUPERUSER, lid, names.index("serves"), "../network", NI_INDEX_NULL)
        store.commit(svc.take_pending(), svc.checksum)
        store.close()
        made.append("local")
    return made


def _id(oid: int):
    from ..model import NiId  # noqa: PLC0415
    return NiId(oid, 0)


async def serve(args: argparse.Namespace) -> int:
    directory = netinfo_dir(args.dir)
    if args.init:
        directory.mkdir(parents=True, exist_ok=True)
        for tag in init_domains(directory):
            print(f"{PROG}: created {directory / (tag + '.nidb')}", file=sys.stderr)
    nb = Nibindd(directory, args.bind, args.portmapper)
    try:
        await nb.start()
    except OSError as e:
        print(f"{PROG}: cannot start: {e}", file=sys.stderr)
        return 2
    where = "system rpcbind" if nb.system_rpcbind else f"portmapper port {nb.pmap_port}"
    print(f"{PROG}: serving {', '.join(nb.served_tags()) or 'no databases'} "
          f"(nibind udp={nb.server.udp_port} tcp={nb.server.tcp_port}, {where})",
          file=sys.stderr, flush=True)
    if nb.pmap_port != 111 and "NETINFO_PORTMAPPER" in os.environ:
        print(f"{PROG}: clients need NETINFO_PORTMAPPER={os.environ['NETINFO_PORTMAPPER']}",
              file=sys.stderr, flush=True)
    await run_nibindd(nb)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{PROG}[%(process)d] %(levelname)s %(message)s",
                        stream=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
