"""netinfod: serve one NetInfo database (tools §4.5, DESIGN "netinfod" interface).

``netinfod [--dir DIR] [--bind ADDR] [--port PORT] [--lenient-udp] [-m | -c NAME ADDR TAG]
[--populate] [--template master|local] [--max-copy-mb N] [-n] TAG``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import threading

from ..client import binding
from ..errors import ConfigError, NiError, RpcError, StorageError, Timeout, WireError
from ..facts import Role
from ..netif import (
    bind_problem,
    hostname,
    is_local,
    local_addresses,
    non_loopback,
    served_addresses,
)
from ..server.database import (
    Database,
    DatabaseInUse,
    database_exists,
    netinfo_dir,
    open_database,
)
from ..server import ldap as ldap_door
from ..server import nis as nis_door
from ..server.ldap import start_ldap
from ..server.netinfod import NetInfoServer, ServerConfig, yp_program
from ..server.nis_hierarchy import Ancestors
from ..server.proctitle import name_process
from ..server.readworkers import ReadWorkers, run_worker
from ..server.replicator import MAX_COPY_BYTES, Replicator
from ..server.service import ServerInfo
from ..storage.journal import DEFAULT_DAYS, DEFAULT_MAX_MB
from ..storage.sqlite import SqliteStore
from ..server.templates import (
    create_clone,
    create_local,
    create_master,
    has_user,
    populate_standard,
    set_password,
)
from ..wire.nibind import TAG_MAX, valid_tag
from .common import run_loop
from .rootpass import RootPasswordError, locked_notice, root_password_hash

PROG = "netinfod"
#: Allocations between young-generation collections while serving (see serve()).
GC_YOUNG = 50_000
log = logging.getLogger("netinfo.netinfod")


def port_number(text: str) -> int:
    """``--port``: 0-65535 (0: the system picks); anything else is a usage error naming
    the value (``--port 70000`` ended in an OverflowError traceback, issue 17)."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"bad port {text} (not a number in 0-65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve one NetInfo database (domain tag).")
    p.add_argument("tag", metavar="TAG", help="database tag, served from DIR/TAG.nidb")
    p.add_argument("--dir", help="database directory (default $NETINFO_DIR or /var/db/netinfo)")
    p.add_argument("--store", metavar="URL",
                   help="store URL instead of DIR/TAG.nidb (sqlite:///PATH, memory:, "
                        "postgresql://...?domain=NAME)")
    p.add_argument("--standby", action="store_true",
                   help="with a postgresql store held by another netinfod: wait, and take "
                        "over (serving, writable) as soon as it stops")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=port_number, help="fixed UDP and TCP port")
    p.add_argument("--cache", type=int, metavar="N",
                   help="directories kept decoded in memory (default 20000); the database "
                        "file is read for the others")
    p.add_argument("--cache-mb", type=int, metavar="MB",
                   help="at most this many MiB of stored directory data cached (default "
                        "64); a directory bigger than that is read from the file each time")
    p.add_argument("--lenient-udp", action="store_true",
                   help="also answer read procedures over UDP (Previous emulator behaviour)")
    p.add_argument("-m", dest="master", action="store_true",
                   help="create a new master database when none exists")
    p.add_argument("-c", dest="clone", nargs=3, metavar=("NAME", "ADDR", "TAG"),
                   help="create a clone database of master NAME (address ADDR) serving TAG")
    p.add_argument("--root-password-file", metavar="FILE",
                   help="with -m: root's password, the first line of FILE ('-': standard "
                        "input); without it a terminal is asked, else root stays locked")
    p.add_argument("--populate", action="store_true",
                   help="with -m: add the standard directories (users, groups, ...)")
    p.add_argument("--template", choices=("master", "local"), default="master",
                   help="with -m: 'local' creates the local-domain template (spec §12.3)")
    p.add_argument("--trust-local", action="store_true",
                   help="treat every local caller, of any uid, as the superuser, whatever "
                        "its source port (for tests; without it a server not run by root "
                        "takes its own uid's callers for the superuser)")
    p.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                   help="answer every read by the general path, not the short one for hot "
                        "reads (NETINFO's, NIS MATCH and LDAP's equality searches: to "
                        "measure against it, or to rule it out)")
    p.add_argument("--no-lookup-index", dest="lookup_index", action="store_false",
                   help="never keep a resident LOOKUP index of a directory asked often "
                        "(by default up to 8, 256 MiB in all, built in a thread: 30 MB "
                        "for a million users' names); every LOOKUP then reads the store "
                        "(to measure against, or to save the memory)")
    p.add_argument("--store-on-loop", dest="store_threads", action="store_false",
                   help="read and commit a store on a server (PostgreSQL) on the event "
                        "loop, each round trip holding every connection, rather than in "
                        "reader and commit threads (to measure against)")
    p.add_argument("--event-loop", choices=("asyncio", "uvloop", "auto"), default="auto",
                   help="the event loop: uvloop (libuv's: about a quarter less CPU a "
                        "call than asyncio's, measured), asyncio (Python's own), or auto "
                        "(the default): uvloop when it is installed, as it is with "
                        "opennetinfo on Linux and macOS")
    p.add_argument("--read-workers", type=non_negative_int, metavar="N", default=0,
                   help="also serve reads from N worker processes on the same TCP port "
                        "(SQLite stores only; a connection that writes moves to this "
                        "process; default 0: one process)")
    p.add_argument("--read-worker-fds", help=argparse.SUPPRESS)
    p.add_argument("--max-copy-mb", type=positive_number, metavar="N",
                   default=MAX_COPY_BYTES // (1024 * 1024),
                   help="as a clone, abandon a copy of the domain larger than N MB "
                        "(the master's READALL reply) and keep the old copy "
                        "(default %(default)s)")
    p.add_argument("--history-days", type=non_negative, metavar="N", default=DEFAULT_DAYS,
                   help="keep the change history (nihistory) for N days; 0 keeps none "
                        "(default %(default)s)")
    p.add_argument("--history-max-mb", type=non_negative, metavar="M",
                   default=DEFAULT_MAX_MB,
                   help="keep at most M MB of change history, the oldest going first "
                        "(default %(default)s)")
    p.add_argument("-n", dest="forced_root", action="store_true",
                   help="this domain is a root: never look for a parent")
    p.add_argument("--nis-domain", action="append", default=[], metavar="NISDOMAIN",
                   help="also serve NIS (YP v2) domain NISDOMAIN from this domain's users, "
                        "groups, hosts, ... and register it with the portmapper "
                        "(repeatable; docs/linux-clients.md)")
    p.add_argument("--nis-hierarchy", action="store_true",
                   help="with --nis-domain: maps also hold the entries of the ancestor "
                        "domains that this domain does not define (nearest wins)")
    p.add_argument("--nis-resident-mb", type=megabytes, metavar="M",
                   default=nis_door.RESIDENT_BYTES >> 20,
                   help="with --nis-domain: keep busy maps whole in memory, at most M MB "
                        "of them (0: none; default %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    # the LDAP front door (issue 22; server/ldap.py)
    p.add_argument("--ldap", metavar="ADDR:PORT",
                   help="serve the domain over LDAP here (StartTLS with --ldap-cert)")
    p.add_argument("--ldaps", metavar="ADDR:PORT", help="serve LDAP over TLS here")
    p.add_argument("--ldap-cert", metavar="FILE", help="TLS certificate (PEM) for LDAP")
    p.add_argument("--ldap-key", metavar="FILE", help="TLS private key (PEM) for LDAP")
    p.add_argument("--ldap-base", metavar="DN",
                   help="the domain's DN (default dc=TAG,dc=netinfo)")
    p.add_argument("--ldap-resident-mb", type=megabytes, metavar="M",
                   default=ldap_door.RESIDENT_BYTES >> 20,
                   help="with --ldap: keep the users' entries whole in memory for busy "
                        "anonymous equality searches, at most M MB of them (0: none; "
                        "default %(default)s)")
    return p


def positive_number(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return n


def megabytes(text: str) -> int:
    """An argparse type: a whole number of MiB, 0 to 1,048,576 (1 TiB)."""
    if not (text.isascii() and text.isdigit()) or int(text) > 1 << 20:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB in 0-1048576: {text!r}")
    return int(text)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    if not (text.isascii() and text.isdigit()) or int(text) > 64:
        raise argparse.ArgumentTypeError(f"not a whole number in 0-64: {text!r}")
    return int(text)


def non_negative(text: str) -> float:
    """An argparse type: a number, 0 or more (fractions allowed)."""
    try:
        n = float(text)
    except ValueError:
        n = -1.0
    if not n >= 0:
        raise argparse.ArgumentTypeError(f"not a number of 0 or more: {text!r}")
    return n


async def serve(args: argparse.Namespace) -> int:
    if not valid_tag(args.tag):
        print(f"{PROG}: invalid tag {args.tag!r}: use letters, digits, '.', '_' and '-' "
              f"(not first), at most {TAG_MAX} characters", file=sys.stderr)
        return 2
    # Before anything is created: a malformed NETINFO_PORTMAPPER, a mistyped --bind (or a
    # taken --port) leaves no new database behind.
    try:
        binding.portmapper_address()
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    problem = bind_problem(args.bind, args.port or 0)
    if problem:
        print(f"{PROG}: cannot listen on {args.bind}"
              + (f" port {args.port}" if args.port else "") + f": {problem}", file=sys.stderr)
        return 2
    if args.standby and not (args.store or "").startswith(("postgresql:", "postgres:")):
        print(f"{PROG}: --standby needs a postgresql store (--store postgresql://...)",
              file=sys.stderr)
        return 2
    directory = netinfo_dir(args.dir)
    addrs = local_addresses()
    info = ServerInfo(tag=args.tag, hostname=hostname(), addresses=non_loopback(addrs),
                      binding="forcedRoot" if args.forced_root else "unknown",
                      forced_root=args.forced_root)
    if args.read_worker_fds:
        return await _serve_read_worker(args, info, addrs)
    if args.read_workers and args.store is not None \
            and not args.store.startswith("sqlite:"):
        print(f"{PROG}: --read-workers needs a SQLite store (the default): {args.store} "
              f"cannot be read by other processes beside its writer (PostgreSQL: run "
              f"more netinfods with --standby, or none)", file=sys.stderr)
        return 2
    creating = args.master or args.clone is not None
    args.root_crypt = None
    if args.master and (args.store is not None or not database_exists(directory, args.tag)):
        # Asked before anything is created: a bad password file leaves nothing behind.
        try:
            args.root_crypt = root_password_hash(args.root_password_file, args.tag)
        except RootPasswordError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 2
    try:
        db = open_database(directory, args.tag, info, create=creating, store=args.store,
                           cache=args.cache,
                           cache_bytes=None if args.cache_mb is None else args.cache_mb << 20,
                           standby=args.standby,
                           announce=lambda m: print(f"{PROG}: {m}", file=sys.stderr,
                                                    flush=True))
    except FileNotFoundError:
        where = args.store or directory
        print(f"{PROG}: no database for tag {args.tag} in {where} "
              f"(use -m to create a master)", file=sys.stderr)
        return 2
    except DatabaseInUse as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except (StorageError, OSError, ValueError) as e:
        print(f"{PROG}: cannot open database {args.tag}: {e}", file=sys.stderr)
        return 2
    if args.read_workers and not isinstance(db.store, SqliteStore):
        print(f"{PROG}: --read-workers needs a SQLite store (the default)", file=sys.stderr)
        db.close()
        return 2
    if db.store.journal is not None:
        db.store.journal.configure(args.history_days, args.history_max_mb)
    try:
        return await _serve(args, db, info, addrs)
    finally:
        db.close()


async def _serve(args: argparse.Namespace, db: Database, info: ServerInfo,
                 addrs: list[str]) -> int:
    # templates write through the database's door: recorded and told (issue 19)
    door = db.procedures
    if db.created and (args.master or args.clone is not None):
        if args.clone is not None:
            create_clone(door, *args.clone)
        else:
            crypted = args.root_crypt
            if args.template == "local":
                create_local(door)
            else:
                # bound to loopback (the default), the master is listed there alone:
                # the host's other addresses would name a server that is not listening
                listed = served_addresses(args.bind)
                create_master(door, args.tag, info.hostname,
                              listed if len(listed) == 1 else
                              non_loopback(addrs) or ["127.0.0.1"])
                if args.populate:
                    populate_standard(door)
            if crypted is not None:
                set_password(door, "root", crypted)
            elif has_user(door, "root"):
                where = (f"{args.tag}@127.0.0.1:{args.port}" if args.port
                         else f"-t 127.0.0.1/{args.tag}")
                print(locked_notice(PROG, args.tag, f"'nipasswd {where} root'"),
                      file=sys.stderr)
        db.commit()
    for name in db.root_without_password():
        log.warning("user %s (uid 0) has no password: any AUTH_UNIX caller claiming uid 0 "
                    "may write as root; set one (nipasswd %s, as this domain's superuser) "
                    "or lock it with '*'", name, name)
    # the role the domain's facts give this server, held by the database (spec §9.1)
    own = frozenset(addrs)
    db.settle_role(args.tag, lambda a: is_local(a, own))
    # Signals first: a TERM while starting or registering still shuts down cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = NetInfoServer(db, ServerConfig(args.tag, args.bind, args.port,
                                            args.lenient_udp, args.trust_local,
                                            args.fast_path,
                                            reuse_port=bool(args.read_workers),
                                            store_threads=args.store_threads,
                                            lookup_index=args.lookup_index), addrs)
    # the NIS front door answers from the first call on (issue 21)
    nis = _open_nis(args.nis_domain, db, server, own, args.nis_resident_mb << 20)
    try:
        await server.start()
    except OSError as e:
        print(f"{PROG}: cannot listen on {args.bind}: {e}", file=sys.stderr)
        return 2
    # What start-up made lives as long as the process: keep it out of every later
    # collection (and out of the one at exit).
    gc.freeze()
    # Requests make plenty of short-lived, acyclic objects (decoded arguments, proplists,
    # storage ops) that reference counting frees; a young-generation collection every 700
    # allocations only walks them again. 50,000 took 37% off the server's CPU during a
    # bulk load (niload passwd, 30,000 users: 7.0 -> 4.4 s), for a few MB of cyclic garbage
    # at most between collections (docs/benchmarks.md, "Tools").
    gc.set_threshold(GC_YOUNG, 20, 10)
    ldap = None
    if args.ldap or args.ldaps:
        try:
            ldap, ldap_lines = await start_ldap(db, args.tag, args.ldap, args.ldaps,
                                           args.ldap_cert, args.ldap_key, args.ldap_base,
                                           quick=args.fast_path,
                                           resident_bytes=args.ldap_resident_mb << 20)
        except (OSError, ValueError) as e:   # ssl.SSLError is an OSError
            print(f"{PROG}: cannot serve LDAP: {e}", file=sys.stderr)
            await server.close()
            return 2
        for line in ldap_lines:
            print(f"{PROG}: {args.tag} over {line}", file=sys.stderr, flush=True)
    workers = None
    if args.read_workers:
        assert isinstance(db.store, SqliteStore)
        workers = ReadWorkers(server, db, args.read_workers,
                              _worker_command(args, os.path.abspath(db.store.path)))
        await workers.start()
    print(f"{PROG}: serving {args.tag} udp={server.udp_port} tcp={server.tcp_port}"
          + (f" read-workers={','.join(map(str, workers.pids()))}" if workers else ""),
          file=sys.stderr, flush=True)
    registered = await _register(args.tag, server.udp_port, server.tcp_port)
    if nis is not None:
        await _register_nis(nis, server, args.nis_hierarchy)
    server.want_parent()
    replicator = Replicator(db, args.tag, lambda a: is_local(a, own),
                            max_copy=args.max_copy_mb * 1024 * 1024)
    server.dispatcher.replicator = replicator
    replicator.start()
    # nibindd's PROMOTE (nidomain -p) arrives as SIGUSR1: this clone becomes the master.
    loop.add_signal_handler(signal.SIGUSR1, replicator.promote)
    damaged: list[str] = []
    checker = asyncio.create_task(_verify(db, stop, damaged))
    trimmer = asyncio.create_task(_trim_history(db))
    watcher = asyncio.create_task(_watch_store(db))
    await stop.wait()
    if workers is not None:
        await workers.close()
    checker.cancel()
    trimmer.cancel()
    watcher.cancel()
    await replicator.close()
    if ldap is not None:
        await ldap.close()
    if registered:
        await _unregister(args.tag)
    if nis is not None:
        if nis.ancestors_task is not None:
            nis.ancestors_task.cancel()
        nis.close()
        await nis_door.unregister(server.udp_port)
    await server.close()
    if damaged:
        print(f"{PROG}: cannot serve database {args.tag}: {damaged[0]}", file=sys.stderr,
              flush=True)
        return 2
    print(f"{PROG}: {args.tag} stopped", file=sys.stderr, flush=True)
    return 0


