"""The LDAP front door checked by the real identity stacks (issue 22): Debian's nslcd
(with glibc's nss_ldap and pam_ldap from libnss-ldapd and libpam-ldapd) and SSSD
(sssd-ldap, nss_sss, pam_sss) reading a real netinfod over StartTLS, with a test CA and a
server certificate the test makes with openssl: ``getent passwd``, ``getent group``,
``id``, a login through PAM (pamtester) with the NetInfo password, a password change
through PAM (the password modify operation), and a user added with niutil seen by the
next lookup.

Everything runs in a test host the test makes (tests/netns.py): its own network and mount
namespaces, held by one process that the commands enter, so /etc/nsswitch.conf,
/etc/nslcd.conf, /etc/sssd, /etc/pam.d, /etc/hosts, /etc/resolv.conf, /etc/ssl/certs,
/run, /var/lib/sss and /var/log/sssd seen there are private: the machine's own are never
touched. The clients reach the server by name at the host's address (not loopback), so a
password bind without TLS would be refused (confidentialityRequired): StartTLS is real.
The configurations written here are the ones docs/linux-clients.md shows (checked).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .netns import HeldHost, Network, available, wait_until

pytestmark = pytest.mark.slow

TAG = "network"
BASE = "dc=network,dc=netinfo"
SERVER_NAME = "ldap.netinfo.test"
CA = "/etc/ssl/certs/netinfo-ca.pem"
LIBDIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
           "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "linux-clients.md"

# The configurations docs/linux-clients.md shows, word for word (checked below).
NSLCD_CONF = f"""uid nslcd
gid nslcd
uri ldap://{SERVER_NAME}/
base {BASE}
ssl start_tls
tls_reqcert demand
tls_cacertfile {CA}
"""

SSSD_CONF = f"""[sssd]
services = nss, pam
domains = netinfo

[domain/netinfo]
id_provider = ldap
auth_provider = ldap
ldap_schema = rfc2307
ldap_uri = ldap://{SERVER_NAME}
ldap_search_base = {BASE}
ldap_id_use_start_tls = true
ldap_tls_reqcert = demand
ldap_tls_cacert = {CA}
"""

#: what the test adds to the [domain/netinfo] section above, and an [nss] section
SSSD_TEST = """# entries are asked for again after 5 seconds; getent passwd lists every user (SSSD
# reads them all as it starts, then every 5 minutes), 2 a page (SSSD asks for pages of
# 1,000 by default: here the users take 2 pages or more)
entry_cache_timeout = 5
enumerate = true
ldap_enumeration_refresh_offset = 0
ldap_page_size = 2

