"""``nidump ldif`` and ``niload ldif`` (issue 22 item 5; docs/ldap.md "LDIF"): the RFC 2849
reader, where entries go, a dump reloaded into a fresh domain giving the same tree,
subtrees (``-r``) and another base (``--base``), LDIF written by another directory (an
OpenLDAP export's RFC 2307 entries), and input refused before anything is written. Real
netinfod processes on loopback, the tools as real subprocesses.

A real ``slapadd``/``slapd`` round trip is in tests/test_ldif_slapd.py."""

from __future__ import annotations

import base64

import pytest

from netinfo.server.ldif import LdifError, parse_ldif, place_entries

from .conftest import Netinfod, tool_process

PASSWD = (
    "ann:$1$salt$hash:5001:5001:staff:86400:1209700:Ann Arbor:/home/ann:/bin/sh\n"
    "bob:*:5002:5001::0:0::/home/bob:/bin/bash\n"
    "zoë:*:5003:20::0:0:Zoë Ödön:/home/zoe:/bin/zsh\n"
)
GROUP = "staff5001:*:5001:ann,bob\nempty:*:77:\n"
HOSTS = "10.0.0.1 alpha a1 alpha.example\n10.0.0.2 beta\n"
SERVICES = "ftp 21/tcp\nftp 21/udp\nssh 22/tcp sshd\n"
FSTAB = "srv:/export/home /home nfs rw,intr 0 0\n"
ALIASES = "postmaster: ann, bob\n"
NETWORKS = "loopback 127 lo\n"
PROTOCOLS = "ip 0 IP\ntcp 6 TCP\n"
RPC = "portmapper 100000 sunrpc\n"


def _tool(*args: str, stdin: str | None = None, check: int | None = 0):
    p = tool_process(args[0], *args[1:], input=stdin)
    if check is not None:
        assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
    return p


def _domain(d) -> str:
    return f"{d.tag}@127.0.0.1:{d.port}"


def _fill(dom: str) -> None:
    for fmt, text, flags in (("passwd", PASSWD, ()), ("group", GROUP, ()),
                             ("hosts", HOSTS, ()), ("services", SERVICES, ("-m",)),
                             ("fstab", FSTAB, ()), ("aliases", ALIASES, ()),
                             ("networks", NETWORKS, ()), ("protocols", PROTOCOLS, ()),
                             ("rpc", RPC, ())):
        _tool("niload", *flags, fmt, dom, stdin=text)
    # generic directories: names an LDAP DN must escape, a property with no values,
    # a value that is not LDIF's safe string, nesting below a mapped entry
    for path in ("/printers/lp", "/locations/lookupd/hosts", "/odd/a,b+c\\=d #e;<f>\\\\x",
                 "/users/ann/prefs"):
        _tool("niutil", "-create", dom, path)
    _tool("niutil", "-createprop", dom, "/printers/lp", "rm", "host1")
    _tool("niutil", "-createprop", dom, "/printers/lp", "_writers")
    _tool("niutil", "-createprop", dom, "/locations/lookupd/hosts", "LookupOrder", "Cache",
          "NI")
    _tool("niutil", "-createprop", dom, "/locations/lookupd/hosts", " lead", "x\ny", ":z ")
    _tool("niutil", "-createprop", dom, "/users/ann/prefs", "a=b\\c", "")


def _without_master(raw: str) -> str:
    """``nidump -r /`` but the root's ``master`` (each domain its own)."""
    return "\n".join(line for line in raw.splitlines() if not line.startswith('  "master"'))


@pytest.fixture
def pair(netinfod):
    src = netinfod("src", "-m", "--populate")
    dst = netinfod("dst", "-m", "--populate")
    _fill(_domain(src))
    return _domain(src), _domain(dst)


def test_dump_reloads_identical(pair) -> None:
    """``nidump ldif`` → ``niload ldif`` into a fresh domain gives the same ``nidump -r
    /`` (the root's own master aside): properties in their order, values that LDAP shows
    otherwise (dates in days, zero dates, empty values, properties without values, extra
    names) and generic directories at any depth. Loading it again changes nothing."""
    src, dst = pair
    ldif = _tool("nidump", "ldif", src).stdout
    assert ldif.startswith("dn: dc=src,dc=netinfo\n")
    _tool("niload", "ldif", dst, stdin=ldif)
    want = _without_master(_tool("nidump", "-r", "/", src).stdout)
    assert _without_master(_tool("nidump", "-r", "/", dst).stdout) == want
    p = _tool("niload", "-v", "ldif", dst, stdin=ldif)
    assert "items read from input" in p.stderr and "writing directory /users/ann" in p.stderr
    assert _without_master(_tool("nidump", "-r", "/", dst).stdout) == want
    assert _tool("nidump", "passwd", dst).stdout == _tool("nidump", "passwd", src).stdout


