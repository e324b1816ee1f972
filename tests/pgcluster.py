"""A scratch PostgreSQL cluster for the PostgreSQL engine's tests (issue 23).

``initdb`` in a temporary directory, the server listening on a unix socket in that
directory only (``listen_addresses=''``: no TCP at all), trust authentication (only the
socket's directory admits anyone), no system cluster touched. Run as the user the tests
run as; as root it runs as ``nobody`` (PostgreSQL refuses to run as root), through
``setpriv``. Skips, with the reason, when PostgreSQL's binaries or psycopg are missing.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

#: the cluster's superuser and database
USER = "ni"
DATABASE = "netinfo"
#: the database of the store contract suites (conftest's store_engine): a catalog of its
#: own, which those tests empty after each one
CONTRACT_DATABASE = "contract"


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else the newest of Debian's versions."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return versions[-1] if versions else None


def missing() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'opennetinfo[postgres]')"
    if pg_bin("initdb") is None or pg_bin("pg_ctl") is None:
        return "PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "as root the cluster runs as nobody, through setpriv, which is missing"
    return None


class Cluster:
    """One scratch cluster; :meth:`url` gives a store URL of a fresh domain each time.
    *settings* are server settings given at every start (``-c name=value``)."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(settings or {})
        self.base = tempfile.mkdtemp(prefix="ni-pg-", dir="/tmp")
        self.data = os.path.join(self.base, "data")
        self._as: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.base, nobody.pw_uid, nobody.pw_gid)
            self._as = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                        "--clear-groups"]
        os.chmod(self.base, 0o755)
        self._domains = itertools.count(1)
        self.running = False

    def run(self, *cmd: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": self.base}
        subprocess.run([*self._as, *cmd], check=True, env=env, cwd=self.base,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def init(self) -> None:
        self.run(pg_bin("initdb") or "initdb", "-D", self.data, "-U", USER, "-A", "trust",
                 "-E", "UTF8", "--locale=C", "--no-sync")
        self.start()
        import psycopg
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DATABASE}")
            c.execute(f"CREATE DATABASE {CONTRACT_DATABASE}")

    def start(self) -> None:
        self.run(pg_bin("pg_ctl") or "pg_ctl", "-D", self.data, "-l",
                 os.path.join(self.base, "log"), "-w", "-t", "60", "-o",
                 f"-c listen_addresses='' -k {self.base} -c max_connections=200"
                 + "".join(f" -c {k}={v}" for k, v in self.settings.items()), "start")
        self.running = True

    def pids(self) -> list[int]:
        """The postmaster's process id, then its children's."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            top = int(f.readline())
        kids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == top:
                    kids.append(int(entry))
        return [top, *kids]

    def kill(self) -> None:
        """SIGKILL the server and every process of it at once (its machine died); its
        socket file stays, refusing connections."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:    # gone (not waited for: they are not our children)
            for _ in range(200):
                if not os.path.exists(f"/proc/{pid}") or \
                        open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
                time.sleep(0.01)
        self.running = False

    def standby(self, settings: dict[str, str] | None = None) -> Cluster:
        """A streaming standby of this cluster, started: ``pg_basebackup -R`` over this
        cluster's socket (replication connections over the unix socket: no TCP)."""
        other = Cluster(settings)
        other.run(pg_bin("pg_basebackup") or "pg_basebackup", "-D", other.data, "-R",
                  "-X", "stream", "-c", "fast", "-h", self.base, "-U", USER, "--no-sync")
        other.start()
        return other

    def promote(self) -> None:
        """End recovery: the standby becomes a primary (``pg_ctl promote``, waited for)."""
        self.run(pg_bin("pg_ctl") or "pg_ctl", "-D", self.data, "-w", "-t", "60", "promote")

    def sql(self, query: str, db: str = "postgres") -> list[tuple]:
        import psycopg
        with psycopg.connect(self.conninfo(db), autocommit=True) as c:
            cur = c.execute(query)
            return cur.fetchall() if cur.description else []

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self.run(pg_bin("pg_ctl") or "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")
            self.running = False

    def conninfo(self, db: str = DATABASE) -> str:
        return f"postgresql://{USER}@/{db}?host={quote(self.base, safe='')}"

    def url(self, domain: str | None = None) -> str:
        """A store URL; a domain of its own unless *domain* is given."""
        return f"{self.conninfo()}&domain={domain or f't{next(self._domains)}'}"

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    why = missing()
    if why is not None:
        pytest.skip(why)
    cluster = Cluster()
    try:
        cluster.init()
    except (subprocess.CalledProcessError, OSError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        cluster.remove()
        pytest.fail(f"cannot make a scratch PostgreSQL cluster: {exc} "
                    f"{err.decode(errors='replace')[-500:]}")
    yield cluster
    cluster.remove()


def replicated_pair(synchronous: bool) -> tuple[Cluster, Cluster]:
    """A new primary and its streaming standby, each on a unix socket of its own. With
    *synchronous*, the primary's commits wait for the standby's flush
    (``synchronous_standby_names = '*'``, set once the standby streams, and on the
    primary alone: promoted, the standby does not wait for a standby of its own)."""
    why = missing()
    if why is not None:
        pytest.skip(why)
    primary = Cluster()
    standby = None
    try:
        primary.init()
        standby = primary.standby()
        want = "sync" if synchronous else "async"
        if synchronous:
            primary.sql("ALTER SYSTEM SET synchronous_standby_names = '*'")
            primary.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 60
        while primary.sql("SELECT state, sync_state FROM pg_stat_replication") != \
                [("streaming", want)]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby does not stream ({want})")
            time.sleep(0.1)
    except BaseException:
        if standby is not None:
            standby.remove()
        primary.remove()
        raise
    return primary, standby


def multi_host_url(*clusters: Cluster, domain: str) -> str:
    """A store URL naming every cluster's socket, for the one that accepts writes
    (libpq tries them in order: ``target_session_attrs=read-write``)."""
    hosts = ",".join(quote(c.base, safe="") for c in clusters)
    return (f"postgresql://{USER}@/{DATABASE}?host={hosts}"
            f"&target_session_attrs=read-write&domain={domain}")
