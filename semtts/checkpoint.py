"""Crash-safe training checkpoints: SpeechBrain's checkpointer made atomic,
plus the random-number-generator state that makes a resumed run repeat the
uninterrupted one.

:class:`AtomicCheckpointer` writes every checkpoint into a temporary folder
(``.tmp+CKPT+...``, a name SpeechBrain's checkpoint listing ignores), fsyncs
its files, and only then renames it to ``CKPT+...``: a process killed at any
moment leaves either a complete checkpoint or a temporary folder, never a
``CKPT+`` folder with missing files. Deletion renames first too. A checkpoint
saved again under the same custom name keeps its old version aside
(``.replaced+``, :func:`semtts.durable.replace_folder`) until the new one
has the name; a failed rename puts it back at once, a kill in between on
the next resume. Leftover temporary folders are removed when training
resumes, and a checkpoint that cannot be loaded raises
:class:`CheckpointError` naming it, instead of a silent restart from
scratch.

:class:`RandomState` saves and restores the torch (CPU and CUDA), Python and
NumPy generators of every process; :func:`make_checkpointer` builds the
checkpointer of a VITS training run. The Brain adds its optimizers,
schedulers, gradient scalers, step counters and the data loader position
(see :class:`semtts.brain.VITSBrain`).

Example
-------
>>> import tempfile
>>> from speechbrain.utils.epoch_loop import EpochCounter
>>> folder = tempfile.mkdtemp()
>>> net = torch.nn.Linear(2, 2)
>>> ckpter = make_checkpointer(folder, net, torch.nn.Linear(1, 1), EpochCounter(3))
>>> ckpt = ckpter.save_checkpoint(meta={"mel_l1": 0.5})
>>> ckpt.path.name.startswith("CKPT+"), sorted(ckpt.paramfiles)
(True, ['discriminator', 'epoch_counter', 'generator', 'rng'])
>>> with torch.no_grad():
...     _ = net.weight.zero_()
>>> ckpter.recover_if_possible().meta["mel_l1"], bool(net.weight.abs().sum() > 0)
(0.5, True)
"""

