"""Peers benchmark (issue 10): netinfod against ypserv, slapd and a do-nothing C server.

Usage (as root, on Debian with the packages below):

    python3 bench/run.py                    # 1,000,000 users, 5 s runs, medians of 3
    python3 bench/run.py --users 100000     # the quicker run
    python3 bench/run.py --quick            # 10,000 users, 1 s runs, 1 repetition, no docs

One entry point that runs every peer itself, each in turn, inside one network namespace
it creates (only ``lo`` exists there) and deletes at the end, even on failure:

* ``netinfod`` (this tree, ``src/``) serving a domain whose /users holds N users, written
  straight into its SQLite store through the storage API (``Store.commit`` of Put and
  KidIns operations), plus a second domain of 1,000 users for the p99 ratio;
* ``ypserv`` serving a NIS domain whose ``passwd.byname`` map holds the same N users
  (``makedbm``), with its own ``rpcbind``, in a private mount and UTS namespace (the NIS
  domain name and ``/var/yp`` are bind-mounted there; the host's are untouched);
* ``slapd`` (mdb backend, loaded with ``slapadd``) holding the same N users as
  ``account``/``posixAccount`` entries under ``ou=users``, ``uid`` indexed;
* ``ninull``, an rpcgen/libtirpc server of the NETINFO program that holds no data: the
  ceiling any NetInfo server can reach through this RPC layer on this machine.

The load clients are C, built here with rpcgen and libtirpc from ``interop/netinfo_prot.x``
and ``/usr/include/rpcsvc/yp.x``, and over libldap (sources in ``bench/peers/``). Each looks
up random users by name over TCP, one call in flight per connection: NetInfo
LOOKUPREAD(/users, name, NAME), NIS YPPROC_MATCH(passwd.byname, NAME), LDAP search one
level under ``ou=users`` with ``(uid=NAME)``. K clients are K threads, each with its own
connection; their rates are summed.

For each server it measures: start until the first correct answer (the probe client
retries every 5 ms), lookups/s with 1, 4 and 16 clients, p99 latency with one client,
resident memory idle after the load. Every number is the median of ``--reps`` runs.
It prints one table, writes the raw results as JSON (``--json``) and, unless ``--quick``
or ``--no-docs``, rewrites the section "Peers — ``python3 bench/run.py``" of
docs/benchmarks.md, replacing only the subsection of this population size.

Packages: rpcbind rpcsvc-proto libtirpc-dev gcc libnsl-dev ypserv slapd ldap-utils
libldap-dev (389-ds-base for the optional ``ldclt`` cross-check).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import targets

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PEERS = Path(__file__).resolve().parent / "peers"
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Peers — `python3 bench/run.py`"

NIS_DOMAIN = "nibench"
LDAP_SUFFIX = "dc=bench,dc=test"
LDAP_USERS = f"ou=users,{LDAP_SUFFIX}"
TAG = "bench"
P99_SMALL = 1000          # users in the second netinfod domain, for the p99 ratio
PORTS = {"netinfod": 9601, "netinfod-1k": 9602, "ypserv": 9603, "slapd": 9604,
         "ninull": 9605, "netinfod-general": 9606, "netinfod-ldap": 9607,
         "netinfod-w": 9612}
#: --ldap (issue 22 "Measure"): the LDAP and LDAPS ports of netinfod's door and slapd's
#: LDAPS port (its plain one is PORTS["slapd"])
LDAP_PORTS = {"netinfod": 9608, "netinfod-ldaps": 9610, "slapd-ldaps": 9611}
#: nslcd's search for a user (ecosystem notes §4.1), beside the plain equality
NSLCD_FILTER = "(&(objectClass=posixAccount)(uid=%s))"
#: users user0..user999 have this password (one crypt string, the default scheme
#: nipasswd writes), for the bind rate
BIND_USERS = 1000
BIND_PASSWORD = "bench-pw"
CLIENTS = (1, 4, 16)
#: what netinfod's log says once its resident LOOKUP index of a directory's names is
#: built (``server/indexer``); Server.warm
INDEX_READY = "resident index of 'name'"
#: a server not warm after this many seconds of load is measured as it is (and said so)
WARM_LIMIT = 180.0
PACKAGES = ("ypserv", "slapd", "ldap-utils", "389-ds-base", "rpcbind", "rpcsvc-proto",
            "libtirpc3", "libtirpc-dev", "libldap-2.5-0", "gcc", "libnsl-dev")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


# -- the namespace and the processes in it ----------------------------------------------------

class Namespace:
    """A network namespace with only ``lo``, removed by :meth:`close`."""

    def __init__(self) -> None:
        self.name = f"nibench{secrets.token_hex(3)}"
        run(["ip", "netns", "add", self.name])
        self.procs: list[subprocess.Popen] = []
        try:
            run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise

    def cmd(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def spawn(self, argv: list[str], logfile: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen:
        out = open(logfile, "ab")  # noqa: SIM115 - handed to the child
        try:
            p = subprocess.Popen(self.cmd(argv), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            out.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 30) -> None:
        """SIGTERM the process by its pid, SIGKILL it if it lingers."""
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def close(self) -> None:
        for p in list(reversed(self.procs)):
            self.stop(p, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def rss_mib(pid: int) -> float:
    """The process's RSS, and its children's (read workers; shared pages counted in
    each)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024 + sum(rss_mib(c) for c in children(pid))
    return float("nan")


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time the process (all its threads) has used, and its live
    children (netinfod's read workers, ``--workers``): the system time is the kernel's
    share, the calls' system calls and what the loopback does in them."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    for c in children(pid):
        u, s = cpu_split(c)
        user, system = user + u, system + s
    return user, system


def children(pid: int) -> list[int]:
    """The live processes whose parent is *pid*."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                f = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[1]) == pid and f[0] != "Z":
                out.append(int(entry))
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


# -- building the clients -------------------------------------------------------------------

def build_clients(work: Path) -> dict[str, Path]:
    """rpcgen + gcc: nilookup, ypload, ldapload and ninull, in *work*."""
    b = work / "build"
    shutil.rmtree(b, ignore_errors=True)  # rpcgen will not overwrite its outputs
    b.mkdir()
    for f in PEERS.iterdir():
        if f.suffix in (".c", ".h"):
            shutil.copy(f, b / f.name)
    shutil.copy(ROOT / "interop" / "netinfo_prot.x", b / "netinfo_prot.x")
    shutil.copy("/usr/include/rpcsvc/yp.x", b / "yp.x")
    # -M: thread-safe stubs (the result is the caller's); -N: arguments by value.
    for flags, base in ((["-M", "-N"], "netinfo_prot"), (["-M"], "yp")):
        for what, out in (("-h", ".h"), ("-c", "_xdr.c"), ("-l", "_clnt.c")):
            run(["rpcgen", *flags, what, "-o", base + out, base + ".x"], cwd=b)
    run(["rpcgen", "-M", "-N", "-m", "-o", "netinfo_prot_svc.c", "netinfo_prot.x"], cwd=b)
    cc = ["gcc", "-O2", "-I/usr/include/tirpc", "-I."]
    builds = {
        "nilookup": ["loadcore.c", "nilookup.c", "netinfo_prot_clnt.c", "netinfo_prot_xdr.c",
                     "-ltirpc", "-pthread"],
        "ypload": ["loadcore.c", "ypload.c", "yp_clnt.c", "yp_xdr.c", "-ltirpc", "-pthread"],
        "ldapload": ["loadcore.c", "ldapload.c", "-lldap", "-llber", "-pthread"],
        "ldapbind": ["loadcore.c", "ldapbind.c", "-lldap", "-llber", "-pthread"],
        "ninull": ["ninull.c", "netinfo_prot_svc.c", "netinfo_prot_xdr.c", "-ltirpc"],
    }
    for name, srcs in builds.items():
        run([*cc, "-o", name, *srcs], cwd=b, capture_output=True)
    return {name: b / name for name in builds}


# -- the populations --------------------------------------------------------------------------

def user(i: int) -> tuple[str, int, int, str, str, str]:
    """User *i*: name, uid, gid, real name, home, shell (the same in every system)."""
    return (f"user{i}", 10000 + i, 20, f"Bench User {i}", f"/home/user{i}", "/bin/sh")


def bind_hash() -> str:
    """The crypt string of :data:`BIND_PASSWORD` (one for every bind user)."""
    sys.path.insert(0, str(SRC))
    from netinfo.passwords import hash_password
    return hash_password(BIND_PASSWORD)


def build_netinfo(directory: Path, users: int, pw_hash: str = "*") -> None:
    """A master domain TAG in *directory*: the standard directories, then *users* users
    written straight to the store in batches (two ops each: Put, KidIns at the end of
    /users), with the checksum the service would have computed (spec §5.6)."""
    sys.path.insert(0, str(SRC))
    from netinfo.model import NiId
    from netinfo.server.database import open_database
    from netinfo.server.service import SUPERUSER
    from netinfo.server.templates import create_master, populate_standard
    from netinfo.storage import KidIns, Put

    with open_database(directory, TAG, create=True) as db:
        svc = db.service_for_tests()
        create_master(svc, TAG, "benchhost", ["127.0.0.1"])
        populate_standard(svc)
        db.commit()
        root = svc.proc_root(SUPERUSER)
        parent = svc.proc_lookup(SUPERUSER, NiId(root[0], root[1]), "name", "users")[0][0]
        checksum = svc.checksum
        first = svc.highest_id()
        end = 1 << 30  # any position past the end appends
        batch = 100_000
        for lo in range(0, users, batch):
            ops: list = []
            for i in range(lo, min(users, lo + batch)):
                name, uid, gid, real, home, shell = user(i)
                oid = first + i
                ops.append(Put(oid, 1, parent, [
                    ("name", [name]), ("passwd", [pw_hash if i < BIND_USERS else "*"]),
                    ("uid", [str(uid)]),
                    ("gid", [str(gid)]), ("realname", [real]), ("home", [home]),
                    ("shell", [shell])]))
                ops.append(KidIns(parent, end, oid))
                checksum = (checksum + oid + 1) & 0xFFFFFFFF  # instance 1: (oid + 1) × 1
            db.store.commit(ops, checksum)
    # The service's own copy (open above) is stale now; nothing else holds the store.


def passwd_line(i: int) -> str:
    name, uid, gid, real, home, shell = user(i)
    return f"{name}:x:{uid}:{gid}:{real}:{home}:{shell}"


def build_nis(ypdir: Path, users: int) -> None:
    """``ypdir/NIS_DOMAIN/passwd.byname`` from *users* passwd lines, by ``makedbm``."""
    d = ypdir / NIS_DOMAIN
    d.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen(["/usr/lib/yp/makedbm", "-i", "/etc/passwd", "-m", "benchhost",
                          "-o", NIS_DOMAIN, "-", str(d / "passwd.byname")],
                         stdin=subprocess.PIPE)
    assert p.stdin is not None
    chunk = 50_000
    for lo in range(0, users, chunk):
        p.stdin.write("".join(f"user{i}\t{passwd_line(i)}\n"
                              for i in range(lo, min(users, lo + chunk))).encode())
    p.stdin.close()
    if p.wait() != 0:
        raise RuntimeError("makedbm failed")


SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
loglevel 0
database mdb
maxsize 17179869184
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
directory {d}/db
index objectClass eq
index uid eq
"""
#: with --ldap: LDAPS for the bind rate (a certificate of the run's own)
SLAPD_TLS = """TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
"""


def build_ldap(d: Path, users: int, pw_hash: str = "*",
               tls: tuple[Path, Path] | None = None) -> Path:
    """A slapd.conf and an mdb database of *users* entries, loaded by ``slapadd -q``
    (the first :data:`BIND_USERS` with *pw_hash* as ``{CRYPT}`` userPassword)."""
    (d / "db").mkdir(parents=True, exist_ok=True)
    conf = d / "slapd.conf"
    text = SLAPD_CONF.format(d=d, suffix=LDAP_SUFFIX)
    if tls is not None:   # global directives: before "database"
        head, _, rest = text.partition("database mdb")
        text = head + SLAPD_TLS.format(cert=tls[0], key=tls[1]) + "database mdb" + rest
    conf.write_text(text)
    p = subprocess.Popen(["slapadd", "-q", "-f", str(conf)], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL)
    assert p.stdin is not None
    p.stdin.write(f"dn: {LDAP_SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
                  f"dc: bench\no: bench\n\n"
                  f"dn: {LDAP_USERS}\nobjectClass: organizationalUnit\nou: users\n\n".encode())
    chunk = 20_000
    for lo in range(0, users, chunk):
        out = []
        for i in range(lo, min(users, lo + chunk)):
            name, uid, gid, real, home, shell = user(i)
            pw = f"userPassword: {{CRYPT}}{pw_hash}\n" if i < BIND_USERS and pw_hash != "*" \
                else ""
            out.append(f"dn: uid={name},{LDAP_USERS}\nobjectClass: account\n"
                       f"objectClass: posixAccount\nuid: {name}\ncn: {real}\n"
                       f"uidNumber: {uid}\ngidNumber: {gid}\ngecos: {real}\n"
                       f"homeDirectory: {home}\nloginShell: {shell}\n{pw}\n")
        p.stdin.write("".join(out).encode())
    p.stdin.close()
    if p.wait() != 0:
        raise RuntimeError("slapadd failed")
    return conf


# -- the servers ------------------------------------------------------------------------------

@dataclass
class Server:
    """How to start one server in the namespace and load it."""

    name: str
    port: int
    users: int
    client: Path
    client_args: list[str]
    start: Callable[[], subprocess.Popen]
    start_timeout: float
    loads: tuple[int, ...] = CLIENTS
    results: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    #: another server's process, asked another way (--ldap: nslcd's filter, binds)
    alias_of: str | None = None
    #: (its log, what the log says once it is warm): after its last start it is loaded
    #: (one client) until the log says so, before any figure is taken; the seconds it
    #: took are kept as results["warm_s"]
    warm: tuple[Path, str] | None = None


class Bench:
    def __init__(self, args: argparse.Namespace, ns: Namespace, work: Path,
                 bins: dict[str, Path]) -> None:
        self.args = args
        self.ns = ns
        self.work = work
        self.bins = bins
        self.rpcbind: subprocess.Popen | None = None

    # the servers' start commands

    def netinfod_log(self, port: int) -> Path:
        return self.work / f"netinfod-{port}.log"

    def netinfod(self, directory: Path, port: int,
                 extra: tuple[str, ...] = ()) -> Callable[[], subprocess.Popen]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETINFO_")}
        env.update(PYTHONPATH=str(SRC), NETINFO_BROADCAST="off",
                   # no nibindd: registration fails at once and the server serves alone
                   NETINFO_PORTMAPPER="127.0.0.1:9609")
        argv = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(directory),
                "--bind", "127.0.0.1", "--port", str(port), "-n", *extra, TAG]
        return lambda: self.ns.spawn(argv, self.netinfod_log(port), env)

    def start_rpcbind(self, ypdir: Path) -> None:
        """rpcbind with a private /run, and the NIS domain name and /var/yp of ypserv:
        a mount and UTS namespace that ypserv joins (``nsenter``)."""
        script = ("mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && "
                  "chown _rpc: /run/rpcbind && mkdir -p /var/yp && "
                  f"mount --bind {ypdir} /var/yp && domainname {NIS_DOMAIN} && "
                  "exec /sbin/rpcbind -f -w")
        self.rpcbind = self.ns.spawn(["unshare", "--uts", "--mount", "sh", "-c", script],
                                     self.work / "rpcbind.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if comm(self.rpcbind.pid) == "rpcbind" and self._listening(111):
                return
            if self.rpcbind.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("rpcbind did not start (see rpcbind.log)")

    def _listening(self, port: int) -> bool:
        r = subprocess.run(self.ns.cmd(["ss", "-Htln", f"sport = :{port}"]),
                           capture_output=True, text=True)
        return bool(r.stdout.strip())

    def ypserv(self, port: int) -> Callable[[], subprocess.Popen]:
        def start() -> subprocess.Popen:
            assert self.rpcbind is not None
            pid = str(self.rpcbind.pid)
            # nsenter joins rpcbind's namespaces and then execs ypserv: same pid.
            return self.ns.spawn(["nsenter", "-t", pid, "-m", "-u", "--",
                                  "/usr/sbin/ypserv", "-f", "-p", str(port)],
                                 self.work / "ypserv.log")
        return start

    def slapd(self, conf: Path, port: int,
              ldaps: int | None = None) -> Callable[[], subprocess.Popen]:
        urls = f"ldap://127.0.0.1:{port}/" + (f" ldaps://127.0.0.1:{ldaps}/" if ldaps else "")
        argv = ["/usr/sbin/slapd", "-d", "0", "-f", str(conf), "-h", urls]
        return lambda: self.ns.spawn(argv, self.work / "slapd.log")

    def ninull(self, port: int) -> Callable[[], subprocess.Popen]:
        return lambda: self.ns.spawn([str(self.bins["ninull"]), str(port)],
                                     self.work / "ninull.log")

    # measuring

    def client(self, s: Server, mode: str, seconds: float, threads: int,
               timeout: float) -> subprocess.CompletedProcess:
        argv = [str(s.client), mode, "127.0.0.1", str(s.port), str(s.users), str(seconds),
                str(threads), *s.client_args]
        return subprocess.run(self.ns.cmd(argv), capture_output=True, text=True,
                              timeout=timeout)

    def start_until_answer(self, s: Server) -> tuple[subprocess.Popen, float]:
        t0 = time.monotonic()
        p = s.start()
        r = self.client(s, "probe", s.start_timeout, 1, s.start_timeout + 30)
        took = time.monotonic() - t0
        if r.returncode != 0:
            self.ns.stop(p)
            raise RuntimeError(f"{s.name}: no answer within {s.start_timeout:.0f} s "
                               f"(exit {p.poll()}; see its log in {self.work})")
        return p, took

    def start_all(self, servers: list[Server]) -> None:
        """Each server started ``reps`` times, timed until its first answer; the last
        start of each stays up (all of them, idle, while the others are loaded)."""
        by_name = {s.name: s for s in servers}
        for s in servers:
            s.results = {"users": s.users, "start_s": [], "load": {}}
            if s.alias_of is not None:   # the same process, started already
                s.proc = by_name[s.alias_of].proc
                continue
            for r in range(self.args.reps):
                said = s.warm[0].stat().st_size if s.warm and s.warm[0].exists() else 0
                p, took = self.start_until_answer(s)
                s.results["start_s"].append(round(took, 3))
                log(f"{s.name}: first answer {took:.2f} s after start "
                    f"(pid {p.pid}, {comm(p.pid)})")
                if r < self.args.reps - 1:
                    self.ns.stop(p, timeout=120)
            s.proc = p
            s.results["rss_mib_started"] = round(rss_mib(p.pid), 1)
            if s.warm is not None:
                s.results["warm_s"] = self.warm_up(s, said)

    def warm_up(self, s: Server, offset: int, limit: float = WARM_LIMIT) -> float | None:
        """Load *s* with one client, a second at a time, until its log (from *offset*:
        the log is shared by every start on the port) says it is warm; the seconds that
        took (None: not within *limit*)."""
        assert s.warm is not None
        log_file, text = s.warm
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            self.client(s, "load", 1.0, 1, 120)
            with log_file.open("rb") as f:
                f.seek(offset)
                said = f.read().decode(errors="replace")
            if text in said:
                took = round(time.monotonic() - t0, 1)
                log(f"{s.name}: warm after {took} s of load (its log: {text!r})")
                return took
        log(f"{s.name}: not warm after {limit:.0f} s of load")
        return None

    def load_all(self, servers: list[Server]) -> None:
        """For each client count, ``reps`` rounds; each round loads every server once,
        in an order rotated by one each round, so that every ratio compares runs taken
        minutes apart at most on this shared machine."""
        seconds = self.args.seconds
        for k in CLIENTS:
            these = [s for s in servers if k in s.loads]
            for r in range(self.args.reps):
                for s in these[r % len(these):] + these[:r % len(these)]:
                    assert s.proc is not None
                    user, system = cpu_split(s.proc.pid)
                    out = self.client(s, "load", seconds, k, seconds + 120)
                    after = cpu_split(s.proc.pid)
                    user, system = after[0] - user, after[1] - system
                    cpu = user + system
                    if out.returncode not in (0, 3) or not out.stdout.strip():
                        raise RuntimeError(f"{s.name}: load client failed: {out.stderr}")
                    one = json.loads(out.stdout)
                    one["server_cpu_us_per_call"] = round(cpu * 1e6 / max(1, one["calls"]), 1)
                    one["server_user_us_per_call"] = round(user * 1e6 / max(1, one["calls"]), 1)
                    s.results["load"].setdefault(k, []).append(one)
            for s in these:
                runs = s.results["load"][k]
                log(f"{s.name:12s} {k:2d} clients "
                    f"{statistics.median(x['rate'] for x in runs):8.0f} lookups/s, p99 "
                    f"{statistics.median(x['p99_us'] for x in runs):6.0f} us, errors "
                    f"{sum(x['errors'] for x in runs)}")
        time.sleep(1.0)
        for s in servers:
            assert s.proc is not None
            s.results["rss_mib_idle_after_load"] = round(rss_mib(s.proc.pid), 1)
            s.results["pid_comm"] = comm(s.proc.pid)

    def ldclt(self, port: int, s: Server) -> dict | None:
        """The survey's slapd figure, re-taken: ldclt, 4 threads, one fixed uid
        (ecosystem notes §6); its intervals are 10 s each."""
        if not shutil.which("ldclt"):
            return None
        p, _ = self.start_until_answer(s)
        try:
            return self._ldclt(port)
        finally:
            self.ns.stop(p)

    def _ldclt(self, port: int) -> dict | None:
        n = self.args.seconds
        argv = ["ldclt", "-h", "127.0.0.1", "-p", str(port), "-b", LDAP_USERS,
                "-f", "uid=user1", "-e", "esearch", "-n", "4", "-N", str(max(1, round(n / 10))),
                "-I", "32"]
        r = subprocess.run(self.ns.cmd(argv), capture_output=True, text=True, timeout=300)
        for line in (r.stdout + r.stderr).splitlines():
            if "Global average rate" in line and "/sec" in line:
                rate = float(line.split("(")[1].split("/sec")[0])
                return {"threads": 4, "rate": rate, "line": line.strip()}
        return {"error": (r.stdout + r.stderr)[-500:]}


# -- the report -------------------------------------------------------------------------------

def med(xs: list[float]) -> float:
    return statistics.median(xs)


def rate(res: dict, k: int) -> float:
    return med([x["rate"] for x in res["load"][k]])


def p99(res: dict) -> float:
    return med([x["p99_us"] for x in res["load"][1]])


def fmt_n(x: float) -> str:
    return f"{x:,.0f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def table(results: dict, users: int) -> list[str]:
    ni, yp, ld, nul = (results.get(k) for k in ("netinfod", "ypserv", "slapd", "ninull"))
    small = results.get("netinfod-1k")
    at = f"{users:,} users"
    rows = [f"| measure ({at}) | netinfod | ypserv | slapd | ceiling: rpcgen null server "
            f"| issue target | verdict |",
            "|---|---|---|---|---|---|---|"]

    def cell(r: dict | None, f: Callable[[dict], str]) -> str:
        return f(r) if r else "–"

    for k in CLIENTS:
        what = ("lookups/s, 1 client, sequential, TCP" if k == 1 else
                f"lookups/s, {k} clients summed")
        if k == 1:
            tgt = "≥ 1.0× ypserv MATCH"
            ok_ratio = [rate(ni, k) / rate(yp, k)] if ni and yp else []
            note = f"{ok_ratio[0]:.2f}× ypserv" if ok_ratio else "–"
        else:
            tgt = "≥ 1.0× ypserv and ≥ 1.0× slapd"
            ok_ratio = [rate(ni, k) / rate(r, k) for r in (yp, ld) if ni and r]
            note = (f"{rate(ni, k) / rate(yp, k):.2f}× ypserv, "
                    f"{rate(ni, k) / rate(ld, k):.2f}× slapd" if ni and yp and ld else "–")
        v = f"{verdict(all(x >= 1.0 for x in ok_ratio))}: {note}" if ok_ratio else "–"
        rows.append(f"| {what} | " + " | ".join(
            cell(r, lambda r, k=k: fmt_n(rate(r, k))) for r in (ni, yp, ld, nul))
            + f" | {tgt} | {v} |")
    def cpu(r: dict) -> float:
        return med([x["server_cpu_us_per_call"] for x in r["load"][16]])
    rows.append("| server CPU per lookup, µs (16 clients) | " + " | ".join(
        cell(r, lambda r: f"{cpu(r):,.0f}") for r in (ni, yp, ld, nul))
        + " | ≤ ypserv's (issue 20) | "
        + (f"{verdict(cpu(ni) <= cpu(yp))}: {cpu(ni) / cpu(yp):.2f}×" if ni and yp else "–")
        + " |")
    rss_note = "" if users == 1_000_000 else f" (target is for 1,000,000; measured at {users:,})"
    rows.append("| RSS idle after the load, MiB | " + " | ".join(
        cell(r, lambda r: f"{r['rss_mib_idle_after_load']:,.0f}") for r in (ni, yp, ld, nul))
        + " | ≤ 300 MB (286 MiB) | "
        + (f"{verdict(ni['rss_mib_idle_after_load'] * 1.048576 <= 300)}{rss_note}"
           if ni else "–") + " |")
    rows.append("| start until the first answer, s | " + " | ".join(
        cell(r, lambda r: f"{med(r['start_s']):.2f}") for r in (ni, yp, ld, nul))
        + " | ≤ 1 s (netinfod, first LOOKUP) | "
        + (f"{verdict(med(ni['start_s']) <= 1.0)}{rss_note}" if ni else "–") + " |")
    rows.append("| p99 latency, 1 client, µs | " + " | ".join(
        cell(r, lambda r: f"{p99(r):,.0f}") for r in (ni, yp, ld, nul))
        + " | ≤ ypserv's (issue 20) | "
        + (f"{verdict(p99(ni) <= p99(yp))}: {p99(ni) / p99(yp):.2f}×" if ni and yp else "–")
        + " |")
    rows.append(f"| p99 latency, 1 client, µs, against {P99_SMALL:,} users | "
                + (f"{p99(ni):,.0f}" if ni else "–") + " | – | – | – | "
                + f"≤ 2× netinfod's p99 at {P99_SMALL:,} users"
                + (f" ({p99(small):,.0f} µs)" if small else "") + " | "
                + (f"{verdict(p99(ni) <= 2 * p99(small))}: {p99(ni) / p99(small):.2f}×"
                   f"{rss_note}" if ni and small else "–") + " |")
    return rows


def machine(args: argparse.Namespace) -> dict:
    versions = {}
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *PACKAGES],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        name, _, ver = line.partition(" ")
        if ver:
            versions[name] = ver
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "kernel": platform.release(),
            "machine": platform.machine(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "loadavg_at_end": os.getloadavg(),
            "commit": commit + ("+dirty src" if dirty else ""), "versions": versions,
            "users": args.users, "seconds": args.seconds, "reps": args.reps}


