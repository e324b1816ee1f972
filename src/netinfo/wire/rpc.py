"""ONC RPC version 2 (RFC 5531) messages and TCP record marking, without I/O.

Spec §1.2 gives the message layouts NetInfo peers expect and §1.3 the record marking.
Everything here is pure: bytes in, objects or bytes out.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from enum import IntEnum

from ..errors import RpcError, WireError
from .xdr import AUTH_MAX, Packer, Unpacker, decode_str, encode_str

RPC_VERSION = 2
CALL = 0
REPLY = 1

#: Largest call record a server accepts (WRITE of a big proplist fits many times over).
#: A larger record closes the connection (spec §1.3 "size cap"; DESIGN "never grows memory").
MAX_CALL_RECORD = 16 * 1024 * 1024
#: Largest reply record a client accepts; READALL of a large domain is one record.
MAX_REPLY_RECORD = 1024 * 1024 * 1024
#: Fragment size used when sending long records.
FRAGMENT_SIZE = 1 << 20

_U32 = struct.Struct(">I")
_HDR6 = struct.Struct(">6I")
#: A record mark's last-fragment bit (RFC 5531 §11)
LAST_FRAGMENT = 0x80000000
_LAST = LAST_FRAGMENT


class ReplyStat(IntEnum):
    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class AcceptStat(IntEnum):
    SUCCESS = 0
    PROG_UNAVAIL = 1
    PROG_MISMATCH = 2
    PROC_UNAVAIL = 3
    GARBAGE_ARGS = 4
    SYSTEM_ERR = 5


class RejectStat(IntEnum):
    RPC_MISMATCH = 0
    AUTH_ERROR = 1


class AuthStat(IntEnum):
    OK = 0
    BADCRED = 1
    REJECTEDCRED = 2
    BADVERF = 3
    REJECTEDVERF = 4
    TOOWEAK = 5


class AuthFlavor(IntEnum):
    NONE = 0
    UNIX = 1


#: AUTH_UNIX machinename is ``string<255>`` (RFC 5531 §14); gids ``uint<16>``.
MACHINENAME_MAX = 255
GIDS_MAX = 16


@dataclass(frozen=True, slots=True)
class AuthUnix:
    """An AUTH_UNIX (AUTH_SYS) credential. NetInfo puts the bit-inverted password in
    ``machinename`` (spec §1.2, §10.1)."""

    stamp: int
    machinename: bytes
    uid: int
    gid: int = 0
    gids: tuple[int, ...] = ()

    def pack(self) -> bytes:
        p = Packer()
        p.pack_uint(self.stamp)
        p.pack_opaque(self.machinename)
        p.pack_uint(self.uid)
        p.pack_uint(self.gid)
        p.pack_uint_array(list(self.gids), GIDS_MAX)
        return p.get_buffer()

    @classmethod
    def unpack(cls, body: bytes) -> AuthUnix:
        u = Unpacker(body)
        stamp = u.unpack_uint()
        name = u.unpack_opaque(MACHINENAME_MAX)
        uid = u.unpack_uint()
        gid = u.unpack_uint()
        gids = u.unpack_uint_array(GIDS_MAX)
        u.done()
        return cls(stamp, name, uid, gid, tuple(gids))

    @property
    def password(self) -> str:
        """The cleartext password: every machinename byte inverted back (spec §10.2 step 3)."""
        return decode_str(invert(self.machinename))

    @classmethod
    def for_password(cls, password: str, uid: int) -> AuthUnix:
        """The credential ``ni_setpassword`` sends (spec §10.1)."""
        return cls(int(time.time()) & 0xFFFFFFFF, invert(encode_str(password))[:MACHINENAME_MAX],
                   uid, 0, ())


def invert(b: bytes) -> bytes:
    """XOR every byte with 0xFF: NetInfo's password "encryption" (spec §10.1)."""
    return bytes(x ^ 0xFF for x in b)


@dataclass(slots=True)
class Call:
    """A decoded call header; ``args`` is the undecoded argument bytes."""

    xid: int
    prog: int
    vers: int
    proc: int
    cred_flavor: int = AuthFlavor.NONE
    cred_body: bytes = b""
    auth: AuthUnix | None = None
    args: bytes = b""
    #: Set when the header is acceptable as a call but the credential is not:
    #: the server must answer AUTH_ERROR with this auth_stat.
    auth_error: int | None = field(default=None)