def test_merge_keeps_what_the_domain_has(pair) -> None:
    """``-m`` merges each entry into the directory it names (tools §2.7 rule 6); without
    it the directory is replaced."""
    src, dst = pair
    _tool("niload", "passwd", dst, stdin="ann:*:1:1::0:0:Old:/old:/bin/sh\n")
    _tool("niutil", "-createprop", dst, "/users/ann", "picture", "ann.tiff")
    ldif = _tool("nidump", "ldif", src).stdout
    _tool("niload", "-m", "ldif", dst, stdin=ldif)
    read = _tool("niutil", "-read", dst, "/users/ann").stdout
    assert "picture: ann.tiff" in read and "home: /home/ann /old" in read
    _tool("niload", "ldif", dst, stdin=ldif)
    assert "picture" not in _tool("niutil", "-read", dst, "/users/ann").stdout


def test_subtree_and_base(pair) -> None:
    """``nidump ldif -r PATH`` writes that subtree (its DN from the names along the path,
    whatever the path's form); ``--base`` puts it under another DN; ``niload ldif -r
    PATH`` replaces the subtree with the input (what was there and is not in it goes)."""
    src, dst = pair
    sub = _tool("nidump", "ldif", "-r", "/users", "--base", "dc=example,dc=com", src).stdout
    dns = [line[4:] for line in sub.splitlines() if line.startswith("dn: ")]
    assert dns[0] == "ou=users,dc=example,dc=com"
    assert all(d.endswith(",ou=users,dc=example,dc=com") for d in dns[1:])
    assert "uid=ann,ou=users,dc=example,dc=com" in dns
    assert "cn=prefs,uid=ann,ou=users,dc=example,dc=com" in dns
    one = _tool("nidump", "-r", "/users/uid=5001", "ldif", src).stdout
    assert one.startswith("dn: uid=ann,ou=users,dc=src,dc=netinfo\n")
    p = _tool("nidump", "ldif", "-r", "/nosuch", src, check=1)
    assert "can't read directory /nosuch" in p.stderr
    _tool("niutil", "-create", dst, "/users/extra")
    _tool("niload", "-r", "/users", "ldif", dst, stdin=sub)
    assert _tool("nidump", "-r", "/users", dst).stdout == \
        _tool("nidump", "-r", "/users", src).stdout
    # the same subtree loaded without -r: users by their class, nothing removed
    _tool("niutil", "-create", dst, "/users/extra")
    _tool("niload", "ldif", dst, stdin=sub)
    assert "extra" in _tool("niutil", "-list", dst, "/users").stdout


BAD = {
    "changetype: modify": "dn: uid=ann,ou=users,dc=x\nchangetype: modify\nreplace: uid\n"
                          "uid: b\n-\n",
    "changetype: delete": "dn: uid=ann,ou=users,dc=x\nchangetype: delete\n",
    "values by URL": "dn: dc=x\ndc: x\n\ndn: cn=a,dc=x\nobjectClass: netinfoEntry\n"
                     "cn:< file:///etc/shadow\n",
    "base64 value that does not decode": "dn: dc=x\ndc:: !!!\n",
    "is not below the input's first entry": "dn: dc=x\ndc: x\n\ndn: dc=y\ndc: y\n",
    "must start with dn:": "objectClass: top\n",
    "control: lines": "dn: dc=x\ncontrol: 1.2.3 true\n",
    "no ':'": "dn: dc=x\nnonsense\n",
    "LDIF version": "version: 2\n\ndn: dc=x\n",
}


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory):
    """One domain for the refusals (each leaves it as it was, which each checks)."""
    d = Netinfod(tmp_path_factory.mktemp("refusals"), "t", "-m", "--populate").start()
    dom = _domain(d)
    yield dom, _tool("nidump", "-r", "/", dom).stdout
    d.stop()


@pytest.mark.parametrize("why", sorted(BAD))
def test_refused_input_loads_nothing(untouched, why: str) -> None:
    """Change records, URLs, broken base64, an entry outside the first's subtree and
    other non-LDIF are refused with the line, exit 1, before anything is written."""
    dom, before = untouched
    good = "dn: dc=x\ndc: x\n\ndn: uid=new,ou=users,dc=x\nobjectClass: posixAccount\n" \
           "uid: new\nuidNumber: 9\ngidNumber: 9\nhomeDirectory: /h\n\n"
    text = BAD[why] if BAD[why].startswith("version") else good + BAD[why]
    p = _tool("niload", "ldif", dom, stdin=text, check=1)
    assert why in p.stderr and "line " in p.stderr and "nothing loaded" in p.stderr
    assert _tool("nidump", "-r", "/", dom).stdout == before


