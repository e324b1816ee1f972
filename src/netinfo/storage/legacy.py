"""NeXT's "collection" database format, read-only (spec §13, §12.5).

A ``collection`` file is a sequence of fixed-size slots (256 bytes; 512 in the later
``Collection`` variant). Slot *k* holds directory *k* as the XDR encoding of an
``ni_object`` (spec §2), zero-padded. A free slot holds an object whose number is
0xFFFFFFFF but which keeps its last instance. An object too large for its slot lives in a
file ``extension_<k>`` and the slot is then ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import WireError
from ..wire.proplist import unpack_object
from ..wire.xdr import Unpacker
from . import Image, Record

FREE = 0xFFFFFFFF


def decode_collection(data: bytes, slot: int = 256,
                      extension: Callable[[int], bytes | None] | None = None) -> Image:
    """Decode a NeXT collection file into a storage :class:`Image`.

    :param extension: returns the bytes of ``extension_<k>`` or None when absent.
    :raises WireError: a slot does not decode, or its number does not match its position.
    """
    if len(data) % slot:
        raise WireError(f"collection size {len(data)} is not a multiple of {slot}")
    img = Image()
    for k in range(len(data) // slot):
        raw = data[k * slot:(k + 1) * slot]
        ext = extension(k) if extension is not None else None
        u = Unpacker(ext if ext is not None else raw)
        obj = u.unpack_uint()
        inst = u.unpack_uint()
        if obj == FREE:
            if inst:
                img.freed[k] = inst
            continue
        u.pos = 0
        d = unpack_object(u)
        if d.id.object != k:
            raise WireError(f"slot {k} holds object {d.id.object}")
        img.records[k] = Record(d.id.instance, d.parent, d.props)
        if d.children:
            img.children[k] = list(d.children)
    return img
