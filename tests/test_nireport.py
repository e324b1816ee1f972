"""nireport (tools §4.1): in process and as a real subprocess, against a real nibindd
serving a ``local`` domain bound to a ``network`` root (scenario A10).

The module-scoped ``world`` fixture here is shared with test_nigrep.py and test_nifind.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass, field

import pytest

from netinfo.cli import nireport
from netinfo.client.domain import DomainClient, open_domain
from netinfo.errors import MESSAGES, NiError, Status, Timeout
from netinfo.model import first_values

from .conftest import Nibindd, served_domains, tool_process

USAGE = "usage: nireport [-T timeout] [-t] domain directory property...\n"
TAGGED_HELP = "usage: -t <host>/<tag>\n<host> can be a host name or IP address\n"

# -- the shared world ----------------------------------------------------------------------------

# bob's passwd has no values: the tools' empty-value-list cases (root's is "*": new
# domains lock root).
BOB = [("name", ["bob"]), ("passwd", []), ("uid", ["501"]), ("gid", ["20"]),
       ("realname", ["Bob Smith"]), ("home", ["/Users/bob"]), ("shell", ["/bin/tcsh"]),
       ("_writers_passwd", ["bob"])]


@dataclass
class World:
    """A running nibindd (``.`` = local, ``/`` = network root) with A10's test data."""

    nb: Nibindd
    host: str = ""                      # this host's name: the local domain is "/<host>"
    local: dict[str, int] = field(default_factory=dict)   # path → directory id in "."
    root: dict[str, int] = field(default_factory=dict)    # path → directory id in "/"
    unnamed: int = 0                    # id of the /machines entry without a name in "."

    @property
    def env(self) -> dict[str, str]:
        return self.nb.env

    @property
    def local_name(self) -> str:
        return "/" + self.host


async def _create(c: DomainClient, parent: str, props: list) -> int:
    pid = await c.pathsearch(parent)
    child, _ = await c.create(pid, props)
    return child.object


async def _ids(c: DomainClient, paths: list[str]) -> dict[str, int]:
    return {p: (await c.pathsearch(p)).object for p in paths}


async def _populate(w: World) -> None:
    local = await open_domain(".")
    root = await open_domain("/")
    try:
        # local: bob, a group with him, a mail host and an unnamed machine entry
        await _create(local, "/users", BOB)
        await _create(local, "/groups", [("name", ["eng"]), ("passwd", ["*"]),
                                         ("gid", ["600"]), ("users", ["alice", "bob"])])
        await _create(local, "/machines", [("name", ["mailhost"]),
                                           ("ip_address", ["10.0.0.25"])])
        w.unnamed = await _create(local, "/machines", [("ip_address", ["10.0.0.99"]),
                                                       ("comment", ["netbox"])])
        # the root: its own mail host and a user the local domain lacks
        await _create(root, "/machines", [("name", ["mailhost"]),
                                          ("ip_address", ["10.0.0.26"])])
        await _create(root, "/users", [("name", ["carol"]), ("uid", ["502"])])
        w.local = await _ids(local, [
            "/users", "/users/root", "/users/daemon", "/users/nobody", "/users/bob",
            "/groups", "/groups/eng", "/machines", "/machines/localhost",
            "/machines/broadcasthost", "/machines/mailhost", "/networks", "/rpcs",
            "/rpcs/netinfo", "/rpcs/netinfobind"])
        w.root = await _ids(root, ["/users", "/users/root", "/users/carol",
                                   "/machines/mailhost"])
        master = first_values((await root.read(0))[1], "master")
        assert master and master[0].endswith("/network")
        w.host = master[0].split("/")[0]
    finally:
        await local.close()
        await root.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One nibindd for the whole module, with NETINFO_PORTMAPPER set for in-process runs."""
    with served_domains(tmp_path_factory, "nitools") as nb:
        w = World(nb)
        asyncio.run(_populate(w))
        yield w


def tool(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``python -m netinfo.cli.<module> args`` as a real subprocess."""
    return tool_process(module, *args, env=env)