def test_empty_and_d(untouched) -> None:
    """Empty input: nothing to do (exit 0, as the flat formats), but never a subtree
    replaced by nothing (``-r``, unless ``-f``); ``-d`` does not apply."""
    dom, before = untouched
    p = _tool("niload", "-v", "ldif", dom, stdin="# nothing\n\n")
    assert "0 items read from input" in p.stderr
    p = _tool("niload", "-r", "/users", "ldif", dom, stdin="", check=1)
    assert "refusing to replace /users" in p.stderr
    p = _tool("niload", "-r", "/users", "ldif", dom, stdin="# only a comment\n", check=1)
    assert "refusing to replace /users" in p.stderr
    p = _tool("niload", "-d", "ldif", dom, stdin="dn: dc=x\n", check=1)
    assert "-d does not apply to ldif" in p.stderr
    assert _tool("nidump", "-r", "/", dom).stdout == before


@pytest.mark.parametrize("args, why", [
    (("passwd", "--base", "dc=x"), "--base is for the ldif format only"),
    (("ldif", "--json"), "--json does not apply to ldif"),
    (("-r", "/users", "ldif", "--schema"), "--schema is for the ldif format only"),
    (("ldif", "-r", "users"), "needs an absolute directory path"),
])
def test_nidump_ldif_usage(untouched, args: tuple[str, ...], why: str) -> None:
    dom, _ = untouched
    p = _tool("nidump", *args, dom, check=1)
    assert why in p.stderr


def test_nidump_ldif_bad_base(untouched) -> None:
    dom, _ = untouched
    p = _tool("nidump", "ldif", "--base", "no equals sign", dom, check=1)
    assert "--base no equals sign" in p.stderr
    p = _tool("nidump", "ldif", dom, "--base", check=1)
    assert "--base needs a DN" in p.stderr


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


#: LDIF as an OpenLDAP server exports a migrationtools-style RFC 2307 tree: containers
#: named otherwise than NetInfo's directories, operational attributes, a multi-valued RDN,
#: folded lines, base64, comments, schema NetInfo has no table for
FOREIGN = f"""version: 1

# the suffix
dn: dc=example,dc=com
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example
structuralObjectClass: organization
entryUUID: 3f0e2d4a-1c2b-103f-8b1e-5d2f3c4b5a69

dn: ou=People,dc=example,dc=com
objectClass: organizationalUnit
ou: People

dn: uid=ann,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
objectClass: shadowAccount
uid: ann
cn: Ann Arbor
sn: Arbor
givenName: Ann
mail: ann@example.com
uidNumber: 7001
gidNumber: 7000
homeDirectory: /home/an
 n
loginShell: /bin/bash
userPassword:: {_b64("{CRYPT}$6$salt$hash")}
shadowLastChange: 19000
shadowMax: 99999
entryCSN: 20240101000000.000000Z#000000#000#000000

dn: cn=Bob Builder,ou=People,dc=example,dc=com
objectClass: account
objectClass: posixAccount
cn: Bob Builder
uid: bob
uidNumber: 7002
gidNumber: 7000
homeDirectory: /home/bob
gecos:: {_b64("Bob Büilder")}
userPassword: {{SSHA}}abcdefgh

dn: ou=Group,dc=example,dc=com
objectClass: organizationalUnit
ou: Group

dn: cn=devs,ou=Group,dc=example,dc=com
objectClass: posixGroup
cn: devs
gidNumber: 7000
memberUid: ann
memberUid: bob

dn: cn=gamma,ou=Hosts,dc=example,dc=com
objectClass: device
objectClass: ipHost
cn: gamma
cn: gamma.example.com
ipHostNumber: 10.1.0.3

dn: cn=gamma,ou=Ethers,dc=example,dc=com
objectClass: device
objectClass: ieee802Device
cn: gamma
macAddress: 0:1:2:3:4:5

dn: cn=ftp+ipServiceProtocol=tcp,ou=Services,dc=example,dc=com
objectClass: ipService
cn: ftp
ipServicePort: 21
ipServiceProtocol: tcp

dn: cn=ftp+ipServiceProtocol=udp,ou=Services,dc=example,dc=com
objectClass: ipService
cn: ftp
ipServicePort: 21
ipServiceProtocol: udp

dn: cn=icmp,ou=Protocols,dc=example,dc=com
objectClass: ipProtocol
cn: icmp
cn: ICMP
ipProtocolNumber: 1
description: Protocol icmp

dn: cn=nfs,ou=Rpc,dc=example,dc=com
objectClass: oncRpc
cn: nfs
oncRpcNumber: 100003
description: nfs

dn: cn=lan,ou=Networks,dc=example,dc=com
objectClass: ipNetwork
cn: lan
ipNetworkNumber: 10.1.0.0

dn: cn=staff,ou=Aliases,dc=example,dc=com
objectClass: nisMailAlias
cn: staff
rfc822MailMember: ann
rfc822MailMember: bob

dn: cn=admins,ou=Netgroup,dc=example,dc=com
objectClass: nisNetgroup
cn: admins
nisNetgroupTriple: (gamma,ann,example)

dn: automountKey=/data,automountMapName=auto.direct,dc=example,dc=com
objectClass: automount
automountKey: /data
automountInformation: -rw,fstype=nfs4 fileserver:/export/data

dn: cn=sudo-rule,ou=SUDOers,dc=example,dc=com
objectClass: sudoRole
cn: sudo-rule
"""


