"""House rule: the pure core imports no I/O, and the layers point one way
(DESIGN.md "Pure core, I/O at the edges"; docs/architecture.md).

Imports are read from the source (``ast``) and followed transitively inside the package:
``from .x import``, ``from ..x import``, ``from . import x``, ``import netinfo.x``, also
inside functions (a lazy import still runs), but not under ``if TYPE_CHECKING:``. Reaching
``netinfo.a.b`` also runs ``netinfo`` and ``netinfo.a``. A subprocess then checks the same
at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections import deque
from functools import cache
from pathlib import Path

import pytest

from .conftest import env_with_src

PKG = Path(__file__).resolve().parent.parent / "src" / "netinfo"

#: The pure core: no I/O, and nothing outside this list reachable from it. ``netinfo``
#: (the package's ``__init__``, run before any of its modules) and ``netinfo.client``
#: load their public names lazily, so they belong here too.
PURE = frozenset({
    "netinfo", "netinfo.errors", "netinfo.model",
    # who serves a domain and who its master is (issue 19)
    "netinfo.facts",
    # hashes only; libpass (third party, pure computation) is loaded on the first check
    "netinfo.passwords",
    "netinfo.wire", "netinfo.wire.xdr", "netinfo.wire.rpc", "netinfo.wire.proplist",
    "netinfo.wire.protocol", "netinfo.wire.readall", "netinfo.wire.portmap", "netinfo.wire.yp",
    "netinfo.wire.rpcb",
    "netinfo.wire.nibind",
    # the bounds every directory keeps, checked by tools and server alike
    "netinfo.wire.limits",
    # LDAP's BER and messages (issue 22)
    "netinfo.wire.ber", "netinfo.wire.ldap",
    # the change history's records and program (issue 24)
    "netinfo.wire.history", "netinfo.storage.journal",
    "netinfo.storage", "netinfo.storage.memory", "netinfo.storage.nodes",
    "netinfo.storage.changes", "netinfo.storage.legacy", "netinfo.storage.cached",
    "netinfo.storage.keyindex", "netinfo.storage.dump",
    "netinfo.client", "netinfo.client.raw", "netinfo.client.flat",
    "netinfo.server", "netinfo.server.service", "netinfo.server.templates",
    "netinfo.server.quota", "netinfo.server.auth",
    # the bounds on a listener's peers (both RPC servers hand it their connections)
    "netinfo.server.peers",
    # which answers the kept-answer tables take in (issue 20)
    "netinfo.server.admission",
    # the NIS maps' table and line renderers, and the maps kept whole in memory (issue 21)
    "netinfo.server.nismaps", "netinfo.server.nisresident",
    # the LDAP front door's table, filters and views (issue 22)
    "netinfo.server.rfc2307", "netinfo.server.ldapview", "netinfo.server.ldif",
    "netinfo.server.ldapentry",
})

#: The client library: I/O (sockets, asyncio), but never the tools above it.
LIBRARY = frozenset({
    "netinfo.client.transport", "netinfo.client.core", "netinfo.client.binding",
    "netinfo.client.domain", "netinfo.netif", "netinfo.client.verbs", "netinfo.client.walk",
    "netinfo.client.dumps", "netinfo.client.search", "netinfo.client.history",
})

#: The layout (issue 19 item 7): the wings, and which wings each may import. An arrow
#: the other way, or between client and storage, is a back-arrow. "root" is the shared
#: modules at the top of the package, which import only each other.
WINGS = ("wire", "storage", "client", "server", "cli", "web")
MAY_IMPORT = {
    "root": {"root"},
    "wire": {"root", "wire"},
    "storage": {"root", "wire", "storage"},
    "client": {"root", "wire", "client"},
    "server": {"root", "wire", "storage", "client", "server"},
    "web": {"root", "wire", "client", "web"},
    "cli": {"root", "wire", "storage", "client", "server", "cli"},
}
#: Modules at the package's root, ``__init__`` included.
ROOT_MODULES_MAX = 8


def wing(name: str) -> str:
    """The wing of module *name* ("root" for the shared modules and the package)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "root"