def _worker_command(args: argparse.Namespace, path: str) -> list[str]:
    """The command line of a read worker (``--read-worker-fds`` is added per worker)."""
    cmd = [sys.executable, "-m", "netinfo.cli.netinfod", args.tag, "--store",
           f"sqlite://{path}", "--bind", args.bind]
    if args.cache is not None:
        cmd += ["--cache", str(args.cache)]
    if args.cache_mb is not None:
        cmd += ["--cache-mb", str(args.cache_mb)]
    for flag, on in (("--trust-local", args.trust_local), ("--no-fast-path", not args.fast_path),
                     ("-v", args.verbose), ("-n", args.forced_root)):
        if on:
            cmd.append(flag)
    cmd += ["--event-loop", args.event_loop]
    if not args.nis_hierarchy:
        # the workers answer YP MATCH too (the ancestors' maps are the owner's alone)
        for domain in args.nis_domain:
            cmd += ["--nis-domain", domain]
    return cmd


async def _serve_read_worker(args: argparse.Namespace, info: ServerInfo,
                             addrs: list[str]) -> int:
    """A read worker (``readworkers``): the owner's file read only, its calls that are
    not local reads handed to the owner."""
    path = (args.store or "").removeprefix("sqlite://")
    try:
        db = Database(SqliteStore(path, read_only=True), info, where=path,
                      cache=args.cache,
                      cache_bytes=None if args.cache_mb is None else args.cache_mb << 20)
    except (StorageError, OSError) as e:
        print(f"{PROG}: read worker: cannot open {path}: {e}", file=sys.stderr)
        return 2
    try:
        gc.freeze()
        gc.set_threshold(GC_YOUNG, 20, 10)
        return await run_worker(db, ServerConfig(args.tag, args.bind, None, False,
                                                 args.trust_local, args.fast_path),
                                addrs, args.read_worker_fds, args.nis_domain)
    finally:
        db.close()


