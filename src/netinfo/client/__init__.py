"""The client wing: the library every tool and the web manager use.

- ``core``: :class:`Client` (one typed method per procedure), :class:`SyncClient`;
- ``transport``: record-marked TCP (pipelined) and UDP calls;
- ``binding``: portmapper and NIBIND calls, parent search;
- ``domain``: :func:`open_domain` (ni_open: ``.``, ``..``, ``/``, ``/a/b``, ``tag@host``),
  :class:`DomainClient`;
- ``verbs``, ``walk``, ``dumps``, ``search``: the tools' work without printing;
- ``raw``, ``flat``: nidump's and niload's text formats (pure).

:class:`Client` and :class:`SyncClient` load on first use (PEP 562), so that the pure
format modules here load no asyncio or sockets.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Client", "SyncClient"]


def __getattr__(name: str) -> Any:
    """:class:`Client` and :class:`SyncClient`, from ``core``, on first access."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".core", __name__), name)
    globals()[name] = value
    return value
