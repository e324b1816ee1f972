"""Issue 17 item 6: one mistake, one answer per tool, and no ``internal error`` for
anything a user can type. Every tool runs as a real subprocess against a real nibindd on
loopback (``.`` = local, ``/`` = the network root).

Where an original tool exists its bytes and exit codes are the spec (tools §1.5, §2.1,
§2.7, §3.3, §4.1-§4.3); the table below says what each prints for a domain that cannot
be opened. Only loopback addresses and unused loopback ports and tags are used.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from netinfo.cli import nidump, nigrep, niload

from .conftest import free_port, served_domains, tool_process

UNKNOWN = ("unknown domain nosuch: no /machines entry of network@127.0.0.1 serves "
           "nosuch/<tag>")
TAGGED_HELP = "usage: -t <host>/<tag>\n<host> can be a host name or IP address\n"


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    with served_domains(tmp_path_factory, "messages") as d:
        yield d


def tool(nb, module: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """``python -m netinfo.cli.<module> args`` with no controlling terminal."""
    p = tool_process(module, *args, env=nb.env, input=stdin, start_new_session=True)
    return p.returncode, p.stdout, p.stderr


# -- a domain that cannot be opened: what each original printed ----------------------------------

#: tool, its arguments around the domain, exit status, the usage printed after the line
#: (None: none), the line's prefix before the reason.
UNKNOWN_DOMAIN = [
    ("niutil", ("-read", "/nosuch", "/"), 199, None,
     "niutil: can't connect to server for domain /nosuch: "),
    ("nireport", ("/nosuch", "/", "name"), 199, None,
     "nireport: can't connect to server for domain /nosuch: "),
    ("nigrep", ("x", "/nosuch"), 1, nigrep.USAGE + "\n",
     "nigrep: can't connect to server for domain /nosuch: "),
    ("nidump", ("passwd", "/nosuch"), 1, nidump.USAGE,
     "nidump: can't connect to server for domain /nosuch: "),
    ("niload", ("passwd", "/nosuch"), 1, niload.USAGE,
     "niload: can't connect to server for domain /nosuch: "),
    ("nifind", ("-a", "/users", "/nosuch"), 1, None, "error: can't open domain /nosuch: "),
    ("nifind", ("/users", "/nosuch"), 1, None, "error: can't open root domain: "),
    ("nicl", ("/nosuch", "-read", "/"), 233, None, "open(/nosuch): Invalid Datastore: "),
]


@pytest.mark.parametrize("module, args, code, usage, prefix", UNKNOWN_DOMAIN,
                         ids=[" ".join((c[0], *c[1])) for c in UNKNOWN_DOMAIN])
def test_unknown_domain(nb, module, args, code, usage, prefix):
    rc, out, err = tool(nb, module, *args)
    assert (rc, out) == (code, "")
    assert err == prefix + UNKNOWN + "\n" + (usage or "")


@pytest.mark.parametrize("module, args, code, usage", [
    ("niutil", ("-read", "-t", "127.0.0.1/notag", "/"), 199, ""),
    ("nireport", ("-t", "127.0.0.1/notag", "/", "name"), 199, ""),
    ("nigrep", ("x", "-t", "127.0.0.1/notag"), 1, nigrep.USAGE + "\n"),
    ("nidump", ("passwd", "-t", "127.0.0.1/notag"), 1, nidump.USAGE),
])
def test_unknown_tag_says_so_with_t_as_with_at(nb, module, args, code, usage):
    # -t host/tag said "Communication failure" where tag@host said "no such tag"
    rc, out, err = tool(nb, module, *args)
    assert (rc, out, err) == (code, "", f"{module}: can't connect to server 127.0.0.1/notag: "
                                        f"no such tag notag at 127.0.0.1\n{usage}")
    at = [a if a != "127.0.0.1/notag" else "notag@127.0.0.1" for a in args if a != "-t"]
    rc, out, err = tool(nb, module, *at)
    assert (rc, out) == (code, "")
    assert err == (f"{module}: can't connect to server for domain notag@127.0.0.1: no such "
                   f"tag notag at 127.0.0.1\n{usage}")


def test_tagged_parse_error_nicl(nb):
    rc, out, err = tool(nb, "nicl", "-t", "127.0.0.1", "-read", "/")
    assert (rc, out, err) == (233, "", "nicl: incorrect format for domain 127.0.0.1 (Bad "
                                       "format)\n" + TAGGED_HELP
                              + "open(127.0.0.1): Invalid Datastore\n")


def test_missing_directory_is_the_original_line(nb):
    # nireport and nigrep print the original's errexit line (tools §4.1, §4.2)
    assert tool(nb, "nireport", ".", "/nosuch", "name") == \
        (105, "", "ni_pathsearch: No such directory\n")
    assert tool(nb, "nigrep", "x", ".", "/nosuch") == \
        (105, "", "ni_pathsearch: No such directory\n")


# -- the four differences from the original binaries ---------------------------------------------

def test_readval_past_the_end_exits_0(nb):
    assert tool(nb, "niutil", "-readval", ".", "/users/root", "shell", "5") == (
        0, "", "niutil: property shell in directory /users/root has no value at index 5\n")


def test_nigrep_bad_domain_after_t(nb):
    assert tool(nb, "nigrep", "-t", "root", "127.0.0.1/local") == (
        1, "", "nigrep: incorrect format for domain root (Bad format)\n" + TAGGED_HELP
        + "usage: nigrep [-T timeout] exp [-t] domain [dir ...]\n")


def test_nigrep_unreachable_server(nb):
    port = free_port()
    rc, out, err = tool(nb, "nigrep", "root", "-t", f"127.0.0.1:{port}/local")
    assert (rc, out) == (1, "")
    assert err == (f"nigrep: can't connect to server 127.0.0.1:{port}/local: cannot connect "
                   f"to 127.0.0.1:{port}: Connection refused\n"
                   "usage: nigrep [-T timeout] exp [-t] domain [dir ...]\n")


def test_nifind_verbose_all_names_new_child_domains(nb):
    # The network root's /machines/<host> serves ./network (skipped: this domain) and
    # <host>/local: the child the -a walk goes into.
    rc, master, _ = tool(nb, "niutil", "-readprop", "/", "/", "master")
    assert rc == 0 and master.endswith("/network\n")
    host = master.split("/")[0]
    rc, out, err = tool(nb, "nifind", "-v", "-a", "/users/root")
    assert rc == 0
    assert out.splitlines()[0].startswith("/users/root found in /, id = ")
    assert f"/users/root found in /{host}, id = " in out
    assert err == f"/: {host} serves {host}/local - new child domain\n"
    rc, out, err = tool(nb, "nifind", "-van", "/users/root")
    assert (rc, err) == (0, f"/: {host} serves {host}/local - ignoring local domain\n")
    assert out.count("found in") == 1
    # without -v: nothing on stderr
    assert tool(nb, "nifind", "-a", "/users/root")[2] == ""


# -- passwords without a terminal -----------------------------------------------------------------

def test_p_reads_the_password_from_stdin_without_a_terminal(nb):
    rc, out, err = tool(nb, "niutil", "-p", "-readprop", ".", "/users/root", "uid",
                        stdin="secret\n")
    assert (rc, out, err) == (0, "0\n", "Password: ")


@pytest.mark.parametrize("module, args", [
    ("niutil", ("-p", "-read", ".", "/")),
    ("niutil", ("-u", "root", "-read", ".", "/")),
    ("nicl", ("-p", ".", "-read", "/")),
])
def test_p_with_nothing_to_read(nb, module, args):
    # was "internal error: EOFError" after a GetPassWarning
    assert tool(nb, module, *args) == (1, "", f"Password: \n{module}: can't read the "
                                              "password: no terminal, and nothing on "
                                              "standard input\n")


def test_niload_p_never_takes_the_password_from_its_data(nb):
    rc, out, err = tool(nb, "niload", "-p", "passwd", ".", stdin="x:*:1:1::0:0:x:/:/bin/sh\n")
    assert (rc, out, err) == (1, "", "niload: can't read the password: no terminal "
                                     "(standard input holds the data; give the password "
                                     "with -P)\n")


# -- names and values the protocol cannot carry -------------------------------------------------

LONG = "k" * 70000
WHY = "a name or value of 70000 bytes is longer than the protocol's limit of 65535 bytes"


@pytest.mark.parametrize("module, args, line", [
    ("niutil", ("-read", ".", "/" + LONG), f"niutil: can't open directory /{LONG}: {WHY}"),
    ("niutil", ("-create", ".", "/" + LONG), f"niutil: can't create directory /{LONG}: {WHY}"),
    ("niutil", ("-createprop", ".", "/", "k", "v" * 70000),
     f"niutil: can't modify k in directory /: {WHY}"),
    ("nireport", (".", "/" + LONG, "name"), f"ni_pathsearch: {WHY}"),
    ("nigrep", ("x", ".", "/" + LONG), f"ni_pathsearch: {WHY}"),
    ("nifind", ("/" + LONG,), f"nifind: can't search for /{LONG}: {WHY}"),
    ("nidump", ("-r", "/" + LONG, "."), f"nidump: can't read directory /{LONG}: {WHY}"),
])
def test_too_long_is_one_line_exit_1(nb, module, args, line):
    assert tool(nb, module, *args) == (1, "", line + "\n")


def test_too_long_nicl(nb):
    assert tool(nb, "nicl", ".", "-read", "/" + LONG) == (15, "", f"read: Operation Failed: "
                                                                  f"{WHY}\n")


def test_a_100_kb_value(nb):
    rc, out, err = tool(nb, "niutil", "-createprop", ".", "/users/root", "big", "v" * 100_000)
    assert (rc, out) == (1, "")
    assert err == ("niutil: can't modify big in directory /users/root: a name or value of "
                   "100000 bytes is longer than the protocol's limit of 65535 bytes\n")
    assert tool(nb, "niutil", "-readprop", ".", "/users/root", "big")[0] == 106


def test_an_id_past_32_bits_is_an_invalid_id(nb):
    assert tool(nb, "niutil", "-read", ".", "99999999999999999999") == (
        101, "", "niutil: can't open directory 99999999999999999999: ID is invalid\n")
    assert tool(nb, "nicl", ".", "-read", "99999999999999999999") == (
        211, "", "Fetch record 99999999999999999999 failed: Invalid Record ID\n")


# -- a quick sweep of hostile arguments: never an internal error ----------------------------------

HOSTILE = ["", "-", "--", "-T", "-T0", "-Tnan", "inf", "-1", "\x01\x7f", "=", "/=", "\\",
           "99999999999999999999", "local@127.0.0.1:0", "local@127.0.0.1:70000",
           "127.0.0.1:0/local", "[::1/local", "/" + "/".join(["a"] * 300)]
SHAPES = [
    ("niutil", ["-read", ".", "X"]), ("niutil", ["-read", "X", "/"]),
    ("niutil", ["-read", "-t", "X", "/"]), ("niutil", ["-T", "X", "-read", ".", "/"]),
    ("niutil", ["-readval", ".", "/users/root", "name", "X"]),
    ("nireport", [".", "X", "name"]), ("nireport", ["-t", "X", "/", "name"]),
    ("nigrep", ["X", "."]), ("nigrep", ["x", "X"]),
    ("nifind", ["X"]), ("nifind", ["-T", "X", "/users"]),
    ("nidump", ["-r", "X", "."]), ("nidump", ["passwd", "-t", "X"]),
    ("niload", ["passwd", "X"]), ("nicl", ["X", "-read", "/"]), ("nicl", [".", "-read", "X"]),
]


@pytest.mark.parametrize("module, shape", SHAPES, ids=[f"{m} {' '.join(s)}" for m, s in SHAPES])
def test_hostile_arguments_never_an_internal_error(nb, module, shape):
    # one interpreter per shape: the sweep runs each tool's main in a child process
    script = (
        "import sys, io, contextlib\n"
        f"from netinfo.cli import {module} as tool\n"
        "bad = []\n"
        "for v in sys.argv[2:]:\n"
        "    args = [v if a == 'X' else a for a in sys.argv[1].split('\\x1f')]\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        rc = tool.main(args)\n"
        "    if 'internal error' in err.getvalue() or not isinstance(rc, int):\n"
        "        bad.append((v[:40], rc, err.getvalue()[-200:]))\n"
        "print(bad)\n")
    p = subprocess.run([sys.executable, "-c", script, "\x1f".join(shape), *HOSTILE],
                       env=nb.env, input="", capture_output=True, text=True, timeout=600,
                       start_new_session=True)
    assert (p.returncode, p.stdout, "Traceback" in p.stderr) == (0, "[]\n", False)


def test_a_call_over_the_servers_cap_is_refused_before_sending(nb):
    # 300 values of 60 KB: each fits the protocol, the WRITE (18 MB) does not fit a
    # server's call record cap (16 MiB, spec §1.3): it said "Communication failure"
    # after the server closed the connection.
    values = ", ".join(['"' + "v" * 60000 + '"'] * 300)
    rc, out, err = tool(nb, "niload", "-r", "/huge", ".", stdin=f"name = huge; k = ( {values} );\n")
    assert (rc, out) == (1, "")
    # issue 18 #12: now refused while the input is checked, before anything is written
    assert err.startswith("niload: line 1: a directory of ")
    assert "bytes is more than one call carries (16776192 bytes)" in err
    assert err.count("\n") == 1
    # a tool that does not check first (nicl's create) still stops before sending
    values = " ".join(["v" * 60000] * 300)
    rc, out, err = tool(nb, "nicl", ".", stdin=f"create /huge k {values}\n")
    assert "a call of 18001264 bytes is more than a server accepts (16777216 bytes)" \
        in out + err
    assert "internal error" not in out + err


@pytest.mark.parametrize("port", ["70000", "-1", "abc"])
def test_netinfod_bad_port_is_a_usage_error(tmp_path, port, run_tool):
    # --port 70000 and --port -1 ended in an OverflowError traceback
    p = run_tool("netinfod", "--dir", str(tmp_path), "--bind", "127.0.0.1", f"--port={port}",
                 "-m", "x", timeout=60)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr.endswith(f"netinfod: error: argument --port: bad port {port} (not a "
                             "number in 0-65535)\n")
    assert "Traceback" not in p.stderr and not list(tmp_path.iterdir())


PTY_DRIVER = r"""
import os, pty, sys, time
answer, args = sys.argv[1].encode().decode("unicode_escape").encode(), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.executable, [sys.executable, "-m", "netinfo.cli.niutil", *args])
buf, deadline = b"", time.monotonic() + 60
while b"Password: " not in buf and time.monotonic() < deadline:
    try:
        buf += os.read(fd, 1024)
    except OSError:
        break
os.write(fd, answer)
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    buf += chunk
_, status = os.waitpid(pid, 0)
print(repr((os.waitstatus_to_exitcode(status), buf.decode(errors="replace"))))
"""


@pytest.mark.parametrize("answer, expected", [
    ("secret\\n", (0, "Password: \r\n0\r\n")),
    ("\\x04", (1, "Password: \r\nniutil: can't read the password: end of input at the "
                  "prompt\r\n")),
])
def test_p_on_a_terminal(nb, answer, expected):
    # On a terminal the prompt is read without echo; ^D at the prompt is one line, exit 1
    # (it was "niutil: internal error: EOFError").
    p = subprocess.run([sys.executable, "-c", PTY_DRIVER, answer, "-p", "-readprop", ".",
                        "/users/root", "uid"], env=nb.env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert ast.literal_eval(p.stdout) == expected