#: Seconds between looks at the store's connection (Database.check_store: a PostgreSQL
#: writer's lost connection is said at once and replaced as soon as the server is back).
STORE_WATCH_EVERY = 1.0


async def _watch_store(db: Database) -> None:
    while True:
        await asyncio.sleep(STORE_WATCH_EVERY)
        await db.look_at_store()


#: Seconds between retention passes over the change history, and entries per transaction.
HISTORY_TRIM_EVERY = 60.0
HISTORY_TRIM_BATCH = 500


async def _trim_history(db: Database) -> None:
    """Retention of the change history (``--history-days``, ``--history-max-mb``) while
    the server is idle: commits trim a few entries each, this the rest, a small batch per
    transaction with requests served in between (never a stall)."""
    journal = db.store.journal
    if journal is None:
        return
    while True:
        try:
            while await db.on_writer(journal.trim_now, HISTORY_TRIM_BATCH) \
                    >= HISTORY_TRIM_BATCH:
                await asyncio.sleep(0)
        except Exception:
            log.exception("%s: trimming the change history failed", db.where)
        await asyncio.sleep(HISTORY_TRIM_EVERY)


async def _verify(db: Database, stop: asyncio.Event, damaged: list[str]) -> None:
    """A large database's integrity check, run while it is served (storage/sqlite: the
    check reads every page, too slow for start-up). Damage stops the server, as a
    damaged file found at open would have (exit status 2)."""
    store = db.store
    if not store.deferred_check:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()

    def check() -> None:
        # At the lowest priority: on a busy host the check yields to serving (it took
        # the p99 of LOOKUP from 0.2 to 3-4 ms while it ran at normal priority).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            pass
        try:
            result: str | None = store.verify()
        except Exception as exc:  # reported like damage, never lost
            result = f"integrity check failed: {exc}"

        def deliver() -> None:
            if not done.done():
                done.set_result(result)
        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:
            pass  # the loop is gone: netinfod is stopping anyway

    # A thread of its own (daemon): shutdown interrupts it and never waits for it.
    threading.Thread(target=check, name="verify", daemon=True).start()
    try:
        problem = await done
    except asyncio.CancelledError:
        store.interrupt_verify()
        raise
    if problem is not None:
        log.error("%s", problem)
        damaged.append(problem)
        stop.set()
        return
    # Damaged directories stop nothing: they are refused when read (issue 18 N20).
    for message in store.found_damaged:
        log.error("%s", message)


