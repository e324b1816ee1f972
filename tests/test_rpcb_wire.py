"""rpcbind versions 3 and 4 codecs and the registry shared with portmapper version 2
(wire/rpcb.py, RFC 1833): vectors, bounds, the registry's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netinfo.errors import WireError
from netinfo.wire import rpcb
from netinfo.wire.portmap import IPPROTO_TCP, IPPROTO_UDP, Mapping
from netinfo.wire.rpcb import Registry, Rpcb

from .conftest import hexbytes


def test_rpcb_vector():
    r = Rpcb(100004, 2, "udp", "0.0.0.0.3.130", "superuser")
    data = hexbytes("000186a4 00000002 00000003 75647000 0000000d 302e302e 302e302e "
                    "332e3133 30000000 00000009 73757065 72757365 72000000")
    assert r.encode() == data
    assert Rpcb.decode(data) == r
    assert rpcb.encode_rpcblist([r]) == hexbytes("00000001") + data + hexbytes("00000000")
    assert rpcb.decode_rpcblist(rpcb.encode_rpcblist([r, r])) == [r, r]
    assert rpcb.decode_string(rpcb.encode_string("127.0.0.1.0.111")) == "127.0.0.1.0.111"


def test_universal_addresses():
    assert rpcb.uaddr("127.0.0.1", 111) == "127.0.0.1.0.111"
    assert rpcb.port_of("127.0.0.1.3.130") == 3 * 256 + 130
    assert rpcb.port_of("::1.0.111") == 111
    assert rpcb.port_of("/run/rpcbind.sock") is None
    assert rpcb.port_of("1.2.3.4.256.0") is None
    assert rpcb.host_of("::1.0.111") == "::1"


def test_registry_serves_both_versions():
    reg = Registry()
    assert reg.set(Mapping(100004, 2, IPPROTO_UDP, 900))
    assert not reg.set(Mapping(100004, 2, IPPROTO_UDP, 901))        # RFC 1833: UNSET first
    assert reg.getaddr(100004, 2, "udp") == "0.0.0.0.3.132"
    assert reg.set_rpcb(Rpcb(100007, 2, "tcp6", "::.3.5", "0"))
    assert reg.set_rpcb(Rpcb(100007, 3, "udp", "0.0.0.0.3.6", "0"))
    assert reg.getport(100007, 3, IPPROTO_UDP) == 3 * 256 + 6
    assert reg.getport(100007, 2, IPPROTO_TCP) == 0                 # tcp6 is not v2's
    assert reg.dump() == [Mapping(100004, 2, IPPROTO_UDP, 900),
                          Mapping(100007, 3, IPPROTO_UDP, 3 * 256 + 6)]
    assert len(reg.dump_rpcb()) == 3
    # GETADDR may answer another version; GETVERSADDR may not
    assert reg.getaddr(100007, 9, "udp") == "0.0.0.0.3.6"
    assert reg.getaddr(100007, 9, "udp", any_version=False) == ""
    assert reg.unset(100007, 2) and reg.getaddr(100007, 2, "tcp6", any_version=False) == ""
    assert reg.unset_rpcb(Rpcb(100004, 2, "udp", "")) and not reg.dump_rpcb()[1:]
    assert not reg.set_rpcb(Rpcb(1, 1, "", "x"))                    # a netid is needed


def test_bounds():
    with pytest.raises(WireError):
        Rpcb.decode(hexbytes("00000001 00000001 00000041") + b"a" * 68)
    with pytest.raises(WireError):
        rpcb.decode_rpcblist(hexbytes("00000001 00000001"))
    reg = Registry()
    for i in range(rpcb.REGISTRY_MAX):
        assert reg.set_rpcb(Rpcb(i, 1, "udp", "x"))
    assert not reg.set_rpcb(Rpcb(10**6, 1, "udp", "x"))


@given(st.binary(max_size=200))
def test_decoders_raise_only_wire_errors(data):
    for decode in (Rpcb.decode, rpcb.decode_rpcblist, rpcb.decode_string):
        try:
            decode(data)
        except WireError:
            pass
