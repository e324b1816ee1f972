"""nidump (tools §2.1-§2.3) end to end against real servers.

* Golden files (tests/data/nidump/*.golden), written by hand from tools §2.2/§2.3, for
  every format nidump knows and for ``-r``, compared with what nidump prints from a real
  netinfod populated with known data.
* The nidump checks of scenarios A1, A4, A5, A6, A7 and A8 (tools §8) on ``.`` served by
  a real nibindd, the data entered with niutil as the scenarios say.
* Both argument orders, every exit status, ``--json``, and the tool as a real subprocess.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from netinfo.cli import nidump, niutil
from netinfo.client.domain import open_domain
from netinfo.client.flat import NIDUMP_FORMATS
from netinfo.client.raw import RawNode, raw_from_text
from netinfo.errors import NiError, Status

from .conftest import Netinfod, env_with_src, free_port, served_domains, tool_process

GOLDEN = Path(__file__).parent / "data" / "nidump"
TAGGED_HELP = "usage: -t <host>/<tag>\n<host> can be a host name or IP address\n"


# -- helpers (test_niload uses them too) -------------------------------------------------------

class _TtyText(io.StringIO):
    def isatty(self) -> bool:
        return True


def call(main, *args: str, stdin: str | bytes = "", tty: bool = False) -> tuple[int, str, str]:
    """Run a tool's ``main`` in process with *stdin*; → (status, stdout, stderr). With
    *tty*, stderr claims to be a terminal (progress bars)."""
    data = stdin.encode("utf-8", "surrogateescape") if isinstance(stdin, str) else stdin
    fin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
    out = io.BytesIO()
    fout = io.TextIOWrapper(out, encoding="utf-8", errors="surrogateescape",
                            write_through=True)
    ferr = _TtyText() if tty else io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = fin, fout, ferr
    try:
        rc = main(list(args))
    finally:
        fout.flush()
        sys.stdin, sys.stdout, sys.stderr = saved
    return rc, out.getvalue().decode("utf-8", "surrogateescape"), ferr.getvalue()


def sub(module: str, *args: str, env: dict, stdin: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """A tool as a real subprocess: ``python -m netinfo.cli.<module> ...``."""
    return tool_process(module, *args, env=env, input=stdin, timeout=timeout)


Tree = tuple[list, list]   # (props, children)


async def make(c, parent: int, props: list, children: list[Tree] = ()) -> int:
    """Create one directory (and its subtree) under *parent* with a plain client."""
    pid = await c.self_id(parent)
    child, _ = await c.create(pid, [(k, list(v)) for k, v in props])
    for p, kids in children:
        await make(c, child.object, p, kids)
    return child.object


async def destroy_path(c, path: str) -> None:
    """Remove the directory at *path* and its subtree when it exists."""
    try:
        oid = (await c.pathsearch(path)).object
    except NiError:
        return

    async def rm(parent: int, oid: int) -> None:
        kids, _ = await c.children(oid)
        for k in kids:
            await rm(oid, k)
        await c.destroy(await c.self_id(parent), await c.self_id(oid))
    await rm((await c.parent(oid))[0], oid)


def populate(domain: str, tagged: bool, tables: dict[str, list[Tree]], *,
             replace: bool = True, top: dict[str, list] | None = None) -> None:
    """Create each top-level table (``/name``) with its entries, removing it first."""
    async def go():
        c = await open_domain(domain, tagged=tagged)
        try:
            for path, entries in tables.items():
                if replace:
                    await destroy_path(c, path)
                parts = [p for p in path.split("/") if p]
                cur = 0
                for i, part in enumerate(parts):
                    try:
                        cur = (await c.lookup(cur, "name", part))[0][0]
                    except NiError:
                        extra = (top or {}).get(path, []) if i == len(parts) - 1 else []
                        cur = await make(c, cur, [("name", [part]), *extra])
                for props, kids in entries:
                    await make(c, cur, props, kids)
        finally:
            await c.close()
    asyncio.run(go())


# -- the golden server -------------------------------------------------------------------------

def _members(n: int) -> list[str]:
    return [f"member{i:02d}" for i in range(1, n + 1)]


#: The known data: every table a format reads, with the cases tools §2.2 singles out.
GOLDEN_DATA: dict[str, list[Tree]] = {
    "/users": [
        ([("name", ["alice"]), ("passwd", ["x1"]), ("uid", ["501"]), ("gid", ["20"]),
          ("realname", ["Alice Liddell"]), ("home", ["/Users/alice"]),
          ("shell", ["/bin/zsh"]), ("picture", ["/p.tiff"])], []),
        ([("name", ["bob", "robert"]), ("passwd", ["*"]), ("uid", ["502"]), ("gid", ["20"]),
          ("class", ["staff"]), ("change", ["100"]), ("expire", ["200"]),
          ("realname", ["Bob Smith"]), ("home", ["/Users/bob"]), ("shell", ["/bin/tcsh"])],
         []),
        ([("uid", ["999"])], []),                               # no name: skipped
    ],
    "/groups": [
        ([("name", ["staff"]), ("passwd", ["*"]), ("gid", ["20"]),
          ("users", ["alice", "bob"])], []),
        ([("name", ["eng"]), ("gid", ["600"]), ("users", [])], []),
        ([("name", ["wheel"]), ("passwd", [""]), ("gid", ["0"]), ("users", ["root"])], []),
    ],
    "/machines": [
        ([("name", ["fileserver", "fs"]), ("ip_address", ["10.0.0.5", "10.0.1.5"]),
          ("en_address", ["0:1:2:3:4:5"]), ("bootfile", ["mach_kernel"]),
          ("bootparams", ["root=fs:/", "swap=fs:/swap"])], []),
        ([("name", ["printer1"]), ("ip_address", ["10.0.0.9"])], []),
        ([("name", ["noip"]), ("en_address", ["8:0:20:1:2:3"]),
          ("bootparams", ["root=x:/"])], []),
    ],
    "/networks": [
        ([("name", ["loopback"]), ("address", ["127"])], []),
        ([("name", ["lan", "office", "corp"]), ("address", ["10.0"])], []),
    ],
    "/protocols": [
        ([("name", ["ip", "IP"]), ("number", ["0"])], []),
        ([("name", ["tcp"]), ("number", ["6"])], []),
    ],
    "/rpcs": [
        ([("name", ["portmapper", "portmap", "sunrpc"]), ("number", ["100000"])], []),
        ([("name", ["nfs"]), ("number", ["100003"])], []),
    ],
    "/services": [
        ([("name", ["domain", "dns"]), ("port", ["53"]), ("protocol", ["udp", "tcp"])], []),
        ([("name", ["ssh"]), ("port", ["22"]), ("protocol", ["tcp"])], []),
    ],
    "/aliases": [
        ([("name", ["staff"]), ("members", ["alice", "bob"])], []),
        ([("name", ["empty"]), ("members", [])], []),           # no members: skipped
        ([("name", ["biglist"]), ("members", _members(20))], []),
    ],
    "/printers": [
        ([("name", ["lp2", "lp"]), ("rm", ["printhost"]), ("rp", ["lp2"]),
          ("sd", ["/var/spool/lpd/lp2"]), ("ty", [""]), ("mx", ["#0"]), ("sh", [])], []),
        ([("name", ["wide"]), ("rm", ["printhost.example.com"]),
          ("sd", ["/var/spool/lpd/wide"]), ("lf", ["/var/log/lpd-errors"]),
          ("af", ["/var/log/accounting"])], []),
    ],
    "/mounts": [
        ([("name", ["fs:/export/home"]), ("dir", ["/Network/Servers/"]),
          ("vfstype", ["nfs"]), ("opts", ["net", "rw"]), ("passno", ["0"]),
          ("dump_freq", ["0"])], []),
        ([("name", ["/dev/disk1"]), ("dir", ["/Volumes/data"]), ("vfstype", ["hfs"]),
          ("opts", []), ("freq", ["1"]), ("passno", ["2"])], []),
        ([("name", ["srv:/a"]), ("dir", ["/a"])], []),
    ],
    "/exports": [
        ([("name", ["/export/home", "/home2"]), ("opts", ["rw", "maproot=root"]),
          ("clients", ["host1", "host2"])], []),
        ([("name", ["/pub"])], []),
    ],
    "/mountmaps": [
        ([("name", ["auto.home"]), ("dir", ["/home"]), ("opts", ["rw", "soft"])], []),
        ([("name", ["auto.net", "net"]), ("empty", [])], []),
        ([("dir", ["/nameless"])], []),                          # no name: skipped
    ],
    "/golden": [
        ([("name", ["c1", "alias"]), ("empty", [])], []),
        ([("name", ["c2"])], [([("name", ["deep"]), ("x", ["1", "2", "3"])], [])]),
        ([("name", ["with/slash"])], []),
    ],
}
GOLDEN_TOP = {
    "/golden": [("_writers", []), ("quote", ['say "hi"']), ("back", ["a\\b"])],
    "/locations/resolver": [("domain", ["example.com"]),
                            ("search", ["example.com", "corp.example.com"]),
                            ("nameserver", ["10.0.0.1", "10.0.0.2"])],
}


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """A netinfod (-m) holding exactly GOLDEN_DATA; yields its ``-t`` domain argument."""
    d = Netinfod(tmp_path_factory.mktemp("nidump"), "golden", "-m").start()
    try:
        dom = f"127.0.0.1:{d.port}/golden"
        data = dict(GOLDEN_DATA)
        data["/locations/resolver"] = []
        populate(dom, True, data, top=GOLDEN_TOP)
        yield dom
    finally:
        d.stop()


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    """One nibindd for the module: ``.`` = local, ``/`` = network root."""
    with served_domains(tmp_path_factory, "nidumpnb") as d:
        yield d


def golden_text(name: str) -> str:
    return (GOLDEN / f"{name}.golden").read_text(encoding="utf-8")


# -- golden files ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", NIDUMP_FORMATS)
def test_golden_every_format(golden, fmt):
    rc, out, err = call(nidump.main, fmt, "-t", golden)
    assert (rc, err) == (0, "")
    assert out == golden_text(fmt)


def test_golden_covers_every_format():
    names = {p.name.removesuffix(".golden") for p in GOLDEN.glob("*.golden")}
    assert names == set(NIDUMP_FORMATS) | {"raw"}
    assert len(NIDUMP_FORMATS) == 16


def test_golden_raw(golden):
    rc, out, err = call(nidump.main, "-r", "/golden", "-t", golden)
    assert (rc, err) == (0, "")
    assert out == golden_text("raw")


def test_golden_raw_subprocess(golden):
    p = sub("nidump", "-r", "/golden", "-t", golden, env=env_with_src())
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == golden_text("raw")
    p = sub("nidump", "passwd", "-t", golden, env=env_with_src())
    assert (p.returncode, p.stdout, p.stderr) == (0, golden_text("passwd"), "")


def test_raw_golden_reads_back_as_the_data():
    tree = raw_from_text(golden_text("raw"))
    assert tree.props == [("name", ["golden"])] + GOLDEN_TOP["/golden"]
    assert [c.props for c in tree.children] == [p for p, _ in GOLDEN_DATA["/golden"]]
    assert tree.children[1].children[0].props == [("name", ["deep"]), ("x", ["1", "2", "3"])]


def test_raw_of_a_leaf_and_by_key_value_path(golden):
    rc, out, _ = call(nidump.main, "-r", "/golden/c2/deep", "-t", golden)
    assert (rc, out) == (0, '{\n  "name" = ( "deep" );\n  "x" = ( "1", "2", "3" );\n}\n')
    rc, out2, _ = call(nidump.main, "-r", "/name=golden/name=c2/x=2", "-t", golden)
    assert (rc, out2) == (0, out)
    rc, out3, _ = call(nidump.main, "-r", "golden/with\\/slash", "-t", golden)
    assert (rc, out3) == (0, '{\n  "name" = ( "with/slash" );\n}\n')


def test_raw_whole_domain(golden):
    rc, out, _ = call(nidump.main, "-r", "/", "-t", golden)
    assert rc == 0
    tree = raw_from_text(out)
    assert tree.props[0] == ("master", [tree.props[0][1][0]])
    assert [c.props[0][1][0] for c in tree.children][-1] == "locations"
    assert golden_text("raw").replace("\n", "\n    ").strip() in out


# -- both argument orders (tools §2.1) ---------------------------------------------------------

@pytest.mark.parametrize("order", [
    ("passwd", "-t", "{d}"),                 # code: -t right before the domain
    ("-t", "{d}", "passwd"),                 # code: -t takes the next argument
    ("-t", "passwd", "{d}"),                 # man page: -t is a flag
    ("passwd", "{d}", "-t"),
    ("-T", "5", "passwd", "-t", "{d}"),
    ("-t", "-T", "5", "passwd", "{d}"),
    ("-t", "passwd", "{d}", "ignored"),      # a third operand is ignored ([208])
])
def test_both_orders_flat(golden, order):
    rc, out, err = call(nidump.main, *(a.format(d=golden) for a in order))
    assert (rc, out, err) == (0, golden_text("passwd"), "")


@pytest.mark.parametrize("order", [
    ("-r", "/golden", "-t", "{d}"),          # code order
    ("-t", "-r", "/golden", "{d}"),          # man page: nidump -t -r /path host/tag
    ("-r", "-t", "/golden", "{d}"),
    ("-t", "{d}", "-r", "/golden"),
    ("-r", "-T", "9", "/golden", "{d}", "-t"),
])
def test_both_orders_raw(golden, order):
    rc, out, err = call(nidump.main, *(a.format(d=golden) for a in order))
    assert (rc, out, err) == (0, golden_text("raw"), "")


def test_both_orders_subprocess(golden):
    a = sub("nidump", "-t", "-r", "/golden", golden, env=env_with_src())
    b = sub("nidump", "-r", "/golden", "-t", golden, env=env_with_src())
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout == golden_text("raw")


# -- scenarios (tools §8) on "." ---------------------------------------------------------------

def niutil_ok(*args: str) -> None:
    rc, out, err = call(niutil.main, *args)
    assert (rc, err) == (0, ""), (args, out, err)


def test_a1_passwd_line_for_a_new_user(nb):
    niutil_ok("-create", ".", "/users/bob")
    for key, val in (("uid", "501"), ("gid", "20"), ("realname", "Bob Smith"),
                     ("home", "/Users/bob"), ("shell", "/bin/tcsh"), ("passwd", "*"),
                     ("_writers_passwd", "bob")):
        niutil_ok("-createprop", ".", "/users/bob", key, val)
    rc, out, err = call(nidump.main, "passwd", ".")
    assert (rc, err) == (0, "")
    assert "bob:*:501:20::0:0:Bob Smith:/Users/bob:/bin/tcsh\n" in out
    assert out.startswith("root:")     # the local domain's standard users come first
    p = sub("nidump", "passwd", ".", env=nb.env)
    assert (p.returncode, p.stdout) == (0, out)


def test_a4_group_line(nb):
    niutil_ok("-create", ".", "/groups/eng")
    niutil_ok("-createprop", ".", "/groups/eng", "gid", "600")
    niutil_ok("-mergeprop", ".", "/groups/eng", "users", "alice", "bob")
    niutil_ok("-mergeprop", ".", "/groups/eng", "users", "alice", "bob")
    rc, out, _ = call(nidump.main, "group", ".")
    assert rc == 0
    assert "\neng::600:alice,bob\n" in out


def test_a5_hosts_line(nb):
    niutil_ok("-create", ".", "/machines/fileserver")
    niutil_ok("-createprop", ".", "/machines/fileserver", "ip_address", "10.0.0.5")
    niutil_ok("-appendprop", ".", "/machines/fileserver", "name", "fs")
    rc, out, _ = call(nidump.main, "hosts", ".")
    assert rc == 0
    assert "10.0.0.5\tfileserver fs\n" in out
    assert "127.0.0.1\tlocalhost\n" in out


def test_a6_fstab_line(nb):
    path = "/mounts/fs:\\/export\\/home"
    niutil_ok("-create", ".", path)
    niutil_ok("-createprop", ".", path, "vfstype", "nfs")
    niutil_ok("-createprop", ".", path, "dir", "/Network/Servers/")
    niutil_ok("-createprop", ".", path, "opts", "net")
    niutil_ok("-appendprop", ".", path, "opts", "rw")
    niutil_ok("-createprop", ".", path, "passno", "0")
    niutil_ok("-createprop", ".", path, "dump_freq", "0")
    rc, out, _ = call(nidump.main, "fstab", ".")
    assert (rc, out) == (0, "fs:/export/home /Network/Servers/ nfs net,rw 0 0\n")


def test_a7_aliases_line(nb):
    niutil_ok("-create", ".", "/aliases/staff")
    niutil_ok("-createprop", ".", "/aliases/staff", "members", "alice", "bob")
    rc, out, _ = call(nidump.main, "aliases", ".")
    assert rc == 0
    assert "\nstaff: alice,bob\n" in out
    assert out.startswith("postmaster: root\n")


def test_a8_printcap_entry(nb):
    niutil_ok("-create", ".", "/printers/lp2")
    for key, val in (("rm", "printhost"), ("rp", "lp2"), ("sd", "/var/spool/lpd/lp2"),
                     ("ty", "ps")):
        niutil_ok("-createprop", ".", "/printers/lp2", key, val)
    rc, out, _ = call(nidump.main, "printcap", ".")
    assert (rc, out) == (0, "lp2: \\\n\t:rm=printhost:rp=lp2:sd=/var/spool/lpd/lp2:ty=ps:\n")


def test_root_domain_and_relative_names(nb):
    rc, out, _ = call(nidump.main, "-r", "/machines", "/")
    assert rc == 0 and '"name" = ( "machines" );' in out
    rc, out2, _ = call(nidump.main, "-r", "/machines", "..")
    assert (rc, out2) == (0, out)


# -- missing tables (exit 0, tools §2.1) -------------------------------------------------------

@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A netinfod (-m) with no table but /machines removed: every format's table is
    missing."""
    d = Netinfod(tmp_path_factory.mktemp("bare"), "bare", "-m").start()
    try:
        dom = f"127.0.0.1:{d.port}/bare"

        async def strip():
            c = await open_domain(dom, tagged=True)
            try:
                await destroy_path(c, "/machines")
            finally:
                await c.close()
        asyncio.run(strip())
        yield dom
    finally:
        d.stop()


