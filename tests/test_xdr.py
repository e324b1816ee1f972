"""XDR primitives (RFC 4506): vectors, round trips, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netinfo.errors import WireError
from netinfo.wire.xdr import Packer, Unpacker

from .conftest import hexbytes


@pytest.mark.parametrize("value,hexwords", [
    ("", "00000000"),
    ("a", "00000001 61000000"),
    ("abcd", "00000004 61626364"),
    ("local", "00000005 6c6f6361 6c000000"),
])
def test_string_vectors(value, hexwords):
    p = Packer()
    p.pack_string(value)
    assert p.get_buffer() == hexbytes(hexwords)
    u = Unpacker(hexbytes(hexwords))
    assert u.unpack_string() == value
    u.done()


def test_uint_and_int():
    p = Packer()
    p.pack_uint(0xFFFFFFFF)
    p.pack_int(-2)
    assert p.get_buffer() == hexbytes("ffffffff fffffffe")
    u = Unpacker(p.get_buffer())
    assert u.unpack_uint() == 0xFFFFFFFF and u.unpack_int() == -2


def test_out_of_range_pack_is_valueerror():
    with pytest.raises(ValueError):
        Packer().pack_uint(1 << 32)
    with pytest.raises(ValueError):
        Packer().pack_string("x" * 65536)


def test_non_utf8_bytes_survive():
    raw = b"\xff\xfeabc\x80"
    u = Unpacker(b"\0\0\0\x06" + raw + b"\0\0")
    s = u.unpack_string()
    p = Packer()
    p.pack_string(s)
    assert p.get_buffer() == b"\0\0\0\x06" + raw + b"\0\0"


@given(st.lists(st.text(max_size=20), max_size=20))
def test_string_array_round_trip(values):
    p = Packer()
    p.pack_string_array(values)
    u = Unpacker(p.get_buffer())
    assert u.unpack_string_array() == values
    u.done()


@given(st.lists(st.integers(0, 0xFFFFFFFF), max_size=50))
def test_uint_array_round_trip(values):
    p = Packer()
    p.pack_uint_array(values)
    u = Unpacker(p.get_buffer())
    assert u.unpack_uint_array() == values
    u.done()


@pytest.mark.parametrize("data", [
    b"", b"\0\0", b"\0\0\0\x05abc", b"\0\x01\0\0", b"\xff\xff\xff\xff",
])
def test_truncated_and_oversized_raise_wireerror(data):
    for op in ("unpack_string", "unpack_string_array", "unpack_uint_array"):
        with pytest.raises(WireError):
            u = Unpacker(data)
            getattr(u, op)()
            u.done()


def test_hostile_count_allocates_nothing():
    # A count of a million with no bytes behind it is refused before any allocation.
    with pytest.raises(WireError):
        Unpacker(b"\x00\x0f\x42\x40").unpack_array(lambda: None)


def test_trailing_bytes_detected():
    u = Unpacker(b"\0\0\0\x01\0")
    u.unpack_uint()
    with pytest.raises(WireError):
        u.done()


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_wireerror(data):
    for op in ("unpack_string", "unpack_string_array", "unpack_uint_array", "unpack_bool"):
        try:
            getattr(Unpacker(data), op)()
        except WireError:
            pass


def test_uint_array_from_a_compact_array_is_the_same_bytes():
    """A lazy source's child lists are array('I') (issue 10): packed in C, same bytes."""
    from array import array
    values = [0, 1, 255, 65536, 2**31, 2**32 - 1]
    a, b = Packer(), Packer()
    a.pack_uint_array(values)
    b.pack_uint_array(array("I", values))
    assert a.get_buffer() == b.get_buffer()
    u = Unpacker(b.get_buffer())
    assert [u.unpack_uint() for _ in range(u.unpack_uint())] == values