def _open_nis(domains: list[str], db: Database, server: NetInfoServer,
              own: frozenset[str], resident_bytes: int) -> nis_door.NisDoor | None:
    """The NIS front door for *domains* (issue 21) on the server's ports; None when no
    NIS domain is asked for."""
    if not domains:
        return None
    door = nis_door.NisDoor(db, domains, lambda a: is_local(a, own), db.info.hostname,
                            short=server.dispatcher.config.fast_path,
                            resident_bytes=resident_bytes)
    server.dispatcher.add_program(yp_program(door)(server.dispatcher))
    return door


async def _register_nis(door: nis_door.NisDoor, server: NetInfoServer,
                        hierarchy: bool) -> None:
    """Register YP with the portmapper; with --nis-hierarchy, start reading the
    ancestors' maps (the parent search has begun)."""
    if hierarchy:
        door.ancestors = Ancestors(door.db.info)
        door.ancestors_task = asyncio.ensure_future(door.ancestors.run())
    registered = await nis_door.register(server.udp_port, server.tcp_port)
    domains = sorted(door.domains)
    print(f"{PROG}: serving NIS domain{'s' if len(domains) > 1 else ''} "
          f"{', '.join(domains)} (YP v2) udp={server.udp_port} tcp={server.tcp_port}"
          + ("" if registered else " (not registered with a portmapper)"),
          file=sys.stderr, flush=True)