@pytest.mark.parametrize("fmt", [f for f in NIDUMP_FORMATS if f != "bootptab"])
def test_missing_table_prints_nothing_exit_0(bare, fmt):
    assert call(nidump.main, fmt, "-t", bare) == (0, "", "")


def test_missing_machines_bootptab_prints_its_header(bare):
    assert call(nidump.main, "bootptab", "-t", bare) == (0, "/private/tftpboot:/\nmach\n%%\n", "")


def test_missing_raw_path_is_an_error(bare):
    # The original printed nothing and exited 0: "nidump -r /nosuch . > users.raw" made
    # an empty backup (issue #9).
    assert call(nidump.main, "-r", "/no/such/dir", "-t", bare) == (
        1, "", "nidump: can't read directory /no/such/dir: No such directory\n")
    p = sub("nidump", "-r", "/nothing", "-t", bare, env=env_with_src())
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "", "nidump: can't read directory /nothing: No such directory\n")


def test_empty_table_prints_nothing(golden):
    populate(golden, True, {"/emptytable": []})
    assert call(nidump.main, "-r", "/emptytable", "-t", golden) == (
        0, '{\n  "name" = ( "emptytable" );\n}\n', "")


def test_resolver_without_nameserver_prints_nothing(bare):
    populate(bare, True, {"/locations/resolver": []},
             top={"/locations/resolver": [("domain", ["x.org"])]})
    assert call(nidump.main, "resolv.conf", "-t", bare) == (0, "", "")


