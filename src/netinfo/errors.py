"""Exceptions of opennetinfo: one root, precise subclasses.

Every exception raised on purpose by this package derives from :class:`NetInfoError`.
Decoders raise only :class:`WireError`; NetInfo-level failures are :class:`NiError`
carrying the wire status (spec §3).
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """``ni_status`` values (spec §3)."""

    OK = 0
    BADID = 1
    STALE = 2
    NOSPACE = 3
    PERM = 4
    NODIR = 5
    NOPROP = 6
    NONAME = 7
    NOTEMPTY = 8
    UNRELATED = 9
    SERIAL = 10
    NETROOT = 11
    NORESPONSE = 12
    RDONLY = 13
    SYSTEMERR = 14
    ALIVE = 15
    NOTMASTER = 16
    CANTFINDADDRESS = 17
    DUPTAG = 18
    NOTAG = 19
    AUTHERROR = 20
    NOUSER = 21
    MASTERBUSY = 22
    INVALIDDOMAIN = 23
    BADOP = 24
    FAILED = 9999


#: The library's message for each status (spec §3, "Library error strings").
MESSAGES: dict[int, str] = {
    Status.OK: "Operation succeeded",
    Status.BADID: "ID is invalid",
    Status.STALE: "Write attempted on stale version of object",
    Status.NOSPACE: "No space available for write operation",
    Status.PERM: "Permission denied",
    Status.NODIR: "No such directory",
    Status.NOPROP: "No such property",
    Status.NONAME: "No such name",
    Status.NOTEMPTY: "Cannot delete name object with children",
    Status.UNRELATED: "Object is not child of parent: cannot destroy",
    Status.SERIAL: "Serialization error",
    Status.NETROOT: "Hit network root domain",
    Status.NORESPONSE: "No response from remote parent",
    Status.RDONLY: "No writes allowed: all objects are read-only",
    Status.SYSTEMERR: "Remote system error",
    Status.ALIVE: "Can't regenerate: already in use",
    Status.NOTMASTER: "Operation makes no sense on clone",
    Status.CANTFINDADDRESS: "Can't find address of server",
    Status.DUPTAG: "Duplicate domain tag: can't serve it",
    Status.NOTAG: "No such tag",
    Status.AUTHERROR: "Authentication error",
    Status.NOUSER: "No such user",
    Status.MASTERBUSY: "Master server is busy",
    Status.INVALIDDOMAIN: "Invalid domain",
    Status.BADOP: "Invalid operation on master",
    Status.FAILED: "Communication failure",
}


def status_message(status: int) -> str:
    """The spec's message for *status*, or ``"Unknown status N"``."""
    return MESSAGES.get(status, f"Unknown status {status}")


class NetInfoError(Exception):
    """Root of every exception this package raises on purpose."""


