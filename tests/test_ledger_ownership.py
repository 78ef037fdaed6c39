"""A ledger, its SQLite companions or its lock folder that another user controls is refused.

Another user's (or a group/world-writable) ledger may hold planted rows, its -wal/-shm/-journal
would be replayed into it, and a lock folder they control lets them plant symlinks that O_CREAT
would follow, or hold the flocks and stall every upload. Tests that need another user's file
create it as root and chown it to nobody (CI runs as root).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from assetcache import AssetCache, LedgerError
from assetcache.ledger.locks import KeyLocks, file_lock
from assetcache.ledger.sqlite import Ledger

from .conftest import EMAIL, FAST_RETRY, TOKEN, Clock, FakeLuma, png

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="making another user's file needs root (CI runs as root)"
)


def cache_at(db: Path, luma: FakeLuma, clock: Clock) -> AssetCache:
    return AssetCache(
        token=TOKEN,
        db=db,
        base_url="https://api.test",
        transport=luma.transport,
        retry=FAST_RETRY,
        clock=clock,
    )


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Path:
    """A current ledger holding one live row for png() on EMAIL, "planted" by someone."""
    path = tmp_path / "ledger" / "ledger.db"
    Ledger(str(path)).close()
    shutil.rmtree(f"{path}.locks")  # made by the migration: someone else may make it first
    uploaded = clock.now - timedelta(hours=1)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO uploads (sha256, email, asset_ref, content_type, size, uploaded_at, "
            "expires_at, upload_id, media_url) VALUES (?, ?, 'planted', 'image/png', 1, ?, ?, "
            "'u', 'm')",
            (
                hashlib.sha256(png()).hexdigest(),
                EMAIL,
                uploaded.strftime("%Y-%m-%d %H:%M:%S.%f"),
                (uploaded + timedelta(days=29)).strftime("%Y-%m-%d %H:%M:%S.%f"),
            ),
        )
    conn.close()
    return path


def lock_file_for(locks_dir: Path, data: bytes) -> Path:
    """The lock file that resolving ``data`` on EMAIL takes."""
    key = f"{hashlib.sha256(data).hexdigest()}:{EMAIL}"
    return Path(KeyLocks(str(locks_dir)).slot(key).path)


def state(path: Path) -> tuple[int, int, bytes]:
    st = os.lstat(path)
    return st.st_mode, st.st_uid, path.read_bytes()


# -- the ledger file -------------------------------------------------------------------------


@needs_root
def test_a_ledger_owned_by_another_user_is_refused(
    ledger: Path, luma: FakeLuma, clock: Clock
) -> None:
    os.chown(ledger, NOBODY, NOBODY)
    ledger.chmod(0o666)
    before = state(ledger)
    with pytest.raises(LedgerError, match="owned by uid 65534, not you") as info:
        Ledger(str(ledger))
    assert info.value.path == str(ledger) and "move it aside" in str(info.value)
    with cache_at(ledger, luma, clock) as cache, pytest.raises(LedgerError):
        cache.lookup(png(), email=EMAIL)  # the planted row is never handed out
    assert state(ledger) == before


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_ledger_others_can_write_is_refused_not_tightened(
    ledger: Path, luma: FakeLuma, clock: Clock, mode: int
) -> None:
    ledger.chmod(mode)
    with pytest.raises(LedgerError, match="writable by other users") as info:
        Ledger(str(ledger))
    assert "if you trust its content, make it private (mode 0600)" in str(info.value)
    with cache_at(ledger, luma, clock) as cache, pytest.raises(LedgerError):
        cache.resolve(png(), email=EMAIL)
    assert stat.S_IMODE(ledger.stat().st_mode) == mode  # the user decides, not us
    assert luma.uploads == 0


@needs_root
@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_a_companion_file_of_another_user_is_refused(ledger: Path, suffix: str) -> None:
    companion = Path(f"{ledger}{suffix}")
    companion.write_bytes(b"")
    os.chown(companion, NOBODY, NOBODY)
    with pytest.raises(LedgerError, match="owned by uid 65534") as info:
        Ledger(str(ledger))
    assert info.value.path == str(companion)


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_companion_file_others_can_write_is_refused(ledger: Path, suffix: str) -> None:
    companion = Path(f"{ledger}{suffix}")
    companion.write_bytes(b"")
    companion.chmod(0o666)
    with pytest.raises(LedgerError, match="writable by other users"):
        Ledger(str(ledger))


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_a_companion_symlink_is_refused_and_not_followed(
    ledger: Path, tmp_path: Path, suffix: str
) -> None:
    victim = tmp_path / "victim"
    Path(f"{ledger}{suffix}").symlink_to(victim)
    with pytest.raises(LedgerError, match="not a regular file"):
        Ledger(str(ledger))
    assert not os.path.lexists(victim)


# -- the lock folder -------------------------------------------------------------------------


@needs_root
def test_a_lock_folder_owned_by_another_user_is_refused(
    ledger: Path, tmp_path: Path, luma: FakeLuma, clock: Clock
) -> None:
    locks = Path(f"{ledger}.locks")
    locks.mkdir()
    locks.chmod(0o777)
    os.chown(locks, NOBODY, NOBODY)
    victim = tmp_path / "victim"
    lock_file_for(locks, png("new")).symlink_to(victim)
    with cache_at(ledger, luma, clock) as cache:
        with pytest.raises(LedgerError, match="lock folder .* owned by uid 65534") as info:
            cache.resolve(png("new"), email=EMAIL)
        assert info.value.path == str(locks)
    assert not os.path.lexists(victim)
    assert luma.uploads == 0


def test_a_lock_folder_others_can_write_is_refused(
    ledger: Path, luma: FakeLuma, clock: Clock
) -> None:
    locks = Path(f"{ledger}.locks")
    locks.mkdir()
    locks.chmod(0o777)
    with cache_at(ledger, luma, clock) as cache, pytest.raises(LedgerError, match="writable"):
        cache.resolve(png("new"), email=EMAIL)
    assert luma.uploads == 0


def test_a_symlinked_lock_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "l.db.locks").symlink_to(elsewhere)
    held = KeyLocks(str(tmp_path / "l.db.locks")).hold("k")
    with pytest.raises(LedgerError, match="symbolic link"), held:
        pass
    assert os.listdir(elsewhere) == []


@pytest.mark.parametrize("via", ["key", "migration"])
def test_a_symlink_planted_in_the_lock_folder_is_not_followed(tmp_path: Path, via: str) -> None:
    locks = tmp_path / "l.db.locks"
    locks.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    if via == "key":
        key_locks = KeyLocks(str(locks))
        planted = Path(key_locks.slot("k").path)
        held = key_locks.hold("k")
    else:
        planted = locks / "migrate.lock"
        held = file_lock(str(planted))
    planted.symlink_to(victim)
    with pytest.raises(LedgerError, match="symbolic link or not a regular file"), held:
        pass
    assert not os.path.lexists(victim)


def test_a_fifo_planted_in_the_lock_folder_is_refused(tmp_path: Path) -> None:
    locks = tmp_path / "l.db.locks"
    locks.mkdir(mode=0o700)
    key_locks = KeyLocks(str(locks))
    os.mkfifo(key_locks.slot("k").path, 0o600)
    with pytest.raises(LedgerError, match="not a regular file"), key_locks.hold("k"):
        pass


def test_a_planted_migration_lock_refuses_to_open_a_new_ledger(tmp_path: Path) -> None:
    locks = tmp_path / "l.db.locks"
    locks.mkdir(mode=0o700)
    (locks / "migrate.lock").symlink_to(tmp_path / "victim")
    with pytest.raises(LedgerError, match="symbolic link"):
        Ledger(str(tmp_path / "l.db"))
    assert not os.path.lexists(tmp_path / "victim")


@needs_root
def test_a_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    locks = tmp_path / "l.db.locks"
    locks.mkdir(mode=0o700)
    key_locks = KeyLocks(str(locks))
    planted = Path(key_locks.slot("k").path)
    planted.write_bytes(b"")
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(LedgerError, match="owned by uid 65534"), key_locks.hold("k"):
        pass


@needs_root
def test_a_stranger_holding_the_flocks_cannot_stall_uploads(
    ledger: Path, luma: FakeLuma, clock: Clock
) -> None:
    # A stranger made the lock folder first (a shared folder like /tmp is refused outright, see
    # below; here it was planted however it was) and locks the lock file our upload needs, for
    # as long as they like.
    locks = Path(f"{ledger}.locks")
    locks.mkdir(mode=0o755)
    os.chown(locks, NOBODY, NOBODY)
    stripe = lock_file_for(locks, png("new"))
    stripe.write_bytes(b"")
    os.chown(stripe, NOBODY, NOBODY)
    stranger = os.open(stripe, os.O_RDONLY)
    fcntl.flock(stranger, fcntl.LOCK_EX)
    outcome: list[BaseException | str] = []
    cache = cache_at(ledger, luma, clock)

    def resolve() -> None:
        try:
            outcome.append(cache.resolve(png("new"), email=EMAIL).asset_ref)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(10)
    os.close(stranger)  # lets a stalled worker finish on a regression
    worker.join(10)
    cache.close()
    assert outcome, "resolve waited on a stranger's flock"
    assert isinstance(outcome[0], LedgerError) and "owned by uid 65534" in str(outcome[0])
    assert luma.uploads == 0


# -- creating folders ------------------------------------------------------------------------


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_000")
def test_missing_folders_are_created_private_under_umask_000(tmp_path: Path) -> None:
    Ledger(str(tmp_path / "a" / "b" / "c" / "l.db")).close()  # a new ledger: migrates
    for level in ("a", "a/b", "a/b/c", "a/b/c/l.db.locks"):
        assert stat.S_IMODE((tmp_path / level).stat().st_mode) == 0o700, level
    assert stat.S_IMODE((tmp_path / "a/b/c/l.db").stat().st_mode) == 0o600
    with KeyLocks(str(tmp_path / "x" / "y" / "z.locks")).hold("k"):
        pass
    for level in ("x", "x/y", "x/y/z.locks"):
        assert stat.S_IMODE((tmp_path / level).stat().st_mode) == 0o700, level
    (lock,) = (tmp_path / "x/y/z.locks").iterdir()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o757])
def test_a_ledger_in_a_folder_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(LedgerError, match="a folder other users may write to"):
        AssetCache(db=shared / "l.db").lookup(b"\x89PNG\r\n\x1a\nx", email="me@example.com")
    assert not (shared / "l.db").exists()


def test_a_ledger_in_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(LedgerError, match="other users may write to"):
        AssetCache(db=theirs / "l.db").assets()


def test_a_folder_writable_by_your_own_group_is_accepted(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    ours.mkdir()
    ours.chmod(0o775)  # umask 002 with a user private group
    os.chown(ours, os.geteuid(), os.getegid())
    assert AssetCache(db=ours / "l.db").assets() == []