# -- usage and exit statuses -------------------------------------------------------------------

def test_help():
    rc, out, err = call(nidump.main, "--help")
    assert (rc, err) == (0, "")
    assert out.startswith(nidump.USAGE) and "--json" in out


def test_usage_lists_every_format():
    for fmt in NIDUMP_FORMATS:
        assert fmt in nidump.USAGE
    assert "passwd.43" not in nidump.USAGE


@pytest.mark.parametrize("args,first", [
    ((), None),
    ((".",), None),
    (("passwd",), None),
    (("-t", "127.0.0.1/x"), None),
    (("-x", "passwd", "."), "nidump: unknown option -x"),
    (("passwd", ".", "-T"), None),
    (("nosuchformat", "."), None),            # just the usage (Appendix B)
    (("passwd.43", "."), None),
    (("-r",), None),
])
def test_usage_errors_exit_1(args, first):
    rc, out, err = call(nidump.main, *args)
    assert (rc, out) == (1, "")
    assert err == (first + "\n" if first else "") + nidump.USAGE


#: The usage exactly as the original prints it (tools Appendix B).
APPENDIX_B_USAGE = (
    "usage: nidump [-r] [-T timeout] {directory | format} [-t] domain\n"
    "known formats:\n"
    + "".join(f"\t{f}\n" for f in ("aliases", "bootptab", "bootparams", "ethers",
                                    "exports", "fstab", "group", "hosts", "networks",
                                    "passwd", "printcap", "protocols", "resolv.conf", "rpc",
                                    "services", "mountmaps")))


