"""The LDAP front door checked by the real thing: OpenLDAP's ldap-utils (ldapsearch,
ldapwhoami, ldapcompare, ldapmodify, ldapmodrdn, ldapdelete, ldappasswd) against a real
netinfod on loopback, for each operation, filter type, scope and control, with StartTLS
and LDAPS on a certificate the test makes (issue 22)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from netinfo.passwords import hash_password
from netinfo.wire import ber
from netinfo.wire import ldap as L

from .conftest import Netinfod, env_with_src, free_port

pytestmark = pytest.mark.skipif(shutil.which("ldapsearch") is None,
                                reason="ldap-utils not installed (apt-get install ldap-utils)")

TAG = "ldaptest"
BASE = "dc=ldaptest,dc=netinfo"
ROOT_DN = f"uid=root,ou=users,{BASE}"
ANN_DN = f"uid=ann,ou=users,{BASE}"
PASSWD = (
    "ann:*:5001:5001::0:0:Ann Arbor:/home/ann:/bin/sh\n"
    "bob:*:5002:5001::0:0::/home/bob:/bin/bash\n"
    "carl:*:5003:20::0:0:Carl Sagan:/home/carl:/bin/zsh\n"
)
GROUP = "staff5001:*:5001:ann,bob\nwheel20:*:20:carl\n"


class Server:
    def __init__(self, d: Netinfod, ldap: int, ldaps: int, cert: Path) -> None:
        self.d = d
        self.url = f"ldap://127.0.0.1:{ldap}"
        self.surl = f"ldaps://127.0.0.1:{ldaps}"
        self.domain = f"{TAG}@127.0.0.1:{d.port}"
        # the host's ldap.conf and ~/.ldaprc play no part: an empty configuration file
        # (LDAPNOINIT would also drop the LDAPTLS_* variables)
        empty = cert.parent / "ldap.conf"
        empty.write_text("")
        self.env = dict(os.environ, LDAPTLS_CACERT=str(cert), LDAPTLS_REQCERT="demand",
                        LDAPCONF=str(empty), LDAPRC="no-such-ldaprc")

    def run(self, tool: str, *args: str, url: str | None = None, stdin: str = "",
            check: int | None = 0) -> subprocess.CompletedProcess[str]:
        cmd = [tool, "-x", "-H", url or self.url, *args]
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=self.env,
                           timeout=60)
        if check is not None:
            assert p.returncode == check, (cmd, p.returncode, p.stdout, p.stderr)
        return p

    def search(self, *args: str, base: str = BASE, check: int | None = 0) -> str:
        return self.run("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", base, *args,
                        check=check).stdout

    def dns(self, *args: str, base: str = BASE) -> list[str]:
        return [line[4:] for line in self.search(*args, "1.1", base=base).splitlines()
                if line.startswith("dn: ")]

    def tool(self, name: str, *args: str, stdin: str = "") -> str:
        p = subprocess.run([os.path.join(os.path.dirname(os.sys.executable), name), *args],
                           input=stdin, capture_output=True, text=True, env=env_with_src(),
                           timeout=60)
        assert p.returncode == 0, (name, args, p.stdout, p.stderr)
        return p.stdout


def _certificate(where: Path) -> tuple[Path, Path]:
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("ldap")
    cert, key = _certificate(d)
    (d / "rootpw").write_text("secret\n")
    lport, sport = free_port(), free_port()
    n = Netinfod(d, TAG, "-m", "--populate", "--root-password-file", str(d / "rootpw"),
                 "--ldap", f"127.0.0.1:{lport}", "--ldaps", f"127.0.0.1:{sport}",
                 "--ldap-cert", str(cert), "--ldap-key", str(key)).start()
    s = Server(n, lport, sport, cert)
    auth = ("-u", "root", "-P", "secret")
    s.tool("niload", *auth, "passwd", s.domain, stdin=PASSWD)
    s.tool("niload", *auth, "group", s.domain, stdin=GROUP)
    s.tool("niutil", *auth, "-createprop", s.domain, "/users/ann", "passwd",
           hash_password("ann-pw", "md5_crypt"))
    s.tool("niutil", *auth, "-createprop", s.domain, "/users/ann", "_writers_passwd", "ann")
    yield s
    n.stop()


# -- reading -------------------------------------------------------------------------------

def test_root_dse(srv: Server) -> None:
    out = srv.search("-s", "base", "(objectClass=*)", "+", "*", base="")
    assert f"namingContexts: {BASE}" in out
    for oid in (L.OID_PAGED_RESULTS, L.OID_WHOAMI, L.OID_PASSWD_MODIFY, L.OID_STARTTLS):
        assert oid in out
    assert "supportedLDAPVersion: 3" in out


def test_schema_subentry(srv: Server) -> None:
    out = srv.search("-s", "base", "(objectClass=*)", "attributeTypes", "objectClasses",
                     base="cn=Subschema")
    assert "NAME 'uidNumber' EQUALITY integerMatch" in out
    assert "NAME 'posixAccount'" in out


def test_the_base_entry_exists(srv: Server) -> None:
    assert srv.dns("-s", "base") == [BASE]
    assert "objectClass: domain" in srv.search("-s", "base")


def test_nslcd_lookup(srv: Server) -> None:
    """What nslcd sends (notes/ecosystem.md §4.3)."""
    out = srv.search("(&(objectClass=posixAccount)(uid=ann))", "uid", "uidNumber",
                     "gidNumber", "cn", "gecos", "homeDirectory", "loginShell",
                     "userPassword")
    assert f"dn: {ANN_DN}" in out
    for line in ("uidNumber: 5001", "gidNumber: 5001", "gecos: Ann Arbor",
                 "homeDirectory: /home/ann", "loginShell: /bin/sh", "cn: Ann Arbor"):
        assert line in out
    assert "userPassword" not in out


def test_sssd_filters(srv: Server) -> None:
    """SSSD's presence and NOT filters, and its memberUid search."""
    assert srv.dns("(&(uid=ann)(objectclass=posixAccount)(uid=*)"
                   "(&(uidNumber=*)(!(uidNumber=0))))") == [ANN_DN]
    assert srv.dns("(&(uid=root)(objectclass=posixAccount)(uid=*)"
                   "(&(uidNumber=*)(!(uidNumber=0))))") == []
    assert srv.dns("(&(gidNumber=5001)(objectClass=posixGroup)(cn=*)"
                   "(&(gidNumber=*)(!(gidNumber=0))))") == [f"cn=staff5001,ou=groups,{BASE}"]
    assert srv.dns("(&(memberuid=bob)(objectClass=posixGroup))") == \
        [f"cn=staff5001,ou=groups,{BASE}"]


