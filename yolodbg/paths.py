"""Checks on the paths a user gives: files read are regular files, files written can be written.

Every file yolodbg reads goes through :func:`regular_file` first. It looks with ``os.stat``
(which never opens the file), so a FIFO is refused instead of blocking the read forever,
``/dev/zero`` or ``/dev/urandom`` instead of filling the memory, and a folder with a message
that says so. Text inputs (recipe files, label files, snapshots) also have a size limit far
above any real file, so a mistaken path cannot exhaust the memory.

Every file yolodbg writes goes through :func:`writable_file` (or :func:`writable_folder`)
before the expensive work, so a path that cannot be written fails in a second, not after the
replay: a folder, a missing or read-only folder, ``/proc``. How the file is then written
(in place for devices, atomically for regular files) is :mod:`yolodbg.atomic`'s business.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from yolodbg.errors import InputError

MiB = 1 << 20
RECIPE_FILE_LIMIT = 1 * MiB  # a recipe TOML holds a few dozen keys
LABEL_FILE_LIMIT = 64 * MiB  # a YOLO label file: one short line per box
SNAPSHOT_LIMIT = 1024 * MiB  # a snapshot: a few lines per GT and recipe
VIRTUAL_FILESYSTEMS = ("/proc", "/sys", "/dev")  # kernel interfaces, never a place for a report
_FD_PATH = re.compile(r"^/(dev/(stdout|stderr|fd/\d+)|proc/(self|\d+)/fd/\d+)$")


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def kind(mode: int) -> str:
    """What a non-regular file is, in words a message can use."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def regular_file(
    path: str | os.PathLike,
    what: str,
    fix: str,
    error: type[InputError] = InputError,
    limit: int | None = None,
    whole: bool = False,
) -> Path:
    """``path`` as a :class:`Path` if it is a readable regular file (of at most ``limit`` bytes;
    ``whole``: a file read whole into memory, without a limit of its own, must fit in the RAM).

    Anything else raises ``error`` with one line naming the file, what it is and ``fix``:
    missing, a folder, a FIFO or device (never opened: reading a FIFO blocks, a device never
    ends), unreadable, or larger than ``limit``. Symbolic links are followed.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{p}: no such file; {fix}") from None
    except NotADirectoryError:
        raise error(f"{p}: no such file (a parent is not a folder); {fix}") from None
    except OSError as e:
        raise error(f"{p}: cannot be read ({e.strerror or type(e).__name__}); {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p}: {what} is {kind(st.st_mode)}, not a regular file; {fix}")
    if limit is None and whole:
        limit = physical_memory()  # read whole into memory: it must at least fit
    if limit is not None and st.st_size > limit:
        raise error(
            f"{p}: {what} is {_size(st.st_size)}, more than the {_size(limit)} such a file can hold; "
            f"check the path ({fix})"
        )
    if not os.access(p, os.R_OK):
        raise error(f"{p}: {what} is not readable (permission denied); {fix}")
    return p


def _virtual(p: Path) -> str | None:
    """The kernel file system ``p`` lies in (None: a real one; ``/dev/shm`` is a plain tmpfs)."""
    resolved = str(p.resolve(strict=False))
    if resolved.startswith("/dev/shm/"):
        return None
    return next(
        (root for root in VIRTUAL_FILESYSTEMS if resolved == root or resolved.startswith(root + "/")), None
    )


def writable_file(path: str | os.PathLike, option: str) -> Path:
    """Refuse, before any work, an output path that cannot take a file.

    Accepted: a new file in an existing writable folder (missing folders are created later,
    when a writable ancestor exists), an existing regular file that can be written (it is
    replaced atomically), and a character device such as ``/dev/null`` or ``/dev/stdout``
    or a FIFO with a reader (written through). Refused with one line naming the option and the fix: a folder, a
    socket or block device, anything under ``/proc`` or ``/sys``, a read-only or missing
    folder with no writable ancestor.
    """
    p = Path(path)
    fix = f"pass a file path in a writable folder to {option}"
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise InputError(f"{p}: {option}: a parent of this path is a file, not a folder; {fix}") from None
    except OSError as e:
        raise InputError(
            f"{p}: {option}: cannot be written ({e.strerror or type(e).__name__}); {fix}"
        ) from None
    if st is not None and (is_stream(st.st_mode) or is_descriptor_path(p)):
        if not os.access(p, os.W_OK):
            raise InputError(f"{p}: {option}: {kind(st.st_mode)} this process cannot write; {fix}")
        return p
    root = _virtual(p)
    if root is not None:
        raise InputError(f"{p}: {option} points into {root}, a kernel interface, not a file system; {fix}")
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p}: {option} is {kind(st.st_mode)}; {fix}")
        if not os.access(p, os.W_OK):
            raise InputError(f"{p}: {option}: the file is read-only; make it writable or {fix}")
    _writable_parent(p.parent, p, option, fix)
    return p


def is_descriptor_path(p: Path) -> bool:
    """``/dev/stdout``, ``/dev/fd/3``, ``/proc/self/fd/1``: an open descriptor of this process, written
    through as given even when it leads to a regular file (``> out.txt``), which is not replaced."""
    return bool(_FD_PATH.match(os.path.abspath(p))) and os.path.exists(p)


def own_descriptor(p: Path) -> int | None:
    """The descriptor number of ``/dev/stdout``, ``/dev/fd/N`` or ``/proc/self/fd/N`` (None otherwise):
    written through that very descriptor, the bytes keep their place among the command's other output."""
    name = os.path.abspath(p)
    m = _FD_PATH.match(name)
    if m is None:
        return None
    if name in ("/dev/stdout", "/dev/stderr"):
        return 1 if name == "/dev/stdout" else 2
    pid = m.group(3)
    if pid is not None and pid != "self" and int(pid) != os.getpid():
        return None  # another process's descriptor: opened as a path
    return int(name.rsplit("/", 1)[1])


