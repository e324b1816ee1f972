"""NETINFO codecs: spec §2 and §9.4 byte vectors, round trips of every codec, and
arbitrary bytes into every decoder (only WireError may come out)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netinfo.errors import NiError, WireError
from netinfo.model import Directory, NiId
from netinfo.wire.proplist import pack_status
from netinfo.wire.protocol import (
    PROCEDURES,
    RESULT_KINDS,
    Kind,
    Proc,
    decode_args,
    encode_args,
)
from netinfo.wire.readall import (
    READALL_END,
    decode_readall,
    encode_readall_head,
    encode_readall_object,
)
from netinfo.wire.xdr import Unpacker

from .conftest import hexbytes


def encode_ok(info, value):
    return RESULT_KINDS[Kind.UNION].encode(info, value)


def test_lookup_args_vector_spec_2():
    info = PROCEDURES[Proc.LOOKUP]
    data = hexbytes("00000000 00000001 00000004 6e616d65 00000005 75736572 73000000")
    assert encode_args(info, NiId(0, 1), "name", "users") == data
    assert decode_args(info, data) == (NiId(0, 1), "name", "users")


def test_lookup_result_vector_spec_2():
    info = PROCEDURES[Proc.LOOKUP]
    data = hexbytes("00000000 00000001 00000004 00000000 0000000f")
    assert encode_ok(info, ([4], NiId(0, 15))) == data
    u = Unpacker(data)
    assert u.unpack_int() == 0 and info.result.unpack(u) == ([4], NiId(0, 15))


def test_list_result_vector_spec_2():
    info = PROCEDURES[Proc.LIST]
    data = hexbytes("00000000 00000002 00000002 00000001 00000001 00000009 6c6f6361"
                    " 6c686f73 74000000 00000003 00000000 00000001 00000005")
    value = ([(2, ["localhost"]), (3, None)], NiId(1, 5))
    assert encode_ok(info, value) == data
    u = Unpacker(data)
    assert u.unpack_int() == 0 and info.result.unpack(u) == value


def test_readall_vector_spec_9_4():
    data = hexbytes("00000000 0000002a 00000001 00000001 00000000 00000001 00000001 00000006"
                    " 6d617374 65720000 00000001 00000009 682f6e65 74776f72 6b000000"
                    " 00000000 00000000 00000000")
    root = Directory(NiId(0, 1), [("master", ["h/network"])], 0, [])
    assert encode_readall_head(42, 1) + encode_readall_object(root) + READALL_END == data
    assert decode_readall(Unpacker(data)) == (42, 1, [root])


def test_readall_error_status():
    with pytest.raises(NiError) as ei:
        decode_readall(Unpacker(pack_status(16)))
    assert ei.value.status == 16


def test_procedure_table_is_complete():
    assert sorted(PROCEDURES) == list(range(29))
    writes = {p for p, r in PROCEDURES.items() if r.is_write}
    assert writes == {Proc.CREATE, Proc.DESTROY, Proc.WRITE, Proc.CREATEPROP, Proc.DESTROYPROP,
                      Proc.WRITEPROP, Proc.RENAMEPROP, Proc.CREATENAME, Proc.DESTROYNAME,
                      Proc.WRITENAME}
    assert PROCEDURES[Proc.STATISTICS].kind is Kind.BARE_PROPLIST
    assert PROCEDURES[Proc.RESYNC].kind is Kind.BARE_STATUS


# -- round trips of every codec ---------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
names = st.text(max_size=12)
namelists = st.lists(names, max_size=5)
props = st.tuples(names, namelists)
proplists = st.lists(props, max_size=5)
ids = st.builds(NiId, u32, u32)

ARG_STRATEGIES = {
    Proc.PING: st.tuples(), Proc.STATISTICS: st.tuples(), Proc.ROOT: st.tuples(),
    Proc.SELF: st.tuples(ids), Proc.PARENT: st.tuples(ids),
    Proc.CREATE: st.tuples(ids, proplists, u32, st.none() | ids),
    Proc.DESTROY: st.tuples(ids, ids), Proc.READ: st.tuples(ids),
    Proc.WRITE: st.tuples(ids, proplists), Proc.CHILDREN: st.tuples(ids),
    Proc.LOOKUP: st.tuples(ids, names, names), Proc.LIST: st.tuples(ids, names),
    Proc.CREATEPROP: st.tuples(ids, props, u32), Proc.DESTROYPROP: st.tuples(ids, u32),
    Proc.READPROP: st.tuples(ids, u32), Proc.WRITEPROP: st.tuples(ids, u32, namelists),
    Proc.RENAMEPROP: st.tuples(ids, u32, names), Proc.LISTPROPS: st.tuples(ids),
    Proc.CREATENAME: st.tuples(ids, u32, names, u32),
    Proc.DESTROYNAME: st.tuples(ids, u32, u32), Proc.READNAME: st.tuples(ids, u32, u32),
    Proc.WRITENAME: st.tuples(ids, u32, u32, names), Proc.RPARENT: st.tuples(),
    Proc.LISTALL: st.tuples(ids), Proc.BIND: st.tuples(names, u32),
    Proc.READALL: st.tuples(u32), Proc.CRASHED: st.tuples(u32), Proc.RESYNC: st.tuples(),
    Proc.LOOKUPREAD: st.tuples(ids, names, names),
}

entries = st.lists(st.tuples(u32, st.none() | namelists), max_size=5)
RESULT_STRATEGIES = {
    "ID_RES": ids, "PARENT_RES": st.tuples(u32, ids),
    "CHILDREN_RES": st.tuples(st.lists(u32, max_size=8), ids),
    "LIST_RES": st.tuples(entries, ids), "PROPLIST_RES": st.tuples(ids, proplists),
    "CREATE_RES": st.tuples(ids, ids), "NAMELIST_RES": st.tuples(namelists, ids),
    "READNAME_RES": st.tuples(ids, names), "RPARENT_RES": st.tuples(names, u32),
    "LISTALL_RES": st.tuples(ids, st.lists(proplists, max_size=3)),
}


def _norm(v):
    """Tuples and lists compare alike after normalising (NamedTuples are tuples)."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


