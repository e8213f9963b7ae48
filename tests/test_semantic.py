"""The semantic lobes: interpolation of teacher frames, pooling along the
alignment path, SemPred and the cross-attention adapter (padding
invariance, the gated residual, gradients) with the VITS text encoder."""

import pytest
import torch

from semtts.errors import ConfigError, DataError
from semtts.lobes.semantic import SemanticCrossAttnAdapter, SemPred, pool_by_path, teacher_to_spec_frames
from semtts.lobes.vits.alignment import durations_to_path
from semtts.lobes.vits.masks import lengths_to_mask
from semtts.lobes.vits.text_encoder import TextEncoder
from semtts.losses import MaskedL1


def _pad(items: list[torch.Tensor], length: int, dim: int) -> torch.Tensor:
    """Zero-pad tensors along ``dim`` to ``length`` and stack them."""
    padded = []
    for item in items:
        shape = list(item.shape)
        shape[dim] = length - shape[dim]
        padded.append(torch.cat([item, item.new_zeros(shape)], dim=dim))
    return torch.stack(padded)


def test_teacher_to_spec_frames_hand_values_and_batches():
    one = torch.tensor([[0.0, 10.0], [2.0, 30.0]])  # [T_sem=2, D=2]
    out = teacher_to_spec_frames(one, 4)
    assert out[:, 0].tolist() == [0.5, 1.5, 2.0, 2.0] and out[:, 1].tolist() == [15.0, 25.0, 30.0, 30.0]
    ramp = torch.arange(50.0).unsqueeze(1)  # 1 s at 50 Hz: the value is the teacher frame's index
    # at the same rate a spectrogram frame is centred half a frame after the teacher's
    torch.testing.assert_close(teacher_to_spec_frames(ramp, 50), (ramp + 0.5).clamp(max=49.0))
    up = teacher_to_spec_frames(ramp, 86)[:, 0]  # 22.05 kHz / 256 hop
    centres = (torch.arange(86) + 0.5) * 256 / 22050  # seconds
    torch.testing.assert_close(up[:-1], centres[:-1] / 0.02, atol=0.1, rtol=0)  # the teacher at each centre, within 2 ms
    assert torch.all(up[1:] >= up[:-1]) and up[-1] == 49.0
    feats = [torch.randn(7, 3), torch.randn(4, 3)]
    batch = teacher_to_spec_frames(_pad(feats, 9, 0), torch.tensor([12, 6]), torch.tensor([7, 4]))
    assert batch.shape == (2, 12, 3)
    torch.testing.assert_close(batch[0], teacher_to_spec_frames(feats[0], 12))
    torch.testing.assert_close(batch[1, :6], teacher_to_spec_frames(feats[1], 6))
    assert not batch[1, 6:].any()
    with pytest.raises(DataError, match="no teacher frame"):
        teacher_to_spec_frames(torch.zeros(0, 3), 5)


