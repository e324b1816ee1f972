"""niutil (tools §1) end to end: in process (``main([...])``) and as a real subprocess,
against a real nibindd serving ``.`` (local) bound to ``/`` (network root), and against
single netinfods reached with ``-t 127.0.0.1:PORT/TAG``.

Covers scenarios A1, A3, A4, A5, A7, A8, A15, A16 (tools §8; the nidump checks are
replaced by reading the same data back), every exit status of tools §1.5, every output
format byte for byte, and the argument-parsing quirks of tools §1.2.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from itertools import count

import pytest

from netinfo.cli import niutil
from netinfo.cli.netinfod import hostname
from netinfo.client import verbs
from netinfo.client.domain import open_domain
from netinfo.errors import NiError, Status

from .conftest import free_port, needs_privilege_rule, served_domains, tool_process

# The usage text exactly as the original prints it (tools Appendix B).
USAGE = (
    "usage:\n"
    "\tniutil -create      [opts] <domain> <path>\n"
    "\tniutil -destroy     [opts] <domain> <path>\n"
    "\tniutil -createprop  [opts] <domain> <path> <propkey> [<val>...]\n"
    "\tniutil -appendprop  [opts] <domain> <path> <propkey> <val>...\n"
    "\tniutil -mergeprop   [opts] <domain> <path> <propkey> <val>...\n"
    "\tniutil -insertval   [opts] <domain> <path> <propkey> <val> <index>\n"
    "\tniutil -destroyprop [opts] <domain> <path> <propkey>...\n"
    "\tniutil -destroyval  [opts] <domain> <path> <propkey> <val>...\n"
    "\tniutil -renameprop  [opts] <domain> <path> <oldkey> <newkey>\n"
    "\tniutil -read        [opts] <domain> <path>\n"
    "\tniutil -list        [opts] <domain> <path> [<propkey>]\n"
    "\tniutil -readprop    [opts] <domain> <path> <propkey>\n"
    "\tniutil -readval     [opts] <domain> <path> <propkey> <index>\n"
    "\tniutil -rparent     [opts] <domain>\n"
    "\tniutil -resync      [opts] <domain>\n"
    "\tniutil -statistics  [opts] <domain>\n"
    "\tniutil -domainname  [opts] <domain>\n"
    "opts:\n"
    "\t-t\t\tdomain specified by <hostname>/<tag>\n"
    "\t-p\t\tprompt for password\n"
    "\t-u <user>\tauthenticate as another user (implies -p)\n"
    "\t-P <password>\tpassword supplied on command line (overrides -p)\n"
    "\t-T <timeout>\tread & write timeout in seconds (default 30)\n"
    "\t-n\t\tnumeric output for -rparent\n"
    "\t-R\t\tRetry operation if master is busy\n"
)
TAGGED_HELP = "usage: -t <host>/<tag>\n<host> can be a host name or IP address\n"

_names = count()


def uniq(prefix: str = "d") -> str:
    """A directory name no other test of this module uses (the servers are shared)."""
    return f"{prefix}{next(_names)}"


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    """One nibindd for the module: ``.`` = local, ``/`` = network root."""
    with served_domains(tmp_path_factory, "niutil") as d:
        yield d


@pytest.fixture
def ni(nb, capsys):
    """``ni(*args)`` → (exit status, stdout, stderr) of ``niutil.main`` in process."""
    def call(*args: str) -> tuple[int, str, str]:
        rc = niutil.main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err
    return call


def sub(nb, *args: str, input: str | None = None, env: dict | None = None,
        **kw) -> subprocess.CompletedProcess:
    """niutil as a real subprocess."""
    e = dict(nb.env)
    e.update(env or {})
    return tool_process("niutil", *args, env=e, input=input, timeout=60, **kw)


def unprivileged(nb) -> dict:
    return {"NETINFO_PRIVILEGED": "0"}


# -- usage and argument parsing (tools §1.1, §1.2) ---------------------------------------------

def test_usage_without_arguments_is_exact(nb):
    p = sub(nb)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr == USAGE


def test_help_prints_full_usage_and_exits_0(ni):
    rc, out, err = ni("--help")
    assert rc == 0 and err == ""
    assert out.startswith(USAGE)
    assert "--json" in out


def test_no_operation_is_usage(ni):
    rc, out, err = ni(".", "/")
    assert (rc, out, err) == (1, "", USAGE)


def test_unknown_option_before_operation_is_usage(ni):
    rc, _, err = ni("-x", "-read", ".", "/users/root")
    assert rc == 1 and err == USAGE


def test_unknown_option_after_operation_is_ignored(ni):
    rc, out, _ = ni("-read", "-x", ".", "/users/root")
    assert rc == 0 and out.startswith("name: root\n")


def test_last_operation_wins(ni):
    rc, out, _ = ni("-list", "-read", ".", "/users/root")
    assert rc == 0 and out.startswith("name: root\n")


def test_options_after_operands_are_still_seen(ni):
    # every -x is examined wherever it stands (tools §1.2): -read after the operands
    rc, out, _ = ni(".", "/users/root", "-read")
    assert rc == 0 and out.startswith("name: root\n")


def test_dash_value_is_an_operand(ni):
    # the classic: "niutil -createprop . /users/nobody uid -2" (tools §1.2)
    rc, out, err = ni("-createprop", ".", "/users/nobody", "uid", "-2")
    assert (rc, out, err) == (0, "", "")
    assert ni("-readprop", ".", "/users/nobody", "uid")[1] == "-2\n"


def test_timeout_value_is_not_an_operand(ni):
    rc, out, _ = ni("-T", "7", "-readprop", ".", "/users/root", "uid")
    assert (rc, out) == (0, "0\n")


@pytest.mark.parametrize("args,first", [
    (["-read", "."], "-read"),
    (["-n", "-readprop", ".", "/users/root"], "-n"),
    (["-createprop", ".", "/"], "-createprop"),
    (["-appendprop", ".", "/", "k"], "-appendprop"),
    (["-insertval", ".", "/", "k", "v"], "-insertval"),
    (["-statistics"], "-statistics"),
    (["-read", ".", "/", "-T"], "-read"),
    (["-read", ".", "/", "-u"], "-read"),
])
def test_insufficient_arguments(ni, args, first):
    rc, out, err = ni(*args)
    assert rc == 1 and out == ""
    assert err == f"niutil: insufficient number of arguments for {first}\n" + USAGE


def test_minimum_operand_counts_match_the_table():
    want = {"create": 2, "destroy": 2, "read": 2, "list": 2, "createprop": 3,
            "destroyprop": 3, "readprop": 3, "appendprop": 4, "mergeprop": 4,
            "destroyval": 4, "renameprop": 4, "readval": 4, "insertval": 5, "rparent": 1,
            "resync": 1, "statistics": 1, "domainname": 1}
    for flag, op in niutil.OPS.items():
        assert want[op.name] == op.minimum, flag
    assert niutil.OPS["-stat"] == niutil.OPS["-statistics"]


def test_parse_password_rules():
    o = niutil.parse_args(["-p", "-read", ".", "/"])
    assert o.prompt and o.user is None and o.password is None
    o = niutil.parse_args(["-u", "bob", "-read", ".", "/"])
    assert o.prompt and o.user == "bob" and o.operands == [".", "/"]
    o = niutil.parse_args(["-P", "pw", "-read", ".", "/"])
    assert o.password == "pw" and not o.prompt and o.operands == [".", "/"]
    o = niutil.parse_args(["-read", "-T", "5", "-n", "-R", "-t", "h/t", "/"])
    assert (o.timeout, o.numeric, o.retry, o.tagged, o.operands) == (5.0, True, True, True,
                                                                      ["h/t", "/"])


# -- A1: add a user ----------------------------------------------------------------------------

def test_a1_add_user_as_subprocesses(nb):
    user = uniq("bob")
    steps = [
        ["-create", ".", f"/users/{user}"],
        ["-createprop", ".", f"/users/{user}", "uid", "501"],
        ["-createprop", ".", f"/users/{user}", "gid", "20"],
        ["-createprop", ".", f"/users/{user}", "realname", "Bob Smith"],
        ["-createprop", ".", f"/users/{user}", "home", f"/Users/{user}"],
        ["-createprop", ".", f"/users/{user}", "shell", "/bin/tcsh"],
        ["-createprop", ".", f"/users/{user}", "passwd", "*"],
        ["-createprop", ".", f"/users/{user}", "_writers_passwd", user],
        ["-appendprop", ".", "/groups/staff", "users", user],
    ]
    for args in steps:
        p = sub(nb, *args)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", ""), args
    p = sub(nb, "-read", ".", f"/users/{user}")
    assert p.returncode == 0
    assert p.stdout == (f"name: {user}\nuid: 501\ngid: 20\nrealname: Bob Smith\n"
                        f"home: /Users/{user}\nshell: /bin/tcsh\npasswd: *\n"
                        f"_writers_passwd: {user}\n")
    # the passwd-line fields nidump would print, read back one by one
    fields = [sub(nb, "-readprop", ".", f"/users/{user}", k).stdout.rstrip("\n")
              for k in ("name", "passwd", "uid", "gid", "realname", "home", "shell")]
    assert fields == [user, "*", "501", "20", "Bob Smith", f"/Users/{user}", "/bin/tcsh"]
    assert sub(nb, "-readprop", ".", "/groups/staff", "users").stdout == f"root {user}\n"
    # -mergeprop for idempotency
    assert sub(nb, "-mergeprop", ".", "/groups/staff", "users", user).returncode == 0
    assert sub(nb, "-readprop", ".", "/groups/staff", "users").stdout == f"root {user}\n"
    sub(nb, "-destroyval", ".", "/groups/staff", "users", user)


# -- A3: change or delete a user ---------------------------------------------------------------

def test_a3_change_and_delete_user(ni):
    user = uniq("bob")
    path = f"/users/{user}"
    ni("-create", ".", path)
    for k, v in (("uid", "502"), ("shell", "/bin/tcsh"), ("home", "/Users/x")):
        ni("-createprop", ".", path, k, v)
    ni("-appendprop", ".", "/groups/staff", "users", user)
    assert ni("-createprop", ".", path, "shell", "/bin/zsh")[0] == 0
    # replaced in place: same position
    assert ni("-read", ".", path)[1] == (f"name: {user}\nuid: 502\nshell: /bin/zsh\n"
                                         "home: /Users/x\n")
    assert ni("-destroyval", ".", "/groups/staff", "users", user)[0] == 0
    assert user not in ni("-readprop", ".", "/groups/staff", "users")[1].split()
    assert ni("-destroy", ".", path) == (0, "", "")
    assert ni("-read", ".", path) == (
        105, "", f"niutil: can't open directory {path}: No such directory\n")


def test_a3_read_after_destroy_exits_105_as_subprocess(nb):
    user = uniq("gone")
    assert sub(nb, "-create", ".", f"/users/{user}").returncode == 0
    assert sub(nb, "-destroy", ".", f"/users/{user}").returncode == 0
    p = sub(nb, "-read", ".", f"/users/{user}")
    assert p.returncode == 105
    assert p.stderr == f"niutil: can't open directory /users/{user}: No such directory\n"


# -- A4, A5, A7, A8 ---------------------------------------------------------------------------

def test_a4_group_with_members(ni):
    g = uniq("eng")
    assert ni("-create", ".", f"/groups/{g}")[0] == 0
    assert ni("-createprop", ".", f"/groups/{g}", "gid", "600")[0] == 0
    for _ in range(2):  # twice: no duplicates
        assert ni("-mergeprop", ".", f"/groups/{g}", "users", "alice", "bob")[0] == 0
    assert ni("-read", ".", f"/groups/{g}")[1] == f"name: {g}\ngid: 600\nusers: alice bob\n"
    assert ni("-readprop", ".", f"/groups/{g}", "passwd")[0] == 106  # "eng::600:..."


def test_a5_add_host(ni):
    h = uniq("fileserver")
    assert ni("-create", ".", f"/machines/{h}")[0] == 0
    assert ni("-createprop", ".", f"/machines/{h}", "ip_address", "10.0.0.5")[0] == 0
    assert ni("-appendprop", ".", f"/machines/{h}", "name", "fs")[0] == 0
    assert ni("-readprop", ".", f"/machines/{h}", "ip_address")[1] == "10.0.0.5\n"
    assert ni("-readprop", ".", f"/machines/{h}", "name")[1] == f"{h} fs\n"
    rc, out, _ = ni("-list", ".", "/machines", "ip_address")
    assert rc == 0 and "\t 10.0.0.5\n" in out


def test_a7_mail_alias(ni):
    a = uniq("staff")
    assert ni("-create", ".", f"/aliases/{a}")[0] == 0
    assert ni("-createprop", ".", f"/aliases/{a}", "members", "alice", "bob")[0] == 0
    assert ni("-read", ".", f"/aliases/{a}")[1] == f"name: {a}\nmembers: alice bob\n"


def test_a8_printer(ni):
    p = f"/printers/{uniq('lp')}"
    assert ni("-create", ".", p)[0] == 0
    for k, v in (("rm", "printhost"), ("rp", "lp2"), ("sd", "/var/spool/lpd/lp2"),
                 ("ty", "PostScript")):
        assert ni("-createprop", ".", p, k, v) == (0, "", "")
    out = ni("-read", ".", p)[1]
    assert out.endswith("rm: printhost\nrp: lp2\nsd: /var/spool/lpd/lp2\nty: PostScript\n")


# -- A15: restrict and delegate access --------------------------------------------------------

def test_a15_root_writes_access_properties(ni):
    assert ni("-createprop", "/", "/", "trusted_networks", "10.0.1") == (0, "", "")
    assert ni("-readprop", "/", "/", "trusted_networks")[1] == "10.0.1\n"
    # loopback callers stay allowed; put it back as it was
    assert ni("-destroyprop", "/", "/", "trusted_networks")[0] == 0
    assert ni("-createprop", "/", "/printers", "_writers", "alice")[0] == 0
    assert ni("-readprop", "/", "/printers", "_writers")[1] == "alice\n"
    user = uniq("bob")
    ni("-create", ".", f"/users/{user}")
    assert ni("-createprop", ".", f"/users/{user}", "_writers_passwd", user)[0] == 0
    assert ni("-readprop", ".", f"/users/{user}", "_writers_passwd")[1] == f"{user}\n"


@needs_privilege_rule
def test_a15_non_root_write_is_denied_104(nb):
    p = sub(nb, "-createprop", ".", "/users/root", "shell", "/bin/zsh", env=unprivileged(nb))
    assert p.returncode == 104
    assert p.stderr == "niutil: can't modify shell in directory /users/root: " \
                       "Permission denied\n"
    p = sub(nb, "-create", ".", f"/users/{uniq('x')}", env=unprivileged(nb))
    assert p.returncode == 104
    assert p.stderr.endswith(": Permission denied\n")


@needs_privilege_rule
def test_a15_delegation_lets_non_root_write(nb, ni, monkeypatch):
    d = f"/{uniq('shared')}"
    ni("-create", ".", d)
    ni("-createprop", ".", d, "_writers_shell", "*")
    ni("-createprop", ".", d, "shell", "/bin/sh")
    monkeypatch.setenv("NETINFO_PRIVILEGED", "0")
    # a property delegated by _writers_<key>: its values may change ...
    assert ni("-createprop", ".", d, "shell", "/bin/zsh") == (0, "", "")
    assert ni("-readprop", ".", d, "shell")[1] == "/bin/zsh\n"
    # ... but the directory itself may not
    assert ni("-createprop", ".", d, "other", "x")[0] == 104
    # a directory with _writers "*" accepts everything (the template's /printers)
    monkeypatch.delenv("NETINFO_PRIVILEGED")
    ni("-createprop", ".", d, "_writers", "*")
    monkeypatch.setenv("NETINFO_PRIVILEGED", "0")
    assert ni("-create", ".", f"{d}/sub") == (0, "", "")


# -- A16 and every exit status of tools §1.5 ---------------------------------------------------

def test_unknown_domain_199(nb):
    p = sub(nb, "-read", "/nosuchdomain", "/")
    assert p.returncode == 199
    # names the domain that is missing, and where it was looked for (issue #9)
    assert p.stderr == ("niutil: can't connect to server for domain /nosuchdomain: unknown "
                        "domain nosuchdomain: no /machines entry of network@127.0.0.1 serves "
                        "nosuchdomain/<tag>\n")


@pytest.mark.parametrize("arg,code,text", [
    ("nohost", 217, "Bad format"),
    ("/local", 218, "No host"),
    ("127.0.0.1/", 219, "No tag"),
    ("1.2.3/local", 220, "Bad address"),
    ("no-such-host.invalid/local", 221, "Host not found"),
])
def test_tagged_parse_errors_217_to_221(ni, arg, code, text):
    rc, out, err = ni("-read", "-t", arg, "/")
    assert rc == code and out == ""
    pre = "Can't find address for no-such-host.invalid\n" if code == 221 else ""
    assert err == pre + f"niutil: incorrect format for domain {arg} ({text})\n" + TAGGED_HELP


def test_tagged_parse_error_as_subprocess(nb):
    p = sub(nb, "-t", "-statistics", "nohost")
    assert p.returncode == 217
    assert p.stderr == "niutil: incorrect format for domain nohost (Bad format)\n" + \
        TAGGED_HELP


def test_tagged_connect_failure_199(nb):
    # The original connected lazily: the failure surfaced as NI_FAILED (199) at the first
    # call; the reason after the colon says which failure it was (issue 17).
    port = free_port()  # nothing listens there
    p = sub(nb, "-read", "-t", f"127.0.0.1:{port}/nothing", "/")
    assert p.returncode == 199
    assert p.stderr == (f"niutil: can't connect to server 127.0.0.1:{port}/nothing: "
                        f"cannot connect to 127.0.0.1:{port}: Connection refused\n")
    # a host whose nibindd does not serve the tag: 199 (was 200), and the same reason
    # as unknowntag@127.0.0.1 gives (it said "Communication failure")
    p = sub(nb, "-read", "-t", "127.0.0.1/unknowntag", "/")
    assert (p.returncode, p.stdout, p.stderr) == (
        199, "", "niutil: can't connect to server 127.0.0.1/unknowntag: no such tag "
                 "unknowntag at 127.0.0.1\n")
    p = sub(nb, "-read", "unknowntag@127.0.0.1", "/")
    assert (p.returncode, p.stdout, p.stderr) == (
        199, "", "niutil: can't connect to server for domain unknowntag@127.0.0.1: no such "
                 "tag unknowntag at 127.0.0.1\n")


# -- domain arguments that do not parse, and why a domain cannot be opened (issue #9) ------

@pytest.mark.parametrize("domain,why", [
    ("local@", "no host after '@'"),
    ("@127.0.0.1", "no tag before '@'"),
    (":abc", "no host before ':abc'"),
    (":-1", "no host before ':-1'"),
    ("host:99999", "bad port 99999 (not in 1-65535)"),
    ("local@127.0.0.1:99999", "bad port 99999 (not in 1-65535)"),   # OverflowError before
    ("local@127.0.0.1:abc", "bad port 'abc' (not a number)"),
    ("local@127.0.0.1:-1", "bad port '-1' (not a number)"),
    ("local@127.0.0.1:0", "bad port 0 (not in 1-65535)"),
    ("local@[::1", "no ']' after the IPv6 address in [::1"),
    ("local@[nope]:5", "'nope' is not an IPv6 address"),
    ("127.0.0.1:5", "127.0.0.1:5 names a server but no tag (write TAG@127.0.0.1:5)"),
])
def test_bad_domain_names_the_bad_part(nb, domain, why):
    p = sub(nb, "-read", domain, "/")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", f"niutil: bad domain {domain}: {why}\n")


def test_unknown_domain_tag_and_nibindd_each_say_so(nb):
    p = sub(nb, "-read", "nosuchtag@127.0.0.1", "/")
    assert (p.returncode, p.stderr) == (
        199, "niutil: can't connect to server for domain nosuchtag@127.0.0.1: no such tag "
             "nosuchtag at 127.0.0.1\n")
    p = sub(nb, "-read", ".", "/", env={"NETINFO_PORTMAPPER": "127.0.0.1:9"})
    assert (p.returncode, p.stderr) == (
        199, "niutil: can't connect to server for domain .: no nibindd at 127.0.0.1 (no "
             "answer from the portmapper at 127.0.0.1:9)\n")
    port = free_port()
    p = sub(nb, "-read", f"local@127.0.0.1:{port}", "/")
    assert (p.returncode, p.stderr) == (
        199, f"niutil: can't connect to server for domain local@127.0.0.1:{port}: cannot "
             f"connect to 127.0.0.1:{port}: Connection refused\n")


@pytest.fixture
def v6_server(tmp_path):
    """A netinfod (-m) listening on the IPv6 loopback only; yields its port."""
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    from .conftest import TRUST, env_with_src
    proc = subprocess.Popen([sys.executable, "-m", "netinfo.cli.netinfod", "--dir",
                             str(tmp_path), "--bind", "::1", "--port", str(port), *TRUST,
                             "-m", "six"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=env_with_src(), text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("netinfod: serving six "):
                break
        else:
            pytest.fail(f"netinfod on ::1 did not start ({proc.wait()})")
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


def test_ipv6_literals_wherever_an_address_goes(nb, v6_server):
    port = v6_server
    for args in (["-t", f"[::1]:{port}/six"], [f"six@[::1]:{port}"]):
        p = sub(nb, "-createprop", *args, "/", "v6", "yes")
        assert (p.returncode, p.stderr) == (0, "")
        p = sub(nb, "-readprop", *args, "/", "v6")
        assert (p.returncode, p.stdout, p.stderr) == (0, "yes\n", "")
    # without a port, the nibindd of ::1 is asked (there is none here), and said so
    p = sub(nb, "-read", "six@::1", "/")
    assert p.returncode == 199
    assert p.stderr.startswith("niutil: can't connect to server for domain six@::1: no "
                               "nibindd at ::1 (no answer from the portmapper at [::1]:")


def test_usage_is_the_originals_subprocess(nb):
    # Appendix B: "usage:", one tab-indented line per command, "opts:", one option a line
    p = sub(nb, "-bogus")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", USAGE)


def test_destroy_of_a_missing_directory_says_destroy(nb):
    p = sub(nb, "-destroy", ".", "/users/missing")
    assert (p.returncode, p.stdout, p.stderr) == (
        105, "", "niutil: can't destroy directory /users/missing: No such directory\n")


def test_readval_past_the_end_exits_0(nb):
    # Issue 17: the original printed its message and exited 0 (tools §1.5 quirk); the
    # original's status is the spec (this exited 107 before). Nothing on stdout.
    p = sub(nb, "-readval", ".", "/users/root", "shell", "5")
    assert (p.returncode, p.stdout, p.stderr) == (
        0, "", "niutil: property shell in directory /users/root has no value at index 5\n")


@pytest.mark.parametrize("value", ["abc", "0", "-5", "3x"])
def test_bad_timeout_is_refused(nb, value):
    p = sub(nb, "-T", value, "-read", ".", "/")
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == f"niutil: invalid timeout {value}\n" + USAGE


@pytest.mark.parametrize("path,why", [
    ("", "'': an empty path names no directory"),
    ("/users/name=", "/users/name=: empty value in component name="),
    ("/users/=x", "/users/=x: empty key in component =x"),
])
def test_create_of_a_nameless_directory_is_refused(nb, path, why):
    before = sub(nb, "-list", ".", "/users").stdout
    p = sub(nb, "-create", ".", path)
    assert (p.returncode, p.stdout, p.stderr) == (1, "", f"niutil: can't create directory {why}\n")
    assert sub(nb, "-list", ".", "/users").stdout == before


def test_missing_path_105_and_missing_property_106(ni):
    assert ni("-readprop", ".", "/nosuch", "name") == (
        105, "", "niutil: can't open directory /nosuch: No such directory\n")
    assert ni("-readprop", ".", "/users/root", "nokey") == (
        106, "", "niutil: can't get property nokey in directory /users/root: "
                 "No such property\n")
    assert ni("-renameprop", ".", "/users/root", "nokey", "x") == (
        106, "", "niutil: can't rename nokey in directory /users/root: No such property\n")
    assert ni("-readval", ".", "/users/root", "nokey", "0")[0] == 106


def test_rparent_on_root_prints_on_stdout_and_exits_111(nb):
    p = sub(nb, "-rparent", "/")
    assert (p.returncode, p.stdout, p.stderr) == (111, "root domain: no parent\n", "")


def test_insertval_non_integer_index_exits_3(nb, ni):
    p = sub(nb, "-insertval", ".", "/users/root", "shell", "x", "1.5")
    assert p.returncode == 3
    assert p.stderr == "niutil: index for -insertval must be an integer\nfound 1.5\n"
    assert ni("-insertval", ".", "/users/root", "shell", "x", "two")[0] == 3


def test_unicode_digits_are_not_numbers(nb, ni):
    # "1²".isdigit() is True but int("1²") fails: indexes and IDs take ASCII digits only,
    # read as C's atoi reads them (model.atoi); nothing may end in a traceback.
    p = sub(nb, "-readval", ".", "/users/root", "name", "1²")
    assert (p.returncode, p.stdout, p.stderr) == (
        0, "", "niutil: property name in directory /users/root has no value at index 1\n")
    assert ni("-readval", ".", "/users/root", "name", "0²") == (0, "root\n", "")
    p = sub(nb, "-insertval", ".", "/users/root", "shell", "x", "1²")
    assert (p.returncode, p.stderr) == (
        3, "niutil: index for -insertval must be an integer\nfound 1²\n")
    # a path of superscript digits is a name to look up, not a directory ID
    p = sub(nb, "-read", ".", "²")
    assert (p.returncode, p.stdout, p.stderr) == (
        105, "", "niutil: can't open directory ²: No such directory\n")


def test_locked_directory_is_read_only_113(ni):
    d = f"/{uniq('locked')}"
    ni("-create", ".", d)
    assert ni("-createprop", ".", d, "_locked") == (0, "", "")
    assert ni("-createprop", ".", d, "color", "red") == (
        113, "", f"niutil: can't modify color in directory {d}: "
                 "No writes allowed: all objects are read-only\n")
    assert ni("-create", ".", f"{d}/child") == (
        113, "", f"niutil: can't create directory {d}/child: "
                 "No writes allowed: all objects are read-only\n")
    # the superuser may still unlock it
    assert ni("-destroyprop", ".", d, "_locked")[0] == 0
    assert ni("-create", ".", f"{d}/child")[0] == 0


def test_write_to_clone_by_tag_is_read_only_113(netinfod, capsys):
    # a clone whose master is elsewhere: writes from anyone but the master are refused.
    # The master serves another tag at a loopback address where nothing listens (a master
    # tag that is not ours makes a clone even on this host, spec §9.1; tests send only to
    # loopback, so a far-away master address would be a packet to the world).
    clone = netinfod("replica", "-c", "farmaster", "127.0.0.66", "network")
    rc = niutil.main(["-createprop", "-t", f"127.0.0.1:{clone.port}/replica", "/", "k", "v"])
    _, err = capsys.readouterr()
    assert rc == 113
    assert err == "niutil: can't modify k in directory /: " \
                  "No writes allowed: all objects are read-only\n"
    rc = niutil.main(["-statistics", "-t", f"127.0.0.1:{clone.port}/replica"])
    assert "tag: replica clone\n" in capsys.readouterr().out


def test_destroy_root_is_refused_and_touches_nothing(ni):
    before = ni("-list", ".", "/")[1]
    assert ni("-destroy", ".", "/") == (
        109, "", "niutil: can't destroy directory /: "
                 "Object is not child of parent: cannot destroy\n")
    assert ni("-list", ".", "/")[1] == before


def test_bad_id_path_exits_101(ni):
    assert ni("-read", ".", "999999") == (
        101, "", "niutil: can't open directory 999999: ID is invalid\n")


def test_unknown_user_exits_121(ni):
    assert ni("-u", "nosuchuser", "-P", "pw", "-read", ".", "/") == (
        121, "", "niutil: can't authenticate as nosuchuser: No such user\n")


def test_password_on_command_line(ni):
    rc, out, _ = ni("-P", "secret", "-readprop", ".", "/users/root", "uid")
    assert (rc, out) == (0, "0\n")


def test_password_prompt(nb):
    # no controlling terminal: the prompt falls back to stdin/stderr
    p = sub(nb, "-p", "-readprop", ".", "/users/root", "uid", input="secret\n",
            start_new_session=True)
    assert p.returncode == 0 and p.stdout == "0\n"
    assert "Password: " in p.stderr


# -- output formats (tools §1.4) ---------------------------------------------------------------

def test_read_format_with_empty_value_list(ni):
    d = f"/{uniq('fmt')}"
    ni("-create", ".", d)
    ni("-createprop", ".", d, "empty")
    ni("-createprop", ".", d, "two", "a b", "c")
    assert ni("-read", ".", d) == (0, f"name: {d[1:]}\nempty:\ntwo: a b c\n", "")
    assert ni("-readprop", ".", d, "empty") == (0, "\n", "")
    assert ni("-readprop", ".", d, "two") == (0, "a b c\n", "")


def test_list_format_tab_then_space_prefixed_values(nb, ni):
    d = f"/{uniq('lst')}"
    ni("-create", ".", f"{d}/a")
    ni("-create", ".", f"{d}/b")
    ni("-appendprop", ".", f"{d}/b", "name", "bee")
    ni("-createprop", ".", f"{d}/a", "color", "red", "dark")
    ids = asyncio.run(_ids(".", [f"{d}/a", f"{d}/b"]))
    a, b = ids[f"{d}/a"], ids[f"{d}/b"]
    assert ni("-list", ".", d) == (0, f"{a}\t a\n{b}\t b bee\n", "")
    # a child without the key still gets its line, ending after the TAB
    assert ni("-list", ".", d, "color") == (0, f"{a}\t red dark\n{b}\t\n", "")
    p = sub(nb, "-list", ".", d)
    assert p.stdout == f"{a}\t a\n{b}\t b bee\n"


def test_list_missing_directory_message_has_no_colon(ni):
    assert ni("-list", ".", "/nosuch") == (
        105, "", "niutil can't open directory /nosuch: No such directory\n")


def test_readval(ni):
    d = f"/{uniq('rv')}"
    ni("-create", ".", d)
    ni("-createprop", ".", d, "k", "zero", "one")
    assert ni("-readval", ".", d, "k", "1") == (0, "one\n", "")
    # past the end: the original's message, and exit 0 as the original (tools §1.5)
    assert ni("-readval", ".", d, "k", "2") == (
        0, "", f"niutil: property k in directory {d} has no value at index 2\n")


def test_rparent_formats(nb):
    try:
        name = socket.gethostbyaddr("127.0.0.1")[0]
    except OSError:
        name = "127.0.0.1"
    p = sub(nb, "-rparent", ".")
    assert (p.returncode, p.stdout, p.stderr) == (0, f"{name}/network\n", "")
    p = sub(nb, "-rparent", "-n", ".")
    assert (p.returncode, p.stdout) == (0, "127.0.0.1/network\n")


def test_domainname(ni):
    assert ni("-domainname", "/") == (0, "/\n", "")
    assert ni("-domainname", ".") == (0, f"/{hostname()}\n", "")


def test_statistics_format(ni):
    rc, out, err = ni("-statistics", ".")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("checksum: ")
    assert "tag: local master 0" in lines
    assert all(": " in ln or ln.endswith(":") for ln in lines)
    assert ni("-stat", ".")[1].splitlines()[0].startswith("checksum: ")


def test_tagged_netinfod(engine_netinfod, capsys):
    d = engine_netinfod("solo", "-m")   # on each engine (conftest.SERVED_ENGINES)
    t = f"127.0.0.1:{d.port}/solo"

    def ni(*args):
        rc = niutil.main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err
    assert ni("-create", "-t", t, "/things/one") == (0, "", "")
    assert ni("-list", "-t", t, "/things")[1].endswith("\t one\n")
    assert "tag: solo master 0\n" in ni("-statistics", "-t", t)[1]
    assert ni("-rparent", "-t", t) == (111, "root domain: no parent\n", "")
    assert ni("-domainname", "-t", t) == (0, "/\n", "")
    assert ni("-resync", "-t", t) == (0, "", "")


# -- semantics (tools §1.3) --------------------------------------------------------------------

async def _ids(domain: str, paths: list[str]) -> dict[str, int]:
    c = await open_domain(domain)
    try:
        return {p: (await c.pathsearch(p)).object for p in paths}
    finally:
        await c.close()


async def _props(domain: str, path: str) -> list:
    c = await open_domain(domain)
    try:
        return (await c.read(await c.pathsearch(path)))[1]
    finally:
        await c.close()


async def _add_raw_props(domain: str, path: str, props: list) -> None:
    """Append properties as given (duplicates included), bypassing niutil."""
    c = await open_domain(domain)
    try:
        for k, v in props:
            await c.createprop(await c.pathsearch(path), k, v)
    finally:
        await c.close()


def test_create_makes_every_missing_component(ni):
    top = uniq("tree")
    assert ni("-create", ".", f"/{top}/a/uid=7/c") == (0, "", "")
    assert asyncio.run(_props(".", f"/{top}/a")) == [("name", ["a"])]
    assert asyncio.run(_props(".", f"/{top}/a/uid=7")) == [("uid", ["7"])]
    # an existing path: silently fine, nothing duplicated
    assert ni("-create", ".", f"/{top}/a/uid=7/c") == (0, "", "")
    assert ni("-list", ".", f"/{top}/a")[1].count("\n") == 1


def test_create_with_escaped_slash(ni):
    top = uniq("mounts")
    path = f"/{top}/fs:\\/export\\/home"
    assert ni("-create", ".", path) == (0, "", "")
    assert asyncio.run(_props(".", path)) == [("name", ["fs:/export/home"])]
    assert ni("-createprop", ".", path, "vfstype", "nfs")[0] == 0
    assert ni("-readprop", ".", path, "vfstype")[1] == "nfs\n"


def test_path_of_digits_is_a_directory_id(ni):
    oid = asyncio.run(_ids(".", ["/users/root"]))["/users/root"]
    assert ni("-readprop", ".", str(oid), "name") == (0, "root\n", "")


def test_destroy_removes_whole_subtree(ni):
    top = f"/{uniq('sub')}"
    for p in ("a/b/c", "a/d", "e"):
        ni("-create", ".", f"{top}/{p}")
    assert ni("-destroy", ".", top) == (0, "", "")
    assert ni("-read", ".", top)[0] == 105


def test_createprop_replaces_first_in_place_else_appends(ni):
    d = f"/{uniq('cp')}"
    ni("-create", ".", d)
    asyncio.run(_add_raw_props(".", d, [("k", ["1"]), ("x", []), ("k", ["2"])]))
    assert ni("-createprop", ".", d, "k", "new", "vals")[0] == 0
    assert asyncio.run(_props(".", d)) == [("name", [d[1:]]), ("k", ["new", "vals"]),
                                           ("x", []), ("k", ["2"])]
    assert ni("-createprop", ".", d, "z")[0] == 0
    assert asyncio.run(_props(".", d))[-1] == ("z", [])


def test_appendprop_mergeprop_insertval(ni):
    d = f"/{uniq('vals')}"
    ni("-create", ".", d)
    assert ni("-appendprop", ".", d, "a", "x", "y")[0] == 0       # creates
    assert ni("-appendprop", ".", d, "a", "x")[0] == 0            # duplicates allowed
    assert ni("-readprop", ".", d, "a")[1] == "x y x\n"
    assert ni("-mergeprop", ".", d, "a", "y", "z", "z")[0] == 0
    assert ni("-readprop", ".", d, "a")[1] == "x y x z\n"
    assert ni("-mergeprop", ".", d, "m", "1")[0] == 0             # creates
    assert ni("-insertval", ".", d, "a", "first", "0")[0] == 0
    assert ni("-insertval", ".", d, "a", "mid", "2")[0] == 0
    assert ni("-insertval", ".", d, "a", "last", "99")[0] == 0    # past the end appends
    assert ni("-readprop", ".", d, "a")[1] == "first x mid y x z last\n"
    assert ni("-insertval", ".", d, "new", "v", "5")[0] == 0      # creates [v]
    assert ni("-read", ".", d)[1] == (f"name: {d[1:]}\na: first x mid y x z last\n"
                                      "m: 1\nnew: v\n")


def test_destroyprop_removes_all_copies_and_ignores_missing(ni):
    d = f"/{uniq('dp')}"
    ni("-create", ".", d)
    asyncio.run(_add_raw_props(".", d, [("k", ["1"]), ("j", ["j"]), ("k", ["2"]),
                                        ("l", ["l"])]))
    assert ni("-destroyprop", ".", d, "k", "nokey", "l") == (0, "", "")
    assert asyncio.run(_props(".", d)) == [("name", [d[1:]]), ("j", ["j"])]


def test_destroyval_every_occurrence_missing_is_fine(ni):
    d = f"/{uniq('dv')}"
    ni("-create", ".", d)
    ni("-createprop", ".", d, "k", "a", "b", "a", "c", "b")
    assert ni("-destroyval", ".", d, "k", "a", "b", "zz") == (0, "", "")
    assert ni("-readprop", ".", d, "k")[1] == "c\n"
    assert ni("-destroyval", ".", d, "nokey", "a") == (0, "", "")


def test_renameprop_renames_first_only(ni):
    d = f"/{uniq('rn')}"
    ni("-create", ".", d)
    asyncio.run(_add_raw_props(".", d, [("k", ["1"]), ("k", ["2"])]))
    assert ni("-renameprop", ".", d, "k", "n") == (0, "", "")
    assert asyncio.run(_props(".", d))[1:] == [("n", ["1"]), ("k", ["2"])]


def test_writes_in_the_root_domain(ni):
    d = f"/{uniq('net')}"
    assert ni("-create", "/", d) == (0, "", "")
    assert ni("-createprop", "/", d, "k", "v")[0] == 0
    assert ni("-read", "/", d)[1] == f"name: {d[1:]}\nk: v\n"
    assert ni("-read", ".", d)[0] == 105   # not in the local domain


# -- --json ------------------------------------------------------------------------------------

def test_json_outputs(ni):
    d = f"/{uniq('js')}"
    ni("-create", ".", f"{d}/kid")
    ni("-createprop", ".", d, "k", "a", "b")
    rc, out, _ = ni("--json", "-read", ".", d)
    assert rc == 0
    assert json.loads(out) == [{"name": "name", "values": [d[1:]]},
                               {"name": "k", "values": ["a", "b"]}]
    assert json.loads(ni("-readprop", "--json", ".", d, "k")[1]) == ["a", "b"]
    assert json.loads(ni("-readval", "--json", ".", d, "k", "1")[1]) == "b"
    kid = asyncio.run(_ids(".", [f"{d}/kid"]))[f"{d}/kid"]
    assert json.loads(ni("-list", "--json", ".", d)[1]) == [{"id": kid, "values": ["kid"]}]
    assert json.loads(ni("-domainname", "--json", "/")[1]) == "/"
    assert json.loads(ni("-statistics", "--json", ".")[1])[0]["name"] == "checksum"
    rp = json.loads(ni("-rparent", "--json", "-n", ".")[1])
    assert rp["address"] == "127.0.0.1" and rp["tag"] == "network"
    # the default output is unchanged by the option's existence
    assert ni("-readprop", ".", d, "k")[1] == "a b\n"


# -- retries (stubbed server answers) ----------------------------------------------------------

class _Flaky:
    """A client whose next calls fail with the given statuses, then succeed."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls = 0

    async def resync(self):
        self.calls += 1
        if self.statuses:
            raise NiError(self.statuses.pop(0))
        return 0


