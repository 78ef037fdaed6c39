"""Whose files these are: the rule every file and folder assetcache trusts must pass.

The ledger, its companions (``-wal``, ``-shm``, ``-journal``), the lock folder and its files
must be the user's own and writable by nobody else (see ``ledger/locks.py`` and
``ledger/sqlite_file.py`` for why). Opening a ledger runs this on every cache hit, so it imports
nothing but ``os`` and ``stat``.
"""

from __future__ import annotations

import os
import stat

from ._errors import LedgerError


def require_own(st: os.stat_result, path: str, what: str, private_mode: int) -> None:
    """Refuse a file or folder another user controls: theirs, or writable by group or others.

    Such a file may hold content planted by someone else (a ledger's rows, a lock's flock), so
    it is never used, whatever its content. ``private_mode`` is what to suggest instead.
    """
    euid = os.geteuid()
    if st.st_uid != euid:
        raise LedgerError(
            f"{what} {path} is owned by uid {st.st_uid}, not you (uid {euid}): "
            "move it aside or fix its owner/mode",
            path=path,
        )
    if st.st_mode & 0o022:
        raise LedgerError(
            f"{what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}), "
            f"who may have changed it: if you trust its content, make it private (mode "
            f"{private_mode:04o}); otherwise move it aside",
            path=path,
        )


def make_private_dirs(path: str) -> None:
    """Create ``path`` and each missing parent mode 0700, whatever the umask."""
    missing = []
    level = os.path.abspath(path)
    while not os.path.lexists(level):
        missing.append(level)
        parent = os.path.dirname(level)
        if parent == level:
            break
        level = parent
    for level in reversed(missing):
        # mkdir's mode is masked by the umask, which can only remove bits: 0700 stays private.
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:  # another process made it just now
            continue