def test_usage_subprocess():
    p = sub("nidump", env=env_with_src())
    assert (p.returncode, p.stdout, p.stderr) == (1, "", APPENDIX_B_USAGE)
    assert nidump.USAGE == APPENDIX_B_USAGE


def test_unknown_format_prints_the_usage_only_subprocess():
    p = sub("nidump", "nosuchformat", ".", env=env_with_src())
    assert (p.returncode, p.stdout, p.stderr) == (1, "", APPENDIX_B_USAGE)


def test_mountmaps_subprocess(golden, bare):
    p = sub("nidump", "mountmaps", "-t", golden, env=env_with_src())
    assert (p.returncode, p.stdout, p.stderr) == (0, golden_text("mountmaps"), "")
    p = sub("nidump", "mountmaps", "-t", bare, env=env_with_src())   # no /mountmaps
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


def test_console_script():
    p = subprocess.run(["nidump", "--help"], capture_output=True, text=True,
                       env=env_with_src(), timeout=60)
    assert p.returncode == 0 and p.stdout.startswith(nidump.USAGE)


@pytest.mark.parametrize("arg,text", [
    ("nohost", "Bad format"),
    ("/local", "No host"),
    ("127.0.0.1/", "No tag"),
    ("1.2.3/local", "Bad address"),
    ("no-such-host.invalid/local", "Host not found"),
])
def test_tagged_parse_errors_exit_1_with_usage(arg, text):
    # tools §2.1: the original called usage() whenever do_open failed, a -t argument
    # that does not parse included (it exited 217-221 here before issue 17).
    rc, out, err = call(nidump.main, "passwd", "-t", arg)
    pre = "Can't find address for no-such-host.invalid\n" if "invalid" in arg else ""
    assert (rc, out) == (1, "")
    assert err == (f"{pre}nidump: incorrect format for domain {arg} ({text})\n{TAGGED_HELP}"
                   + nidump.USAGE)


