"""BER as LDAP uses it (RFC 4511 §5.1, X.690 §8): definite lengths, low tag numbers,
every length, nesting depth and message size bounded. Pure.

LDAP restricts BER (RFC 4511 §5.1): only the definite form of length, OCTET STRINGs and
the other string types in primitive form only, BOOLEAN TRUE as 0xFF when sent. Every tag
the protocol defines has a number below 31, so the high-tag-number form (X.690
§8.1.2.4) is refused here rather than decoded. What a decoder is given is never trusted:
every length is checked against what is left of its enclosing value, and decoders raise
only :class:`~netinfo.errors.WireError`.

The decoder works on ``bytes`` with offsets (no copies until a value is taken out), so
that a SearchRequest decodes in a few microseconds (pyasn1 took 195 µs, issue 22).
"""

from __future__ import annotations

from ..errors import WireError

#: The largest LDAP message read or written: the biggest NETINFO call record
#: (wire.rpc.MAX_CALL_RECORD, 16 MiB), so that an LDAP add or modify carries no more than
#: a NETINFO CREATE or WRITE can, and a peer cannot make the server buffer more.
MAX_MESSAGE = 16 * 1024 * 1024
#: Bytes of a length field after its first byte (X.690 §8.1.3.5): four give up to
#: 4 GiB, more than MAX_MESSAGE, so nothing longer is ever needed.
MAX_LENGTH_BYTES = 4
#: Constructed values nested inside one message. An LDAPMessage is 4 deep before its
#: filter (message, operation, filter, its set); filters are bounded by
#: wire.ldap.MAX_FILTER_DEPTH (32) and each level costs at most 2 here.
MAX_NESTING = 80
#: Bytes of an INTEGER's contents: LDAP's integers are 0..2**31-1 (RFC 4511 §4.1.1
#: MessageID, sizeLimit, timeLimit; ``maxInt``), so five bytes (a leading 0x00) suffice.
MAX_INT_BYTES = 5

# X.690 identifier octet: class (bits 8-7), constructed (bit 6), number (bits 5-1)
UNIVERSAL = 0x00
APPLICATION = 0x40
CONTEXT = 0x80
CONSTRUCTED = 0x20

BOOLEAN = 0x01
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
ENUMERATED = 0x0A
SEQUENCE = 0x30
SET = 0x31


# -- encoding -------------------------------------------------------------------------------

def encode_length(n: int) -> bytes:
    """X.690 §8.1.3: short form below 128, else the fewest bytes of the long form."""
    if n < 0x80:
        return bytes((n,))
    if n > MAX_MESSAGE:
        raise ValueError(f"BER length {n} over the bound of {MAX_MESSAGE}")
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One value: its identifier octet, its length, its contents."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    return bytes((tag,)) + encode_length(n) + content


def seq(tag: int, *parts: bytes) -> bytes:
    """A constructed value holding *parts* (already encoded) in order."""
    return tlv(tag, b"".join(parts))


def int_contents(v: int) -> bytes:
    """Two's complement in the fewest bytes (X.690 §8.3.2)."""
    return v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True)


def encode_int(v: int, tag: int = INTEGER) -> bytes:
    return tlv(tag, int_contents(v))


def encode_enum(v: int, tag: int = ENUMERATED) -> bytes:
    return tlv(tag, int_contents(v))


def encode_bool(v: bool, tag: int = BOOLEAN) -> bytes:
    """TRUE is sent as 0xFF (RFC 4511 §5.1)."""
    return bytes((tag, 1, 0xFF if v else 0x00))


def encode_octets(v: bytes, tag: int = OCTET_STRING) -> bytes:
    return tlv(tag, v)


def encode_str(s: str, tag: int = OCTET_STRING) -> bytes:
    """An LDAPString (UTF-8, RFC 4511 §4.1.2); strings that came off the wire with bytes
    that are not UTF-8 go back unchanged (``surrogateescape``)."""
    return tlv(tag, s.encode("utf-8", "surrogateescape"))


# -- decoding -------------------------------------------------------------------------------