def _users(dns: list[str]) -> set[str]:
    return {dn.split(",")[0].removeprefix("uid=") for dn in dns
            if dn.endswith(f"ou=users,{BASE}") and dn.startswith("uid=")}


@pytest.mark.parametrize("flt, users", [
    ("(uid=bob)", {"bob"}),
    ("(uid=BOB)", {"bob"}),                       # caseIgnoreMatch
    ("(uid=a*)", {"ann"}),
    ("(homeDirectory=*o*b)", {"bob"}),
    ("(loginShell=*sh)", {"ann", "bob", "carl", "root"}),
    ("(gecos=c*l s*n)", {"carl"}),
    ("(uidNumber>=5002)", {"bob", "carl"}),
    ("(uidNumber<=5001)", {"ann", "root", "daemon", "nobody"}),
    ("(uidNumber~=5003)", {"carl"}),
    ("(gecos=*)", {"ann", "carl", "root", "daemon", "nobody"}),
    ("(|(uid=ann)(uid=carl))", {"ann", "carl"}),
    ("(&(objectClass=posixAccount)(!(gidNumber=5001)))", {"carl", "root", "daemon", "nobody"}),
    ("(uid:caseExactMatch:=ann)", {"ann"}),
    ("(uid:caseExactMatch:=ANN)", set()),
    ("(uid:=carl)", {"carl"}),
    ("(:2.5.13.14:=5002)", {"bob"}),
    ("(uid:1.2.3.4.5:=ann)", set()),             # unknown rule: Undefined
])
def test_filter_types(srv: Server, flt: str, users: set[str]) -> None:
    assert _users(srv.dns(flt)) == users


