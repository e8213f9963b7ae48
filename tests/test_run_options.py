"""SpeechBrain run options the VITS Brain cannot honour are refused in one line
(semtts.run_options), from the command line or the hparams, and a training
stage refuses them before --force sets anything aside."""

from pathlib import Path

import pytest
import speechbrain as sb

from semtts.errors import ConfigError
from semtts.run_options import UNSUPPORTED_RUN_OPTIONS, check_run_options

ROOT = Path(__file__).resolve().parents[1]
MINI = str(ROOT / "recipes" / "mini" / "hparams" / "corpus.yaml")


def parsed(*flags: str):
    return sb.parse_arguments(["hparams.yaml", *flags])[1]


@pytest.mark.parametrize("flags, hparams, refused", [
    (["--jit"], {}, "--jit True: not supported by the VITS Brain; use --compile"),
    (["--debug"], {}, "--debug True: .*--number_of_epochs 1"),
    (["--test_only"], {}, "--test_only True: .*stages 8 and 9"),
    (["--optimizer_step_limit", "100"], {}, "--optimizer_step_limit 100: .*--number_of_epochs"),
    ([], {"grad_accumulation_factor": 4}, "--grad_accumulation_factor 4: .*--ngpu N"),  # set in the hparams
    (["--grad_accumulation_factor", "1"], {"grad_accumulation_factor": 4}, None),  # the command line wins
    (["--precision", "bf16", "--skip_nonfinite_grads"], {}, None),  # (non-finite steps are always skipped)
])
def test_refused_from_the_command_line_or_the_hparams(flags, hparams, refused):
    if refused is None:
        check_run_options(parsed(*flags), hparams)
        return
    with pytest.raises(ConfigError, match=refused) as err:
        check_run_options(parsed(*flags), hparams)
    assert "\n" not in str(err.value)


def test_every_refused_option_is_a_speechbrain_run_option():
    assert set(UNSUPPORTED_RUN_OPTIONS) <= set(parsed().as_dict())


def test_a_training_stage_refuses_before_force_sets_checkpoints_aside(tmp_path):
    from semtts.stages.train import train

    save = tmp_path / "exp" / "mini" / "default" / "stage_A" / "save"
    (save / "CKPT+earlier").mkdir(parents=True)
    with pytest.raises(ConfigError, match="--jit True"):
        train("A", [MINI, "--exp_root", str(tmp_path / "exp"), "--force", "--jit"])
    assert [p.name for p in save.iterdir()] == ["CKPT+earlier"] and not list(save.parent.glob("save.before-*"))
