"""Interop: the Python netinfod against an independent C client.

The client is built from our own ``interop/netinfo_prot.x`` with ``rpcgen -N``
and libtirpc (``interop/niclient.c``); it runs a scripted scenario that calls
all 29 NETINFO procedures over TCP (plus PING/STATISTICS/BIND over UDP) and
prints one parseable line per call (format documented in niclient.c).  The
C client itself flags results that contradict the protocol specification
(``UNEXPECTED`` lines, non-zero exit); the tests below additionally pin down
values that depend on the server's default configuration.

If ``rpcinfo`` (Debian package rpcbind) is installed, it is used as a second
independent peer for the NULL procedure over TCP and UDP.

Requirements: rpcgen (rpcsvc-proto), gcc, /usr/include/tirpc (libtirpc-dev).
The superuser scenario needs root, because a reserved source port is what
makes a local caller the NetInfo superuser (spec §10.2).

Run:  pytest -m interop tests/interop/test_rpcgen.py -v
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
INTEROP = REPO / "interop"
TIRPC_INCLUDE = Path("/usr/include/tirpc")

NI_PROG = 200100000
NI_VERS = 2

# ni_status values (spec §3)
NI_OK, NI_BADID, NI_STALE, NI_PERM, NI_NODIR = 0, 1, 2, 4, 5
NI_NOPROP, NI_NONAME, NI_NOTEMPTY, NI_UNRELATED, NI_NETROOT = 6, 7, 8, 9, 11

AUTH_TOOWEAK = 5

ALL_PROCEDURES = [
    "PING", "STATISTICS", "ROOT", "SELF", "PARENT", "CREATE", "DESTROY", "READ",
    "WRITE", "CHILDREN", "LOOKUP", "LIST", "CREATEPROP", "DESTROYPROP",
    "READPROP", "WRITEPROP", "RENAMEPROP", "LISTPROPS", "CREATENAME",
    "DESTROYNAME", "READNAME", "WRITENAME", "RPARENT", "LISTALL", "BIND",
    "READALL", "CRASHED", "RESYNC", "LOOKUPREAD",
]

READY_RE = re.compile(r"netinfod: serving (\S+) udp=(\d+) tcp=(\d+)")
SERVER_START_TIMEOUT = 30.0
CLIENT_TIMEOUT = 180.0


# --------------------------------------------------------------------------
# Building the C client
# --------------------------------------------------------------------------

def _require_toolchain() -> None:
    missing = [tool for tool in ("rpcgen", "gcc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (need packages rpcsvc-proto and gcc)")
    if not TIRPC_INCLUDE.is_dir():
        pytest.skip(f"{TIRPC_INCLUDE} missing (need package libtirpc-dev)")


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _rpcgen(base: str, workdir: Path) -> None:
    """rpcgen -N writes next to its input: always run it inside workdir."""
    shutil.copy(INTEROP / f"{base}.x", workdir / f"{base}.x")
    _run(["rpcgen", "-N", "-h", "-o", f"{base}.h", f"{base}.x"], workdir)
    _run(["rpcgen", "-N", "-c", "-o", f"{base}_xdr.c", f"{base}.x"], workdir)
    _run(["rpcgen", "-N", "-l", "-o", f"{base}_clnt.c", f"{base}.x"], workdir)


@pytest.fixture(scope="module")
def niclient(tmp_path_factory) -> Path:
    _require_toolchain()
    work = tmp_path_factory.mktemp("rpcgen")
    _rpcgen("netinfo_prot", work)
    shutil.copy(INTEROP / "niclient.c", work / "niclient.c")
    _run(["gcc", "-O1", f"-I{TIRPC_INCLUDE}", "-I.", "-o", "niclient", "niclient.c",
          "netinfo_prot_clnt.c", "netinfo_prot_xdr.c", "-ltirpc"], work)
    return work / "niclient"


# --------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------

def _free_port() -> int:
    """A port number currently free on 127.0.0.1 for both TCP and UDP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    tag: str
    stderr_lines: list[str] = field(default_factory=list)

    def log(self, last: int = 40) -> str:
        return "".join(self.stderr_lines[-last:])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    dbdir = tmp_path_factory.mktemp("nidb")
    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(dbdir),
           "--bind", "127.0.0.1", "--port", str(port), "-m", "interop"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(dbdir))
    srv = Server(proc=proc, port=port, tag="interop")
    ready = threading.Event()

    def pump() -> None:  # keep draining stderr so the server never blocks on it
        assert proc.stderr is not None
        for line in proc.stderr:
            srv.stderr_lines.append(line)
            if READY_RE.search(line):
                ready.set()
        ready.set()  # EOF: the server exited

    threading.Thread(target=pump, daemon=True).start()
    try:
        ready.wait(SERVER_START_TIMEOUT)
        m = next((READY_RE.search(l) for l in srv.stderr_lines if READY_RE.search(l)), None)
        if m is None:
            state = "exited with %s" % proc.poll() if proc.poll() is not None else "timed out"
            pytest.fail(f"netinfod did not report readiness ({state}).\n"
                        f"command: {' '.join(cmd)}\nstderr:\n{srv.log()}")
        assert m.group(1) == "interop", m.group(0)
        assert int(m.group(2)) == port and int(m.group(3)) == port, m.group(0)
        yield srv
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# --------------------------------------------------------------------------
# Parsing the client's output
# --------------------------------------------------------------------------

