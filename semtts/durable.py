"""Flushing files and folder entries to stable storage, for writes that must
survive a crash (atomic checkpoints, packed models).

A rename is atomic, but it is only durable once the folder holding it is
flushed, and the renamed files' data once they are: :func:`fsync_tree` before
a rename, :func:`fsync_path` of the parent folder after it.

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> (folder / "a.txt").write_text("x")
1
>>> fsync_tree(folder)
>>> fsync_path(folder)
"""

import os
from pathlib import Path

__all__ = ["fsync_path", "fsync_tree"]


def fsync_path(path: str | Path) -> None:
    """Flush a file, or a folder's entries, to stable storage.

    Arguments
    ---------
    path : str or Path
        A file or a folder (a folder that cannot be opened for flushing, as on
        some platforms, is left alone).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except IsADirectoryError:  # Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        if not os.path.isdir(path):  # some file systems refuse to flush folders, never files
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