def test_openldap_export(netinfod) -> None:
    """LDIF another directory wrote: RFC 2307 entries go to their class's directory
    whatever their DN, entries of one directory are one (hosts and ethers, tcp and udp
    services), containers and other schemas are left out with a note, and so are
    attributes no property keeps; a password that is not a crypt string is reported."""
    dom = _domain(netinfod("t", "-m", "--populate"))
    p = _tool("niload", "ldif", dom, stdin=FOREIGN)
    assert "entries of no NetInfo directory left out" in p.stderr
    assert "ou=People,dc=example,dc=com" in p.stderr
    assert "givenName (1)" in p.stderr and "shadowMax (1)" in p.stderr
    assert "entryCSN" not in p.stderr and "entryUUID" not in p.stderr
    assert "not crypt strings" in p.stderr
    passwd = _tool("nidump", "passwd", dom).stdout
    assert "ann:$6$salt$hash:7001:7000::1641600000:0:Ann Arbor:/home/ann:/bin/bash" in passwd
    assert "bob:{SSHA}abcdefgh:7002:7000::0:0:Bob Büilder:/home/bob:" in passwd
    assert "devs:*:7000:ann,bob" in _tool("nidump", "group", dom).stdout or \
        "devs::7000:ann,bob" in _tool("nidump", "group", dom).stdout
    read = _tool("niutil", "-read", dom, "/machines/gamma").stdout
    assert "ip_address: 10.1.0.3" in read and "en_address: 0:1:2:3:4:5" in read
    assert "name: gamma gamma.example.com" in read
    svc = _tool("niutil", "-read", dom, "/services/ftp").stdout
    assert "protocol: tcp udp" in svc and "port: 21" in svc
    assert "description: Protocol icmp" in _tool("niutil", "-read", dom,
                                                 "/protocols/icmp").stdout
    assert "description" not in _tool("niutil", "-read", dom, "/rpcs/nfs").stdout
    assert "address: 10.1.0.0" in _tool("niutil", "-read", dom, "/networks/lan").stdout
    assert "members: ann bob" in _tool("niutil", "-read", dom, "/aliases/staff").stdout
    assert "netgroup_triple: (gamma,ann,example)" in _tool("niutil", "-read", dom,
                                                           "/netgroups/admins").stdout
    mount = _tool("niutil", "-read", dom, "/mounts/fileserver:\\/export\\/data").stdout
    assert "dir: /data" in mount and "vfstype: nfs4" in mount and "opts: rw" in mount
    listed = _tool("niutil", "-list", dom, "/").stdout
    assert "People" not in listed and "SUDOers" not in listed


# -- the reader, pure ---------------------------------------------------------------------------

def test_parse_folding_comments_base64() -> None:
    text = ("version: 1\n# a comment\n#  folded comment\n continues\ndn: cn=a,\n dc=x\n"
            "cn;lang-en: a\ndescription:: " + _b64("héllo\nworld") + "\n"
            "changetype: add\n\n\n\ndn:: " + _b64("cn=b,dc=x") + "\r\ncn: b\r\n")
    with pytest.raises(LdifError, match="changetype: add"):
        parse_ldif(text)   # changetype comes right after dn, or not at all
    text = text.replace("changetype: add\n", "")
    a, b = parse_ldif(text)
    assert a.dn == "cn=a,dc=x" and a.values == [("cn", "a"), ("description", "héllo\nworld")]
    assert b.dn == "cn=b,dc=x" and b.values == [("cn", "b")]
    add = parse_ldif("dn: cn=c,dc=x\nchangetype: add\ncn: c\n")
    assert add[0].values == [("cn", "c")]


def test_place_requires_one_subtree_and_keeps_the_top() -> None:
    entries = parse_ldif("dn: dc=x\ndc: x\nnetinfoProperty: master=h/t\n\n"
                         "dn: ou=users,dc=x\nobjectClass: netinfoDirectory\nou: users\n")
    flat = place_entries(entries)
    assert list(flat.tables) == [()] and flat.count == 1   # the root's own props stay
    raw = place_entries(entries, ())
    assert raw.tree.props == [("master", ["h/t"])]
    assert raw.tree.children[0].props == [("name", ["users"])]
