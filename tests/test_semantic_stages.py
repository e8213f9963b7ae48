"""Training stages B and C on tiny models: where the gradients go, the
teacher-forcing schedule, stage transitions (what is loaded, what is new, a
shape mismatch), padding invariance of the semantic branch, a Brain step with
teacher features, and synthesis without Whisper."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.checkpoints import Checkpointer

from semtts.errors import ConfigError
from semtts.lobes.vits.alignment import durations_to_path
from semtts.lobes.vits.masks import lengths_to_mask
from semtts.lobes.vits.semantic_vits import SemanticVITS, teacher_on_tokens
from semtts.lobes.vits.synthesizer import VITSSynthesizer
from semtts.losses import MaskedL1, kl_loss
from semtts.semantic_distillation import SemanticDistillation, teacher_probability
from semtts.stages.train import init_from_previous_stage

ROOT = Path(__file__).resolve().parents[1]
D = 6


def _base(hidden: int = 8, seed: int = 0) -> VITSSynthesizer:
    torch.manual_seed(seed)
    return VITSSynthesizer(12, 9, 4, 4, hidden, 16, 2, 1, 3, 0.0, "2", [3], [[1, 3]], [4, 2], 16, [8, 4],
                           posterior_n_layers=1, flow_n_layers=1, use_sdp=False, dp_filter_channels=8,
                           duration_p_dropout=0.0, n_speakers=2, gin_channels=4)


def _semantic(adapter: bool, hidden: int = 8, seed: int = 0) -> SemanticVITS:
    return SemanticVITS(_base(hidden, seed), D, use_adapter=adapter, sempred_hidden=8, sempred_layers=1,
                        sempred_dropout=0.0, adapter_dropout=0.0)


def _batch():
    torch.manual_seed(1)
    teacher = torch.randn(2, 7, D, requires_grad=True)  # a leaf: it must get no gradient
    return dict(tokens=torch.randint(1, 12, (2, 5)), token_lengths=torch.tensor([5, 3]),
                spec=torch.rand(2, 9, 12), spec_lengths=torch.tensor([12, 8]), sid=torch.tensor([0, 1]),
                teacher=teacher, teacher_lengths=torch.tensor([7, 5]))


def _loss(out) -> torch.Tensor:
    lengths = out.token_mask.sum(dim=(1, 2)).long()
    return (MaskedL1()(out.sem_pred, out.sem_target, lengths) + kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p,
                                                                        out.spec_mask) + out.waveform.abs().mean())


def _has_grad(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


def test_stage_b_gradients_reach_sempred_not_the_teacher():
    model = _semantic(adapter=False)
    batch = _batch()
    out = model(**batch)
    assert out.sem_pred.shape == out.sem_target.shape == (2, 5, D)
    assert not out.sem_target.requires_grad
    _loss(out).backward()
    assert _has_grad(model.sempred) and _has_grad(model.text_encoder)
    assert batch["teacher"].grad is None


@pytest.mark.parametrize("detach", [False, True])
def test_stage_c_gradients_reach_the_adapter_not_the_teacher(detach):
    model = _semantic(adapter=True)
    batch = _batch()
    out = model(**batch, use_teacher=torch.tensor([True, False]), detach_student=detach)
    kl = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.spec_mask)
    kl.backward()
    assert _has_grad(model.adapter)
    assert batch["teacher"].grad is None
    assert _has_grad(model.sempred) is not detach  # the KL reaches SemPred only through an undetached student


def test_stage_c_prior_depends_on_the_teacher_only_when_forced():
    model = _semantic(adapter=True).eval()
    with torch.no_grad():
        model.adapter.gate.fill_(1.0)
    batch = _batch()
    other = {**batch, "teacher": torch.randn(2, 7, D)}  # (a constant shift would vanish in the LayerNorm)
    results = []
    for use in ([True, True], [False, False]):
        pair = []
        for b in (batch, other):
            torch.manual_seed(5)
            pair.append(model(**b, use_teacher=torch.tensor(use)).m_p)
        results.append(pair)
    assert not torch.allclose(*results[0])  # teacher forced: the prior follows the teacher
    assert torch.equal(*results[1])  # student: the teacher does not matter


def test_teacher_probability_schedule():
    assert [teacher_probability(s, 1.0, 0.0, 10) for s in (0, 5, 10, 20)] == [1.0, 0.5, 0.0, 0.0]
    assert teacher_probability(3, 1.0, 0.2, 0) == 0.2
    distill = SemanticDistillation(1.0, 1.0, 0.0, 4)
    batch = PaddedBatch([{"teacher": torch.ones(4, D)} for _ in range(64)])
    device = torch.device("cpu")
    assert distill.inputs(batch, True, 0, device)["use_teacher"].all()
    assert not distill.inputs(batch, True, 4, device)["use_teacher"].any()
    torch.manual_seed(0)
    half = distill.inputs(batch, True, 2, device)["use_teacher"].float().mean()
    assert 0.25 < float(half) < 0.75
    with pytest.raises(ConfigError, match="p_teacher_start"):
        SemanticDistillation(1.0, 1.5)


def test_padding_leaves_the_semantic_branch_unchanged():
    model = _semantic(adapter=True).eval()
    with torch.no_grad():
        model.adapter.gate.fill_(1.0)
    torch.manual_seed(2)
    token_lengths, spec_lengths, sem_lengths = torch.tensor([5, 3]), torch.tensor([10, 6]), torch.tensor([7, 4])
    durations = torch.tensor([[2.0, 2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 0.0, 0.0]])
    hidden, teacher = torch.randn(2, 8, 5), torch.randn(2, 7, D)

    def branch(pad_text, pad_spec, pad_sem):
        x = torch.cat([hidden, torch.randn(2, 8, pad_text)], 2) * lengths_to_mask(token_lengths, 5 + pad_text)
        feats = torch.cat([teacher, torch.randn(2, pad_sem, D)], 1)
        dur = torch.cat([durations, torch.zeros(2, pad_text)], 1)
        path = durations_to_path(dur, lengths_to_mask(token_lengths, 5 + pad_text),
                                 lengths_to_mask(spec_lengths, 10 + pad_spec))
        target = teacher_on_tokens(feats, sem_lengths, spec_lengths, path, token_lengths)
        student = model.sempred(x, token_lengths)
        adapted = model.adapter(x, token_lengths, target, token_lengths)
        return MaskedL1()(student, target, token_lengths), student, target, adapted

    with torch.no_grad():
        plain, padded = branch(0, 0, 0), branch(3, 5, 4)
    assert abs(float(plain[0]) - float(padded[0])) < 1e-5
    for b, n in enumerate(token_lengths.tolist()):
        torch.testing.assert_close(plain[1][b, :n], padded[1][b, :n], atol=1e-5, rtol=0)
        torch.testing.assert_close(plain[2][b, :n], padded[2][b, :n], atol=1e-5, rtol=0)
        torch.testing.assert_close(plain[3][b, :, :n], padded[3][b, :, :n], atol=1e-5, rtol=0)


def _save_stage(root: Path, stage: str, generator, discriminator) -> None:
    folder = root / f"stage_{stage}"
    Checkpointer(folder / "save", {"generator": generator, "discriminator": discriminator}).save_checkpoint()
    (folder / "done").write_text("{}")


def test_stage_transitions_load_what_exists_and_keep_new_modules_fresh(tmp_path):
    disc = torch.nn.Linear(3, 3)
    stage_a = _base(seed=0)
    _save_stage(tmp_path, "A", stage_a, disc)
    hp = {"output_folder": str(tmp_path), "save_folder": str(tmp_path / "stage_B" / "save")}
    model_b = _semantic(adapter=False, seed=1)
    fresh_sempred = {k: v.clone() for k, v in model_b.sempred.state_dict().items()}
    assert not torch.equal(model_b.text_encoder.proj.weight, stage_a.text_encoder.proj.weight)
    new_disc = torch.nn.Linear(3, 3)
    assert init_from_previous_stage(hp, "B", model_b, new_disc).endswith(tuple("0123456789"))
    assert torch.equal(model_b.text_encoder.proj.weight, stage_a.text_encoder.proj.weight)
    assert torch.equal(new_disc.weight, disc.weight)
    for key, value in model_b.sempred.state_dict().items():
        assert torch.equal(value, fresh_sempred[key])  # new: its own fresh initialisation

    # C from B: SemPred comes from B, the adapter is new
    _save_stage(tmp_path, "B", model_b, new_disc)
    model_c = _semantic(adapter=True, seed=2)
    fresh_adapter = {k: v.clone() for k, v in model_c.adapter.state_dict().items()}
    hp_c = {"output_folder": str(tmp_path), "save_folder": str(tmp_path / "stage_C" / "save")}
    init_from_previous_stage(hp_c, "C", model_c, torch.nn.Linear(3, 3))
    assert torch.equal(model_c.sempred.output.weight, model_b.sempred.output.weight)
    assert all(torch.equal(v, fresh_adapter[k]) for k, v in model_c.adapter.state_dict().items())
    assert model_c.adapter.gate.item() == pytest.approx(0.1)

    # a stage with checkpoints of its own resumes from them: nothing is loaded
    Checkpointer(hp["save_folder"], {"generator": model_b}).save_checkpoint()
    assert init_from_previous_stage(hp, "B", _semantic(adapter=False, seed=3), disc) is None


def test_stage_transition_shape_mismatch_names_the_parameter(tmp_path):
    _save_stage(tmp_path, "A", _base(hidden=8), torch.nn.Linear(3, 3))
    hp = {"output_folder": str(tmp_path), "save_folder": str(tmp_path / "stage_B" / "save")}
    with pytest.raises(ConfigError, match=r"parameter text_encoder\.\S+ has shape \[.*\] there but \[.*\]"):
        init_from_previous_stage(hp, "B", _semantic(adapter=False, hidden=12), torch.nn.Linear(3, 3))


def test_previous_stage_must_have_finished(tmp_path):
    hp = {"output_folder": str(tmp_path), "save_folder": str(tmp_path / "stage_C" / "save")}
    with pytest.raises(Exception, match="stage B has not finished"):
        init_from_previous_stage(hp, "C", _semantic(adapter=True), torch.nn.Linear(3, 3))


def test_brain_step_stage_c_logs_sem_and_updates_the_adapter(tmp_path):
    from semtts.brain import VITSBrain

    folder = ROOT / "hparams"
    hp = load_hyperpyyaml((folder / "model" / "vits_tiny.yaml").read_text(),
                          {"n_speakers": 2, "disc_periods": [2], "p_dropout": 0.0})
    hp.update(load_hyperpyyaml((folder / "train_C.yaml").read_text(),
                               {"output_folder": str(tmp_path), "sempred_hidden": 16, "p_teacher_steps": 10}))
    generator = SemanticVITS(hp["generator"], D, use_adapter=True, sempred_hidden=16)
    brain = VITSBrain({"generator": generator, "discriminator": hp["discriminator"]}, hparams=hp,
                      run_opts={"device": "cpu"})
    brain.on_fit_start()
    gate = generator.adapter.proj.weight.detach().clone()
    items = [{"sig": torch.randn(8192) * 0.1, "token_ids": torch.arange(1, 9), "spk_id": i,
              "teacher": torch.randn(19 - 3 * i, D)} for i in (0, 1)]
    loss = brain.fit_batch(PaddedBatch(items))
    assert torch.isfinite(loss)
    assert "sem" in brain.step_stats and float(brain.step_stats["sem"]) > 0
    assert not torch.equal(generator.adapter.proj.weight, gate)


SYNTH_WITHOUT_WHISPER = """
import sys
sys.modules["whisper"] = None  # any import of whisper now fails
import torch
from tests.test_semantic_stages import _semantic
from semtts.stages import synthesize  # stage 8 and everything it imports
model = _semantic(adapter=True).eval()
model.remove_weight_norm()
out = model.infer(torch.randint(1, 12, (2, 5)), torch.tensor([5, 3]), sid=torch.tensor([0, 1]))
assert torch.isfinite(out.waveform).all() and out.waveform.shape[0] == 2
assert "semtts.extract.teacher" not in sys.modules
print("ok")
"""


def test_synthesis_from_stage_c_without_whisper():
    out = subprocess.run([sys.executable, "-c", SYNTH_WITHOUT_WHISPER], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_semantic_vits_config_errors():
    with pytest.raises(ConfigError, match="use_sempred"):
        SemanticVITS(_base(), D, use_sempred=False)
    with pytest.raises(ConfigError, match="plain VITSSynthesizer"):
        SemanticVITS(_semantic(adapter=False), D)


def test_every_recipe_names_the_b_and_c_files():
    for corpus in sorted((ROOT / "recipes").glob("*/hparams/corpus.yaml")):
        text = corpus.read_text()
        assert "train_B_hparams: hparams/train_B.yaml" in text and "train_C_hparams: hparams/train_C.yaml" in text
    assert "synth_stages: [A, B, C]" in (ROOT / "recipes" / "mini" / "hparams" / "corpus.yaml").read_text()
    assert "train_a train_b train_c synthesize" in (ROOT / "recipes" / "stages.sh").read_text()
