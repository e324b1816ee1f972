"""netinfod: serve one NetInfo database (tools §4.5, DESIGN "netinfod" interface).

``netinfod [--dir DIR] [--bind ADDR] [--port PORT] [--lenient-udp] [-m] [--populate] TAG``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

from ..database import database_exists, netinfo_dir, open_database
from ..errors import StorageError
from ..server import NetInfoServer, ServerConfig, local_addresses, non_loopback
from ..service import ServerInfo
from ..templates import create_master, populate_standard

PROG = "netinfod"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve one NetInfo database (domain tag).")
    p.add_argument("tag", metavar="TAG", help="database tag, served from DIR/TAG.nidb")
    p.add_argument("--dir", help="database directory (default $NETINFO_DIR or /var/db/netinfo)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument("--port", type=int, help="fixed UDP and TCP port")
    p.add_argument("--lenient-udp", action="store_true",
                   help="also answer read procedures over UDP (Previous emulator behaviour)")
    p.add_argument("-m", dest="master", action="store_true",
                   help="create a new master database when none exists")
    p.add_argument("--populate", action="store_true",
                   help="with -m: add the standard directories (users, groups, ...)")
    p.add_argument("--trust-local", action="store_true",
                   help="treat every local caller as the superuser, whatever its source port "
                        "(for unprivileged test setups)")
    p.add_argument("-n", dest="forced_root", action="store_true",
                   help="this domain is a root: never look for a parent")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p


def hostname() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


async def serve(args: argparse.Namespace) -> int:
    directory = netinfo_dir(args.dir)
    addrs = local_addresses()
    info = ServerInfo(tag=args.tag, hostname=hostname(), addresses=non_loopback(addrs),
                      binding="root" if args.forced_root else "unknown")
    created = args.master and not database_exists(directory, args.tag)
    try:
        svc, store = open_database(directory, args.tag, info, create=args.master)
    except FileNotFoundError:
        print(f"{PROG}: no database for tag {args.tag} in {directory} "
              f"(use -m to create a master)", file=sys.stderr)
        return 2
    except (StorageError, OSError) as e:
        print(f"{PROG}: cannot open database {args.tag}: {e}", file=sys.stderr)
        return 2
    if created:
        create_master(svc, args.tag, info.hostname, non_loopback(addrs) or ["127.0.0.1"])
        if args.populate:
            populate_standard(svc)
        store.commit(svc.take_pending(), svc.checksum)
    server = NetInfoServer(svc, store, ServerConfig(args.tag, args.bind, args.port,
                                                    args.lenient_udp, args.trust_local), addrs)
    try:
        await server.start()
    except OSError as e:
        print(f"{PROG}: cannot listen on {args.bind}: {e}", file=sys.stderr)
        store.close()
        return 2
    print(f"{PROG}: serving {args.tag} udp={server.udp_port} tcp={server.tcp_port}",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    store.close()
    print(f"{PROG}: {args.tag} stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{PROG}[%(process)d] %(levelname)s %(message)s", stream=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