def decode_call(record: bytes) -> Call:
    """Decode a call message.

    A credential that does not decode leaves ``auth_error`` set (answer AUTH_ERROR/BADCRED);
    any flavor other than AUTH_UNIX is accepted as anonymous (spec §10.2 step 2).

    :raises RpcMismatch: ``rpcvers`` ≠ 2 (answer RPC_MISMATCH with its ``xid``).
    :raises WireError: not a call at all (too short, or msg_type ≠ CALL): drop it.
    """
    n = len(record)
    if n < 24:
        raise WireError("call shorter than its header")
    xid, mtype, rpcvers, prog, vers, proc = _HDR6.unpack_from(record, 0)
    if mtype != CALL:
        raise WireError(f"msg_type {mtype} is not CALL")
    if rpcvers != RPC_VERSION:
        raise RpcMismatch(xid)
    u = Unpacker(record, 24)
    call = Call(xid, prog, vers, proc)
    try:
        flavor = u.unpack_uint()
        body = u.unpack_opaque(AUTH_MAX)
        u.unpack_uint()  # verifier flavor: NetInfo never checks verifiers
        u.unpack_opaque(AUTH_MAX)
    except WireError:
        call.auth_error = AuthStat.BADCRED
        return call
    call.cred_flavor = flavor
    call.cred_body = body
    if flavor == AuthFlavor.UNIX:
        try:
            call.auth = AuthUnix.unpack(body)
        except WireError:
            call.auth_error = AuthStat.BADCRED
    call.args = record[u.pos:]
    return call


class RpcMismatch(WireError):
    """A call whose rpcvers is not 2; answered with RPC_MISMATCH (RFC 5531 §9)."""

    def __init__(self, xid: int) -> None:
        super().__init__("RPC version mismatch")
        self.xid = xid


def encode_call(xid: int, prog: int, vers: int, proc: int, args: bytes = b"",
                auth: AuthUnix | None = None) -> bytes:
    """Encode a call message (no record mark)."""
    if auth is None:
        return _HDR6.pack(xid, CALL, RPC_VERSION, prog, vers, proc) + b"\0" * 16 + args
    body = auth.pack()
    return b"".join((_HDR6.pack(xid, CALL, RPC_VERSION, prog, vers, proc),
                     _U32.pack(AuthFlavor.UNIX), _U32.pack(len(body)), body, b"\0" * 8, args))


# Accepted replies with a NULL verifier: xid, REPLY, MSG_ACCEPTED, verf flavor 0, verf len 0.
_ACC = struct.Struct(">IIIIII")


def reply_success(xid: int, results: bytes = b"") -> bytes:
    """MSG_ACCEPTED / SUCCESS followed by *results*."""
    return _ACC.pack(xid, REPLY, 0, 0, 0, AcceptStat.SUCCESS) + results


def reply_accept_error(xid: int, stat: int, low: int = 0, high: int = 0) -> bytes:
    """MSG_ACCEPTED with an error accept_stat (PROG_MISMATCH carries low and high)."""
    head = _ACC.pack(xid, REPLY, 0, 0, 0, stat)
    if stat == AcceptStat.PROG_MISMATCH:
        return head + struct.pack(">II", low, high)
    return head


def reply_rpc_mismatch(xid: int) -> bytes:
    """MSG_DENIED / RPC_MISMATCH, low = high = 2."""
    return struct.pack(">IIIIII", xid, REPLY, ReplyStat.MSG_DENIED, RejectStat.RPC_MISMATCH,
                       RPC_VERSION, RPC_VERSION)


def reply_auth_error(xid: int, auth_stat: int) -> bytes:
    """MSG_DENIED / AUTH_ERROR with *auth_stat*."""
    return struct.pack(">IIIII", xid, REPLY, ReplyStat.MSG_DENIED, RejectStat.AUTH_ERROR,
                       auth_stat)


def decode_reply(record: bytes) -> tuple[int, Unpacker]:
    """Decode a reply header; returns (xid, unpacker positioned at the results).

    :raises WireError: not a reply.
    :raises RpcError: the call was refused (accept_stat ≠ SUCCESS or MSG_DENIED).
    """
    u = Unpacker(record)
    xid = u.unpack_uint()
    if u.unpack_uint() != REPLY:
        raise WireError("not a reply")
    rstat = u.unpack_uint()
    if rstat == ReplyStat.MSG_ACCEPTED:
        u.unpack_uint()
        u.unpack_opaque(AUTH_MAX)
        astat = u.unpack_uint()
        if astat == AcceptStat.SUCCESS:
            return xid, u
        detail: tuple[int, ...] = ()
        if astat == AcceptStat.PROG_MISMATCH:
            detail = u.unpack_2uint()
        raise _rpc_error("accept", astat, detail, xid)
    if rstat == ReplyStat.MSG_DENIED:
        rej = u.unpack_uint()
        if rej == RejectStat.RPC_MISMATCH:
            raise _rpc_error("reject", rej, u.unpack_2uint(), xid)
        raise _rpc_error("reject", rej, (u.unpack_uint(),), xid)
    raise WireError(f"bad reply_stat {rstat}")


def _rpc_error(kind: str, stat: int, detail: tuple[int, ...], xid: int) -> RpcError:
    return RpcError(kind, stat, tuple(detail), xid)


def reply_xid(record: bytes) -> int:
    """The xid of a reply record (for matching before full decoding)."""
    if len(record) < 4:
        raise WireError("reply shorter than an xid")
    xid: int = _U32.unpack_from(record, 0)[0]
    return xid


# -- TCP record marking (RFC 5531 §11, spec §1.3) ---------------------------------------------