def test_dn_attributes_in_extensible_match(srv: Server) -> None:
    dns = srv.dns("(ou:dn:=groups)")
    assert f"ou=groups,{BASE}" in dns and f"cn=wheel20,ou=groups,{BASE}" in dns
    assert all("ou=groups" in d for d in dns)


def test_scopes(srv: Server) -> None:
    users = f"ou=users,{BASE}"
    assert srv.dns("-s", "base", base=users) == [users]
    one = srv.dns("-s", "one", base=users)
    assert _users(one) == {"root", "daemon", "nobody", "ann", "bob", "carl"}
    assert users not in one
    sub = srv.dns("-s", "sub", base=users)
    assert set(sub) == set(one) | {users}
    assert f"ou=groups,{BASE}" in srv.dns("-s", "one")
    missing = srv.run("ldapsearch", "-b", f"uid=zed,{users}", "-s", "base", check=32)
    assert f"matchedDN: {users}" in missing.stdout


def test_size_limit(srv: Server) -> None:
    p = srv.run("ldapsearch", "-LLL", "-b", BASE, "-z", "2", "(objectClass=*)", "1.1",
                check=4)
    assert p.stdout.count("dn: ") == 2


def test_types_only_and_operational(srv: Server) -> None:
    out = srv.search("-A", "(uid=ann)")
    assert "uidNumber:" in out and "5001" not in out
    plus = srv.search("(uid=ann)", "+")
    assert f"entryDN: {ANN_DN}" in plus and "uidNumber" not in plus
    assert "subschemaSubentry: cn=Subschema" in plus
    star = srv.search("(uid=ann)", "*")
    assert "entryDN" not in star and "uidNumber: 5001" in star


def test_paged_results(srv: Server) -> None:
    whole = srv.dns("(objectClass=*)")
    p = srv.run("ldapsearch", "-LLL", "-b", BASE, "-E", "pr=3/noprompt",
                "(objectClass=*)", "1.1")
    paged = [line[4:] for line in p.stdout.splitlines() if line.startswith("dn: ")]
    assert sorted(paged) == sorted(whole) and len(whole) > 9


# -- binds and passwords -------------------------------------------------------------------

def test_whoami(srv: Server) -> None:
    assert srv.run("ldapwhoami").stdout.strip() == "anonymous"
    assert srv.run("ldapwhoami", "-D", ROOT_DN, "-w", "secret").stdout.strip() == \
        f"dn:{ROOT_DN}"
    srv.run("ldapwhoami", "-D", ROOT_DN, "-w", "wrong", check=49)
    srv.run("ldapwhoami", "-D", f"uid=nobody,ou=users,{BASE}", "-w", "x", check=49)
    # a DN without a password: an unauthenticated bind, refused (RFC 4513 §5.1.2)
    srv.run("ldapwhoami", "-D", ROOT_DN, check=53)


def test_start_tls_and_ldaps(srv: Server) -> None:
    assert srv.run("ldapwhoami", "-ZZ", "-D", ANN_DN, "-w", "ann-pw").stdout.strip() == \
        f"dn:{ANN_DN}"
    assert srv.run("ldapwhoami", "-D", ANN_DN, "-w", "ann-pw",
                   url=srv.surl).stdout.strip() == f"dn:{ANN_DN}"
    assert ANN_DN in srv.run("ldapsearch", "-ZZ", "-LLL", "-b", BASE, "(uid=ann)",
                             "1.1").stdout


