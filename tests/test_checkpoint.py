"""Tests of semtts.checkpoint: atomic saving and deletion, clean-up of
interrupted saves, clear load errors, and the random-generator state."""

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from speechbrain.utils.epoch_loop import EpochCounter

from semtts.checkpoint import (REPLACED_PREFIX, TMP_PREFIX, AtomicCheckpointer, CheckpointError, RandomState,
                               make_checkpointer)

ROOT = Path(__file__).resolve().parents[1]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failed_save_leaves_no_checkpoint_and_is_cleaned_on_resume(tmp_path):
    net = torch.nn.Linear(3, 3)
    ckpter = AtomicCheckpointer(tmp_path, {"net": net, "counter": EpochCounter(5)})
    first = ckpter.save_checkpoint(meta={"tag": "first"})

    def broken_save(obj, path):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    ckpter.custom_save_hooks["counter"] = broken_save
    with pytest.raises(OSError, match="disk full"):
        ckpter.save_checkpoint(meta={"tag": "second"})
    leftovers = [n for n in names(tmp_path) if n.startswith(TMP_PREFIX)]
    assert len(leftovers) == 1 and (tmp_path / leftovers[0] / "net.ckpt").exists()
    assert [c.meta["tag"] for c in ckpter.list_checkpoints()] == ["first"]

    resumed = AtomicCheckpointer(tmp_path, {"net": torch.nn.Linear(3, 3), "counter": EpochCounter(5)})
    assert resumed.recover_if_possible().path == first.path
    assert names(tmp_path) == [first.path.name]
    assert torch.equal(resumed.recoverables["net"].weight, net.weight)


