"""How training stages B and C start from the stage before (B from A, C from B).

A stage without checkpoints of its own starts from the last checkpoint of the
previous stage (:func:`init_from_previous_stage`): the generator and
discriminator weights found there are loaded, and only the stage's new
modules (:data:`NEW_MODULES`: SemPred in B, the adapter in C) may be missing
from it; any other missing parameter, or one of another shape, is a one-line
error (the previous stage was trained with other model or speaker settings).

Which checkpoint a stage started from is its previous-stage fingerprint
(:func:`previous_stage_fingerprint`: the previous stage, the name of its last
checkpoint folder and its save time, which a retraining replaces). The training stage
records it in its ``done`` settings (``previous_stage``), so that a finished
stage whose previous stage was retrained since asks for ``--force``
(:func:`check_finished_stage`), and in ``save/started_from.json`` when it
starts, so that an interrupted stage does not resume on checkpoints built on
an earlier previous stage. Records of older semtts lack both: that is logged,
not refused.

Example
-------
>>> PREVIOUS_STAGE["C"], NEW_MODULES["C"]
('B', ('adapter.',))
"""

import time
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import Checkpoint, Checkpointer
from speechbrain.utils.distributed import if_main_process

from semtts.data.manifest import read_record, write_json_atomic
from semtts.errors import ConfigError, DataError
from semtts.stages.common import log, read_done

__all__ = ["PREVIOUS_STAGE", "NEW_MODULES", "STARTED_FROM_NAME", "stage_dir", "previous_checkpoint",
           "previous_stage_fingerprint", "check_finished_stage", "load_matching_weights", "init_from_previous_stage"]

PREVIOUS_STAGE = {"B": "A", "C": "B"}
"""The stage each training stage starts from."""
NEW_MODULES = {"B": ("sempred.",), "C": ("adapter.",)}
"""The generator parameter prefixes (attributes of
:class:`~semtts.lobes.vits.semantic_vits.SemanticVITS`) that a stage adds
and so starts fresh; every other parameter must come from the previous stage."""
STARTED_FROM_NAME = "started_from.json"
"""In a stage's ``save`` folder: the previous-stage fingerprint its checkpoints start from."""


def stage_dir(hp: dict, stage: str) -> Path:
    """``<output_folder>/stage_<X>``: checkpoints, logs and the speaker table."""
    return Path(hp["output_folder"]) / f"stage_{stage}"


def _number(stage: str) -> str:
    return str(5 + "ABC".index(stage))


def previous_checkpoint(hp: dict, stage: str) -> Checkpoint:
    """The last checkpoint of the stage before ``stage``, which must have finished.

    Arguments
    ---------
    hp : dict
        The stage hparams (``output_folder``).
    stage : str
        ``"B"`` or ``"C"``.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint

    Raises
    ------
    DataError
        The previous stage has no ``done`` marker or no checkpoint.
    """
    previous = PREVIOUS_STAGE[stage]
    folder = stage_dir(hp, previous)
    if not (folder / "done").is_file():
        raise DataError(f"{folder}: stage {previous} has not finished training; stage {stage} starts from it")
    checkpoint = Checkpointer(folder / "save").find_checkpoint()
    if checkpoint is None:
        raise DataError(f"{folder / 'save'}: no checkpoint of stage {previous} to start stage {stage} from")
    return checkpoint


def previous_stage_fingerprint(hp: dict, stage: str) -> dict | None:
    """What ``stage`` starts from: the previous stage, the name of its last
    checkpoint folder (``CKPT+<date>+<time>+NN``) and that checkpoint's
    ``unixtime`` (a retraining or a continued training makes a new one).
    None for stage A.

    Arguments
    ---------
    hp : dict
        The stage hparams (``output_folder``).
    stage : str
        ``"A"``, ``"B"`` or ``"C"``.

    Returns
    -------
    dict or None
        ``{"stage": "B", "checkpoint": "CKPT+...", "unixtime": 1.7e9}``.
    """
    if stage not in PREVIOUS_STAGE:
        return None
    return _fingerprint(stage, previous_checkpoint(hp, stage))


def _fingerprint(stage: str, checkpoint: Checkpoint) -> dict:
    return {"stage": PREVIOUS_STAGE[stage], "checkpoint": checkpoint.path.name,
            "unixtime": checkpoint.meta.get("unixtime")}


def _describe(fingerprint: dict) -> str:
    saved = fingerprint.get("unixtime")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(saved)) if isinstance(saved, (int, float)) else "?"
    return f"{fingerprint.get('checkpoint')} saved {when}"


def _changed_since(where: Path, stage: str, then: dict, now: dict) -> ConfigError:
    previous = PREVIOUS_STAGE[stage]
    return ConfigError(f"{where}: stage {previous} was retrained since stage {stage} started from it (from its "
                       f"checkpoint {_describe(then)}; its last is now {_describe(now)}); "
                       f"rerun stage {stage} with --force")


