"""ONC RPC messages and record marking: spec §1.2–§1.3 vectors and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netinfo.errors import RpcError, WireError
from netinfo.wire import rpc

from .conftest import hexbytes

ROOT_CALL_TCP = hexbytes("80000028 12345678 00000000 00000002 0bed48a0 00000002 00000002"
                         " 00000000 00000000 00000000 00000000")
ROOT_REPLY = hexbytes("12345678 00000001 00000000 00000000 00000000 00000000 00000000"
                      " 00000000 00000001")


def test_auth_unix_vector_spec_1_2():
    # Password "abc", uid 0, stamp 42: machinename is the inverted password.
    body = hexbytes("0000002a 00000003 9e9d9c00 00000000 00000000 00000000")
    cred = rpc.AuthUnix(42, rpc.invert(b"abc"), 0, 0, ())
    assert cred.pack() == body
    back = rpc.AuthUnix.unpack(body)
    assert back == cred and back.password == "abc"


def test_root_call_vector_spec_1_3():
    call = rpc.encode_call(0x12345678, 200100000, 2, 2)
    assert rpc.frame(call) == ROOT_CALL_TCP
    [rec] = rpc.RecordReader().feed(ROOT_CALL_TCP)
    c = rpc.decode_call(rec)
    assert (c.xid, c.prog, c.vers, c.proc, c.args, c.auth) == (0x12345678, 200100000, 2, 2,
                                                                 b"", None)


def test_root_reply_vector_spec_1_3():
    reply = rpc.reply_success(0x12345678, hexbytes("00000000 00000000 00000001"))
    assert reply == ROOT_REPLY
    xid, u = rpc.decode_reply(reply)
    assert xid == 0x12345678 and (u.unpack_int(), u.unpack_uint(), u.unpack_uint()) == (0, 0, 1)


def test_call_with_auth_unix_round_trip():
    cred = rpc.AuthUnix.for_password("secret", 501)
    c = rpc.decode_call(rpc.encode_call(7, 1, 2, 3, b"ARGS", cred))
    assert c.auth == cred and c.args == b"ARGS" and c.auth.password == "secret"


@pytest.mark.parametrize("reply,kind,stat,detail", [
    (rpc.reply_accept_error(1, rpc.AcceptStat.PROG_UNAVAIL), "accept", 1, ()),
    (rpc.reply_accept_error(1, rpc.AcceptStat.PROG_MISMATCH, 2, 2), "accept", 2, (2, 2)),
    (rpc.reply_accept_error(1, rpc.AcceptStat.PROC_UNAVAIL), "accept", 3, ()),
    (rpc.reply_accept_error(1, rpc.AcceptStat.GARBAGE_ARGS), "accept", 4, ()),
    (rpc.reply_accept_error(1, rpc.AcceptStat.SYSTEM_ERR), "accept", 5, ()),
    (rpc.reply_rpc_mismatch(1), "reject", 0, (2, 2)),
    (rpc.reply_auth_error(1, rpc.AuthStat.TOOWEAK), "reject", 1, (5,)),
])
def test_every_error_reply_decodes(reply, kind, stat, detail):
    with pytest.raises(RpcError) as ei:
        rpc.decode_reply(reply)
    assert (ei.value.kind, ei.value.stat, ei.value.detail, ei.value.xid) == (kind, stat,
                                                                             detail, 1)


def test_prog_mismatch_layout():
    assert rpc.reply_accept_error(9, 2, 2, 2) == hexbytes(
        "00000009 00000001 00000000 00000000 00000000 00000002 00000002 00000002")
    assert rpc.reply_auth_error(9, 5) == hexbytes("00000009 00000001 00000001 00000001 00000005")
    assert rpc.reply_rpc_mismatch(9) == hexbytes(
        "00000009 00000001 00000001 00000000 00000002 00000002")


def test_rpc_version_mismatch_detected():
    bad = bytearray(rpc.encode_call(5, 1, 1, 0))
    bad[11] = 3
    with pytest.raises(rpc.RpcMismatch) as ei:
        rpc.decode_call(bytes(bad))
    assert ei.value.xid == 5


def test_bad_credential_flags_badcred():
    call = rpc.encode_call(5, 1, 1, 0)
    # AUTH_UNIX flavor with a 4-byte body that cannot hold a credential
    bad = call[:24] + hexbytes("00000001 00000004 00000000 00000000 00000000")
    assert rpc.decode_call(bad).auth_error == rpc.AuthStat.BADCRED


def test_non_call_is_wireerror():
    with pytest.raises(WireError):
        rpc.decode_call(ROOT_REPLY)
    with pytest.raises(WireError):
        rpc.decode_call(b"short")


def test_record_reader_multifragment_and_bytewise():
    rec = bytes(range(256)) * 40
    framed = rpc.frame(rec, fragment_size=1000)
    assert framed.count(b"") and len(framed) == len(rec) + 4 * 11
    assert rpc.RecordReader().feed(framed) == [rec]
    r = rpc.RecordReader()
    out = []
    for i in range(len(framed)):
        out += r.feed(framed[i:i + 1])
    assert out == [rec]
    # two records in one read, with a partial third
    r = rpc.RecordReader()
    assert r.feed(rpc.frame(b"a") + rpc.frame(b"bb") + b"\x80\0") == [b"a", b"bb"]
    assert r.feed(b"\0\x01c") == [b"c"]


def test_record_reader_cap():
    r = rpc.RecordReader(max_record=100)
    with pytest.raises(WireError) as ei:
        r.feed(b"\x80\x00\x01\x00")  # one 256-byte fragment declared
    assert ei.value.fatal
    r = rpc.RecordReader(max_record=100)
    with pytest.raises(WireError):
        r.feed(b"\x00\x00\x00\x40" + b"x" * 64 + b"\x00\x00\x00\x40")  # fragments add up


@given(st.binary(max_size=200))
def test_arbitrary_bytes_into_decoders(data):
    for fn in (rpc.decode_call, rpc.decode_reply):
        try:
            fn(data)
        except (WireError, RpcError):
            pass
    try:
        rpc.RecordReader(max_record=1000).feed(data)
    except WireError:
        pass
