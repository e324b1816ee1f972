"""nigrep (tools §4.2): in process and as a real subprocess against a real nibindd
(scenario A10), the POSIX ERE translation, and every documented error."""

from __future__ import annotations

import json
import re

import pytest

from netinfo.cli import nigrep
from netinfo.cli.nigrep import BadExpression, compile_ere, ere_to_python
from netinfo.client.domain import DomainClient
from netinfo.errors import MESSAGES, NiError, Status, Timeout

from . import test_nireport
from .conftest import free_port
from .test_nireport import TAGGED_HELP, call, dead_env, tool

# A10's module-scoped world, shared by name (this module gets its own nibindd)
world = test_nireport.world

# The original's usage line, byte for byte (issue 17: compared with the original binary).
USAGE = "usage: nigrep [-T timeout] exp [-t] domain [dir ...]\n"


# -- scenario A10 ------------------------------------------------------------------------------

def a10_net(w) -> str:
    ids, u = w.local, w.unnamed
    return (f"0 /:  trusted_networks\n"
            f"{ids['/machines/localhost']} /machines/localhost:  serves ./local ../network\n"
            f"{ids['/machines/broadcasthost']} /machines/broadcasthost:  serves ../network\n"
            f"{u} /machines/dir: {u}:  comment netbox\n"
            f"{ids['/networks']} /networks:  name networks\n"
            f"{ids['/rpcs/netinfo']} /rpcs/netinfo:  name netinfo\n"
            f"{ids['/rpcs/netinfobind']} /rpcs/netinfobind:  name netinfobind\n")


def a10_bob(w) -> str:
    bob, eng = w.local["/users/bob"], w.local["/groups/eng"]
    return (f"{bob} /users/bob:  name bob\n"
            f"{bob} /users/bob:  home /Users/bob\n"
            f"{bob} /users/bob:  _writers_passwd bob\n"
            f"{eng} /groups/eng:  users alice bob\n")