INTRO = f"""\
Written by `python3 bench/run.py [--users N]` (as root): one subsection per population
size, each replaced when that size is run again. The targets are issue 10's; the
memory, start and p99 targets are stated for 1,000,000 users, so their verdicts at
other sizes only show the trend.

What each column serves and how it is asked (all over TCP, one call in flight per
client, random users; `bench/peers/` holds the C clients):

* **netinfod**: this tree's server, `/users` holding the users as directories (name,
  passwd, uid, gid, realname, home, shell), written into its SQLite store through the
  storage API; asked `LOOKUPREAD(/users, "name", NAME)` by a C client built with rpcgen
  from `interop/netinfo_prot.x`. Its p99 ratio is against a second domain of
  {P99_SMALL:,} users, loaded in the same rounds.
* **ypserv**: `passwd.byname` made by `makedbm`; `YPPROC_MATCH` from a C client built
  with rpcgen from `/usr/include/rpcsvc/yp.x` (port fixed with `ypserv -p`; its own
  rpcbind, `/run`, `/var/yp` and NIS domain name in private namespaces).
* **slapd**: mdb backend loaded by `slapadd -q`, `uid` indexed; a one-level search
  `(uid=NAME)` under `ou=users` returning every attribute, from a C client over libldap
  (anonymous, LDAPv3).
* **ceiling**: `bench/peers/ninull.c`, rpcgen's dispatcher for the NETINFO program under
  libtirpc's single-threaded `svc_run`, answering a canned user: what the RPC layer
  costs with no directory behind it.
* **the original netinfod** (NeXT's, Apple's): skipped — no build of it runs here (the
  binaries are for NeXTSTEP and Darwin on m68k, i386 and PowerPC, and this project
  builds nothing from their sources). netinfod is measured on its pure-Python path:
  no compiled path is built (issue 20 item 2 is optional, and no single step of a
  lookup is worth compiling alone: see the profiles further down).

Everything runs in one network namespace (loopback only) that the script creates and
deletes. The servers are started one at a time (each {{reps}} times; the median start is
reported), then all stay up while one at a time is loaded, in rounds that visit every
server in turn, so ratios compare neighbouring runs on this shared machine. K clients
are K threads of one client process, each with its own connection, sharing the cores
with the server; their rates are summed. Start is from spawning the server to its first
correct answer (the probe retries every 5 ms). RSS is the server's VmRSS one second after
the last load run; server CPU is its user + system time during the runs (all threads)
over the lookups answered.
"""