def test_tagged_connect_failure_exit_1_with_usage():
    port = free_port()
    rc, out, err = call(nidump.main, "passwd", "-t", f"127.0.0.1:{port}/none")
    assert (rc, out) == (1, "")
    assert err == (f"nidump: can't connect to server 127.0.0.1:{port}/none: "
                   f"cannot connect to 127.0.0.1:{port}: Connection refused\n" + nidump.USAGE)


def test_unknown_domain_exit_1_with_usage(nb):
    rc, out, err = call(nidump.main, "passwd", "/nosuchdomain")
    assert (rc, out) == (1, "")
    assert err == ("nidump: can't connect to server for domain /nosuchdomain: unknown "
                   "domain nosuchdomain: no /machines entry of network@127.0.0.1 serves "
                   "nosuchdomain/<tag>\n" + nidump.USAGE)
    p = sub("nidump", "-r", "/users", "/nosuchdomain", env=nb.env)
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr.endswith(nidump.USAGE)


def test_read_failure_exit_1(golden, monkeypatch):
    async def refuse(self, d):
        raise NiError(Status.SYSTEMERR)
    monkeypatch.setattr("netinfo.client.Client.listall", refuse)
    rc, out, err = call(nidump.main, "passwd", "-t", golden)
    assert (rc, out, err) == (1, "", "nidump: can't read directory /users: "
                              "Remote system error\n")
    monkeypatch.setattr("netinfo.client.Client.children", refuse)
    rc, out, err = call(nidump.main, "-r", "/users", "-t", golden)
    assert (rc, out, err) == (1, "", "nidump: can't read directory /users: "
                              "Remote system error\n")


