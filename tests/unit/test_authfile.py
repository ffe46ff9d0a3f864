"""The auth file (``authfile.py``): tokens kept as hashes, mode 0600, revocation, reloads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest

from jobq.authfile import (
    AuthFile,
    AuthTable,
    CurveEntry,
    Watched,
    create_token,
    read,
    revoke,
    write,
)
from jobq.core.auth import TOKEN_PREFIX, Principal, token_hash
from jobq.core.errors import InvalidRequest, NotFound


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "auth.json"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_absent_file_is_empty(path: Path) -> None:
    data = read(path)
    assert (data.tokens, data.curve) == ([], [])


def test_create_token_makes_the_file_owner_only_and_keeps_only_the_hash(path: Path) -> None:
    old = os.umask(0o022)  # a usual umask would leave a new file world-readable
    try:
        secret, entry = create_token(path, "client", customers=["b", "a", "a"], name="ci")
    finally:
        os.umask(old)
    assert secret.startswith(TOKEN_PREFIX)
    assert mode(path) == 0o600
    text = path.read_text()
    assert secret not in text
    assert secret[len(TOKEN_PREFIX) :] not in text
    assert token_hash(secret) in text
    assert (entry.name, entry.role, entry.customers, entry.services) == ("ci", "client", ["a", "b"], [])
    assert entry.hash == token_hash(secret)
    assert entry.created > 0
    assert read(path).tokens == [entry]
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left behind


def test_a_rewrite_keeps_mode_0600(path: Path) -> None:
    create_token(path, "admin")
    path.chmod(0o644)
    create_token(path, "monitor")
    assert mode(path) == 0o600


def test_the_table_finds_a_principal_by_its_secret(path: Path) -> None:
    secret, _ = create_token(path, "worker", customers=["B"], services=["render"], name="gpu")
    table = AuthTable(read(path))
    assert table.principal(secret) == Principal(
        name="gpu", role="worker", customers=frozenset({"B"}), services=frozenset({"render"})
    )
    assert table.principal(secret + "x") is None
    assert table.principal(token_hash(secret)) is None  # the hash itself is no credential
    assert table.names == {"gpu"}


def test_names_are_generated_unique_and_a_taken_name_is_refused(path: Path) -> None:
    names = [create_token(path, "client")[1].name for _ in range(3)]
    names.append(create_token(path, "worker")[1].name)
    assert names == ["client-1", "client-2", "client-3", "worker-1"]
    with pytest.raises(InvalidRequest, match="'client-2' exists already"):
        create_token(path, "admin", name="client-2")
    revoke(path, "client-2")
    assert create_token(path, "client")[1].name == "client-2"  # a free name is reused


def test_a_curve_key_name_is_taken_too(path: Path) -> None:
    write(path, AuthFile(curve=[CurveEntry(name="gpu-7", role="worker", public_key="k" * 40)]))
    with pytest.raises(InvalidRequest, match="exists already"):
        create_token(path, "worker", name="gpu-7")


def test_an_unknown_role_is_refused_with_the_known_ones(path: Path) -> None:
    with pytest.raises(InvalidRequest, match="unknown role 'root': one of admin, client, worker, monitor"):
        create_token(path, "root")
    assert not path.exists()


def test_revoke_removes_a_token_or_a_curve_key_by_name(path: Path) -> None:
    kept, _ = create_token(path, "client", name="keep")
    gone, _ = create_token(path, "client", name="gone")
    data = read(path)
    data.curve.append(CurveEntry(name="box", role="worker", public_key="k" * 40))
    write(path, data)
    revoke(path, "gone")
    revoke(path, "box")
    table = AuthTable(read(path))
    assert table.principal(gone) is None
    assert table.principal(kept) is not None
    assert table.names == {"keep"}
    assert table.by_curve_key == {}
    with pytest.raises(NotFound, match="no token named 'gone'"):
        revoke(path, "gone")


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"tokens": [{"name": "x"}]}',
        b'{"tokens": [{"name": "x", "role": "root", "hash": "h"}]}',
    ],
)
def test_a_bad_file_raises_invalid_request_naming_it(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(InvalidRequest) as info:
        read(path)
    assert str(path) in info.value.message
    assert "not a jobq auth file" in info.value.message


def test_the_file_is_json_with_curve_keys(path: Path) -> None:
    entry = CurveEntry(name="gpu-7", role="worker", public_key="Z" * 40, services=["render"])
    write(path, AuthFile(curve=[entry]))
    assert msgspec.json.decode(path.read_bytes())["curve"][0]["public_key"] == "Z" * 40
    table = AuthTable(read(path))
    assert table.by_curve_key["Z" * 40] == Principal(
        name="gpu-7", role="worker", services=frozenset({"render"})
    )


def test_watched_notices_a_change(path: Path) -> None:
    first, _ = create_token(path, "client", name="first")
    watched = Watched(path, interval=0.0)
    assert watched.table.principal(first) is not None
    assert not watched.refresh()  # nothing changed
    second, _ = create_token(path, "client", name="second")
    assert watched.refresh()
    assert watched.table.principal(second) is not None
    revoke(path, "first")
    assert watched.refresh()
    assert watched.table.principal(first) is None


def test_watched_checks_at_most_every_interval(path: Path) -> None:
    watched = Watched(path, interval=3600.0)
    secret, _ = create_token(path, "client")
    assert not watched.refresh()  # not looked at again yet
    assert watched.table.principal(secret) is None
    assert watched.refresh(force=True)
    assert watched.table.principal(secret) is not None


def test_a_file_that_turns_bad_keeps_the_previous_table(path: Path) -> None:
    secret, _ = create_token(path, "client")
    watched = Watched(path, interval=0.0)
    path.write_text("{ broken")
    with pytest.raises(InvalidRequest):
        watched.refresh()
    assert watched.table.principal(secret) is not None


def test_a_file_that_disappears_leaves_no_token(path: Path) -> None:
    secret, _ = create_token(path, "client")
    watched = Watched(path, interval=0.0)
    path.unlink()
    assert watched.refresh()
    assert watched.table.principal(secret) is None
