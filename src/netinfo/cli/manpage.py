"""Man pages for every tool, generated from the tool's own ``--help`` (its parser's text).

``python -m netinfo.cli.manpage DIR`` writes ``DIR/<tool>.1``; ``tests/test_manpages.py``
checks that the committed pages in ``docs/man`` are exactly what the parsers print now.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from pathlib import Path

from .. import __version__

#: tool → one-line summary for the NAME section.
TOOLS: dict[str, str] = {
    "niutil": "NetInfo utility: read and write directories and properties of a domain",
    "nicl": "NetInfo command line: a shell over a domain or a database directory",
    "nidump": "write NetInfo data as flat files or in the raw format",
    "niload": "load flat files or the raw format into NetInfo",
    "nireport": "print a table of properties of a directory's children",
    "nigrep": "search a NetInfo domain for a regular expression",
    "nifind": "find a directory in the NetInfo hierarchy",
    "nidomain": "list, create and destroy the databases served by nibindd",
    "netinfod": "serve one NetInfo database",
    "nibindd": "serve every NetInfo database of a directory, NIBIND and a portmapper",
}


def help_text(tool: str) -> str:
    """What ``<tool> --help`` prints (stdout and stderr), from the tool's parser."""
    module = importlib.import_module(f"netinfo.cli.{tool}")
    out, err = io.StringIO(), io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal: pin it
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.main(["--help"])
            except SystemExit:
                pass
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue() + err.getvalue()


def _escape(line: str) -> str:
    line = line.replace("\\", "\\e").replace("-", "\\-")
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line


def render(tool: str) -> str:
    """The troff man page of *tool*."""
    others = ", ".join(f"\\fB{t}\\fR(1)" for t in TOOLS if t != tool)
    body = "\n".join(_escape(x) for x in help_text(tool).rstrip("\n").splitlines())
    return (f'.TH {tool.upper()} 1 "" "opennetinfo {__version__}" "NetInfo"\n'
            f".SH NAME\n{tool} \\- {TOOLS[tool]}\n"
            f".SH SYNOPSIS AND OPTIONS\n.nf\n{body}\n.fi\n"
            f".SH SEE ALSO\n{others}\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0] if args else "docs/man")
    target.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        (target / f"{tool}.1").write_text(render(tool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