# -- --json (beyond the original) --------------------------------------------------------------

def test_json_flat(golden):
    rc, out, err = call(nidump.main, "--json", "passwd", "-t", golden)
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert doc["format"] == "passwd" and doc["directory"] == "/users"
    # The nameless child is left out, as in the text output.
    assert [r[0] for r in doc["records"]] == [{"name": "name", "values": ["alice"]},
                                             {"name": "name", "values": ["bob", "robert"]}]
    assert {"name": "picture", "values": ["/p.tiff"]} in doc["records"][0]


def test_json_flat_skips_what_the_format_skips(golden):
    rc, out, _ = call(nidump.main, "aliases", "--json", "-t", golden)
    names = [r[0]["values"][0] for r in json.loads(out)["records"]]
    assert (rc, names) == (0, ["staff", "biglist"])
    rc, out, _ = call(nidump.main, "--json", "resolv.conf", "-t", golden)
    assert json.loads(out)["records"][0][0] == {"name": "name", "values": ["resolver"]}


def test_json_missing_table(bare):
    rc, out, _ = call(nidump.main, "--json", "passwd", "-t", bare)
    assert (rc, json.loads(out)) == (0, {"format": "passwd", "directory": "/users",
                                         "records": []})


def test_json_raw(golden):
    rc, out, err = call(nidump.main, "--json", "-r", "/golden", "-t", golden)
    assert (rc, err) == (0, "")
    doc = json.loads(out)

    def back(d) -> RawNode:
        return RawNode([(p["name"], p["values"]) for p in d["properties"]],
                       [back(c) for c in d["children"]])
    assert back(doc) == raw_from_text(golden_text("raw"))


