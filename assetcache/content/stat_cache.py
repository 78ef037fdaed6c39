"""The stat cache: which sha256 a path holds, without reading the file again while it is unchanged.

Everything about it lives here, so that a path through ``resolve`` goes cache -> stat cache ->
content (``sniff``) -> ledger and never climbs back:

1. **The rule** (``cached_sha256``, ``unchanged``). The sha256 recorded for a path is trusted
   when the file's device, inode, size, mtime and ctime are unchanged since it was hashed and
   neither stamp is within ``RACY_WINDOW_NS`` of that moment (git's racy-clean rule).
2. **Hashing a file it does not know** (``hash_file``): read, checked and hashed by ``sniff``,
   then recorded with the stat taken before reading. Recording is best effort: a full disk or
   a read-only ledger must not turn a resolve into a failure, and a lost row only costs
   hashing the file again next time.
3. **Its rows** (``FileStat``, ``read_row``, ``write_row``): the ``file_stats`` table's columns
   and statements, run on a connection the ledger file hands in, inside its transactions.

The stat cache sits below the ledger and never imports it: it is given ``StatRows``, whatever
keeps this machine's rows (a ledger engine, or the ledger file itself), or a connection. The
rows are per machine: a shared ledger keeps them in this machine's file, never on the server.

The console script's hit imports this module (through ``_hit``), so it imports nothing a hit
does not need: no ``typing``, ``dataclasses`` or ``logging`` (tests/test_entry.py pins it), and
``sniff`` only when a file must be read.
"""

from __future__ import annotations

import os
import stat as stat_module
import time

from .._errors import LedgerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any, Final, Protocol

    from .sniff import Content

    class StatRows(Protocol):
        """Where this machine's stat cache rows are kept: a ledger engine, or its file."""

        def file_stat(self, path: str) -> FileStat | None: ...
        def put_file_stat(self, entry: FileStat) -> None: ...


#: A file whose mtime or ctime is this close to when it was hashed is hashed again next time:
#: a same-size rewrite within one filesystem timestamp tick would not change its stat. Two
#: seconds covers the coarsest common ticks (1 s: ext4 with 128-byte inodes, SMB, some NFS;
#: 2 s: FAT mtime). ctime matters as much as mtime: ``cp -p``, ``tar``, ``rsync -t`` and
#: ``shutil.copy2`` restore the old mtime, leaving ctime as the only trace of the rewrite.
RACY_WINDOW_NS: Final = 2_000_000_000

# The table and its statements. ``_schema`` names them beside the ledger's other SQL (for the
# models and the schema's tests); they are defined here, as the ledger is above this module.
FILE_STATS: Final = "file_stats"
FILE_STAT_COLUMNS: Final = (
    "path",
    "device",
    "inode",
    "size",
    "mtime_ns",
    "ctime_ns",
    "sha256",
    "recorded_ns",
)
SELECT_STAT: Final = f"SELECT {', '.join(FILE_STAT_COLUMNS)} FROM {FILE_STATS} WHERE path = :path"
UPSERT_STAT: Final = (
    f"INSERT INTO {FILE_STATS} ({', '.join(FILE_STAT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in FILE_STAT_COLUMNS)}) "
    "ON CONFLICT (path) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in FILE_STAT_COLUMNS[1:])
)


# -- 1. the rule -----------------------------------------------------------------------------


def recordable_path(path: str | os.PathLike[str] | os.PathLike[bytes]) -> str | None:
    """The absolute path as ledger text, or None when it is not valid UTF-8 (not recorded)."""
    try:
        absolute = os.path.abspath(os.fsdecode(path))
        absolute.encode("utf-8")
    except (UnicodeError, ValueError):
        return None
    return absolute


