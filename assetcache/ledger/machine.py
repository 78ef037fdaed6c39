"""This machine's SQLite file for a shared ledger, and the files older versions named otherwise.

``MachineFile`` is that file: an SQLite ledger file (its stat cache and lock folder) that also
mirrors the rows this machine read from the shared ledger and spools the uploads the shared
ledger could not record (``postgres.py`` says how both are used).

``sqlite_file.machine_file`` names the file (stat cache, mirror, spool, lock folder) for the
database a URL connects to (``pgurl.identity``): every spelling of one database shares it.
Earlier versions named it by a digest of the URL as written (password masked), so each
spelling had its own file; opening a shared ledger adopts the file its own URL had then:

- **No file for the database yet**: the old one is renamed to the new name, with its lock
  folder. Only when nobody has it open: SQLite switches a file out of WAL mode only for its
  sole connection, so the switch proves it (and leaves no ``-wal`` or ``-shm`` to move along),
  and an exclusive transaction is held over the rename, so a process opening the old name
  meanwhile waits, then finds the file moved (SQLite refuses to write a moved file: an error,
  never a torn ledger). A hard link then an unlink, not ``rename``: a file another process
  created under the new name meanwhile is never replaced.
- **The database has a file already** (another spelling adopted its own first): the uploads
  waiting in the old file's spool are moved into it, the rest is a cache, and the old file and
  lock folder are removed, again only when nobody uses them.
- **Someone uses the old file** (an older assetcache still running): it is left alone, and
  adopted or emptied by a later open.

Every step runs under one flock in the cache dir (concurrent openers queue, and the second
finds the work done), and the old file is opened as any ledger is: one another user controls,
or that is not a ledger, is left where it is (a warning on the ``assetcache`` logger).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import stat
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .. import _rules
from .._asset import Asset
from .._errors import LedgerError
from . import schema
from .base import upload_params
from .pgurl import ConninfoError, parse, shown
from .sqlite import Ledger
from .sqlite_file import credible_bounds, legacy_machine_file, machine_file

log = logging.getLogger("assetcache")

#: Spooled uploads moved per transaction from an old file.
_SPOOL_BATCH = 500
_COMPANIONS = ("-wal", "-shm", "-journal")


class MachineFile(Ledger):
    """This machine's SQLite file for a shared ledger: a ledger file (its stat cache and lock
    folder, as any SQLite ledger's) that also mirrors what the shared ledger answered
    (``mirror``, ``mirrored``) and spools the uploads it could not record (``spooled`` and the
    rest), for ``postgres.PostgresLedger``."""

    # -- the mirror ----------------------------------------------------------------------

    def mirrored(self, sha256: str, email: str, *, now: datetime) -> Asset | None:
        """The newest credible, unrevoked row of a key this machine knows (``mirrored_row``:
        read recently enough, or spooled)."""
        return self._one(self.mirrored_row(sha256, email, now=now))

    def mirror(
        self,
        sha256: str,
        email: str,
        asset: Asset | None,
        *,
        seen_at: datetime,
        seen_ns: int,
    ) -> None:
        """What the shared ledger answered for a key, by a read that began at ``seen_at`` by
        the wall clock and ``seen_ns`` by the machine clock (``_rules.machine_ns``), replaces
        what the mirror held of it, unless the mirror holds a read that began later by
        the machine clock (a revoked row is kept that way, as news outranking any read that
        began before it; so are the rows of a read that found nothing, as tombstones). The wall
        clock orders nothing: it may have been set since."""
        key = {"sha256": sha256, "email": email}
        stamps = {"mirrored_at": schema.to_db_time(seen_at), "mirrored_ns": seen_ns}
        with self.write() as conn:
            news = {**key, "seen_ns": seen_ns, "now_ns": _rules.machine_ns()}
            if conn.execute(schema.SELECT_MIRROR_NEWS, news).fetchone():
                return  # the mirror already holds a later read of this key
            if asset is None:  # nothing to answer: what the mirror held marks this read
                conn.execute(schema.MARK_MIRRORED, {**key, **stamps})
                return
            row = upload_params(asset, time=schema.to_db_time)
            conn.execute(schema.DELETE_MIRRORED, key)
            conn.execute(schema.INSERT_MIRRORED, {**row, **stamps})

    # -- the spool -----------------------------------------------------------------------

    def spooled(self, limit: int, *, after: int = 0) -> list[Asset]:
        """The oldest uploads waiting to be recorded in the shared ledger (after the row id
        ``after``)."""
        with self._reading() as conn:
            params = {"limit": limit, "after": after}
            return self._decoded(conn.execute(schema.SELECT_SPOOLED, params))

    def unspool(self, assets: Iterable[Asset]) -> int:
        """These spooled uploads are recorded in the shared ledger now, as they were read.
        Returns how many left the spool (a row another process merged, the
        mirror took over, or a forget revoked since it was read stays: see UNSPOOL)."""
        with self.write() as conn:
            done = conn.executemany(schema.UNSPOOL, [_spooled_key(a) for a in assets])
            return max(done.rowcount, 0)

    def spooled_newest(self, sha256: str, email: str, *, now: datetime) -> Asset | None:
        """The spool's newest credible, unrevoked upload of a key (as ``newest``), to weigh
        against the shared ledger's answer."""
        params = {"sha256": sha256, "email": email, **credible_bounds(now)}
        with self._reading() as conn:
            return self._one(conn.execute(schema.SELECT_SPOOLED_NEWEST, params).fetchone())

    def spooled_assets(
        self,
        *,
        email: str | None = None,
        live_after: datetime | None = None,
        expires_until: datetime | None = None,
    ) -> list[Asset]:
        """The spooled uploads ``assets`` would list."""
        return self._listed(
            email=email, live_after=live_after, expires_until=expires_until, spooled=True
        )

    def revoke_spooled(
        self, *, sha256: str | None, asset_ref: str | None, email: str | None, at: datetime
    ) -> list[Asset]:
        """``revoke`` among the spooled uploads (the merge then carries the revocation to the
        shared ledger)."""
        return self._revoked(sha256, asset_ref, email, at, spooled=True)