import logging
import pathlib
import random
import shutil
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
import yaml
from speechbrain.utils.checkpoints import (
    DEFAULT_LOAD_HOOKS,
    DEFAULT_SAVE_HOOKS,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
    get_default_hook,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, ddp_broadcast, if_main_process

from semtts.durable import ASIDE_PREFIX, TRASH_PREFIX, recover_replaced_folder, remove_folder, replace_folder
from semtts.errors import ConfigError, SemttsError

__all__ = ["CheckpointError", "AtomicCheckpointer", "RandomState", "make_checkpointer"]

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp+"
"""Prefix of a checkpoint folder being written (not a ``CKPT+`` name: never listed)."""
REPLACED_PREFIX = ASIDE_PREFIX
"""Prefix of a named checkpoint while its new version takes its name (restored if that never happened;
:func:`semtts.durable.replace_folder`)."""


class CheckpointError(SemttsError):
    """A checkpoint exists but cannot be written or loaded."""


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type and its message with the lines joined."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's :class:`~speechbrain.utils.checkpoints.Checkpointer` with
    atomic saving and deletion, leftover clean-up, and clear load errors.

    Everything else (recoverables, custom hooks, ``save_and_keep_only``,
    ``find_checkpoint``, ``min_keys``, the intra-epoch checkpoints of
    ``Brain.fit``) is SpeechBrain's. Under DDP every process calls
    :meth:`save_checkpoint` (savers may hold collectives); the main process
    writes and renames.

    Arguments
    ---------
    checkpoints_dir : str or Path
        The folder holding the ``CKPT+...`` checkpoints.
    recoverables : dict, optional
        ``{name: object}`` to save and load.
    custom_load_hooks : dict, optional
        ``{name: hook(obj, path, end_of_epoch)}``.
    custom_save_hooks : dict, optional
        ``{name: hook(obj, path)}``.
    allow_partial_load : bool
        Skip recoverables a checkpoint has no file for (default: error).

    Example
    -------
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> ckpter = AtomicCheckpointer(folder, {"net": torch.nn.Linear(2, 2)})
    >>> (folder / ".tmp+CKPT+interrupted").mkdir()     # a save that was killed
    >>> _ = ckpter.save_checkpoint()
    >>> ckpter.recover_if_possible() is not None, sorted(p.name[:5] for p in folder.iterdir())
    (True, ['CKPT+'])
    """

    def save_checkpoint(
        self,
        meta: dict | None = None,
        end_of_epoch: bool = True,
        name: str | None = None,
        verbosity: int = logging.INFO,
    ) -> Checkpoint | None:
        """Save a checkpoint atomically (temporary folder, fsync, rename).

        Arguments
        ---------
        meta : dict, optional
            Added to the checkpoint's ``CKPT.yaml`` (with ``unixtime`` and
            ``end-of-epoch``), e.g. a validation metric for ``min_keys``.
        end_of_epoch : bool
            Whether the checkpoint ends an epoch (affects how epoch counters
            and data loaders resume).
        name : str, optional
            A custom name (``CKPT+<name>``; an existing one is replaced);
            default: a timestamp.
        verbosity : int
            Logging level of the "saved" line.

        Returns
        -------
        Checkpoint or None
            The saved checkpoint on the main process, None on the others.
        """
        final_dir = tmp_dir = None
        saved_meta: dict[str, Any] = {"unixtime": time.time(), "end-of-epoch": end_of_epoch}
        saved_meta.update(meta or {})
        if if_main_process():
            final_dir = self._custom_checkpoint_dirpath(name) if name else self._new_checkpoint_dirpath()
            tmp_dir = final_dir.with_name(TMP_PREFIX + final_dir.name)
            if tmp_dir.exists():
                shutil.rmtree(tmp_dir)
            tmp_dir.mkdir(parents=True)
        final_dir, tmp_dir = ddp_broadcast((final_dir, tmp_dir), src=0)

        paramfiles = {}
        for key, obj in self.recoverables.items():
            path = tmp_dir / f"{key}{PARAMFILE_EXT}"
            paramfiles[key] = final_dir / path.name
            hook = self.custom_save_hooks.get(key) or get_default_hook(obj, DEFAULT_SAVE_HOOKS)
            if hook is None:
                raise CheckpointError(
                    f"{self.checkpoints_dir}: cannot save '{key}' ({type(obj).__name__}): "
                    "no checkpoint hook registered for it"
                )
            hook(obj, path)
        ddp_barrier()  # every process has written its files

        if if_main_process():
            with open(tmp_dir / METAFNAME, "w", encoding="utf-8") as handle:
                handle.write("# yamllint disable\n")
                handle.write(yaml.dump(saved_meta))
            replace_folder(final_dir, tmp_dir)  # a custom name saved again: the old one stays aside till then
            kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
            logger.log(verbosity, f"Saved an {kind} checkpoint in {final_dir}")
        ddp_barrier()
        return Checkpoint(final_dir, saved_meta, paramfiles) if if_main_process() else None

    def delete_checkpoints(
        self,
        *,
        num_to_keep: int = 1,
        min_keys: list[str] | None = None,
        max_keys: list[str] | None = None,
        importance_keys: list | None = None,
        ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
        verbosity: int = logging.INFO,
    ) -> None:
        """Delete the least important checkpoints, each by renaming it out of
        the listing first (a kill mid-deletion leaves no partial checkpoint).

        Keeps, for every key (each of ``min_keys``, ``max_keys`` and
        ``importance_keys``), the ``num_to_keep`` best checkpoints among those
        that have the key; the others among ``ckpt_predicate``'s go.

        Arguments
        ---------
        num_to_keep : int
            Checkpoints kept per key (>= 0).
        min_keys : list of str, optional
            Meta keys where lower is better.
        max_keys : list of str, optional
            Meta keys where higher is better.
        importance_keys : list of callable, optional
            ``key(checkpoint)``, higher is more important (default: recency).
        ckpt_predicate : callable, optional
            Only checkpoints for which it is True may be deleted.
        verbosity : int
            Logging level of the "deleted" lines.
        """
        if num_to_keep < 0:
            raise CheckpointError(f"{self.checkpoints_dir}: num_to_keep must be >= 0, got {num_to_keep}")
        if importance_keys is None:
            importance_keys = [lambda ckpt: ckpt.meta["unixtime"]]
        rankings = [{"min_key": key} for key in min_keys or []]
        rankings += [{"max_key": key} for key in max_keys or []]
        rankings += [{"importance_key": key} for key in importance_keys]
        candidates, kept = set(), set()
        for ranking in rankings:
            ranked = self.find_checkpoints(ckpt_predicate=ckpt_predicate, **ranking)
            candidates.update(ranked)
            kept.update(ranked[:num_to_keep])
        ddp_barrier()
        if if_main_process():
            for ckpt in sorted(candidates - kept, key=lambda c: str(c.path)):
                self._retire(ckpt.path)
                logger.log(verbosity, f"Deleted checkpoint in {ckpt.path}")
        ddp_barrier()

    def _retire(self, folder: pathlib.Path) -> None:
        """Rename a checkpoint out of the listing, then remove it."""
        remove_folder(folder)

    def clean_leftovers(self) -> list[pathlib.Path]:
        """Remove the temporary and half-deleted folders of interrupted runs
        (main process only). A named checkpoint whose replacement was
        interrupted before the new one took its name gets its name back.

        Returns
        -------
        list of Path
            The removed folders.
        """
        removed = []
        if if_main_process() and self.checkpoints_dir.is_dir():
            for entry in sorted(self.checkpoints_dir.iterdir()):
                gone = []
                if entry.is_dir() and entry.name.startswith(REPLACED_PREFIX):
                    original = entry.with_name(entry.name[len(REPLACED_PREFIX):])
                    restored, gone = recover_replaced_folder(original)
                    if restored is not None:
                        logger.warning(f"Restored the checkpoint {original} (its replacement was interrupted)")
                elif entry.is_dir() and entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                    shutil.rmtree(entry)
                    gone = [entry]
                for folder in gone:
                    removed.append(folder)
                    logger.warning(f"Removed the unfinished checkpoint folder {folder}")
        ddp_barrier()
        return removed

    def recover_if_possible(
        self, importance_key: Callable[[Checkpoint], Any] | None = None, max_key: str | None = None,
        min_key: str | None = None, ckpt_predicate: Callable[[Checkpoint], bool] | None = None,
    ) -> Checkpoint | None:
        """Clean leftovers, then load the chosen checkpoint if there is one.

        Arguments
        ---------
        importance_key : callable, optional
            ``key(checkpoint)``; the highest is loaded.
        max_key : str, optional
            Meta key; the checkpoint with the highest value is loaded.
        min_key : str, optional
            Meta key; the checkpoint with the lowest value is loaded.
        ckpt_predicate : callable, optional
            Filters the candidates.

        Returns
        -------
        Checkpoint or None
            The loaded checkpoint (None: nothing to resume from).
        """
        self.clean_leftovers()
        return super().recover_if_possible(importance_key, max_key, min_key, ckpt_predicate)

    def list_checkpoints(self) -> list[Checkpoint]:
        """The complete checkpoints in the folder (temporary folders are not listed).

        Returns
        -------
        list of Checkpoint
            One per ``CKPT+...`` folder; an unreadable ``CKPT.yaml`` is a
            :class:`CheckpointError` naming the folder.
        """
        checkpoints = []
        for folder in self._list_checkpoint_dirs():
            try:
                found = self._construct_checkpoint_objects([folder])
            except (OSError, yaml.YAMLError) as err:
                raise CheckpointError(f"{folder}: unreadable {METAFNAME} ({_one_line(err)})") from err
            if not isinstance(found[0].meta, dict) or not {"unixtime", "end-of-epoch"} <= set(found[0].meta):
                raise CheckpointError(f"{folder}: {METAFNAME} lacks unixtime or end-of-epoch")
            checkpoints += found
        return checkpoints

    def _call_load_hooks(self, checkpoint: Checkpoint) -> None:
        """Load every recoverable; any failure is a :class:`CheckpointError`
        naming the checkpoint and the recoverable."""
        logger.info(f"Loading a checkpoint from {checkpoint.path}")
        end_of_epoch = checkpoint.meta["end-of-epoch"]
        for key, obj in self.recoverables.items():
            path = checkpoint.paramfiles.get(key)
            if path is None:
                if self.allow_partial_load or "dataloader" in key or self.optional_recoverables.get(key, False):
                    warnings.warn(f"{checkpoint.path}: no saved state for '{key}'; it keeps its current state")
                    continue
                raise CheckpointError(
                    f"{checkpoint.path}: no saved state for '{key}' (written by another configuration?)"
                )
            hook = self.custom_load_hooks.get(key) or get_default_hook(obj, DEFAULT_LOAD_HOOKS)
            if hook is None:
                raise CheckpointError(
                    f"{checkpoint.path}: cannot load '{key}' ({type(obj).__name__}): no checkpoint hook for it"
                )
            try:
                hook(obj, path, end_of_epoch)
            except ConfigError:  # the checkpoint is sound, the run's settings refuse it: the hook says why
                raise
            except Exception as err:  # any failure: name the checkpoint, keep the cause chained
                raise CheckpointError(
                    f"{checkpoint.path}: cannot load '{key}' from {path.name} ({_one_line(err)}); "
                    "delete or move this checkpoint to resume from an earlier one"
                ) from err


class RandomState:
    """The random-number generators of every process, as a checkpoint recoverable.

    Saves the torch CPU generator, the CUDA generators (when CUDA is in
    use), Python's ``random`` and NumPy's global generator. Under DDP every
    rank's state is gathered to the main process; on resume each rank gets
    its own back (rank ``r % saved ranks`` if the world size changed).

    Example
    -------
    >>> import tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rng.ckpt"
    >>> state = RandomState()
    >>> state.save(path)
    >>> first = torch.rand(3)
    >>> state.load(path, end_of_epoch=True)
    >>> bool(torch.equal(torch.rand(3), first))
    True
    """

    @staticmethod
    def _local_state() -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "cuda": None,
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @mark_as_saver
    def save(self, path: str | pathlib.Path) -> None:
        """Write the states of all processes to ``path`` (called on every process).

        Arguments
        ---------
        path : str or Path
            The ``.ckpt`` file (written by the main process).
        """
        state = self._local_state()
        states = [state]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, state)
        if if_main_process():
            torch.save({"ranks": states}, path)

    @mark_as_loader
    def load(self, path: str | pathlib.Path, end_of_epoch: bool) -> None:
        """Restore this process's generators from ``path``.

        Arguments
        ---------
        path : str or Path
            A file written by :meth:`save`.
        end_of_epoch : bool
            Unused (the state is restored either way).
        """
        del end_of_epoch
        states = torch.load(path, map_location="cpu", weights_only=True)["ranks"]
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        state = states[rank % len(states)]
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if state["cuda"] is not None and torch.cuda.is_available():
            if len(state["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state["cuda"])
            else:
                logger.warning(f"{path}: saved with {len(state['cuda'])} CUDA devices; CUDA generators not restored")


# savers run on every process (the DDP gather is a collective); the main process writes
register_checkpoint_hooks(RandomState, save_on_main_only=False)


def make_checkpointer(
    save_folder: str | pathlib.Path,
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    epoch_counter: Any,
) -> AtomicCheckpointer:
    """The checkpointer of a VITS training run.

    Holds the generator, the discriminator, the epoch counter and the random
    generators (``rng``). :class:`semtts.brain.VITSBrain` adds the rest when
    it is built and when training starts: both optimizers and schedulers,
    the gradient scalers (fp16), its step counters (``brain``) and the
    training data loader position.

    Arguments
    ---------
    save_folder : str or Path
        Where the checkpoints go (created if missing).
    generator : torch.nn.Module
        The VITS generator (unwrapped, as built from the hparams).
    discriminator : torch.nn.Module
        The discriminator.
    epoch_counter : speechbrain.utils.epoch_loop.EpochCounter
        The epoch counter given to ``Brain.fit``.

    Returns
    -------
    AtomicCheckpointer
    """
    return AtomicCheckpointer(
        save_folder,
        recoverables={
            "generator": generator,
            "discriminator": discriminator,
            "epoch_counter": epoch_counter,
            "rng": RandomState(),
        },
    )