def read_header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The value at *pos*: ``(tag, start, stop)``, its contents being ``data[start:stop]``,
    which lies within ``data[pos:end]``.

    :raises WireError: truncated, indefinite length, a high tag number, a length field
        over :data:`MAX_LENGTH_BYTES` bytes, or contents that run past *end*.
    """
    if end - pos < 2:
        raise WireError("BER value truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise WireError("BER high tag number: no LDAP tag needs one")
    n = data[pos + 1]
    pos += 2
    if n >= 0x80:
        k = n & 0x7F
        if k == 0:
            raise WireError("BER indefinite length (RFC 4511 §5.1 allows definite only)")
        if k > MAX_LENGTH_BYTES:
            raise WireError(f"BER length of {k} bytes (at most {MAX_LENGTH_BYTES})")
        if end - pos < k:
            raise WireError("BER length truncated")
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if n > end - pos:
        raise WireError(f"BER value of {n} bytes runs past its enclosing value")
    return tag, pos, pos + n


def frame(data: bytes | bytearray, start: int = 0) -> int | None:
    """The length of the whole message beginning at *start* when it is all in *data*,
    None when more bytes are needed (a stream reader's framing).

    :raises WireError: (fatal) not a SEQUENCE, a bad length, or over
        :data:`MAX_MESSAGE` bytes: the stream can no longer be trusted.
    """
    avail = len(data) - start
    if avail < 2:
        return None
    if data[start] != SEQUENCE:
        raise WireError(f"LDAP message does not begin with a SEQUENCE (0x{data[start]:02x})",
                        fatal=True)
    n = data[start + 1]
    head = 2
    if n >= 0x80:
        k = n & 0x7F
        if k == 0 or k > MAX_LENGTH_BYTES:
            raise WireError("LDAP message with an indefinite or overlong length", fatal=True)
        if avail < 2 + k:
            return None
        n = int.from_bytes(data[start + 2:start + 2 + k], "big")
        head += k
    if n + head > MAX_MESSAGE:
        raise WireError(f"LDAP message of {n + head} bytes (at most {MAX_MESSAGE})",
                        fatal=True)
    return n + head if avail >= n + head else None


def decode_int(data: bytes, start: int, stop: int) -> int:
    """INTEGER or ENUMERATED contents (X.690 §8.3: at least one byte)."""
    if not start < stop <= start + MAX_INT_BYTES:
        raise WireError(f"BER integer of {stop - start} bytes")
    return int.from_bytes(data[start:stop], "big", signed=True)


def decode_bool(data: bytes, start: int, stop: int) -> bool:
    """BOOLEAN contents: one byte, any non-zero value TRUE (X.690 §8.2.2)."""
    if stop - start != 1:
        raise WireError("BER boolean not one byte")
    return data[start] != 0


def decode_str(data: bytes, start: int, stop: int) -> str:
    return data[start:stop].decode("utf-8", "surrogateescape")


class Reader:
    """The values inside one constructed value, read in order.

    ``Reader(data, start, stop, depth)``: *depth* is how deep this value is nested;
    :meth:`inner` refuses to go past :data:`MAX_NESTING`.
    """

    __slots__ = ("data", "pos", "end", "depth")

    def __init__(self, data: bytes, start: int = 0, stop: int | None = None,
                 depth: int = 0) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if stop is None else stop
        self.depth = depth

    def more(self) -> bool:
        return self.pos < self.end

    def peek(self) -> int:
        """The tag of the next value (-1 when there is none)."""
        return self.data[self.pos] if self.pos < self.end else -1

    def next(self) -> tuple[int, int, int]:
        """The next value's ``(tag, start, stop)``, skipped over."""
        data, pos, end = self.data, self.pos, self.end
        if end - pos >= 2:   # the common case inline: a short length, a low tag
            n = data[pos + 1]
            stop = pos + 2 + n
            if n < 0x80 and stop <= end and data[pos] & 0x1F != 0x1F:
                self.pos = stop
                return data[pos], pos + 2, stop
        tag, start, stop = read_header(data, pos, end)
        self.pos = stop
        return tag, start, stop

    def expect(self, tag: int, what: str) -> tuple[int, int]:
        t, start, stop = self.next()
        if t != tag:
            raise WireError(f"{what}: tag 0x{t:02x}, expected 0x{tag:02x}")
        return start, stop

    def inner(self, start: int, stop: int) -> Reader:
        """A reader of the constructed value ``data[start:stop]`` one level deeper."""
        if self.depth >= MAX_NESTING:
            raise WireError(f"BER nested deeper than {MAX_NESTING} levels")
        return Reader(self.data, start, stop, self.depth + 1)

    def seq(self, tag: int, what: str) -> Reader:
        """The next value, which must be constructed with *tag*, as a reader."""
        start, stop = self.expect(tag, what)
        return self.inner(start, stop)

    def integer(self, what: str, tag: int = INTEGER) -> int:
        start, stop = self.expect(tag, what)
        return decode_int(self.data, start, stop)

    def boolean(self, what: str, tag: int = BOOLEAN) -> bool:
        start, stop = self.expect(tag, what)
        return decode_bool(self.data, start, stop)

    def octets(self, what: str, tag: int = OCTET_STRING) -> bytes:
        start, stop = self.expect(tag, what)
        return self.data[start:stop]

    def string(self, what: str, tag: int = OCTET_STRING) -> str:
        t, start, stop = self.next()
        if t != tag:
            raise WireError(f"{what}: tag 0x{t:02x}, expected 0x{tag:02x}")
        return self.data[start:stop].decode("utf-8", "surrogateescape")

    def optional(self, tag: int) -> tuple[int, int] | None:
        """The next value's contents when it has *tag* (and skip it), else None."""
        if self.pos < self.end and self.data[self.pos] == tag:
            _, start, stop = self.next()
            return start, stop
        return None

    def done(self, what: str) -> None:
        """Extra values at the end are ignored (RFC 4511 §4: extensibility), but only
        after they have been checked to be well formed."""
        while self.pos < self.end:
            self.next()


__all__ = [
    "APPLICATION", "BOOLEAN", "CONSTRUCTED", "CONTEXT", "ENUMERATED", "INTEGER",
    "MAX_INT_BYTES", "MAX_LENGTH_BYTES", "MAX_MESSAGE", "MAX_NESTING", "NULL",
    "OCTET_STRING", "Reader", "SEQUENCE", "SET", "decode_bool", "decode_int", "decode_str",
    "encode_bool", "encode_enum", "encode_int", "encode_length", "encode_octets",
    "encode_str", "frame", "int_contents", "read_header", "seq", "tlv",
]