def _context(client, *args: str) -> niutil.Context:
    return niutil.Context(client, niutil.parse_args(list(args)))


def test_retry_on_master_busy_with_R(monkeypatch, capsys):
    monkeypatch.setattr(niutil, "MASTERBUSY_PAUSE", 0)
    c = _Flaky(Status.MASTERBUSY, Status.MASTERBUSY)
    assert asyncio.run(niutil.op_resync(_context(c, "-R", "-resync", "."))) == 0
    assert c.calls == 3
    c = _Flaky(Status.MASTERBUSY)
    with pytest.raises(niutil.ToolExit) as e:
        asyncio.run(niutil.op_resync(_context(c, "-resync", ".")))
    assert e.value.code == 122 and c.calls == 1
    # -resync's message: "niutil" without the colon (tools §1.5)
    assert e.value.lines == ("niutil can't resync domain .: Master server is busy",)


def test_stale_write_is_reread_and_retried_once():
    async def go():
        seen = []

        async def step():
            seen.append(1)
            if len(seen) == 1:
                raise NiError(Status.STALE)
            return "ok"
        assert await verbs.fresh(step) == "ok"
        assert len(seen) == 2

        async def always():
            raise NiError(Status.STALE)
        with pytest.raises(NiError):
            await verbs.fresh(always)
    asyncio.run(go())


def test_create_components_unescape_only_slash_when_storing():
    comps = verbs.create_components("/a\\/b/uid=5/x\\=y")
    assert [(c.key, c.value, c.stored_key, c.stored_value) for c in comps] == [
        ("name", "a/b", "name", "a/b"), ("uid", "5", "uid", "5"),
        ("name", "x=y", "name", "x\\=y")]


def test_console_script_is_installed():
    import shutil
    exe = shutil.which("niutil")
    if exe is None:
        pytest.skip("console scripts not on PATH")
    p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ))
    assert p.returncode == 0 and p.stdout.startswith(USAGE)


def test_use_master_sends_reads_to_the_master_too(nibindd):
    """needwrite mode over the real wire: after use_master, reads and writes share the
    master's connection (spec §7.5)."""
    from netinfo.client.domain import open_domain

    async def go():
        d = await open_domain("/")
        await verbs.use_master(d)
        assert d.conn is await d.master_connection()
        root = await d.root()
        child, _ = await d.create(root, [("name", ["needwrite"])])
        assert (await d.read(child))[1] == [("name", ["needwrite"])]
        await d.close()
    asyncio.run(go())
