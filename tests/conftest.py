"""Shared fixtures: byte helpers, a real netinfod subprocess on loopback.

The suite is hermetic: it ignores the caller's ``NETINFO_*`` settings (cleared for the
whole session in :func:`pytest_configure`, so every subprocess environment, built from
``os.environ``, is clean too), points clients at a portmapper port nothing serves unless
a test starts it, never broadcasts outside the namespaces it creates, resolves host names
from its own hosts file (``NETINFO_HOSTS``, tests/data/hosts: no DNS query ever), and runs as
root or as an ordinary user (where the servers it starts trust local callers, since nobody
else can bind the reserved port that makes a caller the superuser, spec §10.2).

The hermetic guard (tests/guard/sitecustomize.py) holds every test to that: in this process
and in every Python subprocess, a connect, send or name lookup that would reach beyond
loopback from the host's network namespace is refused and recorded, and the test during
which it happened fails, naming the destination and the process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .pgcluster import pg_cluster  # noqa: F401 - the scratch PostgreSQL cluster fixture

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
FIXTURES = Path(os.environ.get("NETINFO_FIXTURES", ROOT.parent / "shared" / "fixtures"))


#: Our own variable: where the shared fixtures are (kept; every other NETINFO_* is cleared).
KEEP_ENV = frozenset({"NETINFO_FIXTURES"})
#: The suite's hosts file: the only names the code under test can resolve (NETINFO_HOSTS).
HOSTS_FILE = Path(__file__).resolve().parent / "data" / "hosts"
#: Holds the guard as ``sitecustomize.py``; first on every subprocess's PYTHONPATH.
GUARD_DIR = Path(__file__).resolve().parent / "guard"
#: Root binds reserved ports and so is the superuser of the servers it starts; an ordinary
#: user's servers are started with --trust-local so that its tests can write.
ROOT_USER = os.geteuid() == 0
TRUST = () if ROOT_USER else ("--trust-local",)
#: For tests of the privilege rule itself through the suite's shared, trusting servers.
PRIVILEGE_RULE_NEEDS_ROOT = (
    "as an ordinary user the suite's servers trust every local caller (--trust-local), so an "
    "unprivileged caller cannot be told from the superuser; the rule itself is tested on "
    "strict servers (test_access, test_server)")
needs_privilege_rule = pytest.mark.skipif(not ROOT_USER, reason=PRIVILEGE_RULE_NEEDS_ROOT)
#: Held for the whole session: a TCP port bound but never listening, so free_port() never
#: hands it out and a call to it is refused at once (see pytest_configure).
_DEAD_PORT: socket.socket | None = None
#: The guard's log (a file every user may append to) and how much of it has been reported.
_GUARD: dict[str, object] = {"dir": None, "log": None, "seen": 0}


def pytest_configure(config) -> None:
    """Forget the caller's NETINFO_* environment; clients find no portmapper (a port nothing
    serves), never broadcast and resolve names only from the suite's hosts file, unless a
    test says otherwise; and the hermetic guard watches this process and its children."""
    global _DEAD_PORT
    for key in [k for k in os.environ if k.startswith("NETINFO_") and k not in KEEP_ENV]:
        del os.environ[key]
    _DEAD_PORT = socket.socket()
    _DEAD_PORT.bind(("127.0.0.1", 0))
    os.environ["NETINFO_PORTMAPPER"] = f"127.0.0.1:{_DEAD_PORT.getsockname()[1]}"
    os.environ["NETINFO_BROADCAST"] = "off"
    os.environ["NETINFO_HOSTS"] = str(HOSTS_FILE)
    _start_guard()


# -- the hermetic guard (tests/guard/sitecustomize.py) ----------------------------------------

def _guard_module():
    """The guard, as imported at start-up when this process already runs under it (a
    pytest started by a test), else loaded from its file."""
    here = (GUARD_DIR / "sitecustomize.py").resolve()
    mod = sys.modules.get("sitecustomize")
    if mod is not None and Path(getattr(mod, "__file__", "") or "").resolve() == here:
        return mod
    mod = sys.modules.get("_netinfo_test_guard")
    if mod is None:
        spec = importlib.util.spec_from_file_location("_netinfo_test_guard", here)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return mod


def _start_guard() -> None:
    guard = _guard_module()
    # a directory every user may enter (servers may run as another uid) holding a file
    # every user may append to; not in sticky /tmp itself (protected_regular)
    top = tempfile.mkdtemp(prefix="netinfo-guard.")
    os.chmod(top, 0o711)
    log = os.path.join(top, "violations")
    fd = os.open(log, os.O_CREAT | os.O_WRONLY, 0o666)
    os.fchmod(fd, 0o666)
    os.close(fd)
    host_ns = guard.netns()
    os.environ[guard.LOG_VAR] = log
    os.environ[guard.NETNS_VAR] = str(host_ns or "")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(GUARD_DIR), os.environ.get("PYTHONPATH", "")) if p)
    _GUARD.update(dir=top, log=log, seen=0)
    guard.install(log, host_ns)


def guard_violations() -> list[dict]:
    """What the guard refused since the last call (each: pid, argv, event, destination)."""
    log = _GUARD["log"]
    if not isinstance(log, str):
        return []
    with open(log, "rb") as f:
        f.seek(int(_GUARD["seen"]))  # type: ignore[call-overload]
        data = f.read()
    end = data.rfind(b"\n") + 1   # a line still being written waits for the next call
    _GUARD["seen"] = int(_GUARD["seen"]) + end  # type: ignore[call-overload]
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def _describe(found: list[dict]) -> str:
    lines = ["traffic beyond loopback (refused by the hermetic guard, tests/guard):"]
    for v in found:
        lines.append(f"  {v['event']} {v['destination']}  from pid {v['pid']}: "
                     f"{' '.join(v['argv'])[:200]}")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test fails when it, or a process it started, tried to reach beyond loopback
    during its set-up and call (then reported with the call) or its teardown."""
    outcome = yield
    if call.when == "setup":
        return
    found = guard_violations()
    if not found:
        return
    report = outcome.get_result()
    text = _describe(found)
    if report.failed:
        report.sections.append(("hermetic guard", text))
    else:
        report.outcome = "failed"
        report.longrepr = text


