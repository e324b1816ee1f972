"""``nidump ldif`` through a real OpenLDAP (issue 22 "Tests": "an LDIF round trip through
a real slapadd into a scratch slapd answering ldapsearch for every user and group"), and
back: what that slapd exports (``slapcat``, ``ldapsearch -LLL``) read by ``niload ldif``.

The slapd is a scratch one: its own slapd.conf in a temporary directory (OpenLDAP's core,
cosine, inetorgperson, nis and misc schemas, plus ``nidump ldif --schema``), an mdb
database there, listening on a loopback port; never the machine's slapd or its
/etc/ldap/slapd.d. Skips without slapd (``apt-get install slapd``, with a policy-rc.d
that keeps its service from starting: .ci/run)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netinfo.client.raw import RawNode, raw_from_text

from .conftest import free_port, tool_process, wait_listening
from .test_ldif import _domain, _fill, _tool

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SLAPCAT = "/usr/sbin/slapcat"
SCHEMA_DIR = Path("/etc/ldap/schema")

pytestmark = [
    pytest.mark.skipif(not (os.access(SLAPD, os.X_OK) and os.access(SLAPADD, os.X_OK)),
                       reason="slapd not installed (apt-get install slapd; .ci/run)"),
    pytest.mark.skipif(shutil.which("ldapsearch") is None,
                       reason="ldap-utils not installed (apt-get install ldap-utils)"),
]

BASE = "dc=example,dc=com"

CONF = """\
{includes}
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "{base}"
rootdn "cn=admin,{base}"
directory {d}/db
maxsize 104857600
index objectClass eq
index uid,memberUid,cn eq
"""


class Slapd:
    """A scratch slapd: a configuration and an mdb database of its own in *d*."""

    def __init__(self, d: Path) -> None:
        self.d = d
        (d / "db").mkdir()
        from netinfo.server.ldif import SLAPD_SCHEMAS
        (d / "netinfo.schema").write_text(_tool("nidump", "ldif", "--schema").stdout)
        includes = [f"include {SCHEMA_DIR}/{name}.schema" for name in SLAPD_SCHEMAS]
        includes.append(f"include {d}/netinfo.schema")
        self.conf = d / "slapd.conf"
        self.conf.write_text(CONF.format(includes="\n".join(includes), d=d, base=BASE))
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        empty = d / "ldap.conf"
        empty.write_text("")
        self.env = dict(os.environ, LDAPCONF=str(empty), LDAPRC="no-such-ldaprc")

    def slapadd(self, ldif: str) -> subprocess.CompletedProcess[str]:
        (self.d / "in.ldif").write_text(ldif)
        return subprocess.run([SLAPADD, "-f", str(self.conf), "-q", "-l",
                               str(self.d / "in.ldif")], capture_output=True, text=True,
                              timeout=120)

    def slapcat(self) -> str:
        p = subprocess.run([SLAPCAT, "-f", str(self.conf), "-o", "ldif-wrap=no"],
                           capture_output=True, text=True, timeout=120, check=True)
        return p.stdout

    def start(self) -> None:
        # -d 0: in the foreground, logging nothing; as root it stays root (no -u: the
        # files are ours)
        self.proc = subprocess.Popen([SLAPD, "-d", "0", "-f", str(self.conf), "-h",
                                      self.url + "/"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        wait_listening(self.proc, self.port, what="slapd")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def search(self, *args: str) -> str:
        p = subprocess.run(["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.url,
                            "-b", BASE, *args], capture_output=True, text=True,
                           env=self.env, timeout=60)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout


@pytest.fixture
def slapd(tmp_path: Path):
    s = Slapd(tmp_path)
    yield s
    s.stop()


def _names(dom: str, fmt: str) -> list[str]:
    return [line.split(":")[0] for line in _tool("nidump", fmt, dom).stdout.splitlines()
            if line and not line.startswith("#")]


def _tables(dom: str) -> dict[str, dict[str, list[tuple[str, tuple[str, ...]]]]]:
    """Each top-level directory as {child's first name: its properties, sorted}: what
    LDAP keeps (it gives attributes no order). One ``nidump -r /``."""
    def name(node: RawNode) -> str:
        return next((vs[0] for k, vs in node.props if k == "name" and vs), "")
    root = raw_from_text(_tool("nidump", "-r", "/", dom).stdout)
    return {"/" + name(top): {name(kid): sorted((k, tuple(vs)) for k, vs in kid.props)
                              for kid in top.children} for top in root.children}


def test_slapadd_round_trip(netinfod, slapd: Slapd) -> None:
    """``nidump ldif --base`` loads into slapd with ``slapadd`` (its schema checks on),
    and ``ldapsearch`` there answers every user by ``(uid=NAME)`` and every group by
    ``(cn=NAME)`` with the numbers and members NetInfo holds."""
    src = netinfod("src", "-m", "--populate")
    dom = _domain(src)
    _fill(dom)
    ldif = _tool("nidump", "ldif", "--base", BASE, dom).stdout
    p = slapd.slapadd(ldif)
    assert p.returncode == 0, p.stderr
    slapd.start()
    users = _names(dom, "passwd")
    groups = _names(dom, "group")
    assert len(users) >= 6 and len(groups) >= 6
    for line in _tool("nidump", "passwd", dom).stdout.splitlines():
        name, _, uid, gid, *_rest, home, _shell = line.split(":")
        out = slapd.search(f"(uid={name})", "uidNumber", "gidNumber", "homeDirectory")
        assert f"dn: uid={name},ou=users,{BASE}" in out or "dn:: " in out, (name, out)
        assert f"uidNumber: {uid}\n" in out and f"gidNumber: {gid}\n" in out, (name, out)
        assert f"homeDirectory: {home}\n" in out, (name, out)
    for line in _tool("nidump", "group", dom).stdout.splitlines():
        name, _, gid, members = line.split(":")
        out = slapd.search(f"(&(objectClass=posixGroup)(cn={name}))", "gidNumber",
                           "memberUid")
        assert f"gidNumber: {gid}\n" in out, (name, out)
        assert sorted(re.findall(r"^memberUid: (.*)$", out, re.M)) == \
            sorted(m for m in members.split(",") if m), (name, out)
    # the other tables are there too, by their RFC 2307 classes
    assert "ipServicePort: 21" in slapd.search("(&(objectClass=ipService)(cn=ftp))")
    assert "ipHostNumber: 10.0.0.1" in slapd.search("(&(objectClass=ipHost)(cn=a1))")


def test_openldap_export_read_back(netinfod, slapd: Slapd) -> None:
    """What the scratch slapd exports, by ``slapcat`` (operational attributes and all)
    and by ``ldapsearch -LLL`` (folded lines, its own attribute order), ``niload ldif``
    reads into a fresh domain: every directory has the properties it had (in LDAP's
    order, which has none to keep)."""
    dom = _domain(netinfod("src", "-m", "--populate"))
    _fill(dom)
    assert slapd.slapadd(_tool("nidump", "ldif", "--base", BASE, dom).stdout).returncode == 0
    cat = slapd.slapcat()
    assert "entryUUID: " in cat
    slapd.start()
    p = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", slapd.url, "-b", BASE, "*"],
                       capture_output=True, text=True, env=slapd.env, timeout=60, check=True)
    exported = p.stdout
    for i, text in enumerate((cat, exported)):
        copy = _domain(netinfod(f"copy{i}", "-m", "--populate"))
        p = tool_process("niload", "ldif", copy, input=text)
        assert p.returncode == 0, p.stderr
        assert "left out" not in p.stderr, p.stderr
        mine, theirs = _tables(dom), _tables(copy)
        for table in ("/users", "/groups", "/machines", "/services", "/protocols", "/rpcs",
                      "/networks", "/aliases", "/mounts", "/printers"):
            want, got = mine[table], theirs[table]
            if table == "/machines":   # each domain's own host entry serves itself
                want = {k: v for k, v in want.items() if not any(p[0] == "serves" for p in v)}
                got = {k: v for k, v in got.items() if k in want}
            assert got == want, table
        assert _tool("nidump", "passwd", copy).stdout == _tool("nidump", "passwd", dom).stdout
