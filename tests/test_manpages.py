"""Every tool has --help and a man page generated from its parser; the committed pages in
docs/man/man1 must be what the parsers print now (regenerate with
``python -m netinfo.cli.manpage docs/man``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netinfo.cli.manpage import TOOLS, help_text, module_of, render

from .conftest import env_with_src

MAN = Path(__file__).resolve().parent.parent / "docs" / "man" / "man1"


@pytest.mark.parametrize("tool", list(TOOLS))
def test_help_exits_zero_as_a_real_subprocess(tool):
    r = subprocess.run([sys.executable, "-m", module_of(tool), "--help"],
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
    scripts = dict(re.findall(r'^([\w-]+) = "([\w.]+):main"', text, re.M))
    assert set(scripts) == set(TOOLS)
    assert all(module_of(tool) == module for tool, module in scripts.items())


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
    from netinfo.client.flat import NIDUMP_FORMATS, NILOAD_FORMATS

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


# -- pages worth reading (issue #9) -----------------------------------------------------------

SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "EXIT STATUS",
            "EXAMPLES", "FILES", "SEE ALSO"]


@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_page_has_the_sections_in_order(tool):
    """Before: NAME, "SYNOPSIS AND OPTIONS" and SEE ALSO only."""
    heads = re.findall(r'^\.SH "?([^"\n]+)"?$', (MAN / f"{tool}.1").read_text(), re.M)
    assert heads == SECTIONS
    page = _page(tool)
    assert "NETINFO_PORTMAPPER" in page.split(".SH ENVIRONMENT")[1].split(".SH")[0]
    exits = page.split(".SH EXIT STATUS")[1].split(".SH")[0]
    assert re.search(r"^\.B 0$", exits, re.M), "no exit status 0"
    assert re.search(r"^\.RS\n\.nf\n" + tool, page.split(".SH EXAMPLES")[1], re.M)


def test_every_netinfo_variable_the_code_reads_is_documented():
    from netinfo.cli.manpage import ENVIRONMENT, PAGES
    src = Path(__file__).resolve().parent.parent / "src" / "netinfo"
    read = set()
    for f in src.rglob("*.py"):
        read |= set(re.findall(r'"(NETINFO_[A-Z_]+)"', f.read_text()))
    assert read <= set(ENVIRONMENT), read - set(ENVIRONMENT)
    assert {v for p in PAGES.values() for v in p.environment} == set(ENVIRONMENT)


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_finds_the_pages_through_manpath_and_renders_them():
    env = dict(os.environ, MANPATH=f"{MAN.parent}:", MANWIDTH="80", MAN_KEEP_FORMATTING="")
    r = subprocess.run(["man", "-w", "niutil"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == str(MAN / "niutil.1"), r.stderr
    for tool in TOOLS:
        r = subprocess.run(["man", "-l", str(MAN / f"{tool}.1")], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "EXIT STATUS" in r.stdout, r.stderr
        assert "warning" not in r.stderr, r.stderr


def test_the_package_installs_every_page_into_share_man():
    """pyproject's data-files: what `pip install .` puts into <venv>/share/man/man1 (where
    man finds it from PATH)."""
    import tomllib
    top = Path(__file__).resolve().parent.parent
    conf = tomllib.loads((top / "pyproject.toml").read_text())
    globs = conf["tool"]["setuptools"]["data-files"]["share/man/man1"]
    installed = {p.name for g in globs for p in top.glob(g)}
    assert installed == {f"{tool}.1" for tool in TOOLS}
