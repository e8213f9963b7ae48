"""SpeechBrain run options the VITS Brain cannot honour.

The Brain runs its own GAN steps (:meth:`semtts.brain.VITSBrain.fit_batch`),
so some of SpeechBrain's run options, which act inside SpeechBrain's own
``fit_batch`` and ``fit``, would be silently ignored or would leave a stage
marked done that trained nothing (``--test_only``, ``--debug``). They are
refused in one line instead, by the training stages before they change
anything (``--force`` sets checkpoints aside) and by the Brain itself.
"""

from typing import Any

from semtts.errors import ConfigError

__all__ = ["UNSUPPORTED_RUN_OPTIONS", "check_run_options"]

UNSUPPORTED_RUN_OPTIONS = {
    "grad_accumulation_factor": (1, "both networks are updated at every batch, as in VITS (ESPnet's GAN "
                                    "trainer refuses it too); raise --batch_size or train on more GPUs (--ngpu N)"),
    "data_parallel_backend": (False, "train on several GPUs with DDP instead (run.sh --ngpu N)"),
    "jit": (False, "use --compile"),
    "test_only": (False, "stages 8 and 9 synthesize and evaluate a trained stage"),
    "debug": (False, "try a short run with --number_of_epochs 1 on the mini recipe"),
    "debug_persistently": (False, "try a short run with --number_of_epochs 1 on the mini recipe"),
    "optimizer_step_limit": (None, "set --number_of_epochs"),
    "remove_vector_weight_decay": (False, "set weight_decay in the hparams"),
    "profile_training": (False, "bench/profile_train_step.py profiles a training step"),
}
"""SpeechBrain run options this Brain's own steps cannot honour: refused rather than silently ignored
(or, for debug and test_only, rather than leaving a stage marked done that trained nothing)."""


def check_run_options(run_opts: Any, hparams: dict | None = None) -> None:
    """Refuse, in one line, a SpeechBrain run option the VITS Brain cannot
    honour (:data:`UNSUPPORTED_RUN_OPTIONS`), given on the command line or in
    the hparams (the command line wins, as in SpeechBrain).

    Arguments
    ---------
    run_opts : RunOptions or dict or None
        SpeechBrain's run options (a dict holds the given ones only).
    hparams : dict, optional
        The hparams, which may set run options too.

    Example
    -------
    >>> check_run_options({"precision": "bf16"})
    >>> check_run_options({"jit": True})
    Traceback (most recent call last):
    ...
    semtts.errors.ConfigError: --jit True: not supported by the VITS Brain; use --compile
    """
    given = getattr(run_opts, "overridden_args", None)  # SpeechBrain >= 1.1: which options were typed
    for key, (default, instead) in UNSUPPORTED_RUN_OPTIONS.items():
        if run_opts is not None and (key in given if given is not None else key in run_opts):
            value = run_opts[key]
        else:
            value = (hparams or {}).get(key, default)
        if value != default:
            raise ConfigError(f"--{key} {value}: not supported by the VITS Brain; {instead}")