def unescape(s: str) -> str:
    if s == '""':
        return ""
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def parse_namelist(s: str) -> list[str]:
    assert s.startswith("[") and s.endswith("]"), s
    body = s[1:-1]
    return [unescape(v) for v in body.split(",")] if body else []


def parse_proplist(s: str) -> list[tuple[str, list[str]]]:
    if not s:
        return []
    out = []
    for item in s.split(";"):
        name, _, values = item.partition(":")
        out.append((unescape(name), parse_namelist(values)))
    return out


def parse_id(s: str) -> tuple[int, int]:
    obj, inst = s.split(",")
    return int(obj), int(inst)


@dataclass
class Line:
    proc: str
    fields: dict[str, str]
    raw: str

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def get(self, key: str, default=None):
        return self.fields.get(key, default)

    def status(self) -> int:
        assert self.get("rpc") == "ok", self.raw
        return int(self["status"])


@dataclass
class Run:
    returncode: int
    lines: list[Line]
    stdout: str
    stderr: str
    server_log: str

    def step(self, step: str, proc: str | None = None) -> Line:
        found = [l for l in self.lines if l.get("step") == step and l.proc != "UNEXPECTED"
                 and (proc is None or l.proc == proc)]
        assert found, f"no output line for step {step}\n{self.context()}"
        return found[0]

    def all(self, proc: str) -> list[Line]:
        return [l for l in self.lines if l.proc == proc]

    def context(self) -> str:
        return (f"--- niclient exit {self.returncode}; stdout:\n{self.stdout}"
                f"--- niclient stderr:\n{self.stderr}--- server stderr (tail):\n{self.server_log}")


