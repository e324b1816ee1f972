"""nicl (tools §3) end to end: one-shot commands in process and as subprocesses,
interactive sessions driven through a pipe (and a pseudo-terminal for the prompt), raw
mode on a database directory, and the statuses, messages and exit codes of tools §3.3.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from itertools import count

import pytest

from netinfo.cli import nicl
from netinfo.cli.netinfod import hostname
from netinfo.client.domain import open_domain

from .conftest import needs_privilege_rule, served_domains, tool_process

_names = count()


def uniq(prefix: str = "d") -> str:
    return f"{prefix}{next(_names)}"


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    """One nibindd for the module: ``.`` = local, ``/`` = network root."""
    with served_domains(tmp_path_factory, "nicl") as d:
        yield d


@pytest.fixture
def cl(nb, capsys):
    """``cl(*args)`` → (exit status, stdout, stderr) of ``nicl.main`` in process."""
    def call(*args: str) -> tuple[int, str, str]:
        rc = nicl.main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err
    return call


def sub(nb, *args: str, input: str | None = None, env: dict | None = None,
        cwd=None) -> subprocess.CompletedProcess:
    e = dict(nb.env)
    e.update(env or {})
    return tool_process("nicl", *args, env=e, input=input, timeout=60, cwd=cwd)


async def _build(domain: str, parent: str, name: str, props: list) -> int:
    """A child of *parent* holding exactly *props* (order as given) after ``name``."""
    c = await open_domain(domain)
    try:
        pid = await c.pathsearch(parent)
        child, _ = await c.create(pid, [("name", [name]), *props])
        return child.object
    finally:
        await c.close()


async def _ids(paths: list[str]) -> list[int]:
    c = await open_domain(".")
    try:
        return [(await c.pathsearch(p)).object for p in paths]
    finally:
        await c.close()


async def _props(path: str) -> list:
    c = await open_domain(".")
    try:
        return (await c.read(await c.pathsearch(path)))[1]
    finally:
        await c.close()


def make(path_parent: str, props: list) -> tuple[str, int]:
    name = uniq("r")
    oid = asyncio.run(_build(".", path_parent, name, props))
    return (path_parent.rstrip("/") + "/" + name), oid


# -- invocation --------------------------------------------------------------------------------

def test_usage_and_help(cl):
    rc, out, err = cl()
    assert rc == 1 and out == "" and err == nicl.USAGE
    rc, out, err = cl("--help")
    assert (rc, out, err) == (0, nicl.USAGE, "")


def test_unknown_command_is_an_error(nb, cl):
    # One-shot: the original printed the usage and exited 0 (a typo in a script passed
    # unnoticed); now one line and exit 1. Interactive sessions still print the usage.
    assert cl(".", "-nosuchcommand") == (
        1, "", "nicl: unknown command -nosuchcommand (nicl --help lists them)\n")
    p = sub(nb, ".", "-bogus")
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "", "nicl: unknown command -bogus (nicl --help lists them)\n")
    p = sub(nb, ".", input="bogus\nread /users/root uid\n")
    assert p.returncode == 0 and p.stdout == "uid: 0\nGoodbye\n"
    assert p.stderr == nicl.USAGE


def test_too_few_parameters_prints_usage_exit_0(cl):
    assert cl(".", "-append", "/users/root", "shell") == (
        0, "", "Too few parameters for append operation\n" + nicl.USAGE)
    # no implicit current directory outside interactive mode
    assert cl(".", "read")[2].startswith("Too few parameters for read operation\n")


def test_options_stop_at_the_datasource():
    o, rest = nicl.parse_args(["-v", "-ro", "-u", "bob", ".", "-read", "-v", "/"])
    assert (o.verbose, o.readonly, o.user, o.prompt) == (1, True, "bob", True)
    assert rest == [".", "-read", "-v", "/"]
    o, _ = nicl.parse_args(["-vv", "-q", "-raw", "-c", "-nobold", "-nonotify", "-x500", "x"])
    assert (o.verbose, o.quiet, o.raw, o.create, o.bold, o.x500) == (2, True, True, True,
                                                                      False, True)


def test_leading_dash_is_optional(cl):
    assert cl(".", "read", "/users/root", "uid") == cl(".", "-read", "/users/root", "uid")
    assert cl(".", "cat", "/users/root", "uid")[1] == "uid: 0\n"


# -- output formats (tools §3.3) ---------------------------------------------------------------

def test_read_shows_meta_properties_after_the_others(cl):
    path, _ = make("/users", [("_writers_passwd", ["x"]), ("uid", ["9"]), ("_shadow", []),
                              ("shell", ["/bin/sh"])])
    name = path.rsplit("/", 1)[1]
    assert cl(".", "-read", path) == (
        0, f"name: {name}\nuid: 9\nshell: /bin/sh\n_writers_passwd: x\n_shadow:\n", "")


def test_read_verbose(nb, cl):
    path, oid = make("/users", [("uid", ["9"]), ("_writers_passwd", ["bob"])])
    kid1 = asyncio.run(_build(".", path, "k1", []))
    kid2 = asyncio.run(_build(".", path, "k2", []))
    users, = asyncio.run(_ids(["/users"]))
    props_inst = asyncio.run(_instance(oid))
    name = path.rsplit("/", 1)[1]
    want = (f"Record: {oid}   Version: {props_inst}   Serial: {props_inst}\n"
            f"Parent: {users}\n"
            f"Children (2): {kid1} {kid2}\n"
            "Attributes:\n"
            f"    name: {name}\n"
            "    uid: 9\n"
            "Meta-attributes:\n"
            "    _writers_passwd: bob\n")
    assert cl("-v", ".", "-read", path) == (0, want, "")
    p = sub(nb, "-v", ".", "-read", path)
    assert p.stdout == want
    # -vv adds each property's index
    rc, out, _ = cl("-vv", ".", "-read", path)
    assert rc == 0
    assert f"    [0] name: {name}\n    [1] uid: 9\n" in out
    assert "    [2] _writers_passwd: bob\n" in out
    rc, out, _ = cl("-v", ".", "-read", f"{path}/k1")
    assert rc == 0
    assert "Children (0):\n" in out


async def _instance(oid: int) -> int:
    c = await open_domain(".")
    try:
        return (await c.self_id(oid)).instance
    finally:
        await c.close()


def test_read_selected_keys(cl):
    path, _ = make("/users", [("uid", ["1"]), ("gid", ["2"])])
    assert cl(".", "-read", path, "gid", "nokey", "uid") == (
        213, "gid: 2\nuid: 1\n", "No such key: nokey\n")


def test_list_pads_ids_to_ten_and_skips_children_without_key(cl):
    top, _ = make("/", [])
    a = asyncio.run(_build(".", top, "a", [("uid", ["5", "6"])]))
    b = asyncio.run(_build(".", top, "b", []))
    assert cl(".", "-list", top) == (0, f"{a:<10} a\n{b:<10} b\n", "")
    assert cl(".", "-list", top, "uid") == (0, f"{a:<10} 5 6\n", "")
    assert cl(".", "ls", top, "uid")[1] == f"{a}" + " " * (10 - len(str(a))) + " 5 6\n"


def test_search(cl):
    top, _ = make("/", [])
    a = asyncio.run(_build(".", top, "a", [("kind", ["x", "y"])]))
    asyncio.run(_build(".", f"{top}/a", "deep", [("kind", ["y"])]))
    asyncio.run(_build(".", top, "b", [("kind", ["z"])]))
    rc, out, err = cl(".", "-search", top, "1", "1", "kind", "y")
    assert (rc, err) == (0, "")
    assert out == "Search found 1 match\n\nname: a\nkind: x y\n"
    rc, out, _ = cl(".", "-search", top, "0", "-1", "kind", "y")
    assert out == ("Search found 2 matches\n\nname: a\nkind: x y\n"
                   "\nname: deep\nkind: y\n")
    rc, out, _ = cl(".", "-search", top, "0", "-1", "kind", "y", "name", "deep")
    assert out.startswith("Search found 1 match\n")
    assert cl(".", "-search", top, "1", "-1", "kind", "none")[1] == "Search found 0 matches\n"
    rc, out, err = cl(".", "-search", top, "3", "1", "kind", "y")
    assert (rc, out, err) == (15, "", "Scope minimum (3) > maximum (1) precludes search\n")
    assert a > 0


def test_path_prints_record_then_ancestors(cl):
    top, _ = make("/", [("k", ["v"])])
    asyncio.run(_build(".", top, "leaf", []))
    rc, out, _ = cl(".", "-path", f"{top}/leaf")
    assert rc == 0
    root = cl(".", "-read", "/")[1]
    assert out == f"name: leaf\n\nname: {top[1:]}\nk: v\n\n" + root


def test_statistics_domainname_rparent_resync(cl):
    rc, out, _ = cl(".", "-statistics")
    assert rc == 0 and out.startswith("checksum: ") and "tag: local master 0\n" in out
    assert cl(".", "stats")[1].startswith("checksum: ")
    assert cl(".", "-domainname") == (0, f"/{hostname()}\n", "")
    assert cl("/", "name") == (0, "/\n", "")
    assert cl(".", "-rparent") == (0, "127.0.0.1/network\n", "")
    assert cl(".", "-resync") == (0, "", "")
    assert cl(".", "-flush") == (0, "", "")
    assert cl(".", "-echo", "a", "b c") == (0, "a b c\n", "")


# -- writing -----------------------------------------------------------------------------------

def test_create_path_and_properties(cl):
    top = f"/{uniq('cr')}"
    assert cl(".", "-create", f"{top}/a/b") == (0, "", "")
    assert asyncio.run(_props(f"{top}/a/b")) == [("name", ["b"])]
    assert cl(".", "-create", f"{top}/a", "k", "1", "2") == (0, "", "")
    assert cl(".", "mk", f"{top}/a", "k", "3") == (0, "", "")   # replaces
    assert cl(".", "createprop", f"{top}/a", "empty") == (0, "", "")
    assert asyncio.run(_props(f"{top}/a")) == [("name", ["a"]), ("k", ["3"]), ("empty", [])]


def test_nicl_writes_keep_ordinary_properties_before_meta(cl):
    path, _ = make("/users", [("_writers_passwd", ["x"])])
    assert cl(".", "-create", path, "shell", "/bin/sh")[0] == 0
    assert cl(".", "-append", path, "home", "/h")[0] == 0
    assert cl(".", "-create", path, "_meta2", "m")[0] == 0
    assert [k for k, _ in asyncio.run(_props(path))] == [
        "name", "shell", "home", "_writers_passwd", "_meta2"]


def test_append_merge_insert_rename(cl):
    path, _ = make("/", [("v", ["a"])])
    assert cl(".", "-append", path, "v", "b", "a") == (0, "", "")
    assert cl(".", "-merge", path, "v", "a", "c") == (0, "", "")
    assert cl(".", "-insert", path, "v", "first", "0") == (0, "", "")
    assert cl(".", "-insert", path, "v", "last", "99") == (0, "", "")
    assert cl(".", "-read", path, "v")[1] == "v: first a b a c last\n"
    assert cl(".", "-merge", path, "new", "x") == (0, "", "")
    # insert refuses a missing key (tools §3.2)
    assert cl(".", "-insert", path, "nokey", "x", "0") == (
        213, "", "Insert failed: nokey: Invalid Key\n")
    assert cl(".", "-rename", path, "v", "w") == (0, "", "")
    assert cl(".", "-read", path, "w")[1] == "w: first a b a c last\n"
    assert cl(".", "-rename", path, "v", "z") == (213, "", "Rename: Invalid Key\n")


def test_unicode_digits_are_not_numbers(nb, cl):
    # str.isdigit() is True for '²', int() refuses it: nicl reads indexes, scopes and
    # versions with C's atoi on ASCII digits (model.atoi), and never crashes.
    path, _ = make("/", [("v", ["a"])])
    assert cl(".", "-insert", path, "v", "b", "0²") == (0, "", "")
    assert cl(".", "-read", path, "v")[1] == "v: b a\n"
    rc, out, err = cl(".", "-search", path, "0²", "0", "v", "a")
    assert (rc, out.splitlines()[0], err) == (0, "Search found 1 match", "")
    assert cl(".", "-history", "=", "1²")[0] == 0
    p = sub(nb, ".", "-read", "²")
    assert (p.returncode, p.stdout, p.stderr) == (212, "", "read: Invalid Path\n")


def test_delete_forms(cl):
    path, _ = make("/", [("v", ["a", "b", "a"]), ("gone", ["x"])])
    assert cl(".", "-delete", path, "v", "a") == (0, "", "")
    assert cl(".", "-read", path, "v")[1] == "v: b\n"
    assert cl(".", "-delete", path, "nokey", "a") == (213, "", "No such key: nokey\n")
    assert cl(".", "rm", path, "gone") == (0, "", "")
    assert cl(".", "-read", path)[1] == f"name: {path[1:]}\nv: b\n"
    asyncio.run(_build(".", path, "kid", []))
    assert cl(".", "destroy", path) == (0, "", "")
    assert cl(".", "-read", path) == (212, "", "read: Invalid Path\n")
    assert cl(".", "-delete", "/") == (15, "", "Can't delete root!\n")
    assert cl(".", "-delete", "0") == (15, "", "Can't delete root!\n")


def test_copy_and_move(cl):
    src, _ = make("/", [("k", ["v"])])
    asyncio.run(_build(".", src, "child", [("c", ["1"])]))
    dst, _ = make("/", [])
    assert cl(".", "-copy", src, dst) == (0, "", "")
    name = src[1:]
    assert cl(".", "-read", f"{dst}/{name}")[1] == f"name: {name}\nk: v\n"
    assert cl(".", "-read", f"{dst}/{name}/child")[1] == "name: child\nc: 1\n"
    assert cl(".", "-read", src)[0] == 0           # the original stays
    other, _ = make("/", [])
    assert cl(".", "mv", src, other) == (0, "", "")
    assert cl(".", "-read", src)[0] == 212         # gone from its old place
    assert cl(".", "-read", f"{other}/{name}/child")[1] == "name: child\nc: 1\n"
    assert cl(".", "-move", other, f"{other}/{name}") == (15, "", "Move failed: "
                                                          "Operation Failed\n")


def test_load(cl):
    top, _ = make("/", [])
    assert cl(".", "-load", top, "+", "name", "foo", "+", "bar", "a", "b", "c") == (0, "", "")
    assert cl(".", "-read", f"{top}/foo") == (0, "name: foo\nbar: a b c\n", "")


# -- statuses and exit codes (tools §3.3) ------------------------------------------------------

def test_exit_codes(nb, cl):
    assert cl(".", "-read", "/nosuch") == (212, "", "read: Invalid Path\n")
    assert cl(".", "-read", "999999") == (
        211, "", "Fetch record 999999 failed: Invalid Record ID\n")
    assert cl(".", "-read", "00") == (211, "", "read: Invalid Record ID\n")
    assert cl(".", "-rename", "/users/root", "nokey", "x")[0] == 213
    locked, _ = make("/", [("_locked", [])])
    assert cl(".", "-create", locked, "k", "v") == (236, "", "Create failed: Write Failed\n")


@needs_privilege_rule
def test_exit_code_of_a_refused_write(nb):
    p = sub(nb, ".", "-append", "/users/root", "shell", "x", env={"NETINFO_PRIVILEGED": "0"})
    assert (p.returncode, p.stderr) == (161, "Append failed: Access Restricted\n")


def test_one_shot_as_subprocess(nb):
    p = sub(nb, ".", "-read", "/users/root", "uid", "name")
    assert (p.returncode, p.stdout, p.stderr) == (0, "uid: 0\nname: root\n", "")
    p = sub(nb, ".", "-read", "/nosuch")
    assert (p.returncode, p.stderr) == (212, "read: Invalid Path\n")


def test_open_failures(nb, cl):
    # Every failure to open a served domain is "open(<ds>): Invalid Datastore", exit
    # 1001 & 0xFF = 233, as the original's nistore_open (tools §3.3; issue 17: an
    # unknown domain exited 212 "Invalid Path", a -t parse error 217).
    rc, _out, err = cl("/nosuchdomain", "-read", "/")
    assert rc == 233 and err == ("open(/nosuchdomain): Invalid Datastore: unknown domain "
                                 "nosuchdomain: no /machines entry of network@127.0.0.1 "
                                 "serves nosuchdomain/<tag>\n")
    rc, _out, err = cl("-t", "nohost", "-read", "/")
    assert rc == 233
    assert err == ("nicl: incorrect format for domain nohost (Bad format)\n"
                   "usage: -t <host>/<tag>\n<host> can be a host name or IP address\n"
                   "open(nohost): Invalid Datastore\n")
    rc, _out, err = cl("badtag@127.0.0.1", "-read", "/")
    assert (rc, err) == (233, "open(badtag@127.0.0.1): Invalid Datastore: no such tag "
                              "badtag at 127.0.0.1\n")
    rc, _out, err = cl("-t", "127.0.0.1/badtag", "-read", "/")
    assert (rc, err) == (233, "open(127.0.0.1/badtag): Invalid Datastore: no such tag "
                              "badtag at 127.0.0.1\n")
    assert cl(".", "-create") == (1, "", "Can't create a NetInfo domain\n")


def test_read_only_option(cl):
    assert cl("-ro", ".", "-create", "/x") == (163, "", "create: Write Access Restricted\n")
    assert cl("-ro", ".", "-read", "/users/root", "uid")[1] == "uid: 0\n"


def test_confirm_needs_interactive_session(cl):
    rc, _, err = cl("-i", ".", "-delete", "/users")
    assert rc == 1 and "-i" in err


def test_tagged_netinfod(engine_netinfod, cl):
    d = engine_netinfod("solo", "-m")   # on each engine (conftest.SERVED_ENGINES)
    t = f"127.0.0.1:{d.port}/solo"
    assert cl("-t", t, "-create", "/things/one", "k", "v") == (0, "", "")
    assert cl("-t", t, "-read", "/things/one") == (0, "name: one\nk: v\n", "")
    rc, out, _ = cl("-t", t, "-statistics")
    assert rc == 0
    assert "tag: solo master 0\n" in out


def test_json(cl):
    path, oid = make("/", [("k", ["a", "b"]), ("_m", ["x"])])
    r = json.loads(cl("--json", ".", "-read", path)[1])
    assert r["id"] == oid and r["properties"][1] == {"name": "k", "values": ["a", "b"]}
    assert json.loads(cl("--json", ".", "-list", path)[1]) == []
    assert json.loads(cl("--json", ".", "-domainname")[1]) == f"/{hostname()}"
    assert json.loads(cl("--json", ".", "-rparent")[1]) == {"address": "127.0.0.1",
                                                             "tag": "network"}
    hits = json.loads(cl("--json", ".", "-search", path, "0", "0", "k", "a")[1])
    assert [h["id"] for h in hits] == [oid]
    assert json.loads(cl("--json", ".", "-statistics")[1])[0]["name"] == "checksum"


# -- interactive mode --------------------------------------------------------------------------

def test_interactive_session_through_a_pipe(nb):
    top = uniq("ia")
    script = "\n".join([
        f"create /{top}",
        f"cd /{top}",
        "pwd",
        "create sub k v1",
        "-append sub k \"two words\" back\\ slash",
        "read sub",
        "cd sub",
        "read",
        "rename k key",
        "read . key",
        "cd ..",
        "ls",
        "path sub",
        "read /nosuch",
        "nosuchcommand",
        "quit",
        "read sub",           # never reached
    ]) + "\n"
    p = sub(nb, ".", input=script)
    assert p.returncode == 0
    root = sub(nb, ".", "-read", "/").stdout
    sid, = asyncio.run(_ids([f"/{top}/sub"]))
    assert p.stdout == (f"/{top}\n"
                        "name: sub\nk: v1 two words back slash\n"
                        "name: sub\nk: v1 two words back slash\n"
                        "key: v1 two words back slash\n"
                        f"{sid:<10} sub\n"
                        f"name: sub\nkey: v1 two words back slash\n\nname: {top}\n\n" + root +
                        "Goodbye\n")
    assert p.stderr.startswith("read: Invalid Path\n")
    assert p.stderr[len("read: Invalid Path\n"):] == nicl.USAGE


def test_interactive_ends_at_eof_and_exits_0_after_errors(nb):
    p = sub(nb, ".", input="read /nosuch\necho done\n")
    assert (p.returncode, p.stdout) == (0, "done\nGoodbye\n")
    for word in ("exit", "q", "-quit"):
        p = sub(nb, ".", input=f"{word}\necho never\n")
        assert p.stdout == "Goodbye\n"


def test_interactive_defaults_directory_to_current(nb):
    top, _ = make("/", [("k", ["a"])])
    p = sub(nb, ".", input=f"cd {top}\ninsert k z 0\nsearch 0 0 k z\nrename k j\nread\n")
    assert p.stdout == (f"Search found 1 match\n\nname: {top[1:]}\nk: z a\n"
                        f"name: {top[1:]}\nj: z a\nGoodbye\n")


def test_interactive_source_and_confirm(nb, tmp_path):
    top, _ = make("/", [])
    f = tmp_path / "cmds"
    f.write_text(f"create {top}/a\ncreate {top}/b\necho sourced\n")
    p = sub(nb, "-i", ".", input=f"source {f}\ndelete {top}/a\nn\ndelete {top}/b\ny\n"
                                f"ls {top}\n")
    aid, = asyncio.run(_ids([f"{top}/a"]))
    assert p.stdout == (f"sourced\nDelete {top}/a? (y/n) Delete {top}/b? (y/n) "
                        f"{aid:<10} a\nGoodbye\n")


def test_interactive_auth(nb):
    p = sub(nb, ".", input="auth root secret\nread /users/root uid\nsu nosuchuser pw\n")
    assert p.stdout == "uid: 0\nGoodbye\n"
    assert p.stderr == "auth: Access Restricted\n"


def _pty_session(nb, lines: list[str], term: str = "dumb", *opts: str) -> str:
    """Run an interactive session on a pseudo-terminal; returns everything it printed
    (the terminal's echo of the typed lines included)."""
    master, slave = pty.openpty()
    env = dict(nb.env, TERM=term)
    proc = subprocess.Popen([sys.executable, "-m", "netinfo.cli.nicl", *opts, "."],
                            stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    os.write(master, "".join(line + "\n" for line in lines).encode())
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:       # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(master)
    return out.decode()


def test_interactive_prompt_on_a_terminal(nb):
    out = _pty_session(nb, ["cd /users", "quit"])
    assert "/ > " in out and "/users > " in out and "Goodbye" in out
    assert "\033[1m" not in out
    out = _pty_session(nb, ["quit"], "vt100")
    assert "\033[1m/ > \033[0m" in out
    out = _pty_session(nb, ["echo hi", "quit"], "dumb", "-q")
    assert "> " not in out and "hi" in out


def test_tokenize():
    assert nicl.tokenize('a  "b c"\td\\ e "" f\\"g\n') == ["a", "b c", "d e", "", 'f"g']
    assert nicl.tokenize("   \n") == []


def test_delete_verbose_says_how_much_went(nb):
    top = uniq("gone")
    for path in (f"/{top}/a/b", f"/{top}/c"):
        assert sub(nb, ".", "-create", path).returncode == 0
    p = sub(nb, "-v", ".", "-delete", f"/{top}")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", f"Deleted /{top}: 4 directories\n")
    assert sub(nb, ".", "-delete", "/" + uniq("none")).returncode == 212


# -- raw mode ----------------------------------------------------------------------------------

def test_raw_mode(tmp_path, capsys):
    db = str(tmp_path / "test.nidb")

    def cl(*args):
        rc = nicl.main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err
    assert cl("-raw", db, "-read", "/") == (234, "", f"open({db}): No Such File\n")
    assert cl("-raw", db, "-create") == (0, "", "")
    assert cl("-raw", db, "-read", "/") == (0, "", "")
    assert cl("-raw", db, "-create", "/users/bob", "uid", "501") == (0, "", "")
    assert cl("-raw", db, "-read", "/users/bob") == (0, "name: bob\nuid: 501\n", "")
    assert cl("-raw", db, "-list", "/") == (0, "1          users\n", "")
    assert cl("-raw", db, "-domainname") == (15, "", "domainname: not available in raw mode\n")
    assert cl("-raw", db, "-rparent")[0] == 15
    rc, out, _ = cl("-raw", db, "-statistics")
    assert rc == 0
    assert [ln.split(":")[0] for ln in out.splitlines()] == [
        "checksum", "version", "max_id", "fetch_count", "save_count", "remove_count"]
    assert cl("-raw", db, "-history") == (0, "Maximum version: 2\n", "")
    assert cl("-raw", db, "-history", "gt", "1")[1] == "0          2\n1          2\n2          2\n"
    assert cl("-raw", db, "-history", "2")[1].startswith("Record: 0   Version: 2\n")
    assert cl("-raw", db, "-delete", "/users/bob") == (0, "", "")
    assert cl("-raw", db, "-read", "/users/bob")[0] == 212
    # -c creates a missing database too; a plain directory path works as well
    other = str(tmp_path / "plain")
    assert cl("-raw", "-c", other, "-create", "/x") == (0, "", "")
    assert cl("-raw", other, "-list", "/") == (0, "1          x\n", "")


def test_raw_mode_as_subprocess(nb, tmp_path):
    db = str(tmp_path / "sub.nidb")
    assert sub(nb, "-raw", db, "-create").returncode == 0
    p = sub(nb, "-raw", db, input="create /a k v\nread /a\n")
    assert (p.returncode, p.stdout) == (0, "name: a\nk: v\nGoodbye\n")


def _collection(dirs) -> bytes:
    """A NeXT collection file (256-byte slots of XDR ni_objects) holding *dirs*."""
    from netinfo.wire.proplist import pack_object
    from netinfo.wire.xdr import Packer
    out = b""
    for d in dirs:
        pk = Packer()
        pack_object(pk, d)
        out += pk.get_buffer().ljust(256, b"\0")
    return out


def test_raw_mode_on_a_damaged_database(tmp_path, run_tool):
    # A directory listed as its own child: every walk of the tree used to recurse
    # without end (RecursionError traceback) or hang; the database is refused at open.
    from netinfo.model import Directory, NiId
    db = tmp_path / "loop.nidb"
    db.mkdir()
    (db / "collection").write_bytes(_collection([
        Directory(NiId(0, 1), [], 0, [1]),
        Directory(NiId(1, 1), [("name", ["x"])], 0, [1])]))
    p = run_tool("nicl", "-raw", str(db), "-search", "/", "0", "-1", "name", "x", timeout=60)
    assert (p.returncode, p.stdout) == (233, "")
    assert p.stderr == (f"open({db}): Invalid Datastore: damaged database: directory 1 is "
                        "listed as a child more than once\n")
    # random bytes in place of the SQLite file: refused with SQLite's own diagnosis
    bad = tmp_path / "noise.nidb"
    bad.mkdir()
    (bad / "netinfo.sqlite").write_bytes(os.urandom(8192))
    p = run_tool("nicl", "-raw", str(bad), "-read", "/", timeout=60)
    assert (p.returncode, p.stdout) == (233, "")
    assert p.stderr.startswith(f"open({bad}): Invalid Datastore: ") and "damaged" in p.stderr
    assert "Traceback" not in p.stderr
