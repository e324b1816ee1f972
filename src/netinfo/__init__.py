"""opennetinfo: NeXT's and Apple's NetInfo, rebuilt in Python.

The public API; everything else is importable but may change.

The names below are loaded on first use (PEP 562), so that importing a pure module such
as ``netinfo.client.flat`` or ``netinfo.server.service`` does not drag in the client's
asyncio and sockets (DESIGN.md "Pure core, I/O at the edges"; ``tests/test_layers.py``).

The package is four wings and the shared modules they stand on:

- ``wire/``: codecs of everything that travels (pure);
- ``storage/``: the Store contract, its engines, the node sources, change records;
- ``client/``: the library the tools and the web manager use;
- ``server/``: netinfod, nibindd, the domain's owner (``Database``), replication;
- ``cli/`` (the tools and daemons' command lines) and ``web/`` (NetInfo Manager) on top;
- at the root: ``errors``, ``model``, ``facts``, ``netif``, ``passwords``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → the module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    "Database": "server.database",
    "open_database": "server.database",
    "open_domain": "client.domain",
    "DomainClient": "client.domain",
    "Client": "client.core",
    "SyncClient": "client.core",
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
    "Proc": "wire.protocol",
    "DirectoryService": "server.service",
    "Store": "storage",
    "open_store": "storage",
}

__all__ = [
    "Database", "open_database", "open_domain", "DomainClient", "Client", "SyncClient",
    "NetInfoError", "NiError", "RpcError", "Status", "Timeout", "WireError",
    "ConnectionFailed", "Directory", "NiId", "Property", "Proc", "DirectoryService",
    "Store", "open_store", "__version__",
]


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
