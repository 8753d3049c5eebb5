"""Writing a file so that readers see the old version or the new one, never half of one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a full quota: the same remedy


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object], *, durable: bool = True) -> Path:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    The temporary file sits in the same folder, so the rename never crosses file systems (which would copy).
    `durable` forces the bytes to the disk before the rename (fsync, ~20 ms for 14 MB here); without it a crashed
    process still leaves the old file or the new one, and ext4, XFS and btrfs flush a file renamed over another
    before the rename itself is committed.

    A write that fails leaves `path` as it was and no temporary file. One that fails for want of room raises an
    OSError (errno ENOSPC or EDQUOT, `filename` the path) that says so, whatever wrapped the system's error on its
    way up (torch.save, for one, reports a failed write as "RuntimeError: ... unexpected pos").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        full = _no_room(error)
        if full is not None:
            raise OSError(
                full.errno,
                f"the disk is full ({os.strerror(full.errno)}); nothing was replaced, the file there (if any) is "
                "unchanged. Free some space, then write it again",
                str(path),
            ) from error
        raise
    return path


def remove_leftovers(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that writes of `names` in `folder` left behind when their process was killed
    mid-write (SIGKILL, power loss: no `except` ran); returns them. Only for a folder no process is writing to."""
    leftovers = [path for name in names for path in Path(folder).glob(f".{name}.*.tmp") if path.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def _no_room(error: BaseException) -> OSError | None:
    # The OSError of a full disk, if it is `error` or what `error` was raised from or while handling.
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in NO_ROOM:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