def pytest_sessionfinish(session, exitstatus) -> None:
    """Violations after the last test's teardown (module fixtures stopping) fail the run."""
    found = guard_violations()
    if found:
        text = _describe(found)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(text, red=True)
        else:
            sys.stderr.write(text + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config) -> None:
    top = _GUARD["dir"]
    if isinstance(top, str):
        shutil.rmtree(top, ignore_errors=True)
    _GUARD.update(dir=None, log=None, seen=0)


def hexbytes(text: str) -> bytes:
    """Spec-style hex words ("0000002a 00000003") to bytes."""
    return bytes.fromhex("".join(text.split()))


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP."""
    for _ in range(100):
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        return port
    raise RuntimeError("no free port")


def wait_listening(proc: subprocess.Popen, port: int, timeout: float = 30.0,
                   what: str = "the server") -> None:
    """Until something accepts TCP connections on 127.0.0.1:*port*; *proc* is killed and
    RuntimeError raised when nothing does within *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not listen")


def env_with_src() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Netinfod:
    """A real ``netinfod`` subprocess serving one tag on 127.0.0.1."""

    def __init__(self, directory: Path, tag: str, *extra: str, port: int | None = None,
                 strict: bool = False) -> None:
        self.directory = directory
        self.tag = tag
        # strict: the real privilege rule even for an ordinary user (no --trust-local)
        self.extra = extra if strict else (*TRUST, *extra)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> Netinfod:
        cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(self.directory),
               "--bind", "127.0.0.1", "--port", str(self.port), *self.extra, self.tag]
        # no terminal: a new domain's root stays locked, never a password prompt
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, env=env_with_src(), text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        said: list[str] = []   # what it said before it served: the reason if it did not
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"netinfod exited with {self.proc.wait()}: "
                                   + "".join(said[-10:]))
            if line.startswith(f"netinfod: serving {self.tag} "):
                return self
            said.append(line)
        raise RuntimeError("netinfod did not start: " + "".join(said[-10:]))

    def stop(self, sig: int | None = None) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        return rc


@pytest.fixture
def netinfod(tmp_path):
    """Start netinfod instances: ``netinfod(tag, *flags)``; all are stopped afterwards.
    ``strict=True``: no --trust-local for an ordinary user (tests of the privilege rule)."""
    started: list[Netinfod] = []

    def start(tag: str = "test", *extra: str, directory: Path | None = None,
              port: int | None = None, strict: bool = False) -> Netinfod:
        d = Netinfod(directory or tmp_path, tag, *extra, port=port, strict=strict).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


