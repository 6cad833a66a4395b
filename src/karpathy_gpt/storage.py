"""Writing to disk when the disk says no: a full disk, a quota, a read-only file system or a
folder this user may not write become one ``StorageError`` line that names the path, how much
was needed (when known) and what to do. Every writer removes its own temporary files before the
error leaves it, and replaces nothing it had not finished."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import KgptError

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


class StorageError(KgptError):
    """A file could not be written for want of room or rights; the message says what to do."""

    status = 507  # Insufficient Storage


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_ROOM | REFUSED


@contextmanager
def writing(folder: Path, what: str, fix: str, needed: int | None = None) -> Iterator[None]:
    """Inside the block, an OSError of a full or unwritable disk becomes a StorageError about
    writing ``what`` under ``folder``; ``fix`` is the setting (or option) that moves it."""
    try:
        yield
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        raise StorageError(describe(exc, folder, what, fix, needed)) from exc


def describe(exc: OSError, folder: Path, what: str, fix: str, needed: int | None = None) -> str:
    """One line for a storage OSError: ``what`` could not be written to ``folder``, and what
    to do."""
    where = folder
    if exc.errno in NO_ROOM:
        free = free_bytes(where)
        room = f"{_size(free)} free" if free is not None else "no room"
        need = f"it needs about {_size(needed)}, " if needed else ""
        return (
            f"cannot write {what} to {where}: no space left on the device ({need}{room}); free "
            f"some space there, or set {fix} to a folder on a disk with room"
        )
    if exc.errno == errno.EROFS:
        reason = "the file system is read-only"
    else:
        reason = "permission denied"
    return f"cannot write {what} to {where}: {reason}; set {fix} to a folder this user can write"


def free_bytes(path: Path) -> int | None:
    """Free space on the disk holding ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.0f} MB"
    return f"{n / 1024:.0f} KB"
