"""Issue #9, "Nothing lost by a slip": what every tool shares when something goes wrong.

Each tool runs as a real subprocess against a real nibindd on loopback. An error always
ends with a non-zero status and one line on stderr naming the cause; no traceback ever
reaches the user (the one top-level handler in ``cli/common.py``); an output error (a
full disk, ``> /dev/full``) is an error, a reader that went away (EPIPE) stays quiet.
The tool-specific cases live in each tool's test module.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from netinfo.cli import common, niutil

from .conftest import served_domains
from .test_nidump import call, populate


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    """One nibindd for the module (``.`` = local, ``/`` = network root), with a user."""
    with served_domains(tmp_path_factory, "slips") as d:
        populate(".", False, {"/users": [([("name", ["bob"]), ("uid", ["501"])], [])]})
        yield d


def tool(nb, module: str, *args: str, stdout=subprocess.PIPE, stdin: str | None = None,
         env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m netinfo.cli.<module> args`` with the nibindd's environment."""
    return subprocess.run([sys.executable, "-m", f"netinfo.cli.{module}", *args],
                          env=env or nb.env, stdout=stdout, stderr=subprocess.PIPE,
                          input=stdin, text=True, timeout=120)


FULL_DISK_CASES = [
    ("nidump", "passwd", "."),
    ("nidump", "-r", "/users", "."),
    ("niutil", "-read", ".", "/users/bob"),
    ("niutil", "-list", ".", "/users"),
    ("niutil", "--help"),
    ("nireport", ".", "/users", "name", "uid"),
    ("nigrep", "bob", "."),
    ("nifind", "/users/bob", "."),
    ("nicl", ".", "-read", "/users/bob"),
    ("nidomain", "-l"),
]


@pytest.mark.parametrize("args", FULL_DISK_CASES, ids=[" ".join(a) for a in FULL_DISK_CASES])
def test_output_to_a_full_disk_is_an_error(nb, args):
    # Before: an OSError traceback (dumps, niutil, nireport, nigrep, nifind), "read:
    # Operation Failed" (nicl) or "nibindd is not running" with exit 0 (nidomain).
    with open("/dev/full", "w") as full:
        p = tool(nb, *args, stdout=full)
    assert p.returncode == common.EXIT_ERROR == 1
    assert p.stderr == f"{args[0]}: can't write output: No space left on device\n"


def test_a_reader_that_goes_away_stays_quiet(nb):
    p = subprocess.Popen([sys.executable, "-m", "netinfo.cli.niutil", "-list", ".", "/"],
                         env=nb.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert err == b""


def test_unexpected_errors_become_one_line(nb, monkeypatch):
    # The handler turns anything unexpected into "<prog>: internal error: ...", never a
    # traceback (a subprocess case: nicl on a damaged database, test_nicl).
    async def broken(self, *args):
        raise KeyError("checksum")
    monkeypatch.setattr("netinfo.client.Client.read", broken)
    rc, out, err = call(niutil.main, "-read", ".", "/users/bob")
    assert (rc, out, err) == (1, "", "niutil: internal error: KeyError: 'checksum'\n")


def test_os_error_text():
    assert common.os_error_text(PermissionError(13, "Permission denied", "/x")) == \
        "/x: Permission denied"
    assert common.os_error_text(OSError(28, "No space left on device")) == \
        "can't write output: No space left on device"
    assert common.os_error_text(OSError(101, "Network is unreachable")) == \
        "Network is unreachable"


# -- nidomain (tools §4.4) ---------------------------------------------------------------------

def test_nidomain_without_nibindd_names_the_portmapper(nb):
    # Before: "port information is not available (nibindd is not running)", exit 0.
    env = dict(nb.env, NETINFO_PORTMAPPER="127.0.0.1:9")
    p = tool(nb, "nidomain", "-l", env=env)
    assert (p.returncode, p.stdout, p.stderr) == (
        1, "", "nidomain: no nibindd at 127.0.0.1 (no answer from the portmapper at "
               "127.0.0.1:9)\n")
    p = tool(nb, "nidomain", "-g", "local", env=env)
    assert p.returncode == 1 and p.stderr.startswith("nidomain: no nibindd at 127.0.0.1 ")


# -- addresses (model.split_host_port, domain.parse_tagged) ------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("h", ("h", None)), ("h:1", ("h", 1)), ("10.0.0.1:65535", ("10.0.0.1", 65535)),
    ("[::1]", ("::1", None)), ("[::1]:5", ("::1", 5)), ("::1", ("::1", None)),
    ("fe80::1", ("fe80::1", None)),
])
def test_split_host_port(text, expected):
    from netinfo.model import split_host_port
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text,message", [
    ("", "no host"), (":5", "no host before ':5'"), ("h:", "bad port '' (not a number)"),
    ("h:65536", "bad port 65536 (not in 1-65535)"), ("h:x1", "bad port 'x1' (not a number)"),
    ("[::1", "no ']' after the IPv6 address in [::1"), ("[::1]x", "unexpected 'x' after [::1]"),
    ("1:2:x", "bad address '1:2:x' (write an IPv6 address with a port as [address]:port)"),
])
def test_split_host_port_names_the_bad_part(text, message):
    from netinfo.model import split_host_port
    with pytest.raises(ValueError) as ei:
        split_host_port(text)
    assert str(ei.value) == message


def test_tagged_ipv6():
    from netinfo.client.domain import TaggedError, parse_tagged
    assert parse_tagged("[::1]:1033/local") == ("::1", "local", 1033)
    assert parse_tagged("::1/local") == ("::1", "local", None)
    for bad in ("[::1/local", "[::1]:0/local", "127.0.0.1:99999/local"):
        with pytest.raises(TaggedError) as ei:
            parse_tagged(bad)
        assert ei.value.code == 4
