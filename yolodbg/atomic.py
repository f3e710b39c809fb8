"""File writes that never leave a half-written file and never replace what is not a regular file.

- A regular file (or a new one) is written to a temp file in the same folder, then renamed
  into place: a reader sees the old file or the new one, never a mix, and a failure (a full
  disk, Ctrl-C) leaves the old file as it was.
- A symbolic link is followed: its target is replaced as above and the link stays a link.
- A character device (``/dev/null``, a terminal) or a FIFO is written through, in place:
  renaming over it would replace the device node by a file. So is a descriptor path such as
  ``/dev/stdout``, whatever it leads to.
- Anything else (a folder, a socket, a block device) is refused with an :class:`InputError`.

``exclusive=True`` (``yolodbg snapshot`` without ``--update``) never replaces an existing file:
the temp file is hard-linked to the name, which fails if the name exists, so of two
concurrent writers exactly one wins and the other gets a one-line error.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from yolodbg.errors import InputError
from yolodbg.paths import is_descriptor_path, is_stream, kind, own_descriptor


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[IO[bytes]], None],
    *,
    exclusive: bool = False,
    exists_fix: str = "choose another name",
) -> Path:
    """Call ``write(f)`` on a binary file object for ``path`` and put the bytes there (see the module).

    ``exclusive``: fail with an :class:`InputError` ending in ``exists_fix`` if ``path`` exists.
    """
    path = Path(path)
    try:
        target = _target(path)
        if target is None:
            _write_through(path, write)
            return path
        _write_and_rename(target, write, exclusive, exists_fix)
    except OSError as e:  # a full disk, a read-only file system: the user's file is as it was
        raise InputError(
            f"{path}: cannot be written ({e.strerror or type(e).__name__}); nothing was replaced; "
            "free some space or pass another path"
        ) from e
    return path


def _write_and_rename(target: Path, write: Callable[[IO[bytes]], None], exclusive: bool, fix: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if exclusive:
            _link_new(tmp, target, fix)
        else:
            _replace_regular(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _target(path: Path) -> Path | None:
    """Where the bytes go: the file to replace (a symlink's target), or None to write through in place."""
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        st = None
    if st is not None and (is_stream(st.st_mode) or is_descriptor_path(path)):
        return None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: is {kind(st.st_mode)}; refusing to write over it; pass a file path")
    if path.is_symlink():
        return Path(os.path.realpath(path))  # replace the target, keep the link
    return path


def _write_through(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """A device or FIFO: open it for writing (a FIFO without a reader is refused, not waited for)."""
    with os.fdopen(_open_stream(path), "wb") as f:
        write(f)


def _open_stream(path: Path) -> int:
    """A descriptor open for writing on a device or FIFO, in blocking mode, never waiting to open."""
    own = own_descriptor(path)
    if own is not None:  # /dev/stdout: the same descriptor, so its offset is shared with print()
        sys.stdout.flush()
        sys.stderr.flush()
        return os.dup(own)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise InputError(f"{path}: a FIFO no process reads from; start the reader first") from None
        raise InputError(f"{path}: cannot be written ({e.strerror}); pass a writable file") from None
    os.set_blocking(fd, True)
    return fd


def _replace_regular(tmp: str, target: Path) -> None:
    """Rename ``tmp`` over ``target`` unless ``target`` turned into a non-regular file meanwhile."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{target}: is {kind(st.st_mode)} now; refusing to replace it; pass a file path")
    os.replace(tmp, target)


def _link_new(tmp: str, target: Path, fix: str) -> None:
    """Give ``tmp`` the name ``target`` only if no file has it (atomic: a hard link never replaces)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise InputError(f"{target}: exists already; nothing was replaced; {fix}") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        _exclusive_copy(tmp, target, fix)  # a file system without hard links: O_EXCL create, then copy


def _exclusive_copy(tmp: str, target: Path, fix: str) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise InputError(f"{target}: exists already; nothing was replaced; {fix}") from None
    try:
        with os.fdopen(fd, "wb") as out, open(tmp, "rb") as src:
            out.write(src.read())
    except BaseException:
        target.unlink(missing_ok=True)
        raise


class StreamedFile:
    """A text file written line by line (``scan --rows``), put in place by :meth:`close` as
    :func:`atomic_write` would: a temp file renamed over a regular file (or a symlink's target),
    written through for a device or FIFO. ``close(keep=False)`` drops a temp file: the old file stays.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.tmp: str | None = None
        target = _target(self.path)
        if target is None:
            fd = _open_stream(self.path)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        self.target = target
        self.f: IO[str] | None = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        assert self.f is not None
        self.f.write(text)

    def close(self, keep: bool = True) -> None:
        if self.f is None:
            return
        self.f.close()
        self.f = None
        if self.tmp is None:
            return
        try:
            if keep and self.target is not None:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self.tmp, 0o666 & ~umask)
                _replace_regular(self.tmp, self.target)
        finally:
            Path(self.tmp).unlink(missing_ok=True)
