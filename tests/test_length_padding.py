"""Training batches padded to multiples of a length (semtts.length_padding): the
model masks every padded position, so the losses and gradients are those of
the batch padded to its longest item; only the random draws cover more positions."""

from contextlib import contextmanager
from unittest import mock

import pytest
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.dataio.batch import PaddedBatch

from semtts.errors import ConfigError
from tests.test_brain import make_run
from tests.test_vits_generator import SPEC_CHANNELS, randomize, tiny_synthesizer
from tests.ddp_train_worker import synthetic_items


def _noise(*size, device=None, dtype=None, **_):
    """Stand-in for torch.randn whose value at a (channel, position) does not depend on the length."""
    size = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
    steps, channels = torch.arange(size[-1]).float(), torch.arange(size[1] if len(size) > 2 else 1).float()
    table = torch.sin(0.7 * steps + 1.3 * channels[:, None])
    return table.expand(*size).to(device=device, dtype=dtype or torch.float32).clone()


@contextmanager
def length_independent_noise():
    """The training step's Gaussian draws (posterior sample, duration noise) as :func:`_noise`."""
    with mock.patch("torch.randn", _noise), \
            mock.patch("torch.randn_like", lambda x, **_: _noise(*x.shape, device=x.device, dtype=x.dtype)):
        yield


def test_generator_losses_and_gradients_do_not_depend_on_extra_padding():
    torch.manual_seed(0)
    model = tiny_synthesizer(n_speakers=3, p_dropout=0.0)
    randomize(model)
    model.eval()  # the duration predictor's dropout off (its masks would be drawn over more positions)
    token_lengths, spec_lengths = torch.tensor([7, 4, 2]), torch.tensor([21, 13, 6])
    tokens = torch.randint(1, 11, (3, 7)) * (torch.arange(7) < token_lengths[:, None])
    spec = torch.rand(3, SPEC_CHANNELS, 21) * (torch.arange(21) < spec_lengths[:, None, None])

    def run(extra_tokens: int, extra_frames: int):
        torch.manual_seed(5)  # the decoded windows
        with length_independent_noise():
            out = model(F.pad(tokens, (0, extra_tokens)), token_lengths, F.pad(spec, (0, extra_frames)),
                        spec_lengths, sid=torch.tensor([0, 1, 2]))
        loss = (out.waveform.square().mean() + out.duration_loss.sum()
                + ((out.z_p - out.m_p).square() * out.spec_mask).sum() + (out.logs_q * out.spec_mask).sum())
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
        return out, loss, grads

    (plain, loss, grads), (padded, loss_padded, grads_padded) = run(0, 0), run(5, 11)
    assert padded.spec_mask.size(-1) == 32 and padded.token_mask.size(-1) == 12
    torch.testing.assert_close(loss_padded, loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded.waveform, plain.waveform, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded.path[:, :21, :7], plain.path)
    for (name, _), got, want in zip(model.named_parameters(), grads_padded, grads):
        if name.endswith("key.bias"):  # softmax ignores it: its gradient is rounding noise around zero
            continue
        assert (got is None) == (want is None), name
        if got is not None:
            assert (got - want).norm() <= 1e-4 * want.norm() + 1e-6, name


def _uneven_batch() -> PaddedBatch:
    """Two utterances of different lengths (4608 and 4096 samples, 7 and 5 tokens)."""
    return PaddedBatch(synthetic_items(1, 4608, 7) + synthetic_items(1, 4096, 5, seed=1))