def test_pool_by_path_hand_example():
    feats = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0], [9.0, 8.0], [11.0, 0.0]],
                          [[2.0, 2.0], [4.0, 4.0], [6.0, 6.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    durations = torch.tensor([[2.0, 0.0, 3.0, 1.0], [1.0, 2.0, 0.0, 0.0]])
    token_lengths, spec_lengths = torch.tensor([4, 2]), torch.tensor([6, 3])
    path = durations_to_path(durations, lengths_to_mask(token_lengths, 4), lengths_to_mask(spec_lengths, 6))
    assert path.shape == (2, 6, 4)  # [B, T_spec, T_text], as the VITS alignment gives it
    pooled = pool_by_path(feats, path, token_lengths)
    expected = torch.tensor([[[2.0, 1.0], [0.0, 0.0], [7.0, 6.0], [11.0, 0.0]],   # token 1 has no frame
                             [[2.0, 2.0], [5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]])   # tokens 2, 3 are padding
    torch.testing.assert_close(pooled, expected)
    # A stray 1 in a padded token column stays out of the result.
    path[1, 5, 3] = 1.0
    torch.testing.assert_close(pool_by_path(feats, path, token_lengths), expected)
    with pytest.raises(DataError, match="pool_by_path"):
        pool_by_path(feats, path[:, :5], token_lengths)


def test_sempred_and_adapter_ignore_padding_and_masked_l1_too():
    torch.manual_seed(0)
    sempred = SemPred(in_channels=16, out_channels=6, hidden=24, kernel_size=5, n_layers=3).eval()
    adapter = SemanticCrossAttnAdapter(query_channels=16, sem_channels=6).eval()
    with torch.no_grad():
        adapter.gate.fill_(0.7)  # make the attention branch weigh in the comparison
    lengths, sem_lengths = [5, 8], [9, 4]
    hidden = [torch.randn(16, n) for n in lengths]  # [H, T_text] each
    sems = [torch.randn(n, 6) for n in sem_lengths]  # [T_k, D] each
    targets = [torch.randn(n, 6) for n in lengths]
    t_text, t_k = torch.tensor(lengths), torch.tensor(sem_lengths)
    loss = MaskedL1()
    with torch.no_grad():
        singles = [sempred(h[None], torch.tensor([h.shape[1]]))[0] for h in hidden]
        adapted = [adapter(h[None], torch.tensor([h.shape[1]]), s[None], torch.tensor([s.shape[0]]))[0]
                   for h, s in zip(hidden, sems)]
        losses = []
        for extra in (0, 3):  # two amounts of padding
            x = _pad(hidden, 8 + extra, 1)
            sem = _pad(sems, 9 + extra, 0)
            sem[1, 4:] = 100.0  # garbage in padded keys must not matter
            pred = sempred(x, t_text)
            out = adapter(x, t_text, sem, t_k)
            for b, n in enumerate(lengths):
                torch.testing.assert_close(pred[b, :n], singles[b], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(out[b, :, :n], adapted[b], atol=1e-5, rtol=1e-5)
                assert not pred[b, n:].any() and not out[b, :, n:].any()
            losses.append(loss(pred, _pad(targets, 8 + extra, 0), t_text))
        torch.testing.assert_close(losses[0], losses[1])
        flat = torch.cat([(p - t).abs().flatten() for p, t in zip(singles, targets)]).mean()
        torch.testing.assert_close(losses[0], flat)


def test_adapter_is_a_gated_residual():
    torch.manual_seed(1)
    adapter = SemanticCrossAttnAdapter(8, 4, n_heads=4, gate_init=0.1).eval()
    assert adapter.gate.item() == pytest.approx(0.1)
    x, sem = torch.randn(2, 8, 5), torch.randn(2, 7, 4)
    x_lengths, sem_lengths = torch.tensor([5, 3]), torch.tensor([7, 0])  # item 1 has no semantics
    mask = lengths_to_mask(x_lengths, 5)
    with torch.no_grad():
        out = adapter(x, x_lengths, sem, sem_lengths)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[1], (x * mask)[1])  # nothing to attend to: x back
        assert not torch.allclose(out[0], x[0])
        adapter.gate.zero_()
        torch.testing.assert_close(adapter(x, x_lengths, sem, sem_lengths), x * mask)
    with pytest.raises(ConfigError, match="divisible"):
        SemanticCrossAttnAdapter(10, 4, n_heads=4)
    with pytest.raises(ConfigError, match="odd"):
        SemPred(8, 4, kernel_size=4)


def test_gradients_reach_the_student_the_adapter_and_the_text_encoder():
    torch.manual_seed(2)
    encoder = TextEncoder(n_vocab=12, out_channels=4, hidden_channels=16, filter_channels=32, n_heads=2, n_layers=1)
    sempred = SemPred(16, 6, hidden=24)
    adapter = SemanticCrossAttnAdapter(16, 6)
    tokens, token_lengths = torch.randint(0, 12, (2, 7)), torch.tensor([7, 5])
    text = encoder(tokens, token_lengths)
    teacher = torch.randn(2, 7, 6)  # per-token teacher targets, loaded from disk: no gradient
    pred = sempred(text.hidden, token_lengths)
    distill = MaskedL1()(pred, teacher, token_lengths)
    # The adapter acts on the hidden output before the projection to m_p, logs_p.
    hidden = adapter(text.hidden, token_lengths, teacher, token_lengths)
    m_p, logs_p = (encoder.proj(hidden) * text.mask).split(4, dim=1)
    assert m_p.shape == logs_p.shape == (2, 4, 7)
    (distill + m_p.pow(2).mean() + logs_p.mean()).backward()
    assert adapter.gate.grad is not None and adapter.gate.grad.abs() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sempred.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())
    assert encoder.embedding.weight.grad.abs().sum() > 0  # the text encoder learns from the distillation
    # that no gradient reaches the teacher features in training: tests/test_semantic_stages.py
