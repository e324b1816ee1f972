"""Every tool has --help and a man page generated from its parser; the committed pages in
docs/man must be what the parsers print now (regenerate with
``python -m netinfo.cli.manpage docs/man``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from netinfo.cli.manpage import TOOLS, help_text, render

from .conftest import env_with_src

MAN = Path(__file__).resolve().parent.parent / "docs" / "man"


@pytest.mark.parametrize("tool", list(TOOLS))
def test_help_exits_zero_as_a_real_subprocess(tool):
    r = subprocess.run([sys.executable, "-m", f"netinfo.cli.{tool}", "--help"],
                       capture_output=True, text=True, env=env_with_src(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert tool in (r.stdout + r.stderr)


@pytest.mark.parametrize("tool", list(TOOLS))
def test_man_page_matches_the_parser(tool):
    page = MAN / f"{tool}.1"
    assert page.exists(), f"missing {page}: run python -m netinfo.cli.manpage docs/man"
    assert page.read_text() == render(tool), (
        f"{page} is out of date: run python -m netinfo.cli.manpage docs/man")


@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_documented_flag_is_in_the_help(tool):
    """The man page shows every option the parser's help shows (nothing dropped)."""
    text = help_text(tool)
    page = (MAN / f"{tool}.1").read_text().replace("\\-", "-").replace("\\e", "\\")
    for flag in set(re.findall(r"(?<![\w<-])--?[A-Za-z][\w.-]*", text)):
        assert flag in page, f"{flag} missing from {tool}.1"


def test_every_console_script_has_a_man_page():
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    scripts = re.findall(r'^(\w+) = "netinfo\.cli\.\w+:main"', text, re.M)
    assert set(scripts) == set(TOOLS)


def _page(tool: str) -> str:
    return (MAN / f"{tool}.1").read_text().replace("\\-", "-").replace("\\e", "\\")


@pytest.mark.parametrize("tool", ["netinfod", "nibindd"])
def test_argparse_options_are_documented(tool):
    import importlib
    parser = importlib.import_module(f"netinfo.cli.{tool}").build_parser()
    page = _page(tool)
    for action in parser._actions:
        for opt in action.option_strings:
            assert opt in page, f"{tool}: {opt} accepted but not documented"


def test_parser_tables_and_pages_agree():
    """The tables the custom parsers dispatch on, against their pages."""
    from netinfo.cli import nicl, nidomain, nidump, niload, niutil
    from netinfo.formats import NIDUMP_FORMATS, NILOAD_FORMATS

    page = _page("niutil")
    for flag in niutil.OPS:
        assert flag in page, f"niutil accepts {flag} but its page does not say so"
    for flag in re.findall(r"^niutil (-\w+)", page, re.M):
        assert flag in niutil.OPS, f"niutil's page shows {flag} but the parser lacks it"
    page = _page("nicl")
    for flag in nicl._FLAGS:
        assert flag in page, f"nicl accepts {flag} but its page does not say so"
    page = _page("nidomain")
    for flag in nidomain.OPERATIONS:
        assert f"nidomain {flag}" in page
    for fmt in NIDUMP_FORMATS:
        assert fmt in _page("nidump")
    for fmt in NILOAD_FORMATS:
        assert fmt in _page("niload")
    assert nidump.main(["--help"]) == 0 and niload.main(["--help"]) == 0
