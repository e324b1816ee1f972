"""The history program's server side (issue 24): who may read a domain's change history
and the pages they get.

Program :data:`~netinfo.wire.history.HISTORY_PROG` version 1 on netinfod's TCP port
(codecs in ``wire.history``). Who may read, by the rules of spec §10.2:

* the superuser: a caller on one of this host's addresses and a reserved port, the owner
  of an unprivileged server (its own uid's sockets, docs/security.md), or a credential
  that authenticates as root (uid 0, or an admin when ``promote_admins`` allows): every
  entry;
* a user whose AUTH_UNIX credential authenticates (its password, spec §10.2 step 3): the
  entries of the directories the user may write, that is whose ``_writers`` (before or
  after the write, spec §10.4) lists the user or ``*``;
* a clone of this domain (a reserved port from the address of a server /machines lists
  as serving it): every entry, which it keeps as its own history
  (``server.history_mirror``);
* anyone else (no credential, or UDP): nothing, NI_PERM (UDP: AUTH_TOOWEAK, spec §1.4).

Replies are bounded (``wire.history.PAGE_MAX`` entries, about ``PAGE_BYTES``) and paged
by a cursor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import NiError, Status, WireError
from ..model import first_values
from ..storage.changes import Caller
from ..wire import rpc
from ..wire.history import (
    HISTORY_VERS,
    PROC_NULL,
    PROC_QUERY,
    Entry,
    decode_query,
    encode_page,
)
from ..wire.rpc import AcceptStat, AuthStat
from .database import Database

log = logging.getLogger(__name__)


def may_write(entry: Entry, user: str) -> bool:
    """True when *user* may write one of the directories *entry* changed, by its
    ``_writers`` before or after the write (spec §10.4)."""
    for d in entry.touched:
        for state in (d.before, d.after):
            if state is None:
                continue
            writers = first_values(state.props, "_writers") or []
            if "*" in writers or user in writers:
                return True
    return False


class HistoryProgram:
    """Answers the history program's calls for one domain: ``reply(call, caller, udp)``
    gives the whole RPC reply record. (Until netinfod's program table lands, the
    Dispatcher hands it every call whose ``prog`` is ours.)"""

    def __init__(self, db: Database, is_clone: Callable[[str], bool] | None = None) -> None:
        self.db = db
        #: whether an address is one of this domain's clones (they copy the history)
        self.is_clone = is_clone or (lambda addr: False)
        self._procs: dict[int, Callable[[bytes, Caller, rpc.AuthUnix | None], bytes]] = {
            PROC_NULL: lambda args, caller, auth: b"",
            PROC_QUERY: self._query,
        }

    @property
    def procedures(self) -> frozenset[int]:
        """The procedures this program answers (its program-table row's)."""
        return frozenset(self._procs)

    def reply(self, call: rpc.Call, caller: Caller, udp: bool) -> bytes:
        xid = call.xid
        if call.vers != HISTORY_VERS:
            return rpc.reply_accept_error(xid, AcceptStat.PROG_MISMATCH, HISTORY_VERS,
                                          HISTORY_VERS)
        if call.auth_error is not None:
            return rpc.reply_auth_error(xid, call.auth_error)
        fn = self._procs.get(call.proc)
        if fn is None:
            return rpc.reply_accept_error(xid, AcceptStat.PROC_UNAVAIL)
        if udp and call.proc != PROC_NULL:
            return rpc.reply_auth_error(xid, AuthStat.TOOWEAK)   # spec §1.4: TCP only
        try:
            return rpc.reply_success(xid, fn(call.args, caller, call.auth))
        except (WireError, ValueError):
            return rpc.reply_accept_error(xid, AcceptStat.GARBAGE_ARGS)
        except Exception:
            log.exception("history program: procedure %d failed", call.proc)
            return rpc.reply_accept_error(xid, AcceptStat.SYSTEM_ERR)

    def who(self, caller: Caller, auth: rpc.AuthUnix | None) -> Caller | None:
        """The caller as authenticated (spec §10.2), or None when anonymous.

        :raises NiError: a credential that does not authenticate."""
        if auth is None:
            if caller.superuser:
                return caller
            if caller.port < 1024 and self.is_clone(caller.addr.removeprefix("::ffff:")):
                # a clone copying its master's history (server.history_mirror): as
                # trusted as its READALL of the whole domain (spec §9.2)
                return Caller(caller.addr, caller.port, superuser=True, user="root")
            return None
        if caller.superuser and not caller.owner:
            return caller   # the reserved port's power (as NETINFO's, netinfod.Dispatcher)
        return self.db.authenticator.authenticate(auth.uid, auth.password, caller)

    def _query(self, args: bytes, caller: Caller, auth: rpc.AuthUnix | None) -> bytes:
        q = decode_query(args)
        try:
            who = self.who(caller, auth)
        except NiError as e:
            return encode_page(int(e.status))
        if who is None:
            return encode_page(Status.PERM)
        journal = self.db.store.journal
        if journal is None:
            return encode_page(Status.FAILED)
        user = who.user or ""
        admit = None if who.superuser or user == "root" else (
            lambda entry: may_write(entry, user))
        page, blobs = journal.query(q, admit)
        return encode_page(Status.OK, page, blobs)


__all__ = ["HistoryProgram", "may_write"]