def frame(record: bytes, fragment_size: int = FRAGMENT_SIZE) -> bytes:
    """Record-mark *record* (one fragment unless longer than *fragment_size*)."""
    n = len(record)
    if n <= fragment_size:
        return _U32.pack(_LAST | n) + record
    parts = []
    for i in range(0, n, fragment_size):
        chunk = record[i:i + fragment_size]
        last = _LAST if i + fragment_size >= n else 0
        parts.append(_U32.pack(last | len(chunk)))
        parts.append(chunk)
    return b"".join(parts)


class RecordReader:
    """Reassembles record-marked fragments into records, with a size cap.

    Feed bytes with :meth:`feed`; it returns every record completed so far.
    A record larger than *max_record* — counting every fragment's 4-byte header with its
    payload, so that a stream of tiny fragments cannot hold more memory than the cap —
    raises a fatal :class:`WireError`, as does an empty fragment that is not the last
    (it carries nothing and only costs work). The peer must then be disconnected.
    """

    __slots__ = ("max_record", "_buf", "_rec", "_size")

    def __init__(self, max_record: int = MAX_CALL_RECORD) -> None:
        self.max_record = max_record
        self._buf = bytearray()
        self._rec = bytearray()   # payload of the record's fragments so far
        self._size = 0            # wire bytes of those fragments, headers included

    def pending(self) -> int:
        """Bytes held towards incomplete records."""
        return len(self._buf) + len(self._rec)

    def unread(self) -> bytes:
        """What was fed but not yet returned as a record, as record-marked bytes again
        (a connection handed to another process goes on from there: netinfod's read
        workers); the reader is left empty."""
        rec = bytes(self._rec)
        out = (_U32.pack(len(rec)) + rec if rec else b"") + bytes(self._buf)
        self._buf, self._rec, self._size = bytearray(), bytearray(), 0
        return out

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            hdr = _U32.unpack_from(buf, pos)[0]
            length = hdr & 0x7FFFFFFF
            last = hdr & _LAST
            if not last and not length:
                raise WireError("empty record fragment that is not the last", fatal=True)
            if self._size + 4 + length > self.max_record:
                raise WireError(f"record larger than {self.max_record} bytes", fatal=True)
            end = pos + 4 + length
            if end > n:
                break
            if last:
                if self._rec:
                    self._rec += buf[pos + 4:end]
                    out.append(bytes(self._rec))
                    self._rec = bytearray()
                else:
                    out.append(bytes(buf[pos + 4:end]))
                self._size = 0
            else:
                self._rec += buf[pos + 4:end]
                self._size += 4 + length
            pos = end
        if pos:
            del buf[:pos]
        return out


class PieceReader:
    """Record marking read piece by piece, for the calling side: the payload of every
    fragment as its bytes arrive, each piece with whether it starts a record and whether
    it ends one. Nothing is held but a fragment header cut between two reads, so a reply
    may be consumed while it arrives (READALL's, spec §9.4) or gathered whole by the
    caller, which then bounds it.

    :raises WireError: (fatal) an empty fragment that is not a record's last.
    """

    __slots__ = ("_head", "_left", "_last", "_start")

    def __init__(self) -> None:
        self._head = b""      # a fragment header cut between two reads
        self._left = 0        # payload bytes still to come in the current fragment
        self._last = False    # the current fragment is its record's last
        self._start = True    # the next piece starts a record

    def feed(self, data: bytes) -> list[tuple[bytes, bool, bool]]:
        """(piece, starts a record, ends it) for the payload bytes in *data*."""
        out: list[tuple[bytes, bool, bool]] = []
        pos, n = 0, len(data)
        if self._head:
            need = 4 - len(self._head)
            if n < need:
                self._head += data
                return out
            self._fragment(_U32.unpack(self._head + data[:need])[0], out)
            self._head = b""
            pos = need
        while pos < n:
            left = self._left
            if left:
                take = min(left, n - pos)
                piece = data if take == n else data[pos:pos + take]
                pos += take
                self._left = left = left - take
                end = not left and self._last
                out.append((piece, self._start, end))
                self._start = end
            elif n - pos < 4:
                self._head = data[pos:]
                break
            else:
                self._fragment(_U32.unpack_from(data, pos)[0], out)
                pos += 4
        return out

    def _fragment(self, hdr: int, out: list[tuple[bytes, bool, bool]]) -> None:
        length = hdr & 0x7FFFFFFF
        last = bool(hdr & _LAST)
        if not length:
            if not last:
                raise WireError("empty record fragment that is not the last", fatal=True)
            out.append((b"", self._start, True))   # a record ends on an empty fragment
            self._start = True
        self._left, self._last = length, last


#: An unauthenticated UDP reply to a remote peer is at most this many times the size of
#: its request (documented in docs/security.md): UDP's source address is not verified,
#: so a bigger answer would make the server an amplifier for spoofed requests.
UDP_AMPLIFICATION = 10


def bounded_udp_reply(reply: bytes, request_size: int) -> bytes:
    """*reply*, or when it exceeds :data:`UDP_AMPLIFICATION` × *request_size* the
    20-byte AUTH_ERROR / AUTH_TOOWEAK that tells the client to use TCP (spec §1.4)."""
    if len(reply) <= UDP_AMPLIFICATION * request_size:
        return reply
    return reply_auth_error(reply_xid(reply), AuthStat.TOOWEAK)
