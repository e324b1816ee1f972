"""Password checks by the C library's crypt_rn against libpass (passwords.py).

Where libxcrypt is present, DES, MD5, SHA-256 and SHA-512 crypt strings are checked by
it; these tests hold its answers to libpass's, for right and wrong passwords, odd
passwords and odd stored strings, and show that a check leaves the interpreter lock to
the other threads (the LDAP door's binds run in worker threads).
"""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netinfo import passwords
from netinfo.passwords import C_SCHEMES, hash_password, verify, verify_libpass

from .conftest import needs_privilege_rule

needs_c = pytest.mark.skipif(passwords._c_crypt() is None,
                             reason="no libxcrypt (libcrypt.so.1 with crypt_rn) here")


def _hash(scheme: str, password: str, rounds: int = 1000) -> str:
    h = passwords._handler(scheme)
    assert h is not None
    if scheme in ("sha256_crypt", "sha512_crypt"):
        h = h.using(rounds=rounds)
    return str(h.hash(password))


@needs_c
def test_the_c_library_is_used_for_its_schemes():
    stored = hash_password("secret")
    assert passwords._verify_c("secret", stored) is True
    assert passwords._verify_c("Secret", stored) is False
    # not a C string: libpass answers
    assert passwords._verify_c("sec\x00ret", stored) is None
    assert verify("sec\x00ret", stored) is verify_libpass("sec\x00ret", stored)


@needs_c
@settings(max_examples=150, deadline=None)
@given(scheme=st.sampled_from(sorted(C_SCHEMES)),
       password=st.text(max_size=24),
       other=st.text(max_size=24))
def test_same_answers_as_libpass(scheme, password, other):
    try:
        stored = _hash(scheme, password)
    except (ValueError, TypeError):
        return                      # libpass will not hash it (a NUL in DES, say)
    for attempt in (password, other, password + "x", password[:-1]):
        assert verify(attempt, stored) is verify_libpass(attempt, stored), \
            (scheme, attempt, stored)
    assert verify(password, stored) is True


ODD_STORED = [
    "", "*", "!", "ab", "a", "!!", "abcdefghijklm", "ab" + "." * 11,
    "$1$", "$1$$", "$1$saltsaltsalt$", "$5$", "$6$", "$6$$", "$6$rounds=10$salt$",
    "$6$rounds=1000$salt$", "$6$rounds=01000$salt$x", "$6$rounds=$salt$",
    "$6$salt$" + "A" * 86, "$6$salt$" + "A" * 87, "$5$salt$" + "!" * 43,
    "$6$s\u00e9lt$abc", "$6$salt$abc\u00e9", "$2b$05$" + "a" * 53, "$argon2id$v=19$x",
]


@needs_c
@pytest.mark.parametrize("stored", ODD_STORED)
@pytest.mark.parametrize("password", ["", "x", "secret", "p\u00e4ss", "a" * 200])
def test_odd_stored_strings(stored, password):
    assert verify(password, stored) is verify_libpass(password, stored)


@needs_c
@pytest.mark.parametrize("scheme", sorted(C_SCHEMES))
def test_tampered_hashes_never_match(scheme):
    stored = _hash(scheme, "secret")
    assert verify("secret", stored)
    for i in range(len(stored)):
        for c in "./aZ9":
            bad = stored[:i] + c + stored[i + 1:]
            if bad != stored:
                assert verify("secret", bad) is verify_libpass("secret", bad), bad
    assert not verify("secret", stored + "x")
    assert not verify("secret", stored[:-1])


@needs_c
def test_defaults_rounds_and_long_passwords():
    for rounds in (1000, 5000, 12345):
        stored = _hash("sha512_crypt", "pw", rounds)
        assert verify("pw", stored) and not verify("pW", stored)
    for long in ("\u00fc" * 255, "a" * 511, "a" * 512, "\u00fc" * 300):
        for scheme in sorted(C_SCHEMES):
            stored = _hash(scheme, long)
            assert verify(long, stored) is verify_libpass(long, stored) is True
            assert verify(long + "x", stored) is verify_libpass(long + "x", stored)