[nss]
# no fast cache, and a listing of everyone kept 1 second
memcache_timeout = 0
enum_cache_timeout = 1
"""


def _nsswitch(source: str) -> str:
    return f"passwd:   files {source}\ngroup:    files {source}\nshadow:   files {source}\n"


def _pam(module: str) -> str:
    return f"auth required {module}\naccount required {module}\npassword required {module}\n"


def _passwd(line: str) -> str:
    """A passwd line without its password field (nslcd shows x, SSSD *)."""
    f = line.strip().split(":")
    return ":".join(f[:1] + f[2:])


def _group(line: str) -> str:
    """A group line without its password field, members sorted."""
    f = line.strip().split(":")
    return ":".join([f[0], f[2], ",".join(sorted(f[3].split(",")))])


def _lib(name: str) -> bool:
    return any(Path(d, name).exists() for d in LIBDIRS)


def _missing(client: str) -> str | None:
    why = available()
    if why:
        return why
    for tool in ("openssl", "nsenter", "pamtester", "setpriv"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if not Path("/etc/ssl/certs").is_dir():
        return "needs /etc/ssl/certs (the test host's CA directory is mounted there)"
    if client == "nslcd":
        if not shutil.which("nslcd") or not _lib("libnss_ldap.so.2") \
                or not _lib("security/pam_ldap.so"):
            return "needs nslcd, libnss-ldapd and libpam-ldapd (see .ci/run)"
    elif not shutil.which("sssd") or not shutil.which("sss_cache") \
            or not _lib("libnss_sss.so.2") or not _lib("security/pam_sss.so") \
            or not _lib("sssd/libsss_ldap.so"):
        return "needs sssd-ldap, sssd-tools, libnss-sss and libpam-sss (see .ci/run)"
    return None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _certificates(where: Path, address: str) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate it signs for the server's name and address."""
    ca_key, ca, key, csr, cert = (where / n for n in ("ca.key", "ca.pem", "server.key",
                                                       "server.csr", "server.pem"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=netinfo test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(ca_key), "-out", str(ca))
    _openssl("req", "-new", *ec, "-subj", f"/CN={SERVER_NAME}", "-keyout", str(key),
             "-out", str(csr))
    ext = where / "server.ext"
    ext.write_text(f"subjectAltName=DNS:{SERVER_NAME},IP:{address}\n"
                   "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


def _make_domain(directory: Path, password_hash: str) -> None:
    from netinfo.model import NI_INDEX_NULL, NiId
    from netinfo.server.database import open_database
    from netinfo.server.service import SUPERUSER
    from netinfo.server.templates import create_master, ensure_dir
    with open_database(directory, TAG, create=True) as db:
        p = db.procedures
        create_master(p, TAG, "ldapsrv", ["10.77.0.1"])

        def add(dirname, props):
            d = ensure_dir(p, dirname)
            p.proc_create(SUPERUSER, p.proc_self(SUPERUSER, NiId(d)), props, NI_INDEX_NULL)
        add("users", [("name", ["alice"]), ("passwd", [password_hash]),
                      ("_writers_passwd", ["alice"]), ("uid", ["5001"]),
                      ("gid", ["5001"]), ("realname", ["NI Alice"]),
                      ("home", ["/home/alice"]), ("shell", ["/bin/sh"])])
        add("users", [("name", ["bob"]), ("passwd", ["*"]), ("uid", ["5002"]),
                      ("gid", ["5001"]), ("realname", ["NI Bob"]), ("home", ["/home/bob"]),
                      ("shell", ["/bin/sh"])])
        # never looked up by name: only a listing (nslcd's, SSSD's enumeration) finds him
        add("users", [("name", ["dave"]), ("passwd", ["*"]), ("uid", ["5004"]),
                      ("gid", ["5100"]), ("realname", ["NI Dave"]), ("home", ["/home/dave"]),
                      ("shell", ["/bin/sh"])])
        add("groups", [("name", ["niusers"]), ("passwd", ["*"]), ("gid", ["5001"]),
                       ("users", ["alice", "bob"])])
        add("groups", [("name", ["nistaff"]), ("passwd", ["*"]), ("gid", ["5100"]),
                       ("users", ["alice"])])
        db.commit()


def test_the_docs_show_these_configurations():
    """docs/linux-clients.md shows the configurations this test runs, word for word."""
    text = DOCS.read_text()
    for conf in (NSLCD_CONF, SSSD_CONF, _nsswitch("ldap"), _nsswitch("sss"), _pam("pam_sss.so"),
                 _pam("pam_ldap.so")):
        assert conf in text, conf


class ClientHost(HeldHost):
    """One test host held by a process whose mount namespace every command enters
    (nsenter): the client's configuration files, /run and SSSD's state are private."""

    def __init__(self, net: Network, tmp: Path, client: str) -> None:
        h = self.h = net.add_host("ldapsrv", 1)
        etc = tmp / "etc"
        for d in ("sssd", "sssd/conf.d", "pam.d", "certs"):
            (etc / d).mkdir(parents=True)
        (etc / "nsswitch.conf").write_text(_nsswitch("ldap" if client == "nslcd" else "sss")
                                           + "hosts:    files\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{self.h.addr} ldapsrv "
                                   f"{SERVER_NAME}\n")
        # nothing answers on loopback port 53 in this namespace: no name leaves the host
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        module = "pam_ldap.so" if client == "nslcd" else "pam_sss.so"
        for service in ("nitest", "other"):
            (etc / "pam.d" / service).write_text(_pam(module))
        (etc / "nslcd.conf").write_text(NSLCD_CONF)
        (etc / "nslcd.conf").chmod(0o600)
        (etc / "sssd" / "sssd.conf").write_text(SSSD_CONF + SSSD_TEST)
        (etc / "sssd" / "sssd.conf").chmod(0o600)
        ca, self.cert, self.key = _certificates(tmp, self.h.addr)
        shutil.copy(ca, etc / "certs" / "netinfo-ca.pem")
        # nslcd reads the CA after dropping to its own user: the bind-mounted directory
        # must let it in (tmp's parents need not: a bind mount skips them)
        (etc / "certs").chmod(0o755)
        (etc / "certs" / "netinfo-ca.pem").chmod(0o644)
        binds = {"nsswitch.conf": "/etc/nsswitch.conf", "hosts": "/etc/hosts",
                 "resolv.conf": "/etc/resolv.conf", "pam.d": "/etc/pam.d",
                 "certs": "/etc/ssl/certs"}
        steps = ["mount --make-rprivate /", "mount -t tmpfs tmpfs /run", "mkdir -p /run/lock"]
        if client == "nslcd":
            binds["nslcd.conf"] = "/etc/nslcd.conf"
            steps += ["mkdir -p /run/nslcd", "chown nslcd:nslcd /run/nslcd"]
        else:
            binds["sssd"] = "/etc/sssd"
            # SSSD's state and logs: its cache, fast cache, sockets (Debian's layout)
            sss = "/var/lib/sss"
            steps += [f"mount -t tmpfs -o mode=0755 tmpfs {sss}",
                      f"mkdir -m 700 {sss}/db {sss}/secrets",
                      f"mkdir -m 775 {sss}/mc",
                      f"mkdir -m 755 {sss}/pipes {sss}/pubconf {sss}/pubconf/krb5.include.d "
                      f"{sss}/gpo_cache",
                      f"mkdir -m 751 {sss}/deskprofile",
                      f"mkdir -m 750 {sss}/pipes/private",
                      "mount -t tmpfs -o mode=0750 tmpfs /var/log/sssd"]
        script = " && ".join([
            *steps,
            *[f"mount --bind {etc / src} {dst}" for src, dst in binds.items()],
            "exec sleep 86400"])
        super().__init__(h, tmp, script)

    def niutil(self, *args: str) -> None:
        r = self.run([sys.executable, "-m", "netinfo.cli.niutil", args[0],
                      f"{TAG}@127.0.0.1:{self.port}", *args[1:]])
        assert r.returncode == 0, r.stderr


@pytest.fixture(params=["nslcd", "sssd"])
def client(request, tmp_path):
    why = _missing(request.param)
    if why:
        pytest.skip(why)
    from netinfo.passwords import hash_password
    _make_domain(tmp_path / "db", hash_password("s3cret"))
    net = Network()
    try:
        host = ClientHost(net, tmp_path, request.param)
        host.spawn([sys.executable, "-m", "netinfo.cli.netinfod", "--dir",
                    str(tmp_path / "db"), "--bind", "0.0.0.0", "--ldap", "0.0.0.0:389",
                    "--ldap-cert", str(host.cert), "--ldap-key", str(host.key), TAG],
                   "netinfod.log")
        wait_until(lambda: "(StartTLS)" in host.log("netinfod.log"), 30)
        host.port = int(host.log("netinfod.log").split(f"serving {TAG} udp=")[1]
                        .split(" tcp=")[1].split()[0])
        t0 = time.monotonic()
        if request.param == "nslcd":
            host.spawn(["nslcd", "-d"], "client.log")
        else:
            # in the foreground, logging to stderr (no /var/log/sssd files), filters shown
            host.spawn(["sssd", "-i", "--logger=stderr", "-d", "0x07f0"], "client.log")
        try:
            wait_until(lambda: host.run(["getent", "passwd", "alice"]).returncode == 0,
                       60, 0.2)
        except TimeoutError:
            pytest.fail(f"{request.param} did not answer:\n{host.log('client.log')[-4000:]}"
                        f"\n{host.log('netinfod.log')[-2000:]}")
        host.started = time.monotonic() - t0
        print(f"{request.param}: first answer {host.started:.2f} s after start")
        host.client = request.param
        yield host
    finally:
        net.close()


def test_nss_and_pam_through_starttls(client):
    h = client
    assert _passwd(h.out(["getent", "passwd", "alice"])) == \
        "alice:5001:5001:NI Alice:/home/alice:/bin/sh"
    assert _passwd(h.out(["getent", "passwd", "5002"])) == \
        "bob:5002:5001:NI Bob:/home/bob:/bin/sh"
    assert _group(h.out(["getent", "group", "niusers"])) == "niusers:5001:alice,bob"
    assert _group(h.out(["getent", "group", "5100"])) == "nistaff:5100:alice"
    assert h.out(["id", "alice"]).strip() == \
        "uid=5001(alice) gid=5001(niusers) groups=5001(niusers),5100(nistaff)"
    assert h.out(["id", "bob"]).strip() == "uid=5002(bob) gid=5001(niusers) groups=5001(niusers)"
    # the whole listing (nslcd: a subtree search; SSSD: its enumeration, paged subtree
    # searches it makes as it starts)
    wait_until(lambda: "dave:" in h.out(["getent", "passwd"]), 30, 0.5)
    listing = [_passwd(line) for line in h.out(["getent", "passwd"]).splitlines()]
    assert "alice:5001:5001:NI Alice:/home/alice:/bin/sh" in listing
    assert "bob:5002:5001:NI Bob:/home/bob:/bin/sh" in listing
    assert "dave:5004:5100:NI Dave:/home/dave:/bin/sh" in listing
    groups = [_group(line) for line in h.out(["getent", "group"]).splitlines()]
    assert "nistaff:5100:alice" in groups and "niusers:5001:alice,bob" in groups
    # a login with the NetInfo password: a bind as alice's DN after StartTLS
    ok = h.run(["pamtester", "nitest", "alice", "authenticate", "acct_mgmt"],
               input="s3cret\n")
    assert ok.returncode == 0, ok.stdout + ok.stderr + h.log("client.log")[-3000:]
    bad = h.run(["pamtester", "nitest", "alice", "authenticate"], input="wrong\n")
    assert bad.returncode != 0
    assert "confidentialityRequired" not in h.log("client.log")
    # the clients reach the server at the host's address, not loopback: the same bind
    # without StartTLS is refused, so the logins above went through TLS
    if shutil.which("ldapwhoami"):
        cmd = ["ldapwhoami", "-x", "-H", f"ldap://{SERVER_NAME}",
               "-D", f"uid=alice,ou=users,{BASE}", "-w", "s3cret"]
        env = {"LDAPTLS_CACERT": CA, "LDAPTLS_REQCERT": "demand", "LDAPRC": "no-such-ldaprc"}
        plain = h.run(cmd, **env)
        assert plain.returncode == 13, plain.stdout + plain.stderr   # confidentialityRequired
        tls = h.run([*cmd, "-ZZ"], **env)
        assert tls.returncode == 0 and tls.stdout.strip() == f"dn:uid=alice,ou=users,{BASE}", \
            tls.stdout + tls.stderr
    # alice changes her password through PAM, as passwd would (run as her, old password
    # first): the password modify operation (RFC 3062) bound as alice
    ch = h.run(["setpriv", "--reuid=5001", "--regid=5001", "--clear-groups",
                "pamtester", "nitest", "alice", "chauthtok"], input="s3cret\nn3w-pw\nn3w-pw\n")
    assert ch.returncode == 0, ch.stdout + ch.stderr + h.log("client.log")[-3000:]
    assert h.run(["pamtester", "nitest", "alice", "authenticate"], input="n3w-pw\n"
                 ).returncode == 0
    assert h.run(["pamtester", "nitest", "alice", "authenticate"], input="s3cret\n"
                 ).returncode != 0


def test_a_user_added_with_niutil_is_seen_by_the_next_lookup(client):
    h = client
    for cmd in (["-create", "/users/carol"], ["-createprop", "/users/carol", "uid", "5003"],
                ["-createprop", "/users/carol", "gid", "5001"],
                ["-createprop", "/users/carol", "realname", "NI Carol"],
                ["-createprop", "/users/carol", "home", "/home/carol"],
                ["-createprop", "/users/carol", "shell", "/bin/sh"],
                ["-appendprop", "/groups/nistaff", "users", "carol"]):
        h.niutil(*cmd)
    assert _passwd(h.out(["getent", "passwd", "carol"])) == \
        "carol:5003:5001:NI Carol:/home/carol:/bin/sh"
    assert h.out(["id", "carol"]).strip() == \
        "uid=5003(carol) gid=5001(niusers) groups=5001(niusers),5100(nistaff)"
    # a change to an entry SSSD has cached: seen once the cache is expired
    h.niutil("-createprop", "/users/bob", "shell", "/bin/bash")
    if h.client == "sssd":
        h.out(["sss_cache", "-E"])
    assert h.out(["getent", "passwd", "bob"]).strip().endswith(":/home/bob:/bin/bash")
