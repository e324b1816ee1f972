"""Authentication of writes on a master (spec §10.1–§10.2): AUTH_UNIX with the inverted
password, checked against /users by uid; pure, and over the wire with niutil -u/-P."""

from __future__ import annotations

import warnings

import pytest

from netinfo.errors import NiError, Status
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.service import SUPERUSER, DirectoryService
from netinfo.storage.changes import Caller
from netinfo.wire.rpc import AuthUnix

from .conftest import needs_privilege_rule

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt
    except ImportError:  # Python 3.13+: DES crypt needs another provider
        crypt = None

needs_crypt = pytest.mark.skipif(crypt is None, reason="no crypt(3) in this Python")


def _svc() -> tuple[DirectoryService, int]:
    svc = DirectoryService()
    users, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER), [("name", ["users"])],
                               NI_INDEX_NULL)

    def user(*props):
        svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, users), list(props), NI_INDEX_NULL)
    hashed = crypt.crypt("secret", "ab") if crypt else "abXXXXXXXXXXX"
    user(("name", ["root"]), ("uid", ["0"]), ("passwd", [hashed]))
    user(("name", ["alice"]), ("uid", ["501"]), ("passwd", [hashed]))
    user(("name", ["nopw"]), ("uid", ["502"]), ("passwd", []))
    user(("name", ["emptypw"]), ("uid", ["503"]), ("passwd", [""]))
    user(("name", ["shadow"]), ("uid", ["504"]), ("authentication_authority", [";ShadowHash;"]))
    pub, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER),
                             [("name", ["pub"]), ("_writers", ["alice", "nopw"])], NI_INDEX_NULL)
    return svc, pub.object


def _as(uid: int, password: str) -> Caller:
    return Caller("192.0.2.9", 40000, credential=AuthUnix.for_password(password, uid))


def _create(svc, pub, caller):
    return svc.proc_create(caller, svc.proc_self(SUPERUSER, NiId(pub)), [("name", ["x"])],
                           NI_INDEX_NULL)


@needs_crypt
def test_right_password_names_the_user():
    svc, pub = _svc()
    _create(svc, pub, _as(501, "secret"))  # alice is listed in _writers


@needs_crypt
@pytest.mark.parametrize("uid,password,status", [
    (501, "wrong", Status.AUTHERROR),     # no fall-back to anonymous (§10.2 step 4)
    (999, "secret", Status.NOUSER),       # nobody has that uid
    (504, "secret", Status.AUTHERROR),    # ShadowHash: out of scope, never matches
])
def test_refusals(uid, password, status):
    svc, pub = _svc()
    with pytest.raises(NiError) as ei:
        _create(svc, pub, _as(uid, password))
    assert ei.value.status == status


@needs_crypt
def test_uid_0_with_its_password_is_the_superuser():
    svc, _ = _svc()
    svc.proc_write(_as(0, "secret"), svc.proc_root(SUPERUSER), [("master", ["h/t"])])
    with pytest.raises(NiError) as ei:
        svc.proc_write(_as(0, "nope"), svc.proc_root(SUPERUSER), [])
    assert ei.value.status == Status.AUTHERROR


def test_empty_password_fields_accept_any_password():
    svc, pub = _svc()
    _create(svc, pub, _as(502, "anything"))           # passwd = []
    with pytest.raises(NiError) as ei:                # emptypw is not in _writers
        _create(svc, pub, _as(503, "anything"))
    assert ei.value.status == Status.PERM             # authenticated, then refused


def test_reads_are_never_authenticated():
    svc, pub = _svc()
    svc.proc_read(_as(999, "x"), NiId(pub))


def test_no_users_directory_is_nouser():
    svc = DirectoryService()
    with pytest.raises(NiError) as ei:
        svc.proc_write(_as(0, "x"), svc.proc_root(SUPERUSER), [])
    assert ei.value.status == Status.NOUSER


@needs_crypt
@needs_privilege_rule
def test_niutil_with_user_and_password_over_the_wire(netinfod, run_tool):
    """niutil -u alice -P secret writes as alice; a wrong password exits 120 (§1.5)."""
    from netinfo.client.core import SyncClient
    d = netinfod("auth", "-m")
    with SyncClient.connect("127.0.0.1", d.port, "auth") as c:
        users, _ = c.create(c.root(), [("name", ["users"])])
        c.create(users, [("name", ["alice"]), ("uid", ["501"]),
                         ("passwd", [crypt.crypt("secret", "ab")])])
        c.create(c.root(), [("name", ["pub"]), ("_writers", ["alice"])])
    env = dict(__import__("os").environ, NETINFO_PRIVILEGED="0")

    def niutil(*args):
        return run_tool("niutil", *args, env=env, timeout=60)
    t = f"127.0.0.1:{d.port}/auth"
    r = niutil("-create", "-t", "-u", "alice", "-P", "secret", t, "/pub/made")
    assert r.returncode == 0, r.stderr
    r = niutil("-create", "-t", "-u", "alice", "-P", "wrong", t, "/pub/other")
    assert r.returncode == 120, r.stderr
    r = niutil("-create", "-t", t, "/pub/anon")  # anonymous, not listed in _writers
    assert r.returncode == 104, r.stderr
