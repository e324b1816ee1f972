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
import subprocess
import tempfile
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
    """One scratch cluster; :meth:`url` gives a store URL of a fresh domain each time."""

    def __init__(self) -> None:
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
                 f"-c listen_addresses='' -k {self.base} -c max_connections=200", "start")
        self.running = True

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