# -- netinfod on each engine: the end-to-end suites (issue 23) ----------------------------------

#: The engines the end-to-end suites run netinfod on: its default, a SQLite file in
#: ``--dir``, and PostgreSQL (``--store URL``, a domain of its own in the suite's scratch
#: cluster, tests/pgcluster.py; skipped with the reason where there is none). Chosen
#: tests only (the procedures, the tools that write and dump, replication, the crash
#: test): the store contract suites cover every engine at the storage level.
SERVED_ENGINES = ("sqlite", "postgresql")


class ServedEngine:
    """Where netinfod keeps a domain on one engine: :meth:`flags` for each domain."""

    def __init__(self, name: str, cluster=None) -> None:
        self.name = name
        self.cluster = cluster
        self._urls: dict[tuple[str, str], str] = {}

    def flags(self, tag: str, directory: Path | None = None) -> tuple[str, ...]:
        """netinfod's flags for domain *tag* (of *directory*): the same store each time."""
        if self.cluster is None:
            return ()
        key = (tag, str(directory))
        if key not in self._urls:
            self._urls[key] = self.cluster.url()
        return ("--store", self._urls[key])

    def cleanup(self) -> None:
        """Drop the PostgreSQL domains made (their servers stopped first)."""
        if self.cluster is None:
            return
        from netinfo.storage.postgres import PostgresCatalog, split_url
        catalog = PostgresCatalog(self.cluster.conninfo())
        for url in self._urls.values():
            catalog.destroy(split_url(url)[1])


@pytest.fixture(params=SERVED_ENGINES)
def served_engine(request):
    """Each of :data:`SERVED_ENGINES` in turn (:class:`ServedEngine`)."""
    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgresql" else None
    e = ServedEngine(request.param, cluster)
    yield e
    e.cleanup()


@pytest.fixture
def engine_netinfod(served_engine, netinfod):
    """:func:`netinfod` on each of :data:`SERVED_ENGINES`: ``engine_netinfod(tag,
    *flags)``; stopped before their domains are dropped."""
    def start(tag: str = "test", *extra: str, directory: Path | None = None,
              port: int | None = None, strict: bool = False) -> Netinfod:
        return netinfod(tag, *served_engine.flags(tag, directory), *extra,
                        directory=directory, port=port, strict=strict)
    return start


