"""Writes that survive a crash: files written whole or not at all, folders
replaced whole or not at all, and flushing files and folder entries to
stable storage (atomic checkpoints, packed models, manifests, features,
audio).

A rename is atomic, but it is only durable once the folder holding it is
flushed, and the renamed files' data once they are: :func:`fsync_tree` before
a rename, :func:`fsync_path` of the parent folder after it.
:func:`write_atomically` does both for one file, :func:`replace_folder` for
a folder built whole beside the one it replaces (the old one moved aside
until the new one has the name); :func:`recover_replaced_folder` undoes what
a swap killed half-way left.

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
import shutil
import time
from pathlib import Path
from typing import Callable

from semtts.errors import ConfigError

__all__ = ["ASIDE_PREFIX", "TRASH_PREFIX", "fsync_path", "fsync_tree", "write_atomically", "aside_folders",
           "remove_folder", "replace_folder", "recover_replaced_folder"]

_UNFLUSHABLE_FOLDER = (errno.EINVAL, errno.ENOTSUP, errno.EBADF)
"""What a file system that cannot flush folders answers (an I/O error is never ignored)."""
ASIDE_PREFIX = ".replaced+"
"""Prefix of a folder moved aside by :func:`replace_folder` until its new version has the name (a hidden
name, which no ``<name>*`` pattern, such as SpeechBrain's ``CKPT+*`` checkpoint listing, matches)."""
TRASH_PREFIX = ".trash+"
"""Prefix of a folder being deleted (:func:`remove_folder`): out of every listing before its files go."""
_EARLIER_ASIDE = ".old-"
"""``<name>.old-<pid>``: where :mod:`semtts.pack` moved a packed folder aside before it used
:func:`replace_folder`; still recognised, so that folders an earlier version left are recovered."""


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


def write_atomically(path: str | Path, write: Callable[[Path], object], sync_folder: bool = True) -> None:
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
    sync_folder : bool
        Flush the folder's entries after the rename, so that the new name
        survives a crash too (off for one file of many that a rerun
        recomputes when it is missing: a flush each is costly).
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
    if sync_folder:
        fsync_path(path.parent)  # the rename itself is durable once the folder's entries are


def aside_folders(target: str | Path, legacy: bool = False) -> list[Path]:
    """The folders an interrupted :func:`replace_folder` of ``target`` left
    aside (``.replaced+<name>``; with ``legacy``, also the
    ``<name>.old-<pid>`` of earlier versions of :mod:`semtts.pack`), oldest
    first.

    Arguments
    ---------
    target : str or Path
        The folder that was being replaced.
    legacy : bool
        Also the earlier packed-folder names.

    Returns
    -------
    list of Path
        Sibling folders of ``target``, by modification time.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / ".replaced+model").mkdir()
    >>> [p.name for p in aside_folders(folder / "model")]
    ['.replaced+model']
    """
    target = Path(target)
    if not target.name or not target.parent.is_dir():
        return []
    earlier = f"{target.name}{_EARLIER_ASIDE}"

    def is_aside(name: str) -> bool:
        return name == ASIDE_PREFIX + target.name or (
            legacy and name.startswith(earlier) and name[len(earlier):].isdigit())

    found = [p for p in target.parent.iterdir() if is_aside(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def remove_folder(folder: str | Path) -> None:
    """Delete a folder so that a kill half-way never leaves a partial folder
    under a name anything reads: it is renamed to ``.trash+<name>+<ns>``
    first (flushed), then deleted; :func:`recover_replaced_folder` (and the
    checkpointer's clean-up) delete trash an interrupted deletion left.

    Arguments
    ---------
    folder : str or Path
        The folder (a symbolic link is unlinked, never followed).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "old").mkdir(); _ = (folder / "old" / "weights.pt").write_text("old")
    >>> remove_folder(folder / "old")
    >>> list(folder.iterdir())
    []
    """
    folder = Path(folder)
    trash = folder.with_name(f"{TRASH_PREFIX}{folder.name}+{time.time_ns()}")
    os.rename(folder, trash)
    fsync_path(folder.parent)
    _delete(trash)


def _delete(path: Path, ignore_errors: bool = False) -> None:
    """Delete a folder, or unlink a symbolic link (never followed)."""
    if path.is_symlink():
        path.unlink(missing_ok=ignore_errors)
    else:
        shutil.rmtree(path, ignore_errors=ignore_errors)


def recover_replaced_folder(target: str | Path, legacy: bool = False) -> tuple[Path | None, list[Path]]:
    """Undo what a :func:`replace_folder` of ``target`` killed half-way
    left: when ``target`` is missing, the newest folder left aside gets its
    name back (it is whole: it was moved aside in one rename, and is renamed
    to trash before it is deleted); when ``target`` is a folder (the new
    version), the folders left aside are removed. Trash an interrupted
    :func:`remove_folder` of ``target`` left is deleted.

    Arguments
    ---------
    target : str or Path
        The folder whose replacement was interrupted (given back its old
        version if it is missing).
    legacy : bool
        Also recognise the ``<name>.old-<pid>`` folders of earlier versions
        of :mod:`semtts.pack` (:func:`aside_folders`).

    Returns
    -------
    restored : Path or None
        The folder renamed back to ``target`` (None: none was).
    removed : list of Path
        The folders left aside that were removed.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / ".replaced+model").mkdir()         # killed before the new folder had the name
    >>> restored, removed = recover_replaced_folder(folder / "model")
    >>> restored.name, removed, [p.name for p in folder.iterdir()]
    ('.replaced+model', [], ['model'])
    """
    target = Path(target)
    if target.name and target.parent.is_dir():
        for trash in target.parent.glob(f"{TRASH_PREFIX}{target.name}+*"):
            if trash.name[len(TRASH_PREFIX) + len(target.name) + 1:].isdigit():
                _delete(trash, ignore_errors=True)
    asides = aside_folders(target, legacy)
    restored = None
    if asides and not target.exists() and not target.is_symlink():
        restored = asides.pop()
        os.rename(restored, target)
        fsync_path(target.parent)
    removed = []
    if target.is_dir() and not target.is_symlink():  # the new (or restored) version has the name
        for aside in asides:
            remove_folder(aside)
            removed.append(aside)
    return restored, removed


def replace_folder(target: str | Path, new: str | Path) -> None:
    """Put the complete folder ``new`` at ``target`` by renames, so that a
    kill at any moment leaves the old folder or the new one there, or the
    old one aside (which :func:`recover_replaced_folder` gives its name
    back): ``new``'s files are flushed, the old folder is renamed to
    ``.replaced+<name>``, ``new`` to ``target``, the parent folder is flushed
    and the old folder removed (:func:`remove_folder`). A failed rename of
    ``new`` puts the old folder back at once (``new`` stays: the caller
    removes it). Folders an earlier interrupted swap left aside are dealt
    with first. ``new`` must lie in ``target``'s parent folder (a rename does
    not cross file systems), and ``target`` must not be a symbolic link
    (replace the folder it points to).

    Arguments
    ---------
    target : str or Path
        The folder to replace (or create).
    new : str or Path
        The complete new version, a sibling of ``target``.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "model").mkdir(); (folder / "new").mkdir()
    >>> _ = (folder / "new" / "weights.pt").write_text("new")
    >>> replace_folder(folder / "model", folder / "new")
    >>> [p.name for p in folder.iterdir()], [p.name for p in (folder / "model").iterdir()]
    (['model'], ['weights.pt'])
    """
    target, new = Path(target), Path(new)
    if target.is_symlink():
        raise ConfigError(f"{target}: a symbolic link; replace the folder it points to ({target.resolve()})")
    recover_replaced_folder(target)
    fsync_tree(new)  # the data is on disk before the rename makes it the folder
    aside = target.with_name(ASIDE_PREFIX + target.name)
    moved = target.exists()
    if moved:
        os.rename(target, aside)
        fsync_path(target.parent)
    try:
        os.rename(new, target)
    except BaseException:
        if moved and not target.exists():  # the old version keeps the name
            os.rename(aside, target)
        raise
    fsync_path(target.parent)
    if moved:
        remove_folder(aside)