SLOW_SAVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from semtts.checkpoint import AtomicCheckpointer

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.arange(4.0))

    def slow_save(obj, path):
        torch.save(obj.state_dict(), path)
        Path(sys.argv[2]).touch()     # tell the test we are inside the save
        time.sleep(60)

    folder = Path(sys.argv[1])
    ckpter = AtomicCheckpointer(folder, {"net": Slow(), "other": torch.nn.Linear(2, 2)})
    ckpter.save_checkpoint(meta={"tag": "complete"})
    ckpter.custom_save_hooks["net"] = slow_save
    ckpter.save_checkpoint(meta={"tag": "killed"})
    """
)


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path):
    folder, sentinel = tmp_path / "save", tmp_path / "saving"
    script = tmp_path / "saver.py"
    script.write_text(SLOW_SAVER)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(sentinel)], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not sentinel.exists():
            assert proc.poll() is None, "the saver exited early"
            assert time.time() < deadline, "the saver never reached the second save"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    in_folder = names(folder)
    assert sum(n.startswith("CKPT+") for n in in_folder) == 1 and any(n.startswith(TMP_PREFIX) for n in in_folder)
    net = torch.nn.Module()
    net.w = torch.nn.Parameter(torch.zeros(4))
    ckpter = AtomicCheckpointer(folder, {"net": net, "other": torch.nn.Linear(2, 2)})
    assert ckpter.recover_if_possible().meta["tag"] == "complete"
    assert net.w.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert not any(n.startswith(TMP_PREFIX) for n in names(folder))


def test_unloadable_checkpoint_raises_a_clear_error(tmp_path):
    ckpter = AtomicCheckpointer(tmp_path, {"net": torch.nn.Linear(2, 2)})
    ckpt = ckpter.save_checkpoint()
    (ckpt.path / "net.ckpt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError) as err:
        ckpter.recover_if_possible()
    message = str(err.value)
    assert ckpt.path.name in message and "'net'" in message and "\n" not in message

    torch.save(torch.nn.Linear(2, 2).state_dict(), ckpt.path / "net.ckpt")  # a valid file again
    wider = AtomicCheckpointer(tmp_path, {"net": torch.nn.Linear(2, 2), "extra": torch.nn.Linear(1, 1)})
    with pytest.raises(CheckpointError, match="no saved state for 'extra'"):
        wider.recover_if_possible()
    mismatched = AtomicCheckpointer(tmp_path, {"net": torch.nn.Linear(3, 3)})
    with pytest.raises(CheckpointError, match="cannot load 'net' from net.ckpt .*size mismatch"):
        mismatched.recover_if_possible()
    optional = AtomicCheckpointer(tmp_path, {"net": torch.nn.Linear(2, 2)})
    optional.add_recoverable("scaler", torch.nn.Linear(1, 1), optional_load=True)
    with pytest.warns(UserWarning, match="scaler"):
        assert optional.recover_if_possible() is not None


def test_delete_keeps_best_and_latest_and_custom_names_are_replaced(tmp_path):
    ckpter = AtomicCheckpointer(tmp_path, {"net": torch.nn.Linear(2, 2)})
    for value in (3.0, 1.0, 2.0, 4.0):
        ckpter.save_and_keep_only(meta={"mel_l1": value}, min_keys=["mel_l1"], num_to_keep=1, importance_keys=[])
        time.sleep(0.01)
    kept = sorted(c.meta["mel_l1"] for c in ckpter.list_checkpoints())
    assert kept == [1.0, 4.0] and len(names(tmp_path)) == 2  # best and latest; no trash left

    first = ckpter.save_checkpoint(name="final", meta={"n": 1})
    second = ckpter.save_checkpoint(name="final", meta={"n": 2})
    assert first.path == second.path
    assert [c.meta["n"] for c in ckpter.list_checkpoints() if c.path == second.path] == [2]


def test_a_named_checkpoint_survives_a_failure_or_a_kill_while_it_is_replaced(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 2)
    ckpter = AtomicCheckpointer(tmp_path, {"net": net})
    first = ckpter.save_checkpoint(name="final", meta={"n": 1})
    real_rename = os.rename

    def failing_for_the_new_one(src, dst):
        if Path(src).name.startswith(TMP_PREFIX):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_for_the_new_one)
    with torch.no_grad():
        net.weight.fill_(7.0)
    with pytest.raises(OSError, match="No space"):
        ckpter.save_checkpoint(name="final", meta={"n": 2})
    monkeypatch.setattr(os, "rename", real_rename)
    assert [c.meta["n"] for c in ckpter.list_checkpoints()] == [1]  # the old version has its name back at once

    # killed between the two renames: the old version is aside, the new one still temporary
    os.rename(first.path, first.path.with_name(REPLACED_PREFIX + first.path.name))
    (tmp_path / (TMP_PREFIX + first.path.name)).mkdir(exist_ok=True)  # (the failed save left one too)
    assert ckpter.list_checkpoints() == []
    resumed = AtomicCheckpointer(tmp_path, {"net": net})
    assert resumed.recover_if_possible().meta["n"] == 1  # the old one got its name back, the new one is gone
    assert not torch.equal(net.weight, torch.full((2, 2), 7.0)) and len(names(tmp_path)) == 1


def test_random_state_round_trip_and_make_checkpointer(tmp_path):
    ckpter = make_checkpointer(tmp_path, torch.nn.Linear(2, 2), torch.nn.Linear(2, 1), EpochCounter(2))
    ckpter.save_checkpoint()
    expected = (torch.rand(3), random.random(), np.random.rand(2))
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    ckpter.recover_if_possible()
    got = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1] and np.array_equal(got[2], expected[2])
    state = torch.load(tmp_path / ckpter.list_checkpoints()[0].path / "rng.ckpt", weights_only=True)
    assert len(state["ranks"]) == 1 and set(state["ranks"][0]) == {"torch", "python", "numpy", "cuda"}
    assert isinstance(ckpter.recoverables["rng"], RandomState)


def test_unreadable_meta_is_named(tmp_path):
    ckpter = AtomicCheckpointer(tmp_path, {"net": torch.nn.Linear(2, 2)})
    ckpt = ckpter.save_checkpoint()
    (ckpt.path / "CKPT.yaml").write_text("unixtime: [unclosed\n")
    with pytest.raises(CheckpointError, match=re.escape(f"{ckpt.path.name}: unreadable CKPT.yaml")):
        ckpter.recover_if_possible()