@pytest.mark.parametrize("proc", list(Proc))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_args_round_trip(proc, data):
    info = PROCEDURES[proc]
    args = data.draw(ARG_STRATEGIES[proc])
    assert _norm(decode_args(info, encode_args(info, *args))) == _norm(args)


def _result_codecs():
    import netinfo.wire.protocol as p
    return [(name, getattr(p, name)) for name in RESULT_STRATEGIES]


@pytest.mark.parametrize("name,codec", _result_codecs())
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_results_round_trip(name, codec, data):
    from netinfo.wire.xdr import Packer
    value = data.draw(RESULT_STRATEGIES[name])
    p = Packer()
    codec.pack(p, value)
    u = Unpacker(p.get_buffer())
    assert _norm(codec.unpack(u)) == _norm(value)
    u.done()


objects = st.builds(Directory, ids, proplists, u32, st.lists(u32, max_size=5))


@settings(max_examples=50, deadline=None)
@given(st.lists(objects, max_size=5), u32, u32)
def test_readall_round_trip(objs, checksum, highest):
    data = encode_readall_head(checksum, highest) + b"".join(
        encode_readall_object(o) for o in objs) + READALL_END
    assert decode_readall(Unpacker(data)) == (checksum, highest, objs)


# -- hostile bytes ----------------------------------------------------------------------------

@pytest.mark.parametrize("proc", list(Proc))
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=96))
def test_arbitrary_bytes_into_arg_decoders(proc, data):
    try:
        decode_args(PROCEDURES[proc], data)
    except WireError:
        pass


@pytest.mark.parametrize("name,codec", _result_codecs())
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=96))
def test_arbitrary_bytes_into_result_decoders(name, codec, data):
    try:
        codec.unpack(Unpacker(data))
    except WireError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=128))
def test_arbitrary_bytes_into_readall_decoder(data):
    try:
        decode_readall(Unpacker(data))
    except (WireError, NiError):
        pass


def test_readall_decoder_is_iterative():
    # 100,000 objects would overflow a recursive decoder.
    obj = encode_readall_object(Directory(NiId(1, 1), [], 0, []))
    data = encode_readall_head(1, 2) + obj * 100_000 + READALL_END
    assert len(decode_readall(Unpacker(data))[2]) == 100_000