def test_json_subprocess(golden):
    p = sub("nidump", "--json", "-r", "/golden/c2", "-t", golden, env=env_with_src())
    assert p.returncode == 0
    assert json.loads(p.stdout)["children"][0]["properties"][0]["values"] == ["deep"]


# -- raw output details (tools §2.3 + the backslash decision) ----------------------------------

def test_raw_backslashes_and_quotes_round_trip(golden):
    populate(golden, True, {"/esc": [([("name", ["e"]), ("v", ['\\', '"', '\\"', 'a\nb',
                                                            "tab\there", "ünï"])], [])]})
    rc, out, _ = call(nidump.main, "-r", "/esc/e", "-t", golden)
    assert rc == 0
    assert out == ('{\n  "name" = ( "e" );\n  "v" = ( "\\\\", "\\"", "\\\\\\"", "a\nb", '
                   '"tab\there", "ünï" );\n}\n')
    assert raw_from_text(out).props[1][1] == ['\\', '"', '\\"', 'a\nb', "tab\there", "ünï"]


def test_broken_pipe_is_quiet(golden):
    p = subprocess.run(f"{sys.executable} -m netinfo.cli.nidump -r / -t {golden} | head -c 10",
                       shell=True, capture_output=True, text=True, env=env_with_src(),
                       timeout=60)
    assert p.stdout == "{\n  \"maste"
    assert "Traceback" not in p.stderr