class Nibindd:
    """A real ``nibindd --init`` subprocess with its own embedded portmapper on a free
    loopback port. ``env`` is what tool subprocesses need (NETINFO_PORTMAPPER, no
    broadcasts, the source tree on PYTHONPATH)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.pmap_port = free_port()
        self.env = env_with_src()
        self.env["NETINFO_PORTMAPPER"] = f"127.0.0.1:{self.pmap_port}"
        self.env["NETINFO_BROADCAST"] = "off"
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 30.0, tags: tuple[str, ...] = ("local", "network")):
        import threading

        cmd = [sys.executable, "-m", "netinfo.cli.nibindd", "--dir", str(self.directory),
               "--portmapper", "embedded", "--bind", "127.0.0.1", *TRUST, *self.extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, env=self.env, text=True)
        ready = threading.Event()

        def drain(stream):
            for line in stream:
                self.log.append(line)
                if line.startswith("nibindd: serving"):
                    ready.set()
        threading.Thread(target=drain, args=(self.proc.stderr,), daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("nibindd did not start:\n" + "".join(self.log))
        try:
            self.wait_for(tags, timeout)
        except BaseException:
            self.stop()  # never leave a server behind
            raise
        return self

    def wait_for(self, tags, timeout: float = 30.0) -> None:
        """Until every tag in *tags* is registered (and local has bound its parent)."""
        import asyncio

        from netinfo.client import binding
        deadline = time.monotonic() + timeout

        async def registered():
            try:
                return {r.tag for r in await binding.listreg("127.0.0.1", timeout=1.0)}
            except Exception:
                return set()
        while time.monotonic() < deadline:
            if set(tags) <= asyncio.run(registered()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"tags {tags} not registered:\n" + "".join(self.log))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def nibindd(tmp_path, monkeypatch):
    """A served ``local`` domain bound to a ``network`` root on this host (``nibindd
    --init``); in-process clients and tool subprocesses find it through ``.env``."""
    nb = Nibindd(tmp_path / "netinfo", "--init")
    monkeypatch.setenv("NETINFO_PORTMAPPER", nb.env["NETINFO_PORTMAPPER"])
    monkeypatch.setenv("NETINFO_BROADCAST", "off")
    nb.start()
    yield nb
    nb.stop()


@contextlib.contextmanager
def served_domains(tmp_path_factory, name: str):
    """A module's shared ``nibindd --init`` (``.`` = local, ``/`` = the network root), with
    the environment set for in-process tools; stopped at the end."""
    d = Nibindd(tmp_path_factory.mktemp(name) / "netinfo", "--init")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETINFO_PORTMAPPER", d.env["NETINFO_PORTMAPPER"])
        mp.setenv("NETINFO_BROADCAST", "off")
        mp.delenv("NETINFO_PRIVILEGED", raising=False)
        d.start()
        try:
            yield d
        finally:
            d.stop()


# -- tools as real subprocesses ------------------------------------------------------------------

def tool_process(tool: str, *args: str, env: dict[str, str] | None = None,
                 input: str | bytes | None = None, timeout: float = 120, text: bool = True,
                 **kw) -> subprocess.CompletedProcess:
    """``python -m netinfo.cli.<tool> args`` as a real subprocess, its output captured.

    *env* defaults to :func:`env_with_src` (a served domain's ``.env`` points the tool at
    its portmapper). With no *input* the tool reads an empty standard input, never the
    runner's terminal. Further keywords go to :func:`subprocess.run` (``cwd``,
    ``start_new_session``)."""
    if input is None:
        kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", f"netinfo.cli.{tool}", *args],
                          env=env_with_src() if env is None else env, input=input,
                          capture_output=True, text=text, timeout=timeout, **kw)


@pytest.fixture
def run_tool():
    """:func:`tool_process`: ``run_tool("niutil", "-read", ".", "/", env=nb.env)``."""
    return tool_process


# -- bytes in, bytes out: a client and a Dispatcher in memory ------------------------------------

class Wire:
    """A real :class:`netinfo.server.netinfod.Dispatcher` serving *db*, reached by bytes alone: no
    socket, no process, no thread. :meth:`exchange` takes one call record and gives back
    the reply record (None: no reply, as for a BIND the server does not answer), made as
    a TCP connection makes it: writes committed after the call (``Database.batch``), a
    streamed reply (READALL, a big LIST or LISTALL) joined whole. :meth:`client` is a real
    :class:`netinfo.client.Client` whose connection writes into :meth:`exchange` and reads
    the record-marked replies (spec §1.3), so client and server encode and decode every
    byte as they do over TCP. Every exchange is kept in :attr:`records`.

    The caller is who the server takes the peer to be (spec §10.2): anonymous unless
    given (``server.Caller(..., superuser=True, user="root")``); a credential set with
    ``Client.set_password`` travels in the call, as on the wire."""

    def __init__(self, db, tag: str = "test", caller=None) -> None:
        from netinfo.server.netinfod import Dispatcher, ServerConfig
        from netinfo.storage.changes import Caller

        self.db = db
        self.dispatcher = Dispatcher(db, ServerConfig(tag, bind="127.0.0.1"), ["127.0.0.1"])
        self.tag = tag
        self.caller = caller if caller is not None else Caller("127.0.0.1", 40000)
        #: (call record, reply record or None), in order
        self.records: list[tuple[bytes, bytes | None]] = []

    def exchange(self, record: bytes, caller=None) -> bytes | None:
        """One call record in, its reply record out.

        :raises WireError: not an RPC call (a TCP server closes the connection)."""
        from netinfo.server.netinfod import ReplyStream

        disp = self.dispatcher
        with self.db.batch() as batch:   # committed after the call, as a TCP connection's
            disp.handle(record, caller or self.caller, udp=False, batch=batch)
        reply = batch.replies[0]   # a write's NI_NOSPACE when its commit failed
        if isinstance(reply, ReplyStream):
            stream = reply
            try:
                reply = stream.head + b"".join(stream.pieces)
            finally:
                stream.close()
        self.records.append((record, reply))
        return reply

    def client(self, caller=None):
        """A :class:`netinfo.client.Client` over this wire; call it in a running loop."""
        from netinfo.client.core import Client
        from netinfo.client.transport import RpcConnection

        conn = RpcConnection()
        conn.connection_made(_WireTransport(self, conn, caller or self.caller))
        return Client(conn, "127.0.0.1", 0, self.tag)


class _WireTransport:
    """The client side's transport: what it writes is unframed and answered through
    :meth:`Wire.exchange`; each reply comes back framed, on the next turn of the loop."""

    def __init__(self, wire: Wire, conn, caller) -> None:
        from netinfo.wire import rpc

        self.wire, self.conn, self.caller = wire, conn, caller
        self.reader = rpc.RecordReader()
        self.closing = False

    def write(self, data: bytes) -> None:
        import asyncio

        from netinfo.wire import rpc

        try:
            replies = [self.wire.exchange(rec, self.caller) for rec in self.reader.feed(data)]
        except Exception as e:   # as the server: the connection is dropped
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, e)
            self.closing = True
            return
        out = b"".join(rpc.frame(r) for r in replies if r is not None)
        if out:
            asyncio.get_running_loop().call_soon(self.conn.data_received, out)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.conn.connection_lost(None)

    abort = close

    def get_extra_info(self, name: str, default=None):
        return default


@pytest.fixture
def wire():
    """:class:`Wire` over a new master domain in memory (tag ``test``, this host
    ``localhost`` at 127.0.0.1); ``wire.db`` is its database. ``Wire(db)`` pairs a client
    with a database a test built itself."""
    from netinfo.server.database import Database
    from netinfo.server.templates import create_master
    from netinfo.storage import open_store

    db = Database(open_store("memory:"))
    create_master(db.service_for_tests(), "test", "localhost", ["127.0.0.1"])
    db.commit()
    try:
        yield Wire(db)
    finally:
        db.close()


# -- the storage engines the contract suites run against ----------------------------------------

#: Where each engine under test keeps its domains: a catalog location URL per engine
#: (``storage.open_catalog``), ``{tmp}`` standing for the test's temporary directory and
#: ``{name}`` for a name of its own. The store contract suites (test_storage, test_service,
#: test_changes, test_database, test_snapshot_streams) run once per entry. A new engine is
#: one more entry. ``{pg}`` stands for the database of the suite's scratch PostgreSQL
#: cluster (tests/pgcluster.py: made with initdb on a unix socket; those runs skip with
#: the reason where PostgreSQL or psycopg is missing); another server may be named
#: instead, e.g. NETINFO_TEST_STORES='postgresql://host/db'.
STORE_LOCATIONS = os.environ.get("NETINFO_TEST_STORES",
                                 "memory:{name} sqlite:{tmp} {pg}").split()


class EngineUnderTest:
    """One engine's catalog at a location of the test's own (emptied at the end)."""

    def __init__(self, template: str, tmp_path: Path, pg: str = "") -> None:
        import uuid

        from netinfo.storage import engine_of, open_catalog
        self.location = template.format(tmp=tmp_path, name=f"t{uuid.uuid4().hex}", pg=pg)
        self.scheme = engine_of(self.location)[0].scheme
        self.catalog = open_catalog(self.location)
        self._made: list[str] = []

    def url(self, tag: str = "test") -> str:
        """The store URL of a new domain *tag* (its room made in the catalog)."""
        self.catalog.create(tag)
        self._made.append(tag)
        return self.catalog.url(tag)

    def cleanup(self) -> None:
        for tag in {*self._made, *self.catalog.domains()}:
            self.catalog.destroy(tag)


def pg_location(request, template: str) -> str:
    """What ``{pg}`` stands for in *template*: the contract database of the suite's
    scratch PostgreSQL cluster (the test skips where there is none); "" otherwise."""
    if "{pg}" not in template:
        return ""
    from .pgcluster import CONTRACT_DATABASE
    return request.getfixturevalue("pg_cluster").conninfo(CONTRACT_DATABASE)


def scheme_id(template: str) -> str:
    return "postgresql" if template == "{pg}" else template.partition(":")[0]


@pytest.fixture(params=STORE_LOCATIONS, ids=scheme_id)
def store_engine(request, tmp_path):
    """Each engine of :data:`STORE_LOCATIONS` in turn (:class:`EngineUnderTest`)."""
    e = EngineUnderTest(request.param, tmp_path, pg_location(request, request.param))
    yield e
    e.cleanup()


@pytest.fixture
def store_url(store_engine) -> str:
    """The store URL of a new domain, once per engine of :data:`STORE_LOCATIONS`."""
    return store_engine.url()