# -- stored proplists (issue 10: the lazy store's decoders) ------------------------------------

_names = st.sampled_from(["name", "uid", "", "x", "\udcff", "é", "name "])
_plist = st.lists(st.tuples(_names, st.lists(_names, max_size=3)), max_size=6)


def _reference(data: bytes):
    from netinfo.wire.proplist import unpack_proplist
    u = Unpacker(data)
    props = unpack_proplist(u)
    u.done()
    return props


@given(_plist, st.data())
@settings(max_examples=400)
def test_decode_proplist_is_unpack_proplist_whole(props, data):
    """decode_proplist (one loop) answers exactly as the Unpacker, on good and bad bytes."""
    from netinfo.wire.proplist import decode_proplist, encode_proplist, stored_list_values
    b = encode_proplist(props)
    assert decode_proplist(b) == props
    for key in ("name", "uid", "", "x"):
        # LIST: first property of that name with at least one value (spec §4.4, §5.5)
        assert stored_list_values(b, key) == next((v for k, v in props if k == key and v), None)
    bad = bytearray(b)
    if bad:
        i = data.draw(st.integers(0, len(bad) - 1))
        bad[i] = data.draw(st.integers(0, 255))
    cut = bytes(bad[:data.draw(st.integers(0, len(bad)))]) + data.draw(st.binary(max_size=2))
    try:
        want = ("ok", _reference(cut))
    except WireError:
        want = ("error",)
    try:
        got = ("ok", decode_proplist(cut))
    except WireError:
        got = ("error",)
    assert got == want
    try:
        stored_list_values(cut, "name")
    except WireError:
        pass


# -- proplists that carry their encoding (issue 10, the hot path) ------------------------------

def test_a_decoded_proplist_carries_its_bytes_and_is_sent_as_they_are():
    from netinfo.wire.proplist import WireProplist, decode_proplist, encode_proplist
    props = [("name", ["alice"]), ("uid", ["501"]), ("empty", []), ("é", ["\udcff"])]
    wire = encode_proplist(props)
    got = decode_proplist(wire)
    assert type(got) is WireProplist and got == props and got.wire is wire
    assert encode_proplist(got) is wire
    # the bytes are what is sent, whatever the list says (so it must never change)
    assert encode_proplist(WireProplist([("x", [])], wire)) == wire


@pytest.mark.parametrize("change", [
    lambda w: w.append(("x", [])), lambda w: w.extend([]), lambda w: w.insert(0, ("x", [])),
    lambda w: w.pop(), lambda w: w.remove(w[0]), lambda w: w.clear(), lambda w: w.sort(),
    lambda w: w.reverse(), lambda w: w.__setitem__(0, ("x", [])),
    lambda w: w.__delitem__(0), lambda w: w.__iadd__([]), lambda w: w.__imul__(2)])
def test_a_proplist_with_its_bytes_cannot_change(change):
    from netinfo.wire.proplist import decode_proplist, encode_proplist
    w = decode_proplist(encode_proplist([("name", ["a"]), ("b", ["c"])]))
    with pytest.raises(TypeError):
        change(w)
    copy = list(w)
    copy.append(("x", []))
    assert encode_proplist(copy) != w.wire


def test_read_after_write_sends_the_new_properties():
    # READ keeps the encoding on the directory; a write replaces it (service._wire).
    from netinfo.model import NiId
    from netinfo.server.service import SUPERUSER, DirectoryService
    from netinfo.wire.proplist import WireProplist
    svc = DirectoryService()
    root = svc.proc_root(SUPERUSER)
    kid, root = svc.proc_create(SUPERUSER, root, [("name", ["k"])], 0xFFFFFFFF)
    first = svc.proc_read(SUPERUSER, kid)[1]
    assert type(first) is WireProplist and svc.proc_read(SUPERUSER, kid)[1] is first
    kid = svc.proc_write(SUPERUSER, kid, [("name", ["k2"])])
    again = svc.proc_read(SUPERUSER, NiId(kid.object, 0))[1]
    assert again == [("name", ["k2"])] and again.wire != first.wire
