"""House rule: the pure core imports no I/O (DESIGN.md "Pure core, I/O at the edges")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "src" / "netinfo"
PURE = ["errors", "xdr", "rpc", "model", "protocol", "service", "templates", "legacy",
        "portmap", "nibind", "formats",
        "storage/__init__", "storage/memory"]
FORBIDDEN = {"asyncio", "socket", "sqlite3", "selectors", "ssl", "subprocess", "fcntl",
             "termios", "curses", "http", "urllib", "psycopg", "signal"}
IO_MODULES = {"server", "client", "database", "binder", "cli", "web", "storage.sqlite"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            out.add(("." * node.level) + mod)
    return out


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports_no_io(name):
    imports = _imports(PKG / f"{name}.py")
    for imp in imports:
        top = imp.lstrip(".").split(".")[0]
        if not imp.startswith("."):
            assert top not in FORBIDDEN, f"{name} imports {imp}"
        else:
            rel = imp.lstrip(".")
            assert rel.split(".")[0] not in IO_MODULES and rel != "storage.sqlite", \
                f"{name} imports I/O module {imp}"