def test_user_password_is_private(srv: Server) -> None:
    """userPassword: never to anonymous or other users, nor matched by their filters."""
    assert "userPassword" not in srv.search("(uid=ann)", "*")
    assert srv.dns("(userPassword=*)") == []
    assert srv.dns("(userPassword={CRYPT}$1$*)") == []
    assert srv.dns("(!(userPassword=x))") == []
    bob = ("-D", f"uid=bob,ou=users,{BASE}")
    srv.run("ldappasswd", "-D", ROOT_DN, "-w", "secret", "-s", "bob-pw",
            f"uid=bob,ou=users,{BASE}")
    as_bob = srv.run("ldapsearch", *bob, "-w", "bob-pw", "-LLL", "-b", BASE,
                     "(uid=ann)", "userPassword").stdout
    assert "userPassword" not in as_bob
    own = srv.run("ldapsearch", *bob, "-w", "bob-pw", "-LLL", "-b", BASE,
                  "(uid=bob)", "userPassword").stdout
    assert "userPassword:: " in own or "userPassword: {CRYPT}" in own
    as_root = srv.run("ldapsearch", "-D", ROOT_DN, "-w", "secret", "-LLL", "-b", BASE,
                      "(userPassword={CRYPT}$1$*)", "1.1").stdout
    assert ANN_DN in as_root
    srv.run("ldapcompare", ANN_DN, "userPassword:x", check=50)


def test_compare(srv: Server) -> None:
    srv.run("ldapcompare", ANN_DN, "uidNumber:5001", check=6)
    srv.run("ldapcompare", ANN_DN, "uidNumber:5002", check=5)
    srv.run("ldapcompare", ANN_DN, "uid:ANN", check=6)
    srv.run("ldapcompare", ANN_DN, "description:x", check=16)
    srv.run("ldapcompare", f"uid=zed,ou=users,{BASE}", "uid:zed", check=32)


def test_password_modify(srv: Server) -> None:
    """RFC 3062 as nipasswd: the user sets their own password; then only the new one
    binds; without a new password the server makes one and answers it."""
    srv.run("ldappasswd", "-D", ANN_DN, "-w", "ann-pw", "-s", "ann-new")
    srv.run("ldapwhoami", "-D", ANN_DN, "-w", "ann-pw", check=49)
    srv.run("ldapwhoami", "-D", ANN_DN, "-w", "ann-new")
    out = srv.run("ldappasswd", "-D", ANN_DN, "-w", "ann-new").stdout
    generated = out.split("New password:")[1].strip()
    srv.run("ldapwhoami", "-D", ANN_DN, "-w", generated)
    srv.run("ldappasswd", "-D", ANN_DN, "-w", generated, "-s", "ann-pw")
    read = srv.tool("niutil", "-readprop", srv.domain, "/users/ann", "passwd")
    assert read.startswith("$6$")   # hashed here, as nipasswd does
    # another user's password: _writers_passwd decides (ann may not set carl's)
    refused = srv.run("ldappasswd", "-D", ANN_DN, "-w", "ann-pw", "-s", "x",
                      f"uid=carl,ou=users,{BASE}", check=1)
    assert "Insufficient access (50)" in refused.stdout


# -- writing -------------------------------------------------------------------------------

NEW_USER = f"""dn: uid=dora,ou=users,{BASE}
objectClass: top
objectClass: account
objectClass: posixAccount
uid: dora
cn: Dora Explorer
uidNumber: 5010
gidNumber: 5001
homeDirectory: /home/dora
loginShell: /bin/sh
userPassword: dora-pw
"""