def call(main, capsys, *args: str) -> tuple[int, str, str]:
    """Run a tool's ``main`` in process: (exit status, stdout, stderr)."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def dead_env(monkeypatch) -> None:
    """Point clients at a portmapper that is not there."""
    monkeypatch.setenv("NETINFO_PORTMAPPER", "127.0.0.1:1")


# -- scenario A10 ------------------------------------------------------------------------------

A10_REPORT = ("root\t0\t/var/root\t\n"
              "daemon\t1\t/var/root\t\n"
              "nobody\t-2\t/var/empty\t\n"
              "bob\t501\t/Users/bob\t\n")


def test_a10_report_subprocess(world):
    r = tool("nireport", ".", "/users", "name", "uid", "home", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (0, A10_REPORT, "")


def test_a10_report_in_process(world, capsys):
    assert call(nireport.main, capsys, ".", "/users", "name", "uid", "home") == \
        (0, A10_REPORT, "")


def test_console_script_entry(world):
    """The ``nireport`` console script is installed and reaches the same main."""
    import shutil
    exe = shutil.which("nireport")
    if exe is None:
        pytest.skip("console script not installed")
    r = subprocess.run([exe, ".", "/users/bob", "x"], env=world.env, capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, "")


# -- output format -----------------------------------------------------------------------------

def test_no_value_missing_and_empty(world, capsys):
    # bob's passwd has no values, "nosuch" is absent: both print #NoValue#
    rc, out, _ = call(nireport.main, capsys, ".", "/users", "name", "passwd", "nosuch")
    assert rc == 0
    assert out == ("root\t*\t#NoValue#\t\n"
                   "daemon\t*\t#NoValue#\t\n"
                   "nobody\t*\t#NoValue#\t\n"
                   "bob\t#NoValue#\t#NoValue#\t\n")


def test_several_values_joined_with_commas(world, capsys):
    rc, out, _ = call(nireport.main, capsys, ".", "/rpcs", "name", "number")
    assert rc == 0
    assert out == ("portmapper,portmap,sunrpc\t100000\t\n"
                   "netinfo\t200100000\t\n"
                   "netinfobind\t200100001\t\n")


def test_one_column_and_repeated_column(world, capsys):
    rc, out, _ = call(nireport.main, capsys, ".", "/groups", "name", "name")
    assert rc == 0
    assert out.splitlines(keepends=True)[-1] == "eng\teng\t\n"
    assert all(line.endswith("\t\n") for line in out.splitlines(keepends=True))


def test_children_without_the_property_and_unnamed(world, capsys):
    rc, out, _ = call(nireport.main, capsys, ".", "/machines", "name", "ip_address")
    assert rc == 0
    assert out == ("localhost\t127.0.0.1\t\n"
                   "broadcasthost\t255.255.255.255\t\n"
                   "mailhost\t10.0.0.25\t\n"
                   "#NoValue#\t10.0.0.99\t\n")


def test_directory_without_children_prints_nothing(world, capsys):
    assert call(nireport.main, capsys, ".", "/users/bob", "name") == (0, "", "")


def test_path_grammar_and_root_domain(world, capsys):
    # key=value components, a path without a leading slash, and the root domain "/"
    rc, out, _ = call(nireport.main, capsys, "/", "name=users", "name", "uid")
    assert rc == 0
    assert out == "root\t0\t\ndaemon\t1\t\nnobody\t-2\t\ncarol\t502\t\n"


def test_timeout_option_and_double_dash(world, capsys):
    assert call(nireport.main, capsys, "-T", "10", "--", ".", "/users/bob", "name") == \
        (0, "", "")


def test_tagged_domain(world, netinfod, capsys):
    d = netinfod("report", "-m", "--populate", "-n")
    rc, out, err = call(nireport.main, capsys, "-t", f"127.0.0.1:{d.port}/report",
                        "/groups", "name", "gid")
    assert (rc, err) == (0, "")
    assert out.splitlines(keepends=True)[0] == "wheel\t0\t\n"


def test_json(world, capsys):
    rc, out, err = call(nireport.main, capsys, "--json", ".", "/users", "name", "passwd",
                        "nosuch")
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert doc == {
        "domain": ".", "directory": "/users", "properties": ["name", "passwd", "nosuch"],
        "rows": [
            {"id": world.local["/users/root"], "values": [["root"], ["*"], None]},
            {"id": world.local["/users/daemon"], "values": [["daemon"], ["*"], None]},
            {"id": world.local["/users/nobody"], "values": [["nobody"], ["*"], None]},
            {"id": world.local["/users/bob"], "values": [["bob"], [], None]},
        ]}


def test_json_subprocess(world):
    r = tool("nireport", "--json", ".", "/users", "uid", env=world.env)
    assert r.returncode == 0
    assert [row["values"] for row in json.loads(r.stdout)["rows"]] == \
        [[["0"]], [["1"]], [["-2"]], [["501"]]]


def test_help(capsys):
    rc, out, err = call(nireport.main, capsys, "--help")
    assert (rc, err) == (0, "")
    assert out.startswith(USAGE)
    assert "--json" in out
    assert call(nireport.main, capsys, "-h")[0] == 0


# -- usage errors: exit 1 ----------------------------------------------------------------------

@pytest.mark.parametrize("args, err", [
    ((), USAGE),
    ((".",), USAGE),
    ((".", "/users"), "no properties\n" + USAGE),
    (("-t", "127.0.0.1/local", "/users"), "no properties\n" + USAGE),
    (("-x", ".", "/users", "name"), "nireport: unknown option -x\n" + USAGE),
    (("-T",), "nireport: option -T needs a value\n" + USAGE),
    (("-T", "soon", ".", "/users", "name"), "nireport: invalid timeout soon\n" + USAGE),
    (("-T", "0", ".", "/users", "name"), "nireport: invalid timeout 0\n" + USAGE),
])
def test_usage_errors(capsys, args, err):
    assert call(nireport.main, capsys, *args) == (1, "", err)


def test_usage_subprocess(world):
    r = tool("nireport", ".", "/users", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "no properties\n" + USAGE)


# -- opening the domain: 199, 200, 217-221 -------------------------------------------------------

def test_unknown_domain_199(world, capsys):
    assert call(nireport.main, capsys, "/nonexistent", "/users", "name") == \
        (199, "", "nireport: can't connect to server for domain /nonexistent: unknown "
                  "domain nonexistent: no /machines entry of network@127.0.0.1 serves "
                  "nonexistent/<tag>\n")


def test_no_server_199(capsys, monkeypatch):
    dead_env(monkeypatch)
    assert call(nireport.main, capsys, ".", "/users", "name") == \
        (199, "", "nireport: can't connect to server for domain .: no nibindd at "
                  "127.0.0.1 (no answer from the portmapper at 127.0.0.1:1)\n")


def test_tagged_connect_failure_199(capsys):
    from .conftest import free_port
    port = free_port()
    assert call(nireport.main, capsys, "-t", f"127.0.0.1:{port}/local", "/users", "name") \
        == (199, "", f"nireport: can't connect to server 127.0.0.1:{port}/local: "
                     f"cannot connect to 127.0.0.1:{port}: Connection refused\n")


@pytest.mark.parametrize("arg, code, text", [
    ("localhost", 217, "Bad format"),
    ("/local", 218, "No host"),
    ("127.0.0.1/", 219, "No tag"),
    ("1.2.3/local", 220, "Bad address"),
    ("no-such-host.invalid/local", 221, "Host not found"),
])
def test_tagged_parse_errors(capsys, arg, code, text):
    rc, out, err = call(nireport.main, capsys, "-t", arg, "/users", "name")
    first = "Can't find address for no-such-host.invalid\n" if code == 221 else ""
    assert (rc, out) == (code, "")
    assert err == (first + f"nireport: incorrect format for domain {arg} ({text})\n"
                   + TAGGED_HELP)


def test_tagged_parse_error_subprocess(world):
    r = tool("nireport", "-t", "nohost", "/users", "name", env=world.env)
    assert (r.returncode, r.stdout) == (217, "")
    assert r.stderr == ("nireport: incorrect format for domain nohost (Bad format)\n"
                        + TAGGED_HELP)


# -- errors after opening: ni_status + 100, 199 --------------------------------------------------

def test_missing_directory_105(world, capsys):
    assert call(nireport.main, capsys, ".", "/users/nosuch", "name") == \
        (105, "", "ni_pathsearch: No such directory\n")


def test_missing_directory_subprocess(world):
    r = tool("nireport", ".", "/nosuch", "name", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (105, "", "ni_pathsearch: No such directory\n")


@pytest.mark.parametrize("status", [Status.PERM, Status.BADID, Status.NETROOT])
def test_listall_status_mapped(world, capsys, monkeypatch, status):
    async def refuse(self, d):
        raise NiError(status)
    monkeypatch.setattr(DomainClient, "listall", refuse)
    assert call(nireport.main, capsys, ".", "/users", "name") == \
        (100 + status, "", f"ni_listall: {MESSAGES[status]}\n")


def test_communication_failure_199(world, capsys, monkeypatch):
    async def silent(self, path, start=None):
        raise Timeout("no reply")
    monkeypatch.setattr(DomainClient, "pathsearch", silent)
    assert call(nireport.main, capsys, ".", "/users", "name") == \
        (199, "", "ni_pathsearch: Communication failure\n")


def test_server_gone_199(world, netinfod, capsys):
    """A server that dies between open and read: the read fails as a communication
    failure."""
    d = netinfod("gone", "-m", "--populate", "-n")
    port = d.port

    real = DomainClient.pathsearch

    async def stop_then_search(self, path, start=None):
        d.stop()
        return await real(self, path, start)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DomainClient, "pathsearch", stop_then_search)
        rc, out, err = call(nireport.main, capsys, "-T", "2", "-t",
                            f"127.0.0.1:{port}/gone", "/users", "name")
    assert (rc, out, err) == (199, "", "ni_pathsearch: Communication failure\n")
