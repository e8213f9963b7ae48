"""Writes that survive a crash: files written whole or not at all, and
flushing files and folder entries to stable storage (atomic checkpoints,
packed models, manifests, features, audio).

A rename is atomic, but it is only durable once the folder holding it is
flushed, and the renamed files' data once they are: :func:`fsync_tree` before
a rename, :func:`fsync_path` of the parent folder after it.
:func:`write_atomically` does both for one file.

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> (folder / "a.txt").write_text("x")
1
>>> fsync_tree(folder)
>>> fsync_path(folder)
>>> write_atomically(folder / "b.txt", lambda tmp: tmp.write_text("whole"))
>>> sorted(p.name for p in folder.iterdir()), (folder / "b.txt").read_text()
(['a.txt', 'b.txt'], 'whole')
"""

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Callable

__all__ = ["fsync_path", "fsync_tree", "write_atomically"]

_UNFLUSHABLE_FOLDER = (errno.EINVAL, errno.ENOTSUP, errno.EBADF)
"""What a file system that cannot flush folders answers (an I/O error is never ignored)."""


def fsync_path(path: str | Path) -> None:
    """Flush a file, or a folder's entries, to stable storage.

    Arguments
    ---------
    path : str or Path
        A file or a folder (a folder that cannot be opened for flushing, as on
        some platforms, is left alone).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if not (os.path.isdir(path) and err.errno in _UNFLUSHABLE_FOLDER):
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """Flush every file under ``folder``, then the folders themselves.

    Arguments
    ---------
    folder : str or Path
        The folder.
    """
    for root, _, files in os.walk(folder):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(root)


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` whole or not at all: ``write(tmp)`` fills a hidden
    temporary file beside it, which is flushed to disk and renamed onto
    ``path``. A failed or interrupted write leaves an earlier file at
    ``path`` as it was, and no temporary file behind (after a kill -9: a
    hidden ``.<name>.tmp-*`` file, which no ``*.<suffix>`` pattern matches);
    parent folders are created. ``write`` must not choose a format by the
    temporary name's suffix.

    Arguments
    ---------
    path : str or Path
        The destination.
    write : callable
        ``write(tmp_path)`` writes the content to ``tmp_path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write(tmp)
        fsync_path(tmp)  # the data is on disk before the rename makes it the file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
