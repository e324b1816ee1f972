"""Password hashes: checking a user's ``passwd`` value and making new ones (spec §10.2).

NetInfo stores ``crypt(3)`` strings in ``/users/<name>`` ``passwd``. NeXT and Apple
checked traditional DES crypt (13 characters, salt = the first two); we also accept the
modern crypt formats a migrated domain may carry — MD5 ``$1$``, SHA-256 ``$5$``, SHA-512
``$6$``, bcrypt ``$2a$/$2b$/$2y$`` and argon2 ``$argon2…`` where their backends are
installed — through ``libpass`` (the maintained fork of passlib), so the result is the
same on every Python version, with or without the stdlib ``crypt`` module (gone in 3.13).
Where the C library's ``crypt_rn`` is present (libxcrypt, ``libcrypt.so.1``: Debian,
Fedora, Arch, ...), DES, MD5, SHA-256 and SHA-512 crypt strings are checked by it
instead: the same answers (tests/test_passwords.py compares the two), about twice as fast,
and without the interpreter lock, so a check in a worker thread (the LDAP door's binds)
does not stall the event loop.

New passwords are hashed with SHA-512 crypt (``$6$``), which every platform's crypt(3)
and every NetInfo-era tool after 2008 can read; a NeXT client still authenticates against
it, since only the server compares hashes.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import Any

#: What a ``passwd`` value that admits no password looks like (a locked account).
LOCKED = "*"

#: crypt prefix → libpass handler name; DES crypt has no prefix (13 characters).
_SCHEMES: dict[str, str] = {
    "$1$": "md5_crypt",
    "$5$": "sha256_crypt",
    "$6$": "sha512_crypt",
    "$2a$": "bcrypt",
    "$2b$": "bcrypt",
    "$2y$": "bcrypt",
    "$argon2": "argon2",
}


@cache
def _handler(name: str) -> Any | None:
    try:
        from passlib import hash as hashes  # noqa: PLC0415 - loaded on first use
    except ImportError:
        return None
    return getattr(hashes, name, None)


def scheme_of(stored: str) -> str | None:
    """The libpass scheme of a crypt string, or None when it is not one we know."""
    for prefix, name in _SCHEMES.items():
        if stored.startswith(prefix):
            return name
    if len(stored) == 13 and not stored.startswith("$"):
        return "des_crypt"
    return None


#: The schemes the C library checks when it can (:func:`_c_crypt`); bcrypt and argon2
#: stay with libpass, whose backends also say whether they can be checked at all
#: (:func:`verdict`).
C_SCHEMES = frozenset({"des_crypt", "md5_crypt", "sha256_crypt", "sha512_crypt"})
#: ``sizeof(struct crypt_data)`` in libxcrypt (crypt.h: CRYPT_DATA_INTERNAL_SIZE and
#: the output and setting buffers); ``crypt_rn`` is told the size it gets.
_CRYPT_DATA = 32768
#: libxcrypt refuses longer passphrases (crypt.h: CRYPT_MAX_PASSPHRASE_SIZE, 512 with
#: its NUL); libpass answers for those.
_C_PHRASE_MAX = 511


@cache
def _c_crypt() -> Callable[[bytes, bytes], bytes | None] | None:
    """libxcrypt's ``crypt_rn(phrase, setting, data, size)`` (re-entrant, a buffer of
    its own per call; ctypes releases the interpreter lock around it), or None where
    there is no such library or it does not agree with libpass on a probe of each
    scheme (then libpass checks everything)."""
    try:
        import ctypes  # noqa: PLC0415 - loaded on the first check, as libpass is
        fn = ctypes.CDLL("libcrypt.so.1").crypt_rn
    except (ImportError, OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]

    def crypt(phrase: bytes, setting: bytes) -> bytes | None:
        data = ctypes.create_string_buffer(_CRYPT_DATA)
        out: bytes | None = fn(phrase, setting, data, _CRYPT_DATA)
        return out
    for name in sorted(C_SCHEMES):
        h = _handler(name)
        if h is None:
            return None
        if name in ("sha256_crypt", "sha512_crypt"):
            h = h.using(rounds=1000)   # the least both allow: a cheap probe
        probe = str(h.hash("probe \u00e9"))
        if crypt("probe \u00e9".encode(), probe.encode()) != probe.encode() \
                or crypt(b"probe", probe.encode()) == probe.encode():
            return None
    return crypt


def _verify_c(password: str, stored: str) -> bool | None:
    """The C library's answer for *password* against *stored* (a :data:`C_SCHEMES`
    string), or None when libpass must answer: no library, a password that is not a C
    string (a NUL, or not encodable) or is longer than the library takes, a hash that is
    not ASCII."""
    crypt = _c_crypt()
    if crypt is None or "\x00" in password or not stored.isascii():
        return None
    try:
        phrase = password.encode("utf-8")   # as libpass encodes a str password
    except UnicodeEncodeError:
        return None
    if len(phrase) > _C_PHRASE_MAX:
        return None
    setting = stored.encode("ascii")
    out = crypt(phrase, setting)
    return out is not None and hmac.compare_digest(out, setting)


def verify(password: str, stored: str) -> bool:
    """True when *password* hashes to *stored*. Unknown formats, missing backends and
    malformed hashes never match (and never raise)."""
    name = scheme_of(stored)
    if name is None:
        return False
    if name in C_SCHEMES:
        answer = _verify_c(password, stored)
        if answer is not None:
            return answer
    return verify_libpass(password, stored, name)


def verify_libpass(password: str, stored: str, name: str | None = None) -> bool:
    """:func:`verify` by libpass alone (*name*: the scheme, when known)."""
    name = name or scheme_of(stored)
    if name is None:
        return False
    h = _handler(name)
    if h is None:
        return False
    try:
        return bool(h.verify(password, stored))
    except (ValueError, TypeError, NotImplementedError, RuntimeError):
        return False
    except Exception as e:  # a backend missing at verify time (bcrypt, argon2)
        if type(e).__name__ == "MissingBackendError":
            return False
        raise


def verdict(password: str, stored: str) -> bool | None:
    """What :func:`verify` answers, or None when this process cannot tell: the format is
    one we know but its backend (bcrypt, argon2) is not installed here, so a server that
    has it might still accept the password. A format nobody knows is a firm False."""
    name = scheme_of(stored)
    if name is None:
        return False
    if name not in _available():
        return None
    return verify(password, stored)


#: Rounds for new SHA-256/512 crypt hashes: glibc's default. libpass's own default
#: (656,000) makes every check cost about half a second, and netinfod checks a password
#: on the event loop for each authenticated write.
CRYPT_ROUNDS = 5000


def hash_password(password: str, scheme: str = "sha512_crypt") -> str:
    """A new crypt string for *password* (SHA-512 crypt unless told otherwise).

    :raises RuntimeError: libpass or the scheme's backend is not available.
    """
    h = _handler(scheme)
    if h is None:
        raise RuntimeError(f"password scheme {scheme} is not available (install libpass)")
    if scheme in ("sha256_crypt", "sha512_crypt"):
        h = h.using(rounds=CRYPT_ROUNDS)
    return str(h.hash(password))


#: The hashes a new password may be made with (``nipasswd --hash``, the web manager):
#: short name → libpass scheme. sha512 is the default everywhere.
HASHES: dict[str, str] = {
    "sha512": "sha512_crypt",
    "sha256": "sha256_crypt",
    "bcrypt": "bcrypt",
    "md5": "md5_crypt",
    "des": "des_crypt",
}
DEFAULT_HASH = "sha512"


def is_locked(stored: list[str] | None) -> bool:
    """True when a user's ``passwd`` values admit no password at all (``*``, ``!`` or any
    string that is not a crypt hash): authentication as that user always fails. A
    missing or empty ``passwd`` is the opposite, it admits any password (spec §10.2)."""
    if not stored or stored[0] == "":
        return False
    return scheme_of(stored[0]) is None


def available_schemes() -> list[str]:
    """The schemes this installation can check, for documentation and tests."""
    return list(_available())


@cache
def _available() -> tuple[str, ...]:
    out = []
    for name in ["des_crypt", *dict.fromkeys(_SCHEMES.values())]:
        h = _handler(name)
        if h is None:
            continue
        try:
            h.hash("probe")
        except Exception:  # no backend for this scheme here
            continue
        out.append(name)
    return tuple(out)


#: Successful checks a :class:`VerifiedPasswords` remembers at most.
VERIFIED_MAX = 256


class VerifiedPasswords:
    """:func:`verify` with its recent successes remembered.

    NETINFO sends the password with every write (AUTH_UNIX, spec §10.1) and the master
    checks it for every write (§10.2), so an authenticated bulk load (``niload -u admin
    -p`` from another host) would otherwise pay a SHA-512 crypt — milliseconds — per
    record. A success is remembered by an HMAC (a key of this process's own, random) of
    the stored crypt string and the password, neither kept as such: it holds only while
    the stored string is the same, so a password changed or a user removed is checked
    afresh. Failures are never remembered (each one is checked, and counted by the
    caller's limiter). At most :data:`VERIFIED_MAX` successes, the least recent dropped.
    Not for threads: the directory service calls it on its event loop."""

    def __init__(self, size: int = VERIFIED_MAX) -> None:
        self.size = size
        self._key = secrets.token_bytes(32)
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def _tag(self, password: str, stored: str) -> bytes:
        s = stored.encode("utf-8", "surrogateescape")
        msg = len(s).to_bytes(4, "big") + s + password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, msg, "sha256").digest()

    def __call__(self, password: str, stored: str) -> bool:
        tag = self._tag(password, stored)
        seen = self._seen
        if tag in seen:
            seen.move_to_end(tag)
            return True
        if not verify(password, stored):
            return False
        seen[tag] = None
        if len(seen) > self.size:
            seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)