def subsection(results: dict, m: dict) -> str:
    """``### N users``: when, where, the table, the versions."""
    v = m["versions"]
    lines = [
        f"### {m['users']:,} users",
        "",
        f"Measured {m['date']} at commit {m['commit']}: {m['nproc']} cores ({m['machine']}), "
        f"Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}; medians of "
        f"{m['reps']} runs of {m['seconds']:g} s; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in m['loadavg_at_end'])} (other work shares the "
        f"machine).",
        "",
        *table(results, m["users"]),
        "",
        "Versions: " + ", ".join(f"{k} {v[k]}" for k in
                                 ("ypserv", "rpcbind", "slapd", "libldap-2.5-0", "libtirpc3",
                                  "rpcsvc-proto", "gcc", "389-ds-base") if k in v) + ".",
    ]
    ld = results.get("ldclt")
    if ld and "rate" in ld:
        lines += ["", f"Cross-check with `ldclt` (389-ds-base), 4 threads, one fixed uid "
                      f"(`-e esearch -n 4 -I 32`), same slapd: {fmt_n(ld['rate'])} searches/s."]
    return "\n".join(line if line.startswith("|") else textwrap.fill(line, 92)
                     for line in lines) + "\n"


def write_docs(sub: str, users: int, reps: int, title: str = SECTION,
               intro: str | None = None) -> None:
    """Rewrite a section of docs/benchmarks.md (the peers', unless *title* says another):
    the fixed introduction, then the subsections of every size measured, this one
    (*sub*) new, largest size first."""
    if intro is None:
        intro = INTRO.replace("{reps}", str(reps))
    text = DOCS.read_text()
    start = text.find(title)
    subs: dict[int, str] = {}
    if start < 0:
        head, rest = text.rstrip("\n") + "\n\n", ""
    else:
        nxt = text.find("\n## ", start + len(title))
        head = text[:start]
        body = text[start:nxt + 1] if nxt >= 0 else text[start:]
        rest = text[nxt + 1:] if nxt >= 0 else ""
        for part in body.split("\n### ")[1:]:
            heading = part.split("\n", 1)[0]
            n = heading.split(" ")[0].replace(",", "")
            if n.isdigit():
                subs[int(n)] = "### " + part.rstrip("\n") + "\n"
    subs[users] = sub
    section = "\n".join([title, "", intro,
                         *(subs[n] for n in sorted(subs, reverse=True))])
    DOCS.write_text(head + section + ("\n" + rest if rest else ""))