def _spooled_key(asset: Asset) -> dict[str, Any]:
    """What identifies a spooled upload as it was read (see ``schema.UNSPOOL``)."""
    revoked = None if asset.revoked_at is None else schema.to_db_time(asset.revoked_at)
    return {
        "id": asset.id,
        "asset_ref": asset.asset_ref,
        "sha256": asset.sha256,
        "email": asset.email,
        "uploaded_at": schema.to_db_time(asset.uploaded_at),
        "revoked_at": revoked,
    }


def open_machine_file(url: str) -> MachineFile:
    """This machine's file for the shared ledger at ``url``, adopting the file an older
    version kept for the same URL; LedgerError for a URL no libpq can read."""
    try:
        parse(url, lenient=True)
    except ConninfoError as exc:
        if exc.always:  # libpq would refuse it too, or psycopg fail to decode it
            raise LedgerError(f"ledger {shown(url)}: {exc}", path=shown(url)) from None
    target = machine_file(url)
    legacy = legacy_machine_file(url)
    if legacy != target and os.path.lexists(legacy):
        try:
            _retire(legacy, target)
        except (LedgerError, OSError, sqlite3.Error) as exc:
            log.warning(
                "this machine's file for ledger %s from an older assetcache, %s, was left "
                "where it is (%s); its stat cache and mirror are not used, and uploads waiting "
                "in its spool are merged once it can be moved",
                shown(url),
                legacy,
                exc,
            )
    return MachineFile(target)


def _retire(legacy: str, target: str) -> None:
    from .locks import file_lock

    with file_lock(os.path.join(os.path.dirname(target), "adopt.lock")):
        if not os.path.lexists(legacy):
            return  # another process adopted it meanwhile
        MachineFile(legacy).close()  # every check a ledger gets (ownership, kind, schema)
        if not os.path.lexists(target) and _rename_unused(legacy, target):
            return
        if os.path.lexists(target):
            _move_spool(legacy, target)
            _remove_unused(legacy)


class _Unused:
    """An exclusive transaction on a ledger file nobody else has open, out of WAL mode (so
    nothing but the file itself holds its content); ``None`` when it is in use."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, timeout=0, isolation_level=None)

    def __enter__(self) -> sqlite3.Connection | None:
        try:
            # Refused ("database is locked") while any other connection has the file open.
            if self.conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] != "delete":
                return None
            self.conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            return None
        if any(os.path.lexists(self.path + suffix) for suffix in _COMPANIONS):
            return None
        return self.conn

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        self.conn.close()


def _rename_unused(legacy: str, target: str) -> bool:
    """Give ``legacy`` (and its lock folder) the name ``target``; False if it is in use or
    ``target`` appeared meanwhile."""
    with _Unused(legacy) as conn:
        if conn is None:
            return False
        locks, new_locks = legacy + ".locks", target + ".locks"
        if os.path.isdir(locks) and not os.path.lexists(new_locks):
            # First: nobody uses the new folder before the new file exists. Lock files hold
            # no state (an flock lives with its descriptor), and one still held keeps its
            # inode in the moved folder, so holders and new takers still exclude each other.
            os.rename(locks, new_locks)
        try:
            os.link(legacy, target)  # never replaces a file created meanwhile
        except FileExistsError:
            return False
        os.unlink(legacy)
    return True


def _move_spool(legacy: str, target: str) -> None:
    """Uploads spooled in ``legacy`` into ``target``'s spool (recording is idempotent)."""
    old, new = MachineFile(legacy), MachineFile(target)
    try:
        while batch := old.spooled(_SPOOL_BATCH):
            for asset in batch:
                new.record(asset)
            old.unspool(batch)
    finally:
        old.close()
        new.close()


def _remove_unused(legacy: str) -> None:
    with _Unused(legacy) as conn:
        if conn is None:
            return
        if conn.execute("SELECT 1 FROM uploads WHERE mirrored_at IS NULL LIMIT 1").fetchone():
            return  # spooled since the move: kept for the next open
        os.unlink(legacy)
    _remove_lock_folder(legacy + ".locks")


def _remove_lock_folder(folder: str) -> None:
    """Remove an old lock folder if it is ours and no lock in it is held (each file is
    unlinked while this process holds its flock); otherwise leave it."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, flags)
        except OSError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except OSError as exc:  # held (EWOULDBLOCK) or gone: leave the folder
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.ENOENT):
                raise
            return
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(folder)
