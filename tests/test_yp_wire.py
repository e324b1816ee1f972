"""YP v2 codecs (wire/yp.py): byte vectors written from rpcsvc/yp.x, round trips, bounds and
hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netinfo.errors import WireError
from netinfo.wire import yp
from netinfo.wire.yp import YpStat

from .conftest import hexbytes

# "nitest" = 6e 69 74 65 73 74, "passwd.byname" = 13 bytes
DOMAIN = "00000006 6e697465 73740000"
MAP = "0000000d 70617373 77642e62 796e616d 65000000"
KEY = "00000005 616c6963 65000000"     # "alice"


def test_domain_vector():
    assert yp.encode_domain("nitest") == hexbytes(DOMAIN)
    assert yp.decode_domain(hexbytes(DOMAIN)) == "nitest"


def test_nokey_and_key_vectors():
    assert yp.encode_nokey("nitest", "passwd.byname") == hexbytes(DOMAIN + MAP)
    assert yp.decode_nokey(hexbytes(DOMAIN + MAP)) == yp.ReqNokey("nitest", "passwd.byname")
    assert yp.encode_key("nitest", "passwd.byname", b"alice") == hexbytes(DOMAIN + MAP + KEY)
    assert yp.decode_key(hexbytes(DOMAIN + MAP + KEY)) == \
        yp.ReqKey("nitest", "passwd.byname", b"alice")


def test_first_accepts_a_trailing_key_only_when_asked():
    data = hexbytes(DOMAIN + MAP + "00000000")
    assert yp.decode_nokey(data, trailing_key=True).map == "passwd.byname"
    with pytest.raises(WireError):
        yp.decode_nokey(data)


def test_xfr_vector():
    req = yp.ReqXfr("nitest", "passwd.byname", 7, "host", 0x11, 0x40000000, 800)
    data = hexbytes(DOMAIN + MAP + "00000007" + "00000004 686f7374" + "00000011 40000000 "
                    "00000320")
    assert yp.encode_xfr(req) == data
    assert yp.decode_xfr(data) == req
    assert yp.encode_xfr_result(0x11, yp.YpXfrStat.REFUSED) == hexbytes("00000011 fffffff2")


def test_result_vectors():
    assert yp.encode_bool(True) == hexbytes("00000001")
    assert yp.encode_val(YpStat.TRUE, b"abc") == hexbytes("00000001 00000003 61626300")
    assert yp.encode_val(YpStat.NOKEY) == hexbytes("fffffffd 00000000")
    # value first, then key (what every client decodes)
    assert yp.encode_key_val(YpStat.TRUE, b"k", b"vv") == \
        hexbytes("00000001 00000002 76760000 00000001 6b000000")
    assert yp.encode_all_entry(YpStat.TRUE, b"k", b"v") == \
        hexbytes("00000001 00000001 00000001 76000000 00000001 6b000000")
    assert yp.ALL_END == hexbytes("00000000")
    assert yp.encode_master(YpStat.TRUE, "ni") == hexbytes("00000001 00000002 6e690000")
    assert yp.encode_order(YpStat.TRUE, 42) == hexbytes("00000001 0000002a")
    assert yp.encode_maplist(YpStat.TRUE, ["a", "bc"]) == hexbytes(
        "00000001 00000001 00000001 61000000 00000001 00000002 62630000 00000000")
    assert yp.encode_maplist(YpStat.NODOM) == hexbytes("fffffffe 00000000")


def test_result_decoders_round_trip():
    assert yp.decode_val(yp.encode_val(YpStat.TRUE, b"x" * 1024)) == (1, b"x" * 1024)
    assert yp.decode_key_val(yp.encode_key_val(YpStat.TRUE, b"k", b"v")) == (1, b"k", b"v")
    assert yp.decode_master(yp.encode_master(YpStat.TRUE, "h")) == (1, "h")
    assert yp.decode_order(yp.encode_order(YpStat.TRUE, 2**32 - 1)) == (1, 2**32 - 1)
    assert yp.decode_maplist(yp.encode_maplist(YpStat.TRUE, ["m1", "m2"])) == (1, ["m1", "m2"])
    body = (yp.encode_all_entry(YpStat.TRUE, b"a", b"1") + yp.encode_all_entry(
        YpStat.TRUE, b"b", b"2") + yp.encode_all_entry(YpStat.NOMORE) + yp.ALL_END)
    assert yp.decode_all(body) == ([(b"a", b"1"), (b"b", b"2")], YpStat.NOMORE)
    assert yp.decode_bool(yp.encode_bool(False)) is False
    assert yp.decode_xfr_result(yp.encode_xfr_result(3, -14)) == (3, -14)


def test_bounds():
    """keydat/valdat opaque<1024>, domainname string<256>, mapname string<64>."""
    with pytest.raises(ValueError):
        yp.encode_val(YpStat.TRUE, b"x" * 1025)
    with pytest.raises(ValueError):
        yp.encode_key_val(YpStat.TRUE, b"x" * 1025, b"")
    assert yp.fits(b"x" * 1024) and not yp.fits(b"x" * 1025)
    long_map = "00000041 " + "61626364" * 17
    with pytest.raises(WireError):
        yp.decode_nokey(hexbytes(DOMAIN + long_map))
    with pytest.raises(WireError):
        yp.decode_domain(hexbytes("00000101" + "61626364" * 65))
    with pytest.raises(WireError):
        yp.decode_key(hexbytes(DOMAIN + MAP + "00000401" + "00" * 1028))
    # a hostile length is refused before anything is allocated
    with pytest.raises(WireError):
        yp.decode_key(hexbytes(DOMAIN + MAP + "7fffffff"))
    with pytest.raises(ValueError):
        yp.encode_maplist(YpStat.TRUE, ["m"] * (yp.MAPLIST_MAX + 1))


def test_trailing_and_truncated_records_are_refused():
    with pytest.raises(WireError):
        yp.decode_domain(hexbytes(DOMAIN + "00000000"))
    with pytest.raises(WireError):
        yp.decode_key(hexbytes(DOMAIN + MAP))
    with pytest.raises(WireError):
        yp.decode_xfr(hexbytes(DOMAIN + MAP + "00000007"))


@given(st.binary(max_size=300))
def test_decoders_raise_only_wire_errors(data):
    for decode in (yp.decode_domain, yp.decode_nokey, yp.decode_key, yp.decode_xfr,
                   yp.decode_val, yp.decode_key_val, yp.decode_master, yp.decode_order,
                   yp.decode_maplist, yp.decode_all):
        try:
            decode(data)
        except WireError:
            pass


@given(st.text(max_size=60), st.text(max_size=60), st.binary(max_size=1024))
def test_key_round_trip(domain, name, key):
    try:
        data = yp.encode_key(domain, name, key)
    except Exception:   # longer than the bounds once encoded
        return
    assert yp.decode_key(data) == yp.ReqKey(domain, name, key)
