"""opennetinfo: NeXT's and Apple's NetInfo, rebuilt in Python.

The public API; everything else is importable but may change.
"""

from __future__ import annotations

from .client import Client, SyncClient
from .errors import NetInfoError, NiError, RpcError, Status, Timeout, WireError
from .model import Directory, NiId, Property
from .protocol import Proc
from .service import DirectoryService
from .storage import Store, open_store

__version__ = "0.1.0"

__all__ = [
    "Client",
    "SyncClient",
    "NetInfoError",
    "NiError",
    "RpcError",
    "Status",
    "Timeout",
    "WireError",
    "Directory",
    "NiId",
    "Property",
    "Proc",
    "DirectoryService",
    "Store",
    "open_store",
    "__version__",
]