def test_add_modify_rename_delete(srv: Server) -> None:
    root = ("-D", ROOT_DN, "-w", "secret")
    # anonymous writes are refused by the domain (_writers), not by the front door
    srv.run("ldapadd", stdin=NEW_USER, check=50)
    srv.run("ldapadd", *root, stdin=NEW_USER)
    srv.run("ldapadd", *root, stdin=NEW_USER, check=68)
    props = srv.tool("niutil", "-read", srv.domain, "/users/dora")
    assert "uid: 5010" in props and "home: /home/dora" in props and "realname: Dora" in props
    srv.run("ldapwhoami", "-D", f"uid=dora,ou=users,{BASE}", "-w", "dora-pw")
    srv.run("ldapmodify", *root, stdin=f"""dn: uid=dora,ou=users,{BASE}
changetype: modify
replace: loginShell
loginShell: /bin/zsh
-
add: description
description: explorer
-
add: netinfoProperty
netinfoProperty: hint=maps
""")
    props = srv.tool("niutil", "-read", srv.domain, "/users/dora")
    assert "shell: /bin/zsh" in props and "passwd: $6$" in props
    assert "description: explorer" in props and "hint: maps" in props
    assert "netinfoProperty" not in props
    assert "description: explorer" in srv.search("(uid=dora)")
    srv.run("ldapmodify", *root, stdin=f"""dn: uid=dora,ou=users,{BASE}
changetype: modify
delete: uid
uid: dora
""", check=67)
    srv.run("ldapmodrdn", *root, "-r", f"uid=dora,ou=users,{BASE}", "uid=dorothy")
    assert srv.dns("(uid=dorothy)") == [f"uid=dorothy,ou=users,{BASE}"]
    assert srv.dns("(uid=dora)") == []
    srv.run("ldapdelete", *root, f"uid=dorothy,ou=users,{BASE}")
    assert srv.dns("(uid=dorothy)") == []
    srv.run("ldapdelete", *root, f"ou=users,{BASE}", check=66)


def test_a_user_added_with_niutil_is_seen_by_the_next_search(srv: Server) -> None:
    auth = ("-u", "root", "-P", "secret")
    srv.tool("niutil", *auth, "-create", srv.domain, "/users/eve")
    srv.tool("niutil", *auth, "-createprop", srv.domain, "/users/eve", "uid", "5020")
    assert "uidNumber: 5020" in srv.search("(&(objectClass=posixAccount)(uid=eve))")


# -- the protocol's edges ------------------------------------------------------------------

def _exchange(port: int, *messages: bytes, until: int | None = None) -> list[L.Message]:
    """Send *messages*; what comes back until the connection closes, or until the
    response that ends operation *until* (then an unbind, and the close)."""
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        for m in messages:
            s.sendall(m)
        got: list[L.Message] = []
        buf = b""
        while True:
            data = s.recv(65536)
            if not data:
                return got
            buf += data
            while (n := ber.frame(buf)) is not None:
                got.append(L.decode_message(buf[:n]))
                buf = buf[n:]
                if until is not None and got[-1].id == until and \
                        isinstance(got[-1].op, L.Response):
                    s.sendall(L.encode_message(L.Message(99, L.UnbindRequest())))
                    until = None


def test_malformed_pdus_end_the_session_with_a_notice(srv: Server) -> None:
    port = int(srv.url.rsplit(":", 1)[1])
    got = _exchange(port, bytes.fromhex("3003020101"))   # an operation missing
    assert got and got[-1].id == 0 and isinstance(got[-1].op, L.ExtendedResponse)
    assert got[-1].op.name == L.OID_NOTICE_OF_DISCONNECTION
    assert got[-1].op.code == L.ResultCode.PROTOCOL_ERROR
    got = _exchange(port, b"\x04\x01")
    assert got[-1].op.code == L.ResultCode.PROTOCOL_ERROR   # type: ignore[union-attr]
    # the server still answers
    assert srv.dns("(uid=ann)") == [ANN_DN]