def is_clone(owner, tag: str, addrs: list[str]) -> bool:
    """A clone when root ``master`` names a master whose address is not ours, or a tag
    that is not ours (Apple; spec §9.1); a database named ``local`` is never a clone
    (:meth:`facts.DomainFacts.role`, which start-up asks through the database)."""
    own = frozenset(addrs)
    return owner.facts().role(tag, lambda a: is_local(a, own)) is Role.CLONE


async def _register(tag: str, udp: int, tcp: int) -> bool:
    """REGISTER with the local nibindd, if one runs (spec §6.2); from a reserved port
    when root. A netinfod without nibindd serves standalone."""
    try:
        await binding.register(tag, udp, tcp, timeout=1.5)
        return True
    except NiError as e:
        logging.getLogger("netinfo.netinfod").warning("nibindd refused registration: %s", e)
    except (Timeout, RpcError, WireError, OSError):
        pass
    return False


async def _unregister(tag: str) -> None:
    try:
        await binding.unregister(tag, timeout=1.0)
    except (NiError, Timeout, RpcError, WireError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # run as a program, not called in-process: name the process
        # "netinfod TAG" first (issue 17), the rest after it, still a command line that
        # parses the same (the tag is the one positional argument)
        rest = sys.argv[1:]
        if args.tag in rest:
            del rest[len(rest) - 1 - rest[::-1].index(args.tag)]
        name_process(PROG, [args.tag, *rest])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{PROG}[%(process)d] %(levelname)s %(message)s", stream=sys.stderr)
    rc = run_loop(serve(args), args.event_loop)
    # Everything is durable and closed: spare the exit the last full collection over the
    # cached directories (0.2 s for 20,000 of them, measured; issue 10: shutdown <= 1 s).
    gc.freeze()
    return rc


if __name__ == "__main__":
    sys.exit(main())