def run_client(niclient: Path, server: Server, *extra: str) -> Run:
    proc = subprocess.run([str(niclient), *extra, "127.0.0.1", str(server.port)],
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    lines = []
    for raw in proc.stdout.splitlines():
        parts = raw.split(" ")
        fields = {}
        for tok in parts[1:]:
            k, sep, v = tok.partition("=")
            if sep:
                fields.setdefault(k, v)
        lines.append(Line(parts[0], fields, raw))
    return Run(proc.returncode, lines, proc.stdout, proc.stderr, server.log())


def assert_clean(run: Run) -> None:
    unexpected = [l.raw for l in run.lines if l.proc == "UNEXPECTED"]
    assert not unexpected, "results contradicting the spec:\n" + "\n".join(unexpected) + \
        "\n" + run.context()
    assert run.lines and run.lines[-1].raw == "DONE failures=0", run.context()
    assert run.returncode == 0, run.context()


def check_common(run: Run) -> None:
    """Checks shared by the anonymous and the superuser scenario."""
    ctx = run.context()
    # PING over both transports (spec §4.4)
    assert run.step("ping_tcp")["rpc"] == "ok", ctx
    assert run.step("ping_udp")["rpc"] == "ok", ctx
    # Default UDP behaviour: only PING/BIND; others AUTH_ERROR/AUTH_TOOWEAK (§1.4)
    udp_stats = run.step("stats_udp")
    assert udp_stats["rpc"] == "RPC_AUTHERROR" and udp_stats["why"] == str(AUTH_TOOWEAK), \
        f"STATISTICS over UDP must be refused with AUTH_TOOWEAK by default: {udp_stats.raw}\n{ctx}"
    # STATISTICS: bare proplist, `checksum` first (§4.4, §15.9)
    stats = run.step("stats", "STATISTICS")
    assert stats["first"] == "checksum", ctx
    assert stats["checksum"].isdigit(), ctx
    statprops = [l for l in run.all("STATPROP") if l["step"] == "stats"]
    assert statprops and unescape(statprops[0]["name"]) == "checksum", ctx
    # ROOT / SELF / PARENT of the root (§4.4)
    root = run.step("root")
    assert root.status() == NI_OK and parse_id(root["id"])[0] == 0, ctx
    assert run.step("self_root").status() == NI_OK, ctx
    assert run.step("self_badid").status() == NI_BADID, ctx
    parent = run.step("parent_root")
    assert parent.status() == NI_OK and parent["parent"] == "0", ctx
    # RPARENT on a fresh master without ../ entries: NI_NETROOT (§4.4, §8.2)
    assert run.step("rparent").status() == NI_NETROOT, ctx
    # BIND of an unserved binding: SYSTEM_ERR (Apple) or no reply (NeXT) (§4.4)
    for step in ("bind_tcp", "bind_udp"):
        assert run.step(step)["rpc"] in ("RPC_SYSTEMERROR", "RPC_TIMEDOUT"), ctx
    # unknown procedures / versions (§4.1, RFC 5531)
    assert run.step("proc29")["rpc"] == "RPC_PROCUNAVAIL", ctx
    assert run.step("proc_huge")["rpc"] == "RPC_PROCUNAVAIL", ctx
    assert run.step("garbage_args")["rpc"] == "RPC_CANTDECODEARGS", ctx  # GARBAGE_ARGS
    assert run.step("otherprog")["rpc"] == "RPC_PROGUNAVAIL", ctx
    vers3 = run.step("vers3")
    assert (vers3["rpc"], vers3.get("low"), vers3.get("high")) == \
        ("RPC_PROGVERSMISMATCH", "2", "2"), ctx


def check_replication(run: Run, suffix: str) -> None:
    """READALL / CRASHED / RESYNC block (§4.4, §5.6, §9.4)."""
    ctx = run.context()
    stats = run.step(f"stats_{suffix}")
    walk = run.step(f"walk_{suffix}")
    full = run.step(f"readall_full_{suffix}")
    if suffix == "anon":
        # The whole database goes only to the superuser and the domain's clones.
        assert full.status() == NI_PERM, ctx
        assert run.step(f"readall_same_{suffix}").status() == NI_PERM, ctx
        assert run.step(f"crashed_{suffix}")["rpc"] == "ok", ctx
        assert run.step(f"resync_{suffix}").status() == NI_OK, ctx
        return
    assert full.status() == NI_OK, ctx
    assert full["objects"] == walk["dirs"], ctx
    assert full["order"] == "preorder", ctx
    assert full["checksum"] == stats["checksum"] == full["sum"], ctx
    # highest_id = largest object number + 1 (NeXT; spec §9.4, §15.7)
    assert int(full["highest_id"]) == int(walk["maxid"]) + 1, \
        f"READALL highest_id must be largest object number + 1: {full.raw}\n{ctx}"
    same = run.step(f"readall_same_{suffix}")
    assert same.status() == NI_OK, ctx
    assert (same["checksum"], same["highest_id"], same["objects"]) == ("0", "0", "0"), \
        f"READALL with the current checksum: want checksum 0, highest_id 0, no objects\n{ctx}"
    assert run.step(f"crashed_{suffix}")["rpc"] == "ok", ctx
    assert run.step(f"resync_{suffix}").status() == NI_OK, ctx


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_nibind_prot_compiles(tmp_path):
    """nibind_prot.x (program 200100001 v1) goes through rpcgen and gcc."""
    _require_toolchain()
    _rpcgen("netinfo_prot", tmp_path)
    _rpcgen("nibind_prot", tmp_path)
    for src in ("netinfo_prot_xdr.c", "netinfo_prot_clnt.c", "nibind_prot_xdr.c",
                "nibind_prot_clnt.c"):
        _run(["gcc", "-c", f"-I{TIRPC_INCLUDE}", "-I.", src], tmp_path)
    header = (tmp_path / "nibind_prot.h").read_text()
    assert "#define NIBIND_PROG 200100001" in header
    assert "nibind_getregister_1" in header and "nibind_bind_1" in header


@pytest.fixture(scope="module")
def anon_run(niclient, server) -> Run:
    return run_client(niclient, server, "-u")


@pytest.mark.skipif(os.geteuid() != 0, reason=(
    "as an ordinary user this client runs as the server's owner, so it is the server's "
    "superuser (issue 17); an anonymous caller needs another uid, which needs root"))
def test_anonymous_scenario(anon_run):
    """Ordinary source ports: reads work, writes are refused (§10.2-10.4)."""
    run = anon_run
    connect = run.all("CONNECT")
    assert connect and connect[0]["reserved"] == "0", run.context()
    assert int(connect[0]["sport"]) >= 1024, run.context()
    assert_clean(run)
    check_common(run)
    check_replication(run, "anon")
    ctx = run.context()
    assert run.step("create_anon").status() == NI_PERM, ctx
    assert run.step("create_anon_stale").status() == NI_STALE, ctx
    assert run.step("writeprop_anon").status() == NI_PERM, ctx


def test_fresh_master_layout(anon_run):
    """`netinfod -m TAG` creates master=<host>/TAG and /machines (§6.2, §7.4)."""
    run = anon_run
    ctx = run.context()
    props = dict(parse_proplist(run.step("read_root")["props"]))
    assert "master" in props, f"root has no `master` property\n{ctx}"
    assert len(props["master"]) == 1 and props["master"][0].endswith("/interop"), ctx
    assert run.step("lookup_machines").status() == NI_OK, \
        f"fresh master database has no /machines directory\n{ctx}"


def test_superuser_scenario(niclient, server):
    """All 29 procedures, writes included, from a reserved (root) source port."""
    if os.geteuid() != 0:
        pytest.skip("write scenario needs root: NetInfo's local superuser is a caller "
                    "from a reserved source port (spec §10.2), which only root can bind")
    run = run_client(niclient, server)
    ctx = run.context()
    connect = run.all("CONNECT")
    assert connect and connect[0]["reserved"] == "1" and int(connect[0]["sport"]) < 1024, ctx
    assert_clean(run)
    check_common(run)

    called = {l.proc for l in run.lines if l.get("rpc") is not None}
    missing = [p for p in ALL_PROCEDURES if p not in called]
    assert not missing, f"procedures never called: {missing}\n{ctx}"

    # creations: the parent's instance goes up by one each time (§4.4, §5.3)
    people = run.step("create_people")
    alice = run.step("create_alice")
    nameless = run.step("create_nameless")
    for l in (people, alice, nameless):
        assert l.status() == NI_OK, ctx
    people_obj = parse_id(people["child"])[0]
    alice_obj = parse_id(alice["child"])[0]
    nameless_obj = parse_id(nameless["child"])[0]
    assert len({0, people_obj, alice_obj, nameless_obj}) == 4, ctx
    assert parse_id(alice["parent"])[0] == people_obj, ctx

    # reads reflect the writes
    assert parse_proplist(run.step("read_alice_written")["props"]) == [
        ("name", ["alice"]), ("uid", ["501"]), ("shell", ["/bin/sh"])], ctx
    assert run.step("children_people")["children"] == f"{alice_obj},{nameless_obj}", ctx
    assert run.step("lookup_alice")["ids"] == str(alice_obj), ctx
    assert run.step("lookup_missing").status() == NI_NODIR, ctx
    # LIST: absent names for a child whose `name` has no values (§4.4 LIST, §5.5)
    assert run.step("list_people")["entries"] == f"{alice_obj}:[alice];{nameless_obj}:-", ctx
    # PARENT of a non-root directory; `where` positions (§4.4 CREATE, CREATEPROP)
    assert run.step("parent_alice")["parent"] == str(people_obj), ctx
    first_obj = parse_id(run.step("create_first")["child"])[0]
    assert run.step("children_where0")["children"] == \
        f"{first_obj},{alice_obj},{nameless_obj}", ctx
    assert parse_namelist(run.step("listprops_where1")["names"]) == \
        ["name", "inserted", "uid", "shell"], ctx
    # multi-fragment TCP records (§1.3): 1024-byte send buffer, ~5 KB call
    small = [l for l in connect if l.get("sendsz") == "1024"]
    assert small and small[0]["reserved"] == "1", ctx
    assert run.step("createprop_big").status() == NI_OK, ctx
    big = run.step("readprop_big")
    assert big.status() == NI_OK and big["match"] == "1" and big["nvalues"] == "48", ctx
    assert run.step("destroyprop_big").status() == NI_OK, ctx
    assert parse_namelist(run.step("listprops_alice")["names"]) == \
        ["name", "uid", "shell", "home"], ctx
    assert run.step("readname_alice")["name"] == "alias1", ctx
    assert run.step("writeprop_noprop").status() == NI_NOPROP, ctx
    assert run.step("writename_noname").status() == NI_NONAME, ctx
    assert run.step("destroyprop_noprop").status() == NI_NOPROP, ctx
    assert parse_proplist(run.step("read_alice_final")["props"]) == [
        ("name", ["alice"]), ("uid", ["501"]), ("shell", ["/bin/sh"])], ctx
    # LISTALL and LOOKUPREAD (id = the searched directory, §4.4)
    assert run.step("listall_people", "LISTALL")["count"] == "2", ctx
    lr = run.step("lookupread_alice")
    assert parse_id(lr["id"])[0] == people_obj, ctx
    assert run.step("lookupread_missing").status() == NI_NODIR, ctx

    # replication procedures, with and without the subtree
    check_replication(run, "populated")
    check_replication(run, "cleaned")
    assert int(run.step("readall_full_populated")["objects"]) == \
        int(run.step("readall_full_cleaned")["objects"]) + 3, ctx

    # optimistic concurrency and DESTROY checks (§4.3, §4.4 DESTROY, §5.3)
    for step in ("write_stale", "createprop_stale", "destroy_stale_child",
                 "destroy_stale_parent"):
        assert run.step(step).status() == NI_STALE, ctx
    assert run.step("destroy_notempty").status() == NI_NOTEMPTY, ctx
    assert run.step("destroy_unrelated").status() == NI_UNRELATED, ctx
    for step in ("destroy_alice", "destroy_nameless", "destroy_people"):
        assert run.step(step).status() == NI_OK, ctx
    assert run.step("self_destroyed").status() == NI_BADID, ctx


def test_rpcinfo_null_procedure(server):
    """rpcinfo (package rpcbind) pings program 200100000 v2 over TCP and UDP.

    The server is not registered with any portmapper, so the address is given
    directly.  Debian's rpcinfo 1.2.6 ignores ``-n PORT`` (it still connects to
    port 111), so the equivalent universal-address form ``-a h1.h2.h3.h4.p1.p2``
    is used; ``-n`` is tried as well and accepted when it works.
    """
    rpcinfo = shutil.which("rpcinfo") or next(
        (p for p in ("/usr/sbin/rpcinfo", "/sbin/rpcinfo") if os.access(p, os.X_OK)), None)
    if rpcinfo is None:
        pytest.skip("rpcinfo not installed (package rpcbind)")
    uaddr = f"127.0.0.1.{server.port >> 8}.{server.port & 0xFF}"

    def rpcinfo_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([rpcinfo, *args], capture_output=True, text=True, timeout=60)

    for netid in ("tcp", "udp"):
        p = rpcinfo_run("-a", uaddr, "-T", netid, str(NI_PROG), str(NI_VERS))
        assert p.returncode == 0 and "ready and waiting" in p.stdout, \
            f"rpcinfo -a {uaddr} -T {netid}: rc={p.returncode}\n{p.stdout}{p.stderr}"
        p = rpcinfo_run("-T", netid, "-n", str(server.port), "127.0.0.1",
                        str(NI_PROG), str(NI_VERS))
        if "ready and waiting" not in p.stdout:
            # only acceptable failure: rpcinfo went to the (absent) portmapper
            assert re.search(r"Connection refused|Unable to receive|rpcbind", p.stderr), \
                f"rpcinfo -T {netid} -n {server.port}: rc={p.returncode}\n{p.stdout}{p.stderr}"

    # version 3 does not exist: PROG_MISMATCH reporting versions 2..2
    p = rpcinfo_run("-a", uaddr, "-T", "tcp", str(NI_PROG), "3")
    assert p.returncode != 0, p.stdout
    assert "low version = 2, high version = 2" in p.stderr, p.stderr