def test_a10_net_subprocess(world):
    r = tool("nigrep", "[Nn]et", ".", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (0, a10_net(world), "")


def test_a10_net_in_process(world, capsys):
    assert call(nigrep.main, capsys, "[Nn]et", ".") == (0, a10_net(world), "")


def test_a10_bob_in_process(world, capsys):
    assert call(nigrep.main, capsys, "bob", ".", "/users", "/groups") == \
        (0, a10_bob(world), "")


def test_a10_bob_subprocess(world):
    r = tool("nigrep", "bob", ".", "/users", "/groups", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (0, a10_bob(world), "")


# -- search order, paths, matching -------------------------------------------------------------

def test_root_domain_and_whole_tree(world, capsys):
    rc, out, err = call(nigrep.main, capsys, "network", "/")
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"0 /:  master {world.host}/network"
    assert f"/machines/{world.host}:  serves ./network {world.host}/local" in lines[1]


def test_key_match_prints_all_values(world, capsys):
    # the key matches ("realname"), so every value is printed, matching or not
    bob = world.local["/users/bob"]
    assert call(nigrep.main, capsys, "^realname$", ".", "/users/bob") == \
        (0, f"{bob} /users/bob:  realname Bob Smith\n", "")


def test_value_match_any_value(world, capsys):
    eng = world.local["/groups/eng"]
    assert call(nigrep.main, capsys, "^alice$", ".", "/groups") == \
        (0, f"{eng} /groups/eng:  users alice bob\n", "")


def test_empty_value_list_printed_with_key_only(world, capsys):
    bob = world.local["/users/bob"]
    assert call(nigrep.main, capsys, "^passwd$", ".", "/users/bob") == \
        (0, f"{bob} /users/bob:  passwd\n", "")


def test_start_directory_path_is_built_from_names(world, capsys):
    # /users/uid=501 is reported by its names; /rpcs/portmap by the first name value
    bob = world.local["/users/bob"]
    rc, out, _ = call(nigrep.main, capsys, "tcsh", ".", "users/uid=501")
    assert (rc, out) == (0, f"{bob} /users/bob:  shell /bin/tcsh\n")
    rc, out, _ = call(nigrep.main, capsys, "^100000$", ".", "/rpcs/portmap")
    assert rc == 0 and out.endswith(" /rpcs/portmapper:  number 100000\n")


def test_directory_searched_before_children_in_child_order(world, capsys):
    ids = world.local
    rc, out, _ = call(nigrep.main, capsys, "^name$", ".", "/users")
    assert rc == 0
    assert out == (f"{ids['/users']} /users:  name users\n"
                   f"{ids['/users/root']} /users/root:  name root\n"
                   f"{ids['/users/daemon']} /users/daemon:  name daemon\n"
                   f"{ids['/users/nobody']} /users/nobody:  name nobody\n"
                   f"{ids['/users/bob']} /users/bob:  name bob\n")


def test_directories_in_argument_order_and_repeated(world, capsys):
    eng, bob = world.local["/groups/eng"], world.local["/users/bob"]
    rc, out, _ = call(nigrep.main, capsys, "alice|tcsh", ".", "/groups/eng", "/users/bob",
                      "/groups/eng")
    assert rc == 0
    assert out == (f"{eng} /groups/eng:  users alice bob\n"
                   f"{bob} /users/bob:  shell /bin/tcsh\n"
                   f"{eng} /groups/eng:  users alice bob\n")


def test_no_match_exit_0(world, capsys):
    assert call(nigrep.main, capsys, "zzz-nothing", ".") == (0, "", "")


def test_options_positions(world, netinfod, capsys):
    d = netinfod("grep", "-m", "--populate", "-n")
    dom = f"127.0.0.1:{d.port}/grep"
    # -T before the expression, -t after it, as the synopsis; and -t first: -t takes
    # the next argument as the domain (the original's parsing)
    rc1, out1, _ = call(nigrep.main, capsys, "-T", "5", "^wheel$", "-t", dom, "/groups")
    rc2, out2, _ = call(nigrep.main, capsys, "-t", dom, "^wheel$", "/groups")
    assert rc1 == rc2 == 0
    assert out1 == out2
    assert out1.endswith(" /groups/wheel:  name wheel\n")


def test_t_takes_the_next_argument_subprocess(world, netinfod, run_tool):
    # Before, -t was a flag: "nigrep -t host/tag wheel" searched domain "wheel" for the
    # expression "host/tag".
    d = netinfod("grept", "-m", "--populate", "-n")
    dom = f"127.0.0.1:{d.port}/grept"
    p = run_tool("nigrep", "-t", dom, "^wheel$", "/groups", timeout=60)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.endswith(" /groups/wheel:  name wheel\n")


def test_expression_starting_with_dash(world, capsys):
    nobody = world.local["/users/nobody"]
    assert call(nigrep.main, capsys, "--", "-2", ".", "/users") == \
        (0, f"{nobody} /users/nobody:  uid -2\n{nobody} /users/nobody:  gid -2\n", "")


def test_json(world, capsys):
    rc, out, err = call(nigrep.main, capsys, "--json", "bob", ".", "/users", "/groups")
    assert (rc, err) == (0, "")
    bob, eng = world.local["/users/bob"], world.local["/groups/eng"]
    assert json.loads(out) == {
        "expression": "bob", "domain": ".", "directories": ["/users", "/groups"],
        "matches": [
            {"id": bob, "path": "/users/bob", "name": "name", "values": ["bob"]},
            {"id": bob, "path": "/users/bob", "name": "home", "values": ["/Users/bob"]},
            {"id": bob, "path": "/users/bob", "name": "_writers_passwd", "values": ["bob"]},
            {"id": eng, "path": "/groups/eng", "name": "users", "values": ["alice", "bob"]},
        ]}


def test_json_subprocess(world):
    r = tool("nigrep", "--json", "[Nn]et", ".", env=world.env)
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["directories"] == ["/"]
    assert [m["path"] for m in doc["matches"]][:2] == ["/", "/machines/localhost"]


def test_help(capsys):
    rc, out, err = call(nigrep.main, capsys, "--help")
    assert (rc, err) == (0, "")
    assert out.startswith(USAGE) and "--json" in out


# -- usage errors and bad expressions: exit 1 ----------------------------------------------------

@pytest.mark.parametrize("args, err", [
    ((), USAGE),
    (("bob",), USAGE),
    (("-t", "bob"), USAGE),
    (("-x", "bob", "."), "nigrep: unknown option -x\n" + USAGE),
    (("-T",), "nigrep: option -T needs a value\n" + USAGE),
    (("-T", "x", "bob", "."), "nigrep: invalid timeout x\n" + USAGE),
    (("(", "."), "Bad expression: (\n" + USAGE),
    (("a**", "."), "Bad expression: a**\n" + USAGE),
    (("[z-a]", ".", "/users"), "Bad expression: [z-a]\n" + USAGE),
    (("", "."), "Bad expression: \n" + USAGE),
])
def test_usage_errors(capsys, args, err):
    assert call(nigrep.main, capsys, *args) == (1, "", err)


def test_bad_expression_subprocess(world):
    r = tool("nigrep", "[[:nope:]]", ".", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == \
        (1, "", "Bad expression: [[:nope:]]\n" + USAGE)


def test_bad_expression_checked_before_connecting(capsys, monkeypatch):
    dead_env(monkeypatch)
    assert call(nigrep.main, capsys, "a|", ".")[0] == 1


# -- opening the domain: the reason, then the usage, exit 1 (issue 17) ---------------------------
# The original called usage() whenever do_open failed: an unknown domain, an unreachable
# server and a -t argument that does not parse all end with the usage line and exit 1.

def test_unknown_domain_usage_1(world, capsys):
    assert call(nigrep.main, capsys, "x", "/nonexistent") == \
        (1, "", "nigrep: can't connect to server for domain /nonexistent: unknown "
                "domain nonexistent: no /machines entry of network@127.0.0.1 serves "
                "nonexistent/<tag>\n" + USAGE)


def test_no_server_usage_1(capsys, monkeypatch):
    dead_env(monkeypatch)
    assert call(nigrep.main, capsys, "x", ".") == \
        (1, "", "nigrep: can't connect to server for domain .: no nibindd at "
                "127.0.0.1 (no answer from the portmapper at 127.0.0.1:1)\n" + USAGE)


def test_tagged_connect_failure_usage_1(capsys):
    port = free_port()
    assert call(nigrep.main, capsys, "x", "-t", f"127.0.0.1:{port}/local") == \
        (1, "", f"nigrep: can't connect to server 127.0.0.1:{port}/local: cannot connect "
                f"to 127.0.0.1:{port}: Connection refused\n" + USAGE)


def test_tagged_failures_subprocess(world):
    # Issue 17 against the original binary: `nigrep -t root 127.0.0.1/local` (-t takes
    # "root" as the domain) and `nigrep root -t HOST/TAG` with nobody there both exit 1
    # and end with the usage line (they exited 217 and 199).
    r = tool("nigrep", "-t", "root", "127.0.0.1/local", env=world.env)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("nigrep: incorrect format for domain root (Bad format)\n"
                        + TAGGED_HELP + USAGE)
    port = free_port()
    r = tool("nigrep", "root", "-t", f"127.0.0.1:{port}/local", env=world.env)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.startswith(f"nigrep: can't connect to server 127.0.0.1:{port}/local: ")
    assert r.stderr.endswith("\n" + USAGE) and r.stderr.count("\n") == 2
    # an unknown tag says so, as badtag@host does
    r = tool("nigrep", "root", "-t", "127.0.0.1/badtag", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", "nigrep: can't connect to server 127.0.0.1/badtag: no such tag badtag at "
               "127.0.0.1\n" + USAGE)


@pytest.mark.parametrize("arg, text", [
    ("localhost", "Bad format"),
    ("/local", "No host"),
    ("127.0.0.1/", "No tag"),
    ("256.1.1.1/local", "Bad address"),
    ("no-such-host.invalid/local", "Host not found"),
])
def test_tagged_parse_errors(capsys, arg, text):
    rc, out, err = call(nigrep.main, capsys, "x", "-t", arg)
    first = "Can't find address for no-such-host.invalid\n" if "invalid" in arg else ""
    assert (rc, out) == (1, "")
    assert err == (first + f"nigrep: incorrect format for domain {arg} ({text})\n"
                   + TAGGED_HELP + USAGE)


# -- errors during the search: ni_pathsearch, ni_list, ni_read -----------------------------------

def test_missing_directory_105(world, capsys):
    assert call(nigrep.main, capsys, "x", ".", "/nosuch") == \
        (105, "", "ni_pathsearch: No such directory\n")


def test_missing_directory_after_output_subprocess(world):
    # the first directory is searched and printed, the second stops the tool
    bob = world.local["/users/bob"]
    r = tool("nigrep", "tcsh", ".", "/users/bob", "/users/nosuch", "/users", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == \
        (105, f"{bob} /users/bob:  shell /bin/tcsh\n", "ni_pathsearch: No such directory\n")


@pytest.mark.parametrize("status", [Status.BADID, Status.PERM])
def test_list_failure_mapped(world, capsys, monkeypatch, status):
    async def refuse(self, d):
        raise NiError(status)
    monkeypatch.setattr(DomainClient, "children", refuse)
    assert call(nigrep.main, capsys, "x", ".", "/users") == \
        (100 + status, "", f"ni_list: {MESSAGES[status]}\n")


def test_read_failure_of_a_child_after_earlier_output(world, capsys, monkeypatch):
    """A READ that fails in the middle: the matches before it are printed, in order."""
    real = DomainClient.read
    bad = world.local["/users/nobody"]

    async def read(self, d):
        if (d if isinstance(d, int) else d.object) == bad:
            raise NiError(Status.BADID)
        return await real(self, d)
    monkeypatch.setattr(DomainClient, "read", read)
    ids = world.local
    assert call(nigrep.main, capsys, "^name$", ".", "/users") == \
        (101, f"{ids['/users']} /users:  name users\n"
              f"{ids['/users/root']} /users/root:  name root\n"
              f"{ids['/users/daemon']} /users/daemon:  name daemon\n",
         "ni_read: ID is invalid\n")


def test_communication_failure_199(world, capsys, monkeypatch):
    async def silent(self, d):
        raise Timeout("no reply")
    monkeypatch.setattr(DomainClient, "children", silent)
    assert call(nigrep.main, capsys, "x", ".") == (199, "", "ni_list: Communication failure\n")


# -- the POSIX ERE → Python translation ----------------------------------------------------------

@pytest.mark.parametrize("ere, text, hit", [
    ("[Nn]et", "network", True),
    ("[Nn]et", "NET", False),
    ("bob", "/Users/bob", True),                 # unanchored
    ("^bob$", "bob", True),
    ("^bob$", "bob\n", False),                   # $ is the very end of the string
    ("a.b", "a\nb", True),                       # . matches a newline
    ("(ab)+c", "xababc", True),
    ("x{2,3}", "axxb", True),
    ("x{2}", "axb", False),
    ("x{2,}", "xxxx", True),
    ("a{,3}", "a{,3}", True),                    # not an interval: literal braces
    ("a}", "a}", True),
    (r"\d", "d", True),                          # \c is the literal c
    (r"\d", "5", False),
    (r"a\.b", "a.b", True),
    (r"a\.b", "axb", False),
    ("[[:digit:]]+", "uid 501", True),
    ("^[[:upper:]][[:lower:]]+ [[:alpha:]]+$", "Bob Smith", True),
    ("[[:space:]]", "a\tb", True),
    ("[[:punct:]]", "abc", False),
    ("[[:punct:]]", "a/c", True),
    ("[[:xdigit:]]{4}", "beef", True),
    ("[]a]", "]", True),                         # ] first is literal
    ("[^]a]", "]a", False),
    (r"[\]", "\\", True),                        # backslash is literal in brackets
    ("[a-]", "-", True),
    ("[.a.]", ".", True),                        # a bracket expression, not a symbol
    ("[[.-.]x]", "-", True),                     # collating symbol
    ("[[=e=]]", "e", True),                      # equivalence class
    ("[&~|]", "|", True),                        # Python set metacharacters are literal
    ("a|b|c", "c", True),
    ("(a|b)(c|d)", "bd", True),
    ("[0-9]", "x", False),
])
def test_ere_matches(ere, text, hit):
    assert bool(compile_ere(ere).search(text)) is hit


@pytest.mark.parametrize("ere", [
    "", "()", "a|", "|a", "a||b", "(|a)", "*a", "+a", "?a", "(*a)", "a|*b", "^*",
    "a**", "a+?", "a*+", "a{2}{3}", "(a", "a)", "a\\", "[a", "[]", "[z-a]", "[[:nope:]]",
    "[[.ab.]]", "[a-[:digit:]]", "x{256}", "x{3,2}", "x{1", "x{1,2", "{1}", "[[:alpha:]",
])
def test_ere_rejected(ere):
    with pytest.raises(BadExpression):
        ere_to_python(ere)


def test_translation_emits_no_python_only_syntax():
    # the result compiles without warnings and groups never capture
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for ere in ("[[a]", "[!--]", "[&&]", "[~~]", "[||]", "(a)(b)"):
            pat = re.compile(ere_to_python(ere), re.DOTALL)
            assert pat.groups == 0