def check_finished_stage(marker: str | Path, stage: str, fingerprint: dict | None) -> bool:
    """Whether the finished stage of ``marker`` (if any) started from the
    previous stage's current checkpoint.

    Arguments
    ---------
    marker : str or Path
        The stage's ``done`` marker (need not exist).
    stage : str
        ``"A"``, ``"B"`` or ``"C"``.
    fingerprint : dict or None
        :func:`previous_stage_fingerprint` now.

    Returns
    -------
    bool
        False when the marker records no fingerprint (older semtts): logged,
        and the caller leaves ``previous_stage`` out of the comparison; True
        otherwise.

    Raises
    ------
    ConfigError
        The previous stage was retrained since (one line; ``--force`` retrains).
    """
    marker = Path(marker)
    if fingerprint is None or not marker.is_file():
        return True
    then = read_done(marker, f"stage {stage}")["settings"].get("previous_stage")
    if then is None:
        log(_number(stage), f"{marker} (older semtts) does not record which checkpoint of stage "
                            f"{PREVIOUS_STAGE[stage]} it started from: not checked")
        return False
    if then != fingerprint:
        raise _changed_since(marker, stage, then, fingerprint)
    return True


def load_matching_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                          new: tuple[str, ...] = ()) -> list[str]:
    """Load the tensors of ``state`` into ``module``; only the tensors whose
    names start with a prefix of ``new`` may be missing from ``state`` (they
    keep their initialisation).

    Arguments
    ---------
    module : torch.nn.Module
        The new stage's network.
    state : dict
        A state dict from an earlier stage.
    source : str
        Where ``state`` comes from, for the messages.
    new : tuple of str
        The name prefixes of the module's new parts (:data:`NEW_MODULES`).

    Returns
    -------
    list of str
        The names of the module's tensors that ``state`` lacks (kept fresh).

    Raises
    ------
    ConfigError
        A tensor of ``state`` has another shape in ``module`` or no place in
        it, or ``state`` lacks a tensor outside ``new``.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 3))
    >>> old = torch.nn.Sequential(torch.nn.Linear(2, 2)).state_dict()
    >>> load_matching_weights(net, old, "old.ckpt", new=("1.",))
    ['1.bias', '1.weight']
    >>> load_matching_weights(net, old, "old.ckpt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    semtts.errors.ConfigError: old.ckpt: lacks 2 parameter(s) of this stage's model ... (1.bias, 1.weight); ...
    """
    own = module.state_dict()
    for name, tensor in state.items():
        if name not in own:
            raise ConfigError(f"{source}: parameter {name} has no place in this stage's model (another "
                              "architecture?); train the earlier stage with the same model settings")
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise ConfigError(f"{source}: parameter {name} has shape {list(tensor.shape)} there but "
                              f"{list(own[name].shape)} in this stage's model; use the earlier stage's model settings")
    fresh = sorted(name for name in own if name not in state)
    unexpected = [name for name in fresh if not name.startswith(tuple(new))]
    if unexpected:
        shown = ", ".join(unexpected[:4]) + (", ..." if len(unexpected) > 4 else "")
        raise ConfigError(f"{source}: lacks {len(unexpected)} parameter(s) of this stage's model that are not new "
                          f"in it ({shown}); the model settings (speaker_mode, model file) must match the previous "
                          "stage's")
    module.load_state_dict(state, strict=False)
    return fresh


def _check_resumed(hp: dict, stage: str, save_folder: Path) -> None:
    """A stage resuming from its own checkpoints: they must have started
    from the previous stage's current checkpoint (``started_from.json``)."""
    record = save_folder / STARTED_FROM_NAME
    if not record.is_file():
        log(_number(stage), f"{save_folder}: no {STARTED_FROM_NAME} (checkpoints of older semtts): whether they "
                            f"started from stage {PREVIOUS_STAGE[stage]}'s current checkpoint is not checked")
        return
    then = read_record(record, f"rerun stage {stage} with --force")
    now = previous_stage_fingerprint(hp, stage)
    if then != now:
        raise _changed_since(record, stage, then, now)


def init_from_previous_stage(hp: dict, stage: str, generator: torch.nn.Module,
                             discriminator: torch.nn.Module) -> str | None:
    """Start stage B from stage A's last checkpoint, C from B's: load the
    generator and discriminator weights that exist there (only the new
    modules of :data:`NEW_MODULES` keep their fresh initialisation) and
    record the fingerprint in ``save/started_from.json``. Nothing is loaded
    for stage A, or when the stage already has checkpoints of its own: it
    resumes from them, after checking that the previous stage has not been
    retrained since they started.

    Arguments
    ---------
    hp : dict
        The stage hparams (``output_folder``, ``save_folder``).
    stage : str
        ``"A"``, ``"B"`` or ``"C"``.
    generator, discriminator : torch.nn.Module
        The stage's networks, before training starts.

    Returns
    -------
    str or None
        The checkpoint loaded (``stage_<X>/save/CKPT+...``), or None.
    """
    if stage not in PREVIOUS_STAGE:
        return None
    save_folder = Path(hp["save_folder"])
    if Checkpointer(save_folder).list_checkpoints():
        _check_resumed(hp, stage, save_folder)
        return None
    checkpoint = previous_checkpoint(hp, stage)
    fresh = {}
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        path = checkpoint.paramfiles.get(name)
        if path is None:
            raise DataError(f"{checkpoint.path}: the checkpoint has no {name}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        fresh[name] = load_matching_weights(module, state, str(path), NEW_MODULES[stage] if name == "generator" else ())
    if if_main_process():
        write_json_atomic(save_folder / STARTED_FROM_NAME, _fingerprint(stage, checkpoint))
    new = sorted({name.split(".")[0] for name in fresh["generator"] + fresh["discriminator"]})
    log(_number(stage), f"initialised from {checkpoint.path}; new (fresh): {', '.join(new) or 'none'}; "
                        "optimizers and schedulers start afresh")
    return str(checkpoint.path)