def test_brain_pads_training_batches_to_multiples_and_trains_the_same(tmp_path):
    logs = {"log_interval": 1000, "audio_log_interval": 1000}
    stats, shapes = [], []
    for pads in ({}, {"pad_frames_to": 8, "pad_tokens_to": 4}):
        _, _, brain = make_run(tmp_path / str(len(pads)), 0, {**logs, **pads}, checkpoint=False)
        brain.on_fit_start()
        brain.modules.eval()  # no dropout: its masks would be drawn over more positions
        torch.manual_seed(3)
        with length_independent_noise():
            predictions = brain.compute_forward(_uneven_batch(), sb.Stage.TRAIN)
            shapes.append((predictions.output.spec_mask.size(-1), predictions.output.token_mask.size(-1)))
            torch.manual_seed(3)
            brain.fit_batch(_uneven_batch())
        stats.append({k: float(v) for k, v in brain.step_stats.items()})
    hop = 4608 // shapes[0][0]
    assert shapes == [(4608 // hop, 7), (24, 8)]  # 18 frames -> 24, 7 tokens -> 8
    for key, value in stats[0].items():
        assert stats[1][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_evaluation_batches_are_not_padded_further(tmp_path):
    _, _, brain = make_run(tmp_path, 0, {"pad_frames_to": 8, "pad_tokens_to": 4}, checkpoint=False)
    brain.modules.eval()
    with torch.no_grad():
        predictions = brain.compute_forward(_uneven_batch(), sb.Stage.VALID)
    assert predictions.output.token_mask.size(-1) == 7


@pytest.mark.parametrize("key, value", [("pad_frames_to", 0), ("pad_tokens_to", 2.5), ("pad_frames_to", True)])
def test_bad_length_multiples_are_one_line_errors(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"^{key}: {value!r} is not a whole number of at least 1$"):
        make_run(tmp_path, 0, {key: value}, checkpoint=False)


def test_stage_c_trains_the_same_on_batches_padded_further(tmp_path):
    """Stage C (SemPred, its loss and the adapter, teacher features of their own length): padding the audio
    and the tokens further changes no loss or gradient norm."""
    from hyperpyyaml import load_hyperpyyaml

    from semtts.brain import VITSBrain
    from semtts.lobes.vits.semantic_vits import SemanticVITS
    from tests.test_semantic_stages import D, ROOT

    stats = []
    for pads in ({}, {"pad_frames_to": 8, "pad_tokens_to": 4}):
        torch.manual_seed(0)
        folder = ROOT / "hparams"
        hp = load_hyperpyyaml((folder / "model" / "vits_tiny.yaml").read_text(),
                              {"n_speakers": 2, "disc_periods": [2], "p_dropout": 0.0})
        hp.update(load_hyperpyyaml((folder / "train_C.yaml").read_text(),
                                   {"output_folder": str(tmp_path / str(len(pads))), "sempred_hidden": 16,
                                    "p_teacher_steps": 10, **pads}))
        generator = SemanticVITS(hp["generator"], D, use_adapter=True, sempred_hidden=16)
        with torch.no_grad():
            generator.adapter.gate.fill_(1.0)  # the adapter's output counts
        brain = VITSBrain({"generator": generator, "discriminator": hp["discriminator"]}, hparams=hp,
                          run_opts={"device": "cpu"})
        brain.on_fit_start()
        brain.modules.eval()  # no dropout: its masks would be drawn over more positions
        gen = torch.Generator().manual_seed(4)
        items = [{"sig": torch.randn(n, generator=gen) * 0.1, "token_ids": torch.arange(1, 1 + t), "spk_id": i,
                  "teacher": torch.randn(f, D, generator=gen)}
                 for i, (n, t, f) in enumerate(((8192, 9, 19), (7168, 6, 16)))]
        torch.manual_seed(3)
        with length_independent_noise():
            brain.fit_batch(PaddedBatch(items))
        stats.append({k: float(v) for k, v in brain.step_stats.items()})
    assert stats[0]["sem"] > 0
    for key, value in stats[0].items():
        assert stats[1][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_cudnn_benchmark_is_a_yes_or_no_checked_at_start_up(tmp_path):
    """``cudnn_benchmark`` must be True or False, from the command line or a recipe's file: a one-line
    error before anything is built."""
    from semtts.stages.train import train
    from tests.ddp_train_worker import write_corpus_yaml

    corpus = write_corpus_yaml(tmp_path)
    with pytest.raises(ConfigError, match=r"^--cudnn_benchmark: expected True or False, got '1'$"):
        train("A", [str(corpus), "--cudnn_benchmark", "1"])
    corpus.write_text(corpus.read_text() + "cudnn_benchmark: 1\n")  # a recipe's file that sets it
    with pytest.raises(ConfigError, match=r"^cudnn_benchmark: 1 is not True or False$"):
        train("A", [str(corpus)])
    assert not (tmp_path / "exp").exists()  # nothing built, nothing written
