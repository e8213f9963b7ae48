"""Tests of semtts.durable's folder swap: a folder replaced by renames is the
old one or the new one after a failure or a kill, never a mix or nothing,
and what an interrupted swap left is restored or removed."""

import os
from pathlib import Path

import pytest

from semtts.durable import (ASIDE_PREFIX, aside_folders, recover_replaced_folder, remove_folder, replace_folder,
                            write_atomically)
from semtts.errors import ConfigError


def make_folder(path: Path, content: str) -> Path:
    path.mkdir()
    (path / "file.txt").write_text(content)
    return path


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_folder_is_put_in_place_or_replaced_whole(tmp_path):
    target = tmp_path / "model"
    replace_folder(target, make_folder(tmp_path / "first", "1"))
    assert names(tmp_path) == ["model"] and (target / "file.txt").read_text() == "1"
    replace_folder(target, make_folder(tmp_path / "second", "2"))
    assert names(tmp_path) == ["model"] and names(target) == ["file.txt"]
    assert (target / "file.txt").read_text() == "2"


def test_a_failed_rename_of_the_new_folder_leaves_the_old_one_in_place(tmp_path, monkeypatch):
    target = make_folder(tmp_path / "model", "old")
    new = make_folder(tmp_path / "new", "new")
    real_rename, renames = os.rename, []

    def failing_for_the_new_one(src, dst):
        renames.append((Path(src).name, Path(dst).name))
        if Path(src) == new:
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_for_the_new_one)
    with pytest.raises(OSError, match="No space"):
        replace_folder(target, new)
    monkeypatch.undo()
    assert renames[0] == ("model", ASIDE_PREFIX + "model")  # the old one had been moved aside ...
    assert (target / "file.txt").read_text() == "old"  # ... and is back at once
    assert names(tmp_path) == ["model", "new"]  # no aside left; the new folder is the caller's to remove


def test_a_failed_move_aside_changes_nothing(tmp_path, monkeypatch):
    target = make_folder(tmp_path / "model", "old")
    new = make_folder(tmp_path / "new", "new")

    def failing(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(PermissionError):
        replace_folder(target, new)
    monkeypatch.undo()
    assert names(tmp_path) == ["model", "new"] and (target / "file.txt").read_text() == "old"


def test_recovery_restores_a_folder_left_aside_alone(tmp_path):
    # killed between the two renames: the old folder is aside, the target missing
    aside = make_folder(tmp_path / (ASIDE_PREFIX + "model"), "old")
    assert aside_folders(tmp_path / "model") == [aside]
    restored, removed = recover_replaced_folder(tmp_path / "model")
    assert restored == aside and removed == []
    assert names(tmp_path) == ["model"] and (tmp_path / "model" / "file.txt").read_text() == "old"


def test_recovery_removes_the_aside_when_the_new_folder_has_the_name(tmp_path):
    # killed after the new folder took the name, before the old one was deleted
    target = make_folder(tmp_path / "model", "new")
    aside = make_folder(tmp_path / (ASIDE_PREFIX + "model"), "old")
    restored, removed = recover_replaced_folder(target)
    assert restored is None and removed == [aside]
    assert names(tmp_path) == ["model"] and (target / "file.txt").read_text() == "new"


def test_recovery_knows_the_packed_folders_earlier_aside_names(tmp_path):
    # <name>.old-<pid>: what semtts.pack moved a packed folder aside to before; the newest is restored
    older = make_folder(tmp_path / "packed.old-12", "older")
    newer = make_folder(tmp_path / "packed.old-345", "newer")
    os.utime(older, (1_000_000, 1_000_000))
    make_folder(tmp_path / "packed.old-x", "not an aside")
    make_folder(tmp_path / "packed.older", "not an aside")
    make_folder(tmp_path / "other.old-1", "another folder's")
    assert aside_folders(tmp_path / "packed") == []  # only semtts.pack asks for them (checkpoint names may match)
    assert aside_folders(tmp_path / "packed", legacy=True) == [older, newer]
    restored, removed = recover_replaced_folder(tmp_path / "packed", legacy=True)
    assert restored == newer and removed == [older]
    assert (tmp_path / "packed" / "file.txt").read_text() == "newer"
    assert names(tmp_path) == ["other.old-1", "packed", "packed.old-x", "packed.older"]


def test_recovery_without_leftovers_and_a_swap_after_an_interrupted_one(tmp_path):
    assert recover_replaced_folder(tmp_path / "model") == (None, [])
    assert recover_replaced_folder(tmp_path / "missing" / "model") == (None, [])
    make_folder(tmp_path / (ASIDE_PREFIX + "model"), "old")  # an earlier swap was killed
    replace_folder(tmp_path / "model", make_folder(tmp_path / "new", "new"))
    assert names(tmp_path) == ["model"] and (tmp_path / "model" / "file.txt").read_text() == "new"


def test_a_symbolic_link_is_never_replaced_and_a_dangling_one_keeps_the_asides(tmp_path):
    real = make_folder(tmp_path / "real", "old")
    (tmp_path / "link").symlink_to(real)
    new = make_folder(tmp_path / "new", "new")
    with pytest.raises(ConfigError, match="link: a symbolic link; replace the folder it points to"):
        replace_folder(tmp_path / "link", new)
    assert (tmp_path / "link" / "file.txt").read_text() == "old" and new.exists()
    # the only copy waits aside while the name is a dangling link: recovery must not delete it
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    aside = make_folder(tmp_path / ".replaced+gone", "only copy")
    assert recover_replaced_folder(tmp_path / "gone") == (None, [])
    assert (aside / "file.txt").read_text() == "only copy"


def test_a_deletion_goes_through_trash_and_its_leftovers_are_cleared(tmp_path, monkeypatch):
    import shutil

    old = make_folder(tmp_path / "model", "old")
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path, *a, **k: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        remove_folder(old)  # killed while deleting: the partial folder is under a trash name, not "model"
    [trash] = [p.name for p in tmp_path.iterdir()]
    assert trash.startswith(".trash+model+") and not (tmp_path / "model").exists()
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    make_folder(tmp_path / "model", "new")
    assert recover_replaced_folder(tmp_path / "model") == (None, [])
    assert names(tmp_path) == ["model"]


@pytest.mark.parametrize("sync_folder", [True, False])
def test_a_file_is_flushed_before_its_rename_and_its_folder_after(tmp_path, monkeypatch, sync_folder):
    events, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append("replace"), real_replace(src, dst))[1])
    write_atomically(tmp_path / "a.txt", lambda tmp: tmp.write_text("whole"), sync_folder=sync_folder)
    assert events[1:] == ["replace"] + ([str(tmp_path)] if sync_folder else []) and ".a.txt.tmp-" in events[0]
    assert (tmp_path / "a.txt").read_text() == "whole"
