"""opennetinfo: NeXT's and Apple's NetInfo, rebuilt in Python.

The public API; everything else is importable but may change.

The names below are loaded on first use (PEP 562), so that importing a pure module such
as ``netinfo.formats`` or ``netinfo.service`` does not drag in the client's asyncio and
sockets (DESIGN.md "Pure core, I/O at the edges"; ``tests/test_layers.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → the module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    "Client": "client",
    "SyncClient": "client",
    "NetInfoError": "errors",
    "NiError": "errors",
    "RpcError": "errors",
    "Status": "errors",
    "Timeout": "errors",
    "WireError": "errors",
    "ConnectionFailed": "errors",
    "Directory": "model",
    "NiId": "model",
    "Property": "model",
    "Proc": "protocol",
    "DirectoryService": "service",
    "Store": "storage",
    "open_store": "storage",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    """Import the module defining public *name* on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value   # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
