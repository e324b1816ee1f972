"""The NIS front door checked by the real thing (issue 21): Debian's ypbind bound to a
netinfod --nis-domain, yp-tools (ypwhich, ypcat, ypmatch, yppoll, yptest), glibc's nss_nis
through getent and id, and a login through pam_unix reading shadow.byname (pamtester).

Everything runs in a test host the test makes (tests/netns.py): its own network, UTS and
mount namespaces, held by one process that the commands enter, so the NIS domain name
(``domainname``), /etc/nsswitch.conf, /etc/yp.conf, /etc/pam.d, /run and /var/yp seen
there are private copies: the machine's own are never touched. Twice: with Debian's
rpcbind as the host's portmapper, and with nibindd's embedded one.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from .netns import HeldHost, Network, available, wait_until

pytestmark = pytest.mark.slow

DOM = "nitest"
TOOLS = ("ypbind", "ypwhich", "ypcat", "ypmatch", "yppoll", "yptest", "rpcbind", "nsenter")
NSSWITCH = """passwd: files nis
group: files nis
shadow: files nis
hosts: files nis
services: files nis
protocols: files nis
rpc: files nis
netgroup: nis
"""
#: yp-tools' short names (ypcat passwd), as the test host's /var/yp/nicknames
NICKNAMES = """passwd passwd.byname
group group.byname
hosts hosts.byname
aliases mail.aliases
services services.byname
protocols protocols.bynumber
"""
PAM = "auth required pam_unix.so\naccount required pam_unix.so\n"


def _missing() -> str | None:
    why = available()
    if why:
        return why
    lost = [t for t in TOOLS if not shutil.which(t)]
    if lost:
        return f"needs {', '.join(lost)} (apt-get install ypbind-mt yp-tools libnss-nis rpcbind)"
    if not any(Path(d, "libnss_nis.so.2").exists() for d in
               ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")):
        return "needs libnss-nis"
    return None


def _make_domain(directory: Path, password_hash: str) -> None:
    from netinfo.model import NI_INDEX_NULL, NiId
    from netinfo.server.database import open_database
    from netinfo.server.service import SUPERUSER
    from netinfo.server.templates import create_master, ensure_dir
    with open_database(directory, "test", create=True) as db:
        p = db.procedures
        create_master(p, "test", "nisrv", ["10.77.0.1"])

        def add(dirname, props):
            d = ensure_dir(p, dirname)
            p.proc_create(SUPERUSER, p.proc_self(SUPERUSER, NiId(d)), props, NI_INDEX_NULL)
        add("users", [("name", ["alice"]), ("passwd", [password_hash]), ("uid", ["5001"]),
                      ("gid", ["5001"]), ("realname", ["NI Alice"]),
                      ("home", ["/home/alice"]), ("shell", ["/bin/sh"])])
        add("users", [("name", ["bob"]), ("passwd", ["*"]), ("uid", ["5002"]),
                      ("gid", ["5001"]), ("realname", ["NI Bob"]), ("home", ["/home/bob"]),
                      ("shell", ["/bin/sh"])])
        add("groups", [("name", ["niusers"]), ("passwd", ["*"]), ("gid", ["5001"]),
                       ("users", ["alice", "bob"])])
        add("machines", [("name", ["fileserver", "fs"]), ("ip_address", ["10.77.0.40"])])
        db.commit()


class NisHost(HeldHost):
    """One namespace host held by a process whose mount and UTS namespaces every command
    enters (nsenter): its private /etc files, /run, /var/yp and NIS domain name."""

    def __init__(self, net: Network, tmp: Path) -> None:
        h = net.add_host("nisrv", 1)
        (tmp / "nsswitch.conf").write_text(NSSWITCH)
        (tmp / "yp.conf").write_text(f"domain {DOM} server 127.0.0.1\n")
        (tmp / "nicknames").write_text(NICKNAMES)
        (tmp / "pam.d").mkdir()
        (tmp / "pam.d" / "nitest").write_text(PAM)
        (tmp / "pam.d" / "other").write_text(PAM)
        script = (
            "mount --make-rprivate / && "
            "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind /run/lock && "
            "(chown _rpc /run/rpcbind 2>/dev/null || true) && "
            "mkdir -p /var/yp && mount -t tmpfs tmpfs /var/yp && mkdir -p /var/yp/binding && "
            f"cp {tmp}/nicknames /var/yp/nicknames && "
            f"mount --bind {tmp}/nsswitch.conf /etc/nsswitch.conf && "
            f"mount --bind {tmp}/yp.conf /etc/yp.conf && "
            f"mount --bind {tmp}/pam.d /etc/pam.d && "
            f"domainname {DOM} && exec sleep 86400")
        super().__init__(h, tmp, script)


@pytest.fixture(params=["system", "embedded"])
def nishost(request, tmp_path):
    why = _missing()
    if why:
        pytest.skip(why)
    from netinfo.passwords import hash_password
    _make_domain(tmp_path / "db", hash_password("s3cret"))
    net = Network()
    try:
        host = NisHost(net, tmp_path)
        if request.param == "system":
            # Debian's rpcbind; netinfod on its own, registering YP with it
            host.spawn(["rpcbind", "-f", "-w"], "rpcbind.log")
            wait_until(lambda: host.run(["rpcinfo", "-p", "127.0.0.1"]).returncode == 0, 15)
            host.spawn([sys.executable, "-m", "netinfo.cli.netinfod", "--dir",
                        str(tmp_path / "db"), "--bind", "0.0.0.0", "--nis-domain", DOM,
                        "test"], "netinfod.log")
        else:
            # no rpcbind: nibindd's embedded portmapper (rpcbind's local socket too) runs
            # the domain's netinfod with the NIS domain (--nis-domain NISDOMAIN=TAG)
            host.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir",
                        str(tmp_path / "db"), "--portmapper", "embedded", "--rpcbind-socket",
                        "--nis-domain", f"{DOM}=test"], "netinfod.log")
        wait_until(lambda: "serving NIS" in host.log("netinfod.log"), 30)
        host.port = int(host.log("netinfod.log").split("serving test udp=")[1]
                        .split(" tcp=")[1].split()[0])
        wait_until(lambda: " 100004 " in host.run(["rpcinfo", "-p", "127.0.0.1"]).stdout, 15)
        host.spawn(["ypbind", "-n", "-debug", "-f", str(tmp_path / "yp.conf")], "ypbind.log")
        try:
            wait_until(lambda: host.run(["ypwhich"]).returncode == 0, 30)
        except TimeoutError:
            pytest.fail(f"ypbind did not bind ({request.param} portmapper):\n"
                        f"{host.log('ypbind.log')[-3000:]}\n{host.log('netinfod.log')[-2000:]}")
        host.mode = request.param
        yield host
    finally:
        net.close()


def test_yp_tools_nss_and_pam(nishost):
    h = nishost
    assert h.out(["ypwhich"]).strip() in ("127.0.0.1", "localhost")
    # rpcbind versions 3 and 4 (rpcinfo without -p): ypbind's own registration is there
    listing = h.out(["rpcinfo"])
    assert "100007" in listing and "100004" in listing, listing
    passwd = h.out(["ypcat", "passwd"]).splitlines()
    assert sorted(passwd) == ["alice:x:5001:5001:NI Alice:/home/alice:/bin/sh",
                              "bob:x:5002:5001:NI Bob:/home/bob:/bin/sh"]
    assert h.out(["ypmatch", "alice", "passwd"]).strip() == \
        "alice:x:5001:5001:NI Alice:/home/alice:/bin/sh"
    assert h.out(["ypmatch", "5002", "passwd.byuid"]).startswith("bob:x:5002:")
    assert h.out(["ypcat", "group"]).strip() == "niusers:*:5001:alice,bob"
    assert h.out(["ypmatch", "fileserver", "hosts"]).strip() == "10.77.0.40\tfileserver fs"
    maps = h.out(["ypwhich", "-m"])
    assert "passwd.byname" in maps and "shadow.byname" in maps
    # glibc's nss_nis (nsswitch.conf "passwd: files nis")
    assert h.out(["getent", "passwd", "alice"]).strip() == \
        "alice:x:5001:5001:NI Alice:/home/alice:/bin/sh"
    assert h.out(["id", "bob"]).strip() == "uid=5002(bob) gid=5001(niusers) groups=5001(niusers)"
    assert "niusers:*:5001:alice,bob" in h.out(["getent", "group"])
    assert h.out(["getent", "hosts", "fs"]).split()[0] == "10.77.0.40"
    # the hash travels only to a reserved port: root's getent gets it, nobody's does not
    assert h.out(["getent", "shadow", "alice"]).split(":")[1].startswith("$6$")
    r = h.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "getent", "shadow", "alice"])
    assert r.returncode != 0 and "$6$" not in r.stdout
    # a login through pam_unix reading shadow.byname
    ok = h.run(["pamtester", "nitest", "alice", "authenticate"], input="s3cret\n")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = h.run(["pamtester", "nitest", "alice", "authenticate"], input="wrong\n")
    assert bad.returncode != 0
    # yptest's walk of every procedure
    t = h.run(["yptest", "-m", "passwd.byname", "-k", "alice"], timeout=120)
    assert t.returncode == 0, t.stdout + t.stderr


def test_a_write_is_seen_within_a_second_and_order_moves(nishost):
    h = nishost
    poll = h.out(["yppoll", "passwd.byname"])
    order = int(poll.split("order number")[1].split()[0].strip("."))
    niutil = [sys.executable, "-m", "netinfo.cli.niutil"]
    for cmd in (["-create", "/users/carol"], ["-createprop", "/users/carol", "uid", "5003"],
                ["-createprop", "/users/carol", "gid", "5001"],
                ["-createprop", "/users/carol", "shell", "/bin/sh"]):
        r = h.run([*niutil, cmd[0], f"test@127.0.0.1:{h.port}", *cmd[1:]])
        assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    wait_until(lambda: h.run(["getent", "passwd", "carol"]).returncode == 0, 1.0, 0.05)
    assert time.monotonic() - t0 < 1.0
    assert h.out(["getent", "passwd", "5003"]).startswith("carol:x:5003:5001:")
    poll = h.out(["yppoll", "passwd.byname"])
    assert int(poll.split("order number")[1].split()[0].strip(".")) > order
