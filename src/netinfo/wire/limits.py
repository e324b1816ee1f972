"""The bounds every directory keeps, checked before anything is written (issue 18).

One table of numbers, and pure checks that say in one line what is over which bound, so
that the tools (niload, niutil, the web manager) refuse a whole input before the first
write or destroy, and the server refuses what would break them (docs/security.md
"Bounds").

* ``ni_name`` is ``string<65535>``; ``ni_namelist`` and ``ni_proplist`` are ``<65535>``
  (spec §2): :data:`~netinfo.wire.xdr.NAME_MAX` bytes a key or value,
  :data:`~netinfo.wire.xdr.LIST_MAX` values a property, properties a directory.
* A directory's children: :data:`~netinfo.wire.xdr.BIG_LIST_MAX` (``ni_idlist<1048576>``).
* A CREATE or WRITE is one call record, at most :data:`~netinfo.wire.rpc.MAX_CALL_RECORD`
  bytes (spec §1.3 "size cap"): a proplist must leave room for the rest of the call.
* :data:`MAX_DEPTH`: how deep directories nest. The protocol has no bound; ours comes
  from the cost of deep trees (a raw dump indents each level, the raw parser and the
  web's path display walk each level). Real domains are about 5 levels deep.
"""

from __future__ import annotations

from ..model import Proplist
from .rpc import MAX_CALL_RECORD
from .xdr import BIG_LIST_MAX, LIST_MAX, NAME_MAX, encode_str

__all__ = ["MAX_DEPTH", "MAX_PROPLIST_BYTES", "NAME_MAX", "LIST_MAX", "BIG_LIST_MAX",
           "string_problem", "proplist_problem", "proplist_bytes"]

#: Deepest directory below the root (the root is level 0, ``/users`` level 1): what the
#: server lets CREATE make (NI_NOSPACE beyond), what ``niload -r`` reads, the depth the
#: web manager's path display and ``nigrep`` already walk. 256 is fifty times what real
#: domains use, and keeps a raw dump and a parse of the deepest chain small (its
#: indentation stops growing past :data:`netinfo.client.flat.INDENT_LEVELS` levels).
MAX_DEPTH = 256

#: Room a call record needs besides the proplist: RPC header (40 bytes), credential and
#: verifier (at most 2 × 408, RFC 5531 §8.2), the parent's id and the index.
CALL_OVERHEAD = 1024
#: Largest XDR-encoded proplist a CREATE or WRITE can carry.
MAX_PROPLIST_BYTES = MAX_CALL_RECORD - CALL_OVERHEAD

#: A string of at most this many characters is at most NAME_MAX bytes in UTF-8 (4 bytes
#: a character at most): no need to encode it to know.
_SAFE_CHARS = NAME_MAX // 4


def _nbytes(s: str) -> int:
    return len(encode_str(s))


def _short(key: str) -> str:
    return key if len(key) <= 40 else key[:37] + "..."


def string_problem(s: str, what: str = "a name or value") -> str | None:
    """Why *s* cannot be sent as an ``ni_name`` (longer than :data:`NAME_MAX` bytes), or
    None."""
    if len(s) <= _SAFE_CHARS:
        return None
    n = _nbytes(s)
    if n <= NAME_MAX:
        return None
    return f"{what} of {n} bytes is longer than the protocol's limit of {NAME_MAX} bytes"


def proplist_bytes(props: Proplist) -> int:
    """The XDR size of *props* (spec §2: a count, then each key and its value list)."""
    size = 4
    for key, values in props:
        size += 8 + ((_nbytes(key) + 3) & ~3)
        for v in values:
            size += 4 + ((_nbytes(v) + 3) & ~3)
    return size


def proplist_problem(props: Proplist) -> str | None:
    """Why a directory with *props* cannot be created or written, in one line, or None:
    a key or value over :data:`NAME_MAX` bytes, a property with more than
    :data:`LIST_MAX` values, more than :data:`LIST_MAX` properties, or more than
    :data:`MAX_PROPLIST_BYTES` in all. Cheap when nothing is near a bound."""
    # fast path (every record niload reads goes through here, twice): at most
    # _SAFE_CHARS characters and list entries in all is far from every bound
    n = len(props)
    for key, values in props:
        n += len(key) + len(values)
        for v in values:
            n += len(v)
    if n <= _SAFE_CHARS:
        return None
    if len(props) > LIST_MAX:
        return (f"{len(props)} properties: a directory holds at most {LIST_MAX} "
                "(the protocol's limit)")
    bound = 4   # an upper bound of the encoded size, from lengths in characters
    for key, values in props:
        why = string_problem(key, "a property name")
        if why is not None:
            return why
        if len(values) > LIST_MAX:
            return (f"property {_short(key)}: {len(values)} values, more than the "
                    f"protocol's limit of {LIST_MAX}")
        bound += 11 + 4 * len(key)
        for v in values:
            why = string_problem(v, f"property {_short(key)}: a value")
            if why is not None:
                return why
            bound += 7 + 4 * len(v)
    if bound > MAX_PROPLIST_BYTES:
        size = proplist_bytes(props)
        if size > MAX_PROPLIST_BYTES:
            return (f"a directory of {size} bytes is more than one call carries "
                    f"({MAX_PROPLIST_BYTES} bytes)")
    return None