class WireError(NetInfoError):
    """Bytes that do not decode: truncated, oversized, or out of range.

    :ivar fatal: True when the stream can no longer be trusted (the connection
        must be closed), False when only the one message is bad.
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class RpcError(NetInfoError):
    """The RPC layer refused a call (accept_stat or reject_stat ≠ success).

    :ivar kind: ``"accept"`` or ``"reject"``.
    :ivar stat: the accept_stat / reject_stat value.
    :ivar detail: extra words (low/high versions, auth_stat).
    """

    def __init__(self, kind: str, stat: int, detail: tuple[int, ...] = (),
                 xid: int | None = None) -> None:
        self.kind = kind
        self.xid = xid
        self.stat = stat
        self.detail = detail
        super().__init__(f"RPC {kind} error {stat}" + (f" {detail}" if detail else ""))


class Timeout(NetInfoError, TimeoutError):
    """No answer within the allowed time."""


class ConnectionFailed(NetInfoError, ConnectionError):
    """A connection could not be made, was reset, or was closed (spec §1.3, §7.1).

    Also a :class:`ConnectionError` (so an :class:`OSError`): code that catches either
    root keeps working. The original ``OSError``, when there was one, is ``__cause__``.
    """


class StorageError(NetInfoError):
    """The storage engine failed (disk full, corrupt database, ...)."""


class StoreDiverged(StorageError):
    """A writer's store, reached again after its connection was lost, does not hold what
    the writer committed (a database failover lost acknowledged writes or kept a batch
    that was refused): nothing of the batch was stored, and the database serves what the
    store holds from then on (``Database``)."""


class DamagedDirectory(StorageError):
    """One stored directory does not decode (issue 18 N20): it is refused when read
    (NI_SERIAL, spec §3) and never sent to a clone; the rest of the domain is served.
    The message names the directory and how to repair it."""

    def __init__(self, oid: int, message: str) -> None:
        super().__init__(message)
        #: the directory's number
        self.oid = oid


class ConfigError(NetInfoError, ValueError):
    """A setting this process cannot use (e.g. a malformed ``NETINFO_PORTMAPPER``); the
    message names the setting and the bad part, on one line."""


class TooLong(NetInfoError, ValueError):
    """A name, value or list longer than the protocol can carry (spec §2: ``ni_name`` is
    ``string<65535>``, lists ``<65535>``): refused before anything is sent. The message
    says what and how long, on one line."""


class NoPassword(NetInfoError):
    """A password was asked for (``-p``, ``-u``) and none could be read: no terminal and
    nothing on standard input, or end of input at the prompt."""


class NiError(NetInfoError):
    """A NetInfo call answered a status other than NI_OK.

    ``NiError(status)`` builds the precise subclass for the status when one exists.
    """

    status: int = Status.FAILED

    def __new__(cls, status: int | None = None, message: str | None = None) -> NiError:
        if cls is NiError and status is not None and status in _BY_STATUS:
            cls = _BY_STATUS[status]
        return super().__new__(cls)

    def __init__(self, status: int | None = None, message: str | None = None) -> None:
        if status is None:
            status = type(self).status
        self.status = int(status)
        super().__init__(message or status_message(self.status))


def _sub(name: str, status: Status) -> type[NiError]:
    return type(name, (NiError,), {"status": status, "__doc__": f"NI status {status.name}: "
                                   f"{MESSAGES[status]}."})


BadId = _sub("BadId", Status.BADID)
Stale = _sub("Stale", Status.STALE)
NoSpace = _sub("NoSpace", Status.NOSPACE)
PermissionDenied = _sub("PermissionDenied", Status.PERM)
NoDirectory = _sub("NoDirectory", Status.NODIR)
NoProperty = _sub("NoProperty", Status.NOPROP)
NoName = _sub("NoName", Status.NONAME)
NotEmpty = _sub("NotEmpty", Status.NOTEMPTY)
Unrelated = _sub("Unrelated", Status.UNRELATED)
NetRoot = _sub("NetRoot", Status.NETROOT)
NoResponse = _sub("NoResponse", Status.NORESPONSE)
ReadOnly = _sub("ReadOnly", Status.RDONLY)
SystemError_ = _sub("SystemError_", Status.SYSTEMERR)
Alive = _sub("Alive", Status.ALIVE)
NotMaster = _sub("NotMaster", Status.NOTMASTER)
DupTag = _sub("DupTag", Status.DUPTAG)
NoTag = _sub("NoTag", Status.NOTAG)
AuthError = _sub("AuthError", Status.AUTHERROR)
NoUser = _sub("NoUser", Status.NOUSER)
MasterBusy = _sub("MasterBusy", Status.MASTERBUSY)

#: status → exception class, the one table used to raise precise errors.
_BY_STATUS: dict[int, type[NiError]] = {
    c.status: c for c in (BadId, Stale, NoSpace, PermissionDenied, NoDirectory, NoProperty,
                          NoName, NotEmpty, Unrelated, NetRoot, NoResponse, ReadOnly,
                          SystemError_, Alive, NotMaster, DupTag, NoTag, AuthError, NoUser,
                          MasterBusy)
}


def ni_message(status: int) -> str:
    """``ni_error`` text; "(unknown error)" for a code outside the table (tools §0.3)."""
    return MESSAGES.get(status, "(unknown error)")


def error_text(err: BaseException) -> str:
    """What follows ``: `` in the tools' error messages: the status's text, and
    "Communication failure" (NI_FAILED's) for anything that is not a NetInfo status."""
    if isinstance(err, NiError):
        return ni_message(err.status)
    if isinstance(err, (TooLong, NoPassword)):
        return str(err)   # not a status: the one line that says what is wrong
    return ni_message(Status.FAILED)