def from_json(path: str) -> tuple[dict, dict]:
    """Results saved by ``--json`` (JSON keys are strings: the client counts back to int)."""
    data = json.loads(Path(path).read_text())
    for r in data["results"].values():
        if r and "load" in r:
            r["load"] = {int(k): v for k, v in r["load"].items()}
    return data["results"], data["machine"]


# -- main -------------------------------------------------------------------------------------

def check_tools() -> list[str]:
    need = {"ip": "iproute2", "unshare": "util-linux", "nsenter": "util-linux",
            "rpcgen": "rpcsvc-proto", "gcc": "gcc", "/sbin/rpcbind": "rpcbind",
            "/usr/sbin/ypserv": "ypserv", "/usr/lib/yp/makedbm": "ypserv",
            "/usr/sbin/slapd": "slapd", "slapadd": "slapd", "ss": "iproute2"}
    missing = [pkg for tool, pkg in need.items()
               if not (Path(tool).exists() if tool.startswith("/") else shutil.which(tool))]
    for path, pkg in (("/usr/include/tirpc/rpc/rpc.h", "libtirpc-dev"),
                      ("/usr/include/rpcsvc/yp.x", "libnsl-dev"),
                      ("/usr/include/ldap.h", "libldap-dev")):
        if not Path(path).exists():
            missing.append(pkg)
    return sorted(set(missing))


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP become KeyboardInterrupt, so the cleanup below always runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, help="users in each system (default 1,000,000; "
                    "10,000 with --quick)")
    ap.add_argument("--seconds", type=float, help="length of each load run (default 5)")
    ap.add_argument("--reps", type=int, help="runs per figure, the median is kept (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="10,000 users, 1 s runs, 1 repetition, docs left alone")
    ap.add_argument("--only", nargs="+", choices=["netinfod", "ypserv", "slapd", "ninull"],
                    help="measure only these servers")
    ap.add_argument("--workdir", help="keep the populations and logs here (default: a "
                    "temporary directory, removed at the end)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--general", action="store_true",
                    help="also serve the same domain with netinfod --no-fast-path "
                         "(netinfod-general): the short path's gain in the same run")
    ap.add_argument("--workers", type=int, metavar="N",
                    help="also serve the same domain with netinfod --read-workers N "
                         "(netinfod-wN, issue 20 item 3): reads from N+1 processes")
    ap.add_argument("--ldap", action="store_true",
                    help="also serve the same domain through netinfod's LDAP door "
                         "(netinfod-ldap) and compare it with slapd: equality searches "
                         "(uid=NAME), nslcd's filter, simple binds over LDAPS (issue 22)")
    ap.add_argument("--no-docs", action="store_true",
                    help="do not rewrite docs/benchmarks.md's peer section")
    ap.add_argument("--no-targets", action="store_true",
                    help="measure the peers only, not the other targets of issue 10 "
                         "(bench/targets.py; skipped with --quick)")
    ap.add_argument("--from-json", metavar="FILE",
                    help="measure nothing: rewrite the docs section from a --json file")
    args = ap.parse_args()
    if args.from_json:
        results, m = from_json(args.from_json)
        sub = subsection(results, m)
        print(sub)
        write_docs(sub, m["users"], m["reps"])
        if results.get("targets"):
            write_targets(results, m)
        if results.get("netinfod-ldap"):
            write_docs(ldap_subsection(results, m), m["users"], m["reps"], LDAP_SECTION,
                       LDAP_INTRO)
        return 0
    args.users = args.users or (10_000 if args.quick else 1_000_000)
    args.seconds = args.seconds or (1.0 if args.quick else 5.0)
    args.reps = args.reps or (1 if args.quick else 3)
    if os.geteuid() != 0:
        print("run.py: needs root (network namespace, rpcbind, ypserv)", file=sys.stderr)
        return 2
    only = set(args.only or ("netinfod", "ypserv", "slapd", "ninull"))
    # slapd is needed only when it is measured (--only without it: none asked for)
    missing = [m for m in check_tools() if m != "slapd" or "slapd" in only]
    if missing:
        print("run.py: missing packages: " + " ".join(missing), file=sys.stderr)
        return 2
    keep = args.workdir is not None
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nibench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    ns = None
    try:
        with signals_raise():
            log(f"work directory {work}; building the clients")
            bins = build_clients(work)
            ns = Namespace()
            log(f"namespace {ns.name}")
            b = Bench(args, ns, work, bins)
            servers: list[Server] = []
            if "ninull" in only:
                servers.append(Server("ninull", PORTS["ninull"], args.users, bins["nilookup"],
                                      [], b.ninull(PORTS["ninull"]), 30))
            if "ypserv" in only:
                ypdir = work / f"yp-{args.users}"
                if not (ypdir / NIS_DOMAIN / "passwd.byname").exists():
                    t = time.monotonic()
                    build_nis(ypdir, args.users)
                    log(f"NIS map of {args.users:,} users: {time.monotonic() - t:.1f} s")
                b.start_rpcbind(ypdir)
                servers.append(Server("ypserv", PORTS["ypserv"], args.users, bins["ypload"],
                                      [NIS_DOMAIN, "passwd.byname"], b.ypserv(PORTS["ypserv"]),
                                      60))
            pw_hash, tls = "*", None
            if args.ldap:
                pw_hash, tls = bind_hash(), certificate(work)
            if "slapd" in only:
                ldir = work / f"ldap-{args.users}"
                if not (ldir / "done").exists():
                    shutil.rmtree(ldir, ignore_errors=True)
                    t = time.monotonic()
                    conf = build_ldap(ldir, args.users, pw_hash, tls)
                    (ldir / "done").touch()
                    log(f"LDAP database of {args.users:,} users: {time.monotonic() - t:.1f} s")
                else:
                    conf = ldir / "slapd.conf"
                ldaps = LDAP_PORTS["slapd-ldaps"] if args.ldap else None
                servers.append(Server("slapd", PORTS["slapd"], args.users, bins["ldapload"],
                                      [LDAP_USERS], b.slapd(conf, PORTS["slapd"], ldaps), 120))
                if args.ldap:
                    servers += ldap_aliases("slapd", PORTS["slapd"], ldaps or 0, args.users,
                                            bins)
            if "netinfod" in only:
                # Always rebuilt: the store's format belongs to the tree under test.
                for name, n in (("netinfod", args.users), ("netinfod-1k", P99_SMALL)):
                    d = work / name
                    shutil.rmtree(d, ignore_errors=True)
                    t = time.monotonic()
                    build_netinfo(d, n, pw_hash)
                    log(f"NetInfo domain of {n:,} users: {time.monotonic() - t:.1f} s")
                    servers.append(Server(name, PORTS[name], n, bins["nilookup"], [],
                                          b.netinfod(d, PORTS[name]),
                                          120 + 900 * n / 1_000_000,
                                          (1,) if name == "netinfod-1k" else CLIENTS,
                                          warm=index_ready(b, name)))
                if args.ldap:
                    # the same domain through netinfod's LDAP door (issue 22)
                    d = work / "netinfod-ldap"
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.copytree(work / "netinfod", d)
                    assert tls is not None
                    door = ("--ldap", f"127.0.0.1:{LDAP_PORTS['netinfod']}",
                            "--ldaps", f"127.0.0.1:{LDAP_PORTS['netinfod-ldaps']}",
                            "--ldap-cert", str(tls[0]), "--ldap-key", str(tls[1]),
                            "--ldap-base", LDAP_SUFFIX)
                    servers.append(Server("netinfod-ldap", LDAP_PORTS["netinfod"], args.users,
                                          bins["ldapload"], [LDAP_USERS],
                                          b.netinfod(d, PORTS["netinfod-ldap"], door),
                                          120 + 900 * args.users / 1_000_000, LDAP_CLIENTS,
                                          # the users' entries in memory (residents)
                                          warm=(b.netinfod_log(PORTS["netinfod-ldap"]),
                                                "LDAP: users 0 kept in memory")))
                    servers += ldap_aliases("netinfod-ldap", LDAP_PORTS["netinfod"],
                                            LDAP_PORTS["netinfod-ldaps"], args.users, bins)
                if args.general:
                    # the same domain served by the general path alone (issue 20)
                    d = work / "netinfod-general"
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.copytree(work / "netinfod", d)
                    servers.append(Server("netinfod-general", PORTS["netinfod-general"],
                                          args.users, bins["nilookup"], [],
                                          b.netinfod(d, PORTS["netinfod-general"],
                                                     ("--no-fast-path",)),
                                          120 + 900 * args.users / 1_000_000,
                                          warm=index_ready(b, "netinfod-general")))
                if args.workers:
                    # the same domain, reads served by N more processes (issue 20 item 3)
                    name = f"netinfod-w{args.workers}"
                    d = work / name
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.copytree(work / "netinfod", d)
                    servers.append(Server(name, PORTS["netinfod-w"], args.users,
                                          bins["nilookup"], [],
                                          b.netinfod(d, PORTS["netinfod-w"],
                                                     ("--read-workers", str(args.workers))),
                                          120 + 900 * args.users / 1_000_000,
                                          warm=index_ready(b, "netinfod-w")))
            b.start_all(servers)
            b.load_all(servers)
            for s in servers:
                results[s.name] = s.results
                if s.alias_of is None:
                    ns.stop(s.proc, timeout=120)
                if s.name == "slapd":
                    results["ldclt"] = b.ldclt(s.port, s)
            if b.rpcbind is not None:
                ns.stop(b.rpcbind)
            ns.close()
            ns = None
            if not (args.quick or args.no_targets):
                results["targets"] = targets.run_all(work / "targets", args.users, log)
    finally:
        if ns is not None:
            ns.close()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    m = machine(args)
    section = subsection(results, m)
    print()
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": m, "results": results}, indent=1)
                                   + "\n")
    if results.get("targets"):
        print("\n".join(targets_section(results, m)))
    if args.ldap:
        ldap_sub = ldap_subsection(results, m)
        print(ldap_sub)
        if not (args.quick or args.no_docs):
            write_docs(ldap_sub, args.users, args.reps, LDAP_SECTION, LDAP_INTRO)
            log(f"wrote the LDAP section of {DOCS}")
    if not (args.quick or args.no_docs or args.only):
        write_docs(section, args.users, args.reps)
        log(f"wrote the peer section of {DOCS}")
        if results.get("targets"):
            write_targets(results, m)
            log(f"wrote the targets section of {DOCS}")
    return 0