def is_stream(mode: int) -> bool:
    """A character device (``/dev/null``, a terminal) or a FIFO (``>(jq .)``): written through, in place."""
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def writable_folder(path: str | os.PathLike, option: str) -> Path:
    """Refuse an output folder (``--plot DIR``) that is a file, under ``/proc``, or cannot be created."""
    p = Path(path)
    fix = f"pass a writable folder to {option}"
    root = _virtual(p)
    if root is not None:
        raise InputError(f"{p}: {option} points into {root}, a kernel interface, not a file system; {fix}")
    if p.exists() and not p.is_dir():
        raise InputError(f"{p}: {option} is a file, not a folder; {fix}")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(f"{p}: {option}: the folder is read-only; {fix}")
        return p
    _writable_parent(p.parent, p, option, fix)
    return p


def _writable_parent(parent: Path, p: Path, option: str, fix: str) -> None:
    """The nearest existing ancestor of ``p`` must be a folder this process can create entries in."""
    ancestor = parent if str(parent) else Path(".")
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{p}: {option}: {ancestor} is a file, not a folder; {fix}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{p}: {option}: the folder {ancestor} is read-only (permission denied); {fix}")


def check_outputs(
    *files: tuple[str, str | os.PathLike | None],
    folders: tuple[tuple[str, str | os.PathLike | None], ...] = (),
    inputs: tuple[str | os.PathLike | None, ...] = (),
) -> None:
    """Check every output a command was given, before its work: ``(option, path)`` pairs (None and
    ``-`` = not given / stdout). An output that is one of the command's ``inputs`` is refused too:
    ``--json preds.pt`` would replace the bundle by the report."""
    for option, path in files:
        if path is not None and str(path) != "-":
            p = writable_file(path, option)
            _not_an_input(p, option, inputs)
    for option, path in folders:
        if path is not None:
            writable_folder(path, option)


def _not_an_input(p: Path, option: str, inputs: tuple[str | os.PathLike | None, ...]) -> None:
    if not p.exists() or not p.is_file():
        return
    for source in inputs:
        if source is not None and Path(source).is_file() and os.path.samefile(p, source):
            raise InputError(
                f"{p}: {option} names an input of this command; pass another file name for {option}"
            )