def cached_sha256(
    rows: StatRows, path: str | os.PathLike[str] | os.PathLike[bytes], recorded: str
) -> str | None:
    """The sha256 the stat cache holds for an unchanged regular file, else None (hash it).

    ``recorded`` is ``recordable_path(path)``: the row's key."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None  # reading it will say what is wrong
    if not stat_module.S_ISREG(st.st_mode):
        return None
    entry = rows.file_stat(recorded)
    if entry is None or not unchanged(entry, st):
        return None
    return entry.sha256


def unchanged(entry: FileStat, st: os.stat_result) -> bool:
    """Whether ``st`` is the file ``entry`` recorded, safely older than its hashing."""
    inode = to_sqlite_int(st.st_ino)
    return (
        entry.device == st.st_dev
        and entry.inode == inode
        and entry.size == st.st_size
        and entry.mtime_ns == st.st_mtime_ns
        and entry.ctime_ns == st.st_ctime_ns
        # Racy-clean: a stamp within one tick of the hashing could hide a later rewrite.
        and max(st.st_mtime_ns, st.st_ctime_ns) + RACY_WINDOW_NS <= entry.recorded_ns
    )


# -- 2. hashing a file it does not know ------------------------------------------------------


def hash_file(
    rows: StatRows, path: str | os.PathLike[str] | os.PathLike[bytes], recorded: str | None
) -> Content:
    """Read, check and hash the file, and record its stat under ``recorded`` (unless None: a
    path that is not UTF-8 is never recorded). Raises InvalidImageError as ``sniff`` does."""
    from .sniff import load_file  # only a file to read pays for it: a hit never reads one

    hashed_at = time.time_ns()  # before reading: a write during the read is not trusted
    content, st = load_file(path)
    if recorded is not None:
        remember(rows, FileStat.of(recorded, st, content.sha256, hashed_at))
    return content


def remember(rows: StatRows, entry: FileStat) -> None:
    """Record a hashed file's row; a failure is only logged (the row is a hint)."""
    try:
        rows.put_file_stat(entry)
    except LedgerError as exc:  # a hint lost only costs hashing the file again next time
        import logging  # only a lost hint pays for it: a hit never imports logging

        logging.getLogger("assetcache").warning("%s: %s", "stat cache not updated", exc)


# -- 3. its rows -----------------------------------------------------------------------------


class FileStat:
    """A file's identity at the moment it was hashed: one row of the stat cache.

    Immutable, compared by value. A plain class, not a dataclass: it is read on every hit.
    """

    __slots__ = ("ctime_ns", "device", "inode", "mtime_ns", "path", "recorded_ns", "sha256", "size")
    _FIELDS: Final = FILE_STAT_COLUMNS

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str
    recorded_ns: int

    def __init__(
        self,
        path: str,
        device: int,
        inode: int,
        size: int,
        mtime_ns: int,
        ctime_ns: int,
        sha256: str,
        recorded_ns: int,
    ) -> None:
        # Unrolled (this runs on every hit), through object.__setattr__ as it is immutable.
        init = object.__setattr__
        init(self, "path", path)
        init(self, "device", device)
        init(self, "inode", inode)
        init(self, "size", size)
        init(self, "mtime_ns", mtime_ns)
        init(self, "ctime_ns", ctime_ns)
        init(self, "sha256", sha256)
        init(self, "recorded_ns", recorded_ns)

    @classmethod
    def of(cls, path: str, st: os.stat_result, sha256: str, recorded_ns: int) -> FileStat:
        """The row for a file with stat ``st``, hashed to ``sha256`` at ``recorded_ns``."""
        return cls(
            path=path,
            device=st.st_dev,
            inode=st.st_ino,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            sha256=sha256,
            recorded_ns=recorded_ns,
        )

    def values(self) -> tuple[Any, ...]:
        """The fields in column order (``FILE_STAT_COLUMNS``), the inode as stored."""
        inode = to_sqlite_int(self.inode)  # unsigned 64-bit on some filesystems
        values = (self.path, self.device, inode, self.size, self.mtime_ns, self.ctime_ns)
        return (*values, self.sha256, self.recorded_ns)

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, FileStat)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"FileStat({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"FileStat is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"FileStat is immutable: cannot delete {name!r}")


def read_row(conn: sqlite3.Connection, path: str) -> FileStat | None:
    """The row recorded for ``path`` (absolute, as ``recordable_path`` gives it), or None."""
    row = conn.execute(SELECT_STAT, {"path": path}).fetchone()
    return None if row is None else FileStat(*row)


def write_row(conn: sqlite3.Connection, entry: FileStat) -> None:
    """Insert or replace the row of ``entry.path``; the caller holds the write transaction."""
    params = dict(zip(FILE_STAT_COLUMNS, entry.values(), strict=True))
    conn.execute(UPSERT_STAT, params)


def to_sqlite_int(value: int) -> int:
    """An unsigned 64-bit number (an inode) as the signed integer SQLite can store."""
    return value - (1 << 64) if value >= 1 << 63 else value