# -- the LDAP door against slapd (--ldap; issue 22 "Measure") -----------------------------------

#: the LDAP servers' loads: issue 22 asks for 1 and 4 clients
LDAP_CLIENTS = (1, 4)


def certificate(work: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (both servers' LDAPS)."""
    cert, key = work / "ldap-cert.pem", work / "ldap-key.pem"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True)
    os.chmod(key, 0o644)   # slapd may read it as another user
    return cert, key


def index_ready(b: Bench, name: str) -> tuple[Path, str]:
    """netinfod *name* is warm once its log says its resident LOOKUP index of /users'
    names is built (a few hundred LOOKUPs the store answers ask for it, and a thread
    builds it: 7–30 s at 1,000,000 users on 2 cores, during which the figures were
    taken before): slapd's and ypserv's indexes are built before their runs too
    (slapadd, makedbm)."""
    return b.netinfod_log(PORTS[name]), INDEX_READY


def ldap_aliases(parent: str, port: int, ldaps: int, users: int,
                 bins: dict[str, Path]) -> list[Server]:
    """*parent* asked nslcd's way, and bound to over LDAPS (its TLS session made once a
    connection and reused by every bind), as servers of their own sharing its process."""
    return [
        Server(f"{parent}-nslcd", port, users, bins["ldapload"], [LDAP_USERS, NSLCD_FILTER],
               lambda: None, 0, LDAP_CLIENTS, alias_of=parent),   # type: ignore[arg-type]
        Server(f"{parent}-bind", ldaps, min(users, BIND_USERS), bins["ldapbind"],
               [LDAP_USERS, BIND_PASSWORD], lambda: None, 0, LDAP_CLIENTS,   # type: ignore
               alias_of=parent),
    ]


LDAP_SECTION = "## The LDAP front door against slapd — `python3 bench/run.py --ldap`"
LDAP_INTRO = """\
Issue 22's measure: netinfod's LDAP door (`netinfod --ldap`, the same domain as the
peers' netinfod column, its base given as `--ldap-base dc=bench,dc=test`) against slapd
(mdb, `uid` indexed, the same users loaded by `slapadd -q`), in the same run of
`bench/run.py --ldap`, by the same C client over libldap (`bench/peers/ldapload.c`: a
one-level search under `ou=users` returning every attribute, anonymous, one search in
flight per connection, random users), 1 and 4 clients (threads, one connection each).
"Equality" is the filter `(uid=NAME)`; "nslcd" is nslcd's
`(&(objectClass=posixAccount)(uid=NAME))`. Binds: `bench/peers/ldapbind.c` over LDAPS,
each connection's TLS session made once and reused for every bind (simple bind as
`uid=NAME,ou=users,...` among 1,000 users holding the same SHA-512 crypt string, the
scheme nipasswd writes; slapd checks it as `{CRYPT}`): what a login through SSSD or nslcd
costs a server once connected. Everything runs in the peers' network namespace.
"""


def ldap_table(results: dict, users: int) -> list[str]:
    rows = [f"| measure ({users:,} users) | netinfod LDAP door | slapd | ratio | "
            "issue target | verdict |", "|---|---|---|---|---|---|"]
    for what, suffix, target in (("equality searches/s", "", True),
                                 ("nslcd's searches/s", "-nslcd", True),
                                 ("simple binds/s over LDAPS, session reused", "-bind",
                                  False)):
        ni, ld = results.get("netinfod-ldap" + suffix), results.get("slapd" + suffix)
        for k in LDAP_CLIENTS:
            if not (ni and ld and k in ni["load"] and k in ld["load"]):
                continue
            ratio = rate(ni, k) / rate(ld, k)
            v = f"{verdict(ratio >= 1.0)}" if target else "(reported)"
            rows.append(f"| {what}, {k} client{'s' if k > 1 else ''} | "
                        f"{fmt_n(rate(ni, k))} | {fmt_n(rate(ld, k))} | {ratio:.2f}× | "
                        f"{'≥ 1.0× slapd' if target else 'report'} | {v} |")
        if ni and ld and 1 in ni["load"] and 1 in ld["load"]:
            rows.append(f"| {what.split('/')[0]}: p99 µs, 1 client | {fmt_n(p99(ni))} | "
                        f"{fmt_n(p99(ld))} | – | – | – |")
        if ni and ld and 4 in ni["load"] and 4 in ld["load"]:
            cpu = [med([x["server_cpu_us_per_call"] for x in r["load"][4]]) for r in (ni, ld)]
            rows.append(f"| {what.split('/')[0]}: server CPU µs per call, 4 clients | "
                        f"{cpu[0]:,.0f} | {cpu[1]:,.0f} | – | – | – |")
    return rows


def ldap_subsection(results: dict, m: dict) -> str:
    lines = [f"### {m['users']:,} users", "",
             f"Measured {m['date']} at commit {m['commit']}: {m['nproc']} cores, Python "
             f"{m['python']}; medians of {m['reps']} runs of {m['seconds']:g} s; load "
             f"average at the end {', '.join(f'{x:.1f}' for x in m['loadavg_at_end'])} "
             "(other work shares the machine).", "", *ldap_table(results, m["users"])]
    return "\n".join(line if line.startswith("|") else textwrap.fill(line, 92)
                     for line in lines) + "\n"


TARGETS_SECTION = "## Issue 10's targets — `python3 bench/run.py`"
TARGETS_INTRO = """\
Every target of issue 10 with what one run of `bench/run.py` measured: the peer
figures above (same run) and the scripts that `bench/targets.py` runs after them, one
at a time on this machine (see each script's docstring for how it measures).
"""


def targets_section(results: dict, m: dict) -> list[str]:
    return [f"### {m['users']:,} users", "",
            f"Measured {m['date']} at commit {m['commit']} ({m['nproc']} cores, Python "
            f"{m['python']}, SQLite {m['sqlite']}).", "",
            *targets.table(results, results["targets"], rate)]


def write_targets(results: dict, m: dict) -> None:
    write_docs("\n".join(targets_section(results, m)) + "\n", m["users"], m["reps"],
               TARGETS_SECTION, TARGETS_INTRO)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:  # the namespace and the servers are gone already
        print(f"run.py: interrupted ({e or 'SIGINT'}); cleaned up", file=sys.stderr)
        sys.exit(130)
