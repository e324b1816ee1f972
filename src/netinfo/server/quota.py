"""The quota on anonymous writes: what callers allowed only by ``_writers`` ``*`` may add
to a domain (issue 18, finding N4; docs/security.md, "Bounds").

Apple's default domain lets anyone write to /printers (``_writers`` = ``*``, spec §10.4),
so with no bound an anonymous peer could grow the database until the disk or the server's
memory gave out. Writes by callers that are neither the superuser (spec §10.2) nor an
authenticated user are counted against a per-domain quota of directories and of bytes of
stored proplists (their XDR form, ``protocol.encode_proplist``); past it they are refused
with NI_NOSPACE (spec §3), while the superuser and authenticated users write on.

The usage is two counters the service keeps with the domain (``storage.Meta``, committed in
the write's own transaction), so nothing is recounted at start-up. A CREATE adds one
directory and its proplist's size; a change of a proplist adds (or gives back) the change
in size; a DESTROY of a directory in a directory anyone may write to -- by anyone, so the
superuser's clean-up gives the room back -- gives back one directory and its size. The
counters never go below zero.

The limits are root properties the domain's superuser sets (``niutil -createprop / /
anonymous_quota_dirs 50000``); ``0`` refuses anonymous additions altogether. Pure: no I/O.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ..errors import NiError, Status
from ..model import Proplist, first_values, is_digits
from ..wire.proplist import encode_proplist

#: Directories anonymous callers may add to one domain by default: about twice the
#: printers, hosts or mounts a large site lists, well below the point where the domain's
#: walks (dumps, READALL) and its clones' copies grow noticeably.
DEFAULT_DIRS = 10_000
#: Bytes of stored proplists anonymous callers may add by default: 16 MiB, 1.6 KiB per
#: directory of :data:`DEFAULT_DIRS` (a printer's entry is a few hundred bytes), small
#: beside the disk and the directory cache (``--cache-mb``).
DEFAULT_BYTES = 16 << 20
#: Root properties overriding the defaults (a non-negative integer each).
DIRS_PROPERTY = "anonymous_quota_dirs"
BYTES_PROPERTY = "anonymous_quota_bytes"
#: The usage counters' keys in the store (``storage.Meta``).
DIRS_KEY = "anonymous_dirs"
BYTES_KEY = "anonymous_bytes"


class _Caller(Protocol):
    @property
    def is_root(self) -> bool: ...
    @property
    def user(self) -> str | None: ...


class Usage(NamedTuple):
    """What anonymous callers have added: directories and bytes of stored proplists."""

    dirs: int = 0
    bytes: int = 0


def is_anonymous(caller: _Caller) -> bool:
    """Allowed to write only through ``_writers`` ``*``: neither the superuser (nor the
    master's push, spec §9.2) nor an authenticated user (spec §10.2)."""
    return not caller.is_root and caller.user is None


def _limit(root: Proplist, name: str, default: int) -> int:
    vals = first_values(root, name)
    if vals and is_digits(vals[0]):
        return int(vals[0])
    return default


def limits(root: Proplist) -> Usage:
    """The domain's quota, from its root directory's properties *root* (else the
    defaults)."""
    return Usage(_limit(root, DIRS_PROPERTY, DEFAULT_DIRS),
                 _limit(root, BYTES_PROPERTY, DEFAULT_BYTES))


def size(props: Proplist) -> int:
    """A proplist's stored size: its XDR form (spec §2), as the store keeps it."""
    return len(encode_proplist(props))


def charge(used: Usage, limit: Usage, dirs: int, nbytes: int) -> Usage:
    """*used* after adding *dirs* directories and *nbytes* bytes (negative: given back,
    never below zero).

    :raises NiError: NI_NOSPACE when an addition would pass *limit* (spec §3).
    """
    new = Usage(max(0, used.dirs + dirs), max(0, used.bytes + nbytes))
    if dirs > 0 and new.dirs > limit.dirs:
        raise NiError(Status.NOSPACE, f"the anonymous quota of {limit.dirs} directories "
                      f"({DIRS_PROPERTY}) is used up")
    if nbytes > 0 and new.bytes > limit.bytes:
        raise NiError(Status.NOSPACE, f"the anonymous quota of {limit.bytes} bytes "
                      f"({BYTES_PROPERTY}) is used up")
    return new
