"""Numbers typed by users, read in one place: ``model.atoi`` / ``is_digits`` /
``is_integer`` (C ``atoi`` and ``isdigit``, tools §1.2, §1.3, §3.2) and the one ``-T``
parser of the tools, ``cli.common.parse_timeout``."""

from __future__ import annotations

import pytest

from netinfo.cli import nidump, nifind, nigrep, niload, nireport, niutil
from netinfo.cli.common import DEFAULT_TIMEOUT, UsageError, parse_timeout
from netinfo.model import atoi, is_digits, is_integer


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("42", 42), ("007", 7), ("-1", -1), ("+5", 5), (" \t\n\v\f\r12", 12),
    ("12abc", 12), ("1.5", 1), ("", 0), ("x", 0), ("-", 0), ("+-1", 0), (" ", 0),
    # str.isdigit() is True for these, yet int() refuses them or reads another number:
    # C's atoi stops at the first byte that is not 0-9.
    ("1²", 1), ("²", 0), ("١٢", 0), ("3١", 3), ("１2", 0),
])
def test_atoi_is_c_atoi_on_ascii_digits(text, value):
    assert atoi(text) == value


@pytest.mark.parametrize("text, digits, integer", [
    ("0", True, True), ("123", True, True), ("-3", False, True), ("+3", False, True),
    ("", False, False), ("-", False, False), ("1²", False, False), ("²", False, False),
    ("١", False, False), ("1.5", False, False), (" 1", False, False), ("1 ", False, False),
])
def test_is_digits_and_is_integer_take_ascii_only(text, digits, integer):
    assert is_digits(text) is digits
    assert is_integer(text) is integer


def test_parse_timeout_refuses_what_atoi_would_have_read():
    # niutil, nidump, niload read -T with atoi (tools §1.1); junk no longer means 30 s
    assert parse_timeout(None, prog="niutil") == DEFAULT_TIMEOUT == 30.0
    assert parse_timeout("7", prog="niutil") == 7.0
    assert parse_timeout("2.5", prog="nidump") == 2.5
    for junk in ("junk", "0", "-3", "", "²", "7x"):
        with pytest.raises(UsageError) as ei:
            parse_timeout(junk, prog="niutil")
        assert ei.value.lines == (f"niutil: invalid timeout {junk}",)


def test_parse_timeout_strict_for_the_newer_tools():
    assert parse_timeout("0.5", prog="nireport") == 0.5
    assert parse_timeout(None, 2.0, prog="nifind") == 2.0
    for bad in ("soon", "0", "-1", "nan", "inf", "1²", "7x"):
        with pytest.raises(UsageError) as ei:
            parse_timeout(bad, prog="nigrep")
        assert ei.value.lines == (f"nigrep: invalid timeout {bad}",)


def test_every_tool_reads_t_through_the_one_parser():
    assert niutil.parse_args(["-read", "-T", "9", ".", "/"]).timeout == 9.0
    assert nidump.parse_args(["-T", "9", "passwd", "."]).timeout == 9.0
    assert niload.parse_args(["-T", "9", "passwd", "."]).timeout == 9.0
    assert nireport.parse_args(["-T", "2.5", ".", "/users", "name"]).timeout == 2.5
    assert nigrep.parse_args(["-T", "2.5", "x", "."]).timeout == 2.5
    assert nifind.parse_args(["-T2.5", "/users"]).timeout == 2.5
    for parse, args in ((niutil.parse_args, ["-read", "-T", "9x", ".", "/"]),
                        (nidump.parse_args, ["-T", "9x", "passwd", "."]),
                        (niload.parse_args, ["-T", "abc", "passwd", "."]),
                        (nireport.parse_args, ["-T", "1²", ".", "/u", "k"]),
                        (nigrep.parse_args, ["-T", "1²", "x", "."]),
                        (nifind.parse_args, ["-T", "1²", "/users"])):
        with pytest.raises(UsageError) as ei:
            parse(args)
        assert ei.value.lines[0].endswith(f": invalid timeout {args[args.index('-T') + 1]}")