#: Standard modules a pure module may not import: networking, event loops, threads and
#: processes, signals, terminals, databases, and the file system.
FORBIDDEN = frozenset({
    "asyncio", "socket", "socketserver", "ssl", "select", "selectors", "http", "urllib",
    "ftplib", "smtplib", "threading", "_thread", "multiprocessing", "concurrent",
    "subprocess", "signal", "fcntl", "termios", "tty", "pty", "curses", "readline",
    "getpass", "sqlite3", "dbm", "shelve", "psycopg", "mmap", "os", "io", "pathlib",
    "shutil", "tempfile", "glob",
})

#: Function-level imports allowed to leave the pure core, with the reason. Each must stay
#: inside a function (checked below), so it runs only when that function is called.
PLUGIN_EDGES = {
    ("netinfo.storage", "netinfo.storage.sqlite_catalog"):
        "open_store's engine table loads the SQLite engine only for a sqlite: URL",
    ("netinfo.storage", "netinfo.storage.postgres"):
        "open_store's engine table loads the PostgreSQL engine only for a postgresql: URL",
}


@cache
def modules() -> dict[str, Path]:
    """Every module of the package: dotted name → source file."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = ("netinfo", *path.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, top_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run: all of them, or (*top_level*) those that run when the
    module is imported (not inside a function); never those under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if top_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                           ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


@cache
def imports(name: str, top_level: bool = False) -> tuple[frozenset[str], frozenset[str]]:
    """(netinfo modules, other top-level module names) that module *name* imports."""
    mods = modules()
    path = mods[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours: set[str] = set()
    other: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text()), top_level):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "netinfo":
                    ours.add(alias.name)
                else:
                    other.add(alias.name.split(".")[0])
            continue
        if node.level:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = base + ("." + node.module if node.module else "")
        else:
            target = node.module or ""
            if target.split(".")[0] != "netinfo":
                other.add(target.split(".")[0])
                continue
        ours.add(target)
        for alias in node.names:       # "from . import verbs": a submodule
            if f"{target}.{alias.name}" in mods:
                ours.add(f"{target}.{alias.name}")
    other.discard("__future__")
    unknown = ours - set(mods)
    assert not unknown, f"{name} imports unknown netinfo modules {sorted(unknown)}"
    return frozenset(ours), frozenset(other)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def reach(start: str, *, top_level: bool = False,
          skip: frozenset[tuple[str, str]] = frozenset()) -> dict[str, str | None]:
    """Every netinfo module importing *start* runs: module → the module that imported it
    (None for *start*), following imports and parent packages."""
    seen: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        targets: list[str] = []
        for t in imports(cur, top_level)[0]:
            if (cur, t) not in skip:
                targets.extend(_with_parents(t))
        if not top_level:
            targets.extend(_with_parents(cur)[:-1])
        for t in targets:
            if t not in seen:
                seen[t] = cur
                queue.append(t)
    return seen


def chain(seen: dict[str, str | None], end: str) -> str:
    out = [end]
    while seen[out[-1]] is not None:
        out.append(seen[out[-1]])  # type: ignore[arg-type]
    return " <- ".join(out)


def test_module_lists_are_current():
    mods = set(modules())
    assert PURE <= mods and LIBRARY <= mods, sorted((PURE | LIBRARY) - mods)


def test_the_pure_core_is_held_to_strict_typing():
    """pyproject's mypy override with the --strict flags names exactly the pure core, so a
    module joining PURE joins the strict check too (issue 19 item 8)."""
    config = tomllib.loads((PKG.parent.parent / "pyproject.toml").read_text())
    strict = [o for o in config["tool"]["mypy"]["overrides"]
              if o.get("disallow_untyped_defs") and o.get("disallow_any_generics")]
    assert len(strict) == 1, strict
    assert set(strict[0]["module"]) == PURE
    assert all(strict[0].get(flag) for flag in (
        "disallow_incomplete_defs", "disallow_untyped_calls", "disallow_untyped_decorators",
        "disallow_subclassing_any", "check_untyped_defs", "warn_return_any",
        "no_implicit_reexport", "strict_equality", "extra_checks"))


@pytest.mark.parametrize("name", sorted(PURE))
def test_pure_module_reaches_only_pure_modules(name):
    seen = reach(name, skip=frozenset(PLUGIN_EDGES))
    for mod in seen:
        assert mod in PURE, f"pure {name} reaches {mod}: {chain(seen, mod)}"


@pytest.mark.parametrize("name", sorted(PURE))
def test_pure_module_imports_no_io(name):
    bad = imports(name)[1] & FORBIDDEN
    assert not bad, f"pure {name} imports {sorted(bad)}"


@pytest.mark.parametrize("edge", sorted(PLUGIN_EDGES))
def test_plugin_edges_stay_inside_functions(edge):
    src, dst = edge
    assert dst in imports(src)[0], f"stale PLUGIN_EDGES entry {edge}"
    assert dst not in imports(src, top_level=True)[0], f"{src} imports {dst} at the top"


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_never_reaches_the_tools(name):
    seen = reach(name)
    tools = [m for m in seen if m == "netinfo.cli" or m.startswith("netinfo.cli.")]
    assert not tools, f"library {name} reaches {tools[0]}: {chain(seen, tools[0])}"


def test_no_tool_imports_another_tool():
    tools = {m for m in modules() if m.startswith("netinfo.cli.ni")}
    for tool in sorted(tools):
        others = imports(tool)[0] & (tools - {tool})
        assert not others, f"{tool} imports {sorted(others)}"


def test_no_import_cycles():
    """No cycle among the package's top-level imports (Tarjan's strongly connected
    components): e.g. client imports binding, so binding may not import client."""
    graph = {m: sorted(imports(m, top_level=True)[0]) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_client_and_binding_import_one_way():
    assert "netinfo.client.binding" in imports("netinfo.client.core", top_level=True)[0]
    for mod in ("netinfo.client.binding", "netinfo.client.transport"):
        seen = reach(mod)
        assert "netinfo.client.core" not in seen, chain(seen, "netinfo.client.core")
        assert "netinfo.client.domain" not in seen, chain(seen, "netinfo.client.domain")
    assert "netinfo.client.binding" not in reach("netinfo.client.transport")


def test_the_layout_has_its_wings_and_a_small_root():
    """src/netinfo: the four wing packages, cli/ and web/, and at most 8 modules at the
    root (issue 19 item 7)."""
    for w in WINGS:
        assert (PKG / w / "__init__.py").is_file(), w
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= ROOT_MODULES_MAX, top


@pytest.mark.parametrize("name", sorted(n for n in modules() if n != "netinfo"))
def test_no_back_arrows_across_wings(name):
    """Every import (also inside functions, not under TYPE_CHECKING) stays within what
    the module's wing may import: wire and the root below everything, storage and client
    side by side, server above both, the tools and the web manager on top."""
    mine = wing(name)
    for target in imports(name)[0]:
        if target == "netinfo":
            continue
        assert wing(target) in MAY_IMPORT[mine], \
            f"{name} ({mine}) imports {target} ({wing(target)})"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env_with_src(), timeout=60)


def test_importing_a_pure_module_loads_no_io_at_run_time():
    p = _python("import netinfo.client.flat, sys; assert 'asyncio' not in sys.modules and "
                "'socket' not in sys.modules and 'ssl' not in sys.modules, "
                "sorted(sys.modules)")
    assert p.returncode == 0, p.stderr


def test_importing_the_whole_pure_core_loads_no_io_at_run_time():
    names = sorted(PURE)
    code = ("import sys\nbefore = set(sys.modules)\n"
            + "".join(f"import {n}\n" for n in names)
            + "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            + f"bad = new & {set(FORBIDDEN)!r}\n"
            + "assert not bad, sorted(bad)\n"
            + "assert 'netinfo.client.core' not in sys.modules\n")
    p = _python(code)
    assert p.returncode == 0, p.stderr


def test_public_names_load_lazily():
    p = _python("import sys, netinfo\n"
                "assert 'netinfo.client.core' not in sys.modules\n"
                "from netinfo import Client, Status, open_store\n"
                "assert 'netinfo.client.core' in sys.modules and Status.OK == 0\n"
                "from netinfo import Database, open_database, open_domain, DomainClient\n"
                "assert set(netinfo.__all__) <= set(dir(netinfo))\n"
                "for n in netinfo.__all__: getattr(netinfo, n)\n")
    assert p.returncode == 0, p.stderr