def test_abandon_and_unbind(srv: Server) -> None:
    """Abandon has no response, whether or not its search still runs; the connection
    goes on; unbind ends it."""
    port = int(srv.url.rsplit(":", 1)[1])

    def search(i: int, base: str, scope: int) -> bytes:
        return L.encode_message(L.Message(i, L.SearchRequest(
            base, scope, 0, 0, 0, False, L.Present("objectClass"), ("1.1",))))
    got = _exchange(port, search(2, BASE, 2),
                    L.encode_message(L.Message(3, L.AbandonRequest(2))),
                    L.encode_message(L.Message(4, L.AbandonRequest(99))),
                    search(5, ANN_DN, 0), until=5)
    assert {m.id for m in got} <= {2, 5}
    assert [m.op.dn for m in got if m.id == 5 and isinstance(m.op, L.SearchEntry)] == [ANN_DN]
    assert any(m.id == 5 and isinstance(m.op, L.Response) and m.op.code == 0 for m in got)


def test_nibindd_passes_the_ldap_options_to_its_tag(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``nibindd --init --ldap ADDR:PORT``: the network domain's netinfod serves LDAP
    there (the ``--ldap-tag``, network by default), with its default base."""
    from .conftest import Nibindd
    port = free_port()
    nb = Nibindd(tmp_path, "--init", "--ldap", f"127.0.0.1:{port}")
    monkeypatch.setenv("NETINFO_PORTMAPPER", nb.env["NETINFO_PORTMAPPER"])
    monkeypatch.setenv("NETINFO_BROADCAST", "off")
    nb.start()
    try:
        p = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", f"ldap://127.0.0.1:{port}",
                            "-b", "", "-s", "base", "namingContexts"],
                           capture_output=True, text=True, timeout=60)
        assert "namingContexts: dc=network,dc=netinfo" in p.stdout, (p.stdout, p.stderr)
    finally:
        nb.stop()


def test_fuzzed_pdus_never_stop_the_server(srv: Server) -> None:
    """Mangled requests (bytes flipped, lengths cut) on their own connections: each is
    answered or ends its session, and the server keeps answering (issue 22 item 6)."""
    import random
    port = int(srv.url.rsplit(":", 1)[1])
    rng = random.Random(22)
    samples = [
        L.encode_message(L.Message(1, L.SearchRequest(
            BASE, 2, 0, 5, 0, False, L.And((L.Present("uid"), L.Not(
                L.Substrings("cn", b"a", (b"b",), None)))), ("cn",)),
            (L.Control(L.OID_PAGED_RESULTS, True, L.encode_paged(2, b"")),))),
        L.encode_message(L.Message(2, L.BindRequest(3, ROOT_DN, b"x"))),
        L.encode_message(L.Message(3, L.ModifyRequest(ANN_DN, ((2, ("cn", (b"x",))),)))),
        L.encode_message(L.Message(4, L.ExtendedRequest(
            L.OID_PASSWD_MODIFY, L.encode_passwd_modify(ANN_DN, b"a", b"b")))),
    ]
    for i in range(120):
        wire = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 3)):
            wire[rng.randrange(len(wire))] = rng.randrange(256)
        if i % 3 == 0:
            wire = wire[:rng.randrange(1, len(wire))]
        with socket.create_connection(("127.0.0.1", port), 10) as s:
            s.sendall(bytes(wire))
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            while s.recv(65536):
                pass
    assert srv.dns("(uid=ann)") == [ANN_DN]
    assert srv.run("ldapwhoami", "-D", ROOT_DN, "-w", "secret").stdout.strip() == \
        f"dn:{ROOT_DN}"


def _blocks(ldif: str) -> set[str]:
    return {b.strip() for b in ldif.split("\n\n") if b.strip()}


def test_nidump_ldif_round_trip(srv: Server, tmp_path: Path) -> None:
    """``nidump ldif`` writes what the front door serves, as LDIF that ``ldapadd`` (real
    LDIF parsing) loads into another domain, whose users and groups then read back the
    same (issue 22 item 5; slapadd into a scratch slapd is not run here)."""
    ldif = srv.tool("nidump", "ldif", srv.domain)
    assert ldif.startswith(f"dn: {BASE}\n")
    assert f"dn: {ANN_DN}\n" in ldif and "userPassword: {CRYPT}$" in ldif
    (tmp_path / "pw").write_text("secret\n")
    lport = free_port()
    other = Netinfod(tmp_path, "copy", "-m", "--populate", "--root-password-file",
                     str(tmp_path / "pw"), "--ldap", f"127.0.0.1:{lport}",
                     "--ldap-base", BASE).start()
    try:
        url = f"ldap://127.0.0.1:{lport}"
        srv.run("ldapadd", "-c", "-D", ROOT_DN, "-w", "secret", url=url, stdin=ldif,
                check=None)
        for ou in ("users", "groups"):
            args = ("-LLL", "-o", "ldif-wrap=no", "-D", ROOT_DN, "-w", "secret", "-b",
                    f"ou={ou},{BASE}", "-s", "one", "(!(uid=root))", "*", "+")
            mine = srv.run("ldapsearch", *args).stdout
            theirs = srv.run("ldapsearch", *args, url=url).stdout
            assert _blocks(mine) == _blocks(theirs), ou
            assert len(_blocks(mine)) >= 4
    finally:
        other.stop()


def test_attributes_the_table_cannot_keep_are_refused(srv: Server) -> None:
    """An attribute with nowhere to go is undefinedAttributeType, not silently dropped;
    netinfoProperty carries any property."""
    root = ("-D", ROOT_DN, "-w", "secret")
    srv.run("ldapmodify", *root, stdin=f"""dn: {ANN_DN}
changetype: modify
add: telephoneNumber
telephoneNumber: 555
""", check=17)
    srv.run("ldapmodify", *root, stdin=f"""dn: {ANN_DN}
changetype: modify
add: netinfoProperty
netinfoProperty: phone=555
""")
    assert "phone: 555" in srv.tool("niutil", "-read", srv.domain, "/users/ann")


def test_stopping_with_tls_sessions_open_is_clean(tmp_path: Path) -> None:
    """netinfod stopping while clients hold sessions, one after StartTLS (as SSSD and
    nslcd keep theirs): it ends at once, with no error and no traceback in its log (the
    TLS session's close waited for the peer's close_notify, and the loop's end then
    cancelled the session: Python 3.11 logs that as an error)."""
    import ssl
    import time
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = _certificate(tmp_path)
    port = free_port()
    n = Netinfod(tmp_path, TAG, "-m", "--populate", "--ldap", f"127.0.0.1:{port}",
                 "--ldap-cert", str(cert), "--ldap-key", str(key)).start()
    ctx = ssl.create_default_context(cafile=str(cert))
    sockets = []
    try:
        plain = socket.create_connection(("127.0.0.1", port), 10)
        sockets.append(plain)
        s = socket.create_connection(("127.0.0.1", port), 10)
        sockets.append(s)
        s.sendall(L.encode_message(L.Message(1, L.ExtendedRequest(L.OID_STARTTLS))))
        buf = b""
        while (size := ber.frame(buf)) is None:
            buf += s.recv(65536)
        assert L.decode_message(buf[:size]).op.code == 0   # type: ignore[union-attr]
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        sockets.append(t)
        t.sendall(L.encode_message(L.Message(2, L.BindRequest(3, "", password=b""))))
        buf = b""
        while (size := ber.frame(buf)) is None:
            buf += t.recv(65536)
        assert L.decode_message(buf[:size]).op.code == 0   # type: ignore[union-attr]
        assert n.proc is not None and n.proc.stderr is not None
        t0 = time.monotonic()
        n.proc.terminate()
        rc = n.proc.wait(30)
        took = time.monotonic() - t0
        log = n.proc.stderr.read()
    finally:
        for sock in sockets:
            sock.close()
        n.stop()
    assert rc == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log
    assert took < 5, (took, log)