@needs_c
def test_a_check_leaves_the_interpreter_lock():
    """While one thread checks a slow hash, another keeps running: with the lock held
    for the whole check, the main thread would not run at all until it ended."""
    stored = _hash("sha512_crypt", "secret", rounds=3_000_000)
    started = threading.Event()
    result: list[bool] = []

    def check() -> None:
        started.set()
        result.append(verify("secret", stored))
    t = threading.Thread(target=check)
    t0 = time.monotonic()
    t.start()
    started.wait()
    turns = 0
    while t.is_alive():
        turns += 1
        time.sleep(0.001)
    t.join()
    took = time.monotonic() - t0
    assert result == [True]
    # about one turn a millisecond while the check runs (at least 0.2 s here)
    assert took > 0.2
    assert turns >= took * 1000 / 10, (turns, took)


# -- VerifiedPasswords: NETINFO's per-write checks (spec §10.2) ---------------------------

class _Counting:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = passwords.verify

        def counted(password, stored):
            self.calls += 1
            return real(password, stored)
        monkeypatch.setattr(passwords, "verify", counted)


def test_verified_remembers_successes_only(monkeypatch):
    count = _Counting(monkeypatch)
    v = passwords.VerifiedPasswords(size=2)
    a = _hash("sha512_crypt", "alpha")
    b = _hash("md5_crypt", "beta")
    assert v("alpha", a) and v("alpha", a) and v("alpha", a)
    assert count.calls == 1
    assert not v("wrong", a) and not v("wrong", a)   # failures are checked every time
    assert count.calls == 3
    assert not v("beta", a)                         # another password, same hash
    assert v("alpha", _hash("sha512_crypt", "alpha"))   # another salt: checked afresh
    assert count.calls == 5
    assert v("beta", b) and len(v) == 2             # the bound: "alpha"/a dropped
    assert v("alpha", a) and count.calls == 7
    # the remembered form is neither the password nor the hash
    assert all(b"alpha" not in k and a.encode() not in k for k in v._seen)


@pytest.mark.parametrize("stored", ["", "*", "ab", "$6$$", "$6$rounds=10$salt$"])
def test_verified_answers_as_verify(stored):
    v = passwords.VerifiedPasswords()
    for pw in ("", "x", "secret"):
        assert v(pw, stored) is verify(pw, stored)
        assert v(pw, stored) is verify(pw, stored)


@needs_privilege_rule
def test_a_changed_password_is_checked_afresh_over_the_wire(netinfod, run_tool):
    """Writes as alice with her password (AUTH_UNIX on every write, spec §10.1) from an
    unprivileged port, so each is authenticated (§10.2 step 3); once root changes her
    passwd, the old password is refused at once and the new one taken."""
    from netinfo.client.core import SyncClient
    d = netinfod("authc", "-m")
    with SyncClient.connect("127.0.0.1", d.port, "authc") as c:
        users, _ = c.create(c.root(), [("name", ["users"])])
        alice, _ = c.create(users, [("name", ["alice"]), ("uid", ["501"]),
                                    ("passwd", [hash_password("old")])])
        c.create(c.root(), [("name", ["pub"]), ("_writers", ["alice"])])
    env = dict(__import__("os").environ, NETINFO_PRIVILEGED="0")
    t = f"127.0.0.1:{d.port}/authc"

    def niutil(*args):
        return run_tool("niutil", *args, env=env, timeout=60)
    for i in range(3):
        r = niutil("-create", "-t", "-u", "alice", "-P", "old", t, f"/pub/a{i}")
        assert r.returncode == 0, r.stderr
    with SyncClient.connect("127.0.0.1", d.port, "authc") as c:   # as the superuser
        c.write(alice, [("name", ["alice"]), ("uid", ["501"]),
                        ("passwd", [hash_password("new")])])
    r = niutil("-create", "-t", "-u", "alice", "-P", "old", t, "/pub/b")
    assert r.returncode == 120, r.stderr        # NI_AUTHERROR (netinfo-tools §1.5)
    r = niutil("-create", "-t", "-u", "alice", "-P", "new", t, "/pub/b")
    assert r.returncode == 0, r.stderr
    r = niutil("-list", "-t", t, "/pub")
    assert r.stdout.split()[1::2] == ["a0", "a1", "a2", "b"], r.stdout
