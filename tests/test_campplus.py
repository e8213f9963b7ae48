"""The CAM++ lobe: 3D-Speaker parameter names and shapes (so the published
checkpoints load strictly), padding invariance, determinism."""

import pytest
import torch

from semtts.errors import ConfigError
from semtts.lobes.campplus import CAMPPlus, statistics_pooling

# ---------------------------------------------------------------------------
# The documented layout of 3D-Speaker's CAM++ (speakerlab/models/campplus),
# written out here independently of semtts.lobes.campplus:
#   head: conv1 [32, 1, 3, 3] + bn1; layer1 and layer2, each two BasicResBlocks
#         (conv1/bn1/conv2/bn2, 3x3, 32 channels; the first block of a stage
#         has frequency stride 2 and a shortcut 1x1 conv + BN); conv2 + bn2.
#   xvector.tdnn: Conv1d 320 -> 128, kernel 5, + nonlinear.batchnorm
#   xvector.block{1,2,3}: 12 / 24 / 16 CAM dense layers tdnnd{k}, each
#         nonlinear1.batchnorm(C_in), linear1 [128, C_in, 1], nonlinear2.batchnorm(128),
#         cam_layer.linear_local [32, 128, 3] (no bias), linear1 [64, 128, 1] + bias,
#         linear2 [32, 64, 1] + bias; C_in = block input + (k - 1) * 32.
#   xvector.transit{1,2,3}: nonlinear.batchnorm(C) + linear [C / 2, C, 1] (no bias)
#   xvector.out_nonlinear.batchnorm(512); xvector.dense.linear [D, 1024, 1] and
#   an affine-free dense.nonlinear.batchnorm (running stats only).
# ---------------------------------------------------------------------------
BN_AFFINE = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")
# Literal spot checks, straight from the architecture description.
LITERAL = {
    "head.conv1.weight": (32, 1, 3, 3),
    "head.layer1.0.conv1.weight": (32, 32, 3, 3),
    "head.layer1.0.shortcut.0.weight": (32, 32, 1, 1),
    "head.layer2.1.bn2.running_var": (32,),
    "head.conv2.weight": (32, 32, 3, 3),
    "xvector.tdnn.linear.weight": (128, 320, 5),
    "xvector.tdnn.nonlinear.batchnorm.weight": (128,),
    "xvector.block1.tdnnd1.nonlinear1.batchnorm.running_mean": (128,),
    "xvector.block1.tdnnd1.linear1.weight": (128, 128, 1),
    "xvector.block1.tdnnd1.cam_layer.linear_local.weight": (32, 128, 3),
    "xvector.block1.tdnnd1.cam_layer.linear1.weight": (64, 128, 1),
    "xvector.block1.tdnnd1.cam_layer.linear1.bias": (64,),
    "xvector.block1.tdnnd1.cam_layer.linear2.weight": (32, 64, 1),
    "xvector.block1.tdnnd12.linear1.weight": (128, 480, 1),
    "xvector.transit1.linear.weight": (256, 512, 1),
    "xvector.block2.tdnnd24.linear1.weight": (128, 992, 1),
    "xvector.transit2.linear.weight": (512, 1024, 1),
    "xvector.block3.tdnnd16.cam_layer.linear2.bias": (32,),
    "xvector.transit3.nonlinear.batchnorm.weight": (1024,),
    "xvector.transit3.linear.weight": (512, 1024, 1),
    "xvector.out_nonlinear.batchnorm.bias": (512,),
}


def _bn(keys: dict, prefix: str, channels: int, names=BN_AFFINE) -> None:
    for name in names:
        keys[f"{prefix}.{name}"] = () if name == "num_batches_tracked" else (channels,)


def documented_keys(embed_dim: int) -> dict[str, tuple]:
    """Every state-dict key of 3D-Speaker's CAMPPlus(feat_dim=80, embedding_size=embed_dim)."""
    keys: dict[str, tuple] = {"head.conv1.weight": (32, 1, 3, 3)}
    _bn(keys, "head.bn1", 32)
    for stage in (1, 2):
        for block in (0, 1):
            prefix = f"head.layer{stage}.{block}"
            keys[f"{prefix}.conv1.weight"] = (32, 32, 3, 3)
            _bn(keys, f"{prefix}.bn1", 32)
            keys[f"{prefix}.conv2.weight"] = (32, 32, 3, 3)
            _bn(keys, f"{prefix}.bn2", 32)
            if block == 0:
                keys[f"{prefix}.shortcut.0.weight"] = (32, 32, 1, 1)
                _bn(keys, f"{prefix}.shortcut.1", 32)
    keys["head.conv2.weight"] = (32, 32, 3, 3)
    _bn(keys, "head.bn2", 32)
    keys["xvector.tdnn.linear.weight"] = (128, 320, 5)
    _bn(keys, "xvector.tdnn.nonlinear.batchnorm", 128)
    channels = 128
    for b, n_layers in enumerate((12, 24, 16), start=1):
        for k in range(1, n_layers + 1):
            c_in = channels + (k - 1) * 32
            prefix = f"xvector.block{b}.tdnnd{k}"
            _bn(keys, f"{prefix}.nonlinear1.batchnorm", c_in)
            keys[f"{prefix}.linear1.weight"] = (128, c_in, 1)
            _bn(keys, f"{prefix}.nonlinear2.batchnorm", 128)
            keys[f"{prefix}.cam_layer.linear_local.weight"] = (32, 128, 3)
            keys[f"{prefix}.cam_layer.linear1.weight"] = (64, 128, 1)
            keys[f"{prefix}.cam_layer.linear1.bias"] = (64,)
            keys[f"{prefix}.cam_layer.linear2.weight"] = (32, 64, 1)
            keys[f"{prefix}.cam_layer.linear2.bias"] = (32,)
        channels += n_layers * 32
        _bn(keys, f"xvector.transit{b}.nonlinear.batchnorm", channels)
        keys[f"xvector.transit{b}.linear.weight"] = (channels // 2, channels, 1)
        channels //= 2
    _bn(keys, "xvector.out_nonlinear.batchnorm", 512)
    keys["xvector.dense.linear.weight"] = (embed_dim, 1024, 1)
    _bn(keys, "xvector.dense.nonlinear.batchnorm", embed_dim, BN_STATS)
    return keys


def _random_state_dict(keys: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in keys.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.1
    return state


def test_literal_keys_agree_with_the_documented_layout():
    keys = documented_keys(192)
    for name, shape in LITERAL.items():
        assert keys[name] == shape, name
    assert len(keys) == 937


@pytest.mark.parametrize("embed_dim", [192, 512])
def test_documented_state_dict_loads_strictly(embed_dim):
    keys = documented_keys(embed_dim)
    model = CAMPPlus(feat_dim=80, embedding_size=embed_dim)
    own = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert own == keys
    state = _random_state_dict(keys, seed=embed_dim)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = model.state_dict()
    for name in ("xvector.dense.linear.weight", "head.layer2.0.shortcut.1.running_var",
                 "xvector.block3.tdnnd16.cam_layer.linear_local.weight"):
        assert torch.equal(loaded[name], state[name])
    # a state dict with one key renamed or one shape changed does not load strictly
    broken = dict(state)
    broken["xvector.dense.linear.weights"] = broken.pop("xvector.dense.linear.weight")
    with pytest.raises(RuntimeError):
        model.load_state_dict(broken, strict=True)
    broken = dict(state)
    broken["xvector.dense.linear.weight"] = torch.zeros(embed_dim + 1, 1024, 1)
    with pytest.raises(RuntimeError):
        model.load_state_dict(broken, strict=True)


def test_parameter_count_matches_the_paper():
    # 3D-Speaker reports 7.18 M parameters for the 512-d VoxCeleb model
    model = CAMPPlus(embedding_size=512)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 7.18


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CAMPPlus(embedding_size=192).eval()


def test_shapes_and_bad_input(model):
    with torch.inference_mode():
        assert model(torch.randn(3, 57, 80)).shape == (3, 192)
    with pytest.raises(ConfigError, match=r"\[B, T, 80\]"):
        model(torch.randn(2, 80, 57, 1))


def test_padding_does_not_change_the_embeddings(model):
    torch.manual_seed(1)
    # 260 input frames -> 130 frames after the stride-2 TDNN: two CAM segments
    lengths = [260, 163, 57, 201]
    feats = [torch.randn(n, 80) for n in lengths]
    batch = torch.randn(len(lengths), max(lengths), 80) * 5.0  # garbage in the padding
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = f
    rel = torch.tensor(lengths, dtype=torch.float) / max(lengths)
    with torch.inference_mode():
        batched = model(batch, rel)
        alone = torch.cat([model(f.unsqueeze(0)) for f in feats])
    scale = alone.abs().max()
    assert scale > 0
    assert ((batched - alone).abs().max() / scale) < 1e-4
    # the garbage matters without lengths: the masking is what makes it invariant
    with torch.inference_mode():
        unmasked = model(batch)
    assert ((unmasked[1:] - alone[1:]).abs().max() / scale) > 1e-2


def test_full_lengths_equal_no_lengths(model):
    feats = torch.randn(2, 130, 80)
    with torch.inference_mode():
        a = model(feats)
        b = model(feats, torch.ones(2))
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_deterministic(model):
    feats = torch.randn(2, 90, 80)
    with torch.inference_mode():
        assert torch.equal(model(feats), model(feats))
    torch.manual_seed(5)
    a = CAMPPlus(embedding_size=192).eval()
    torch.manual_seed(5)
    b = CAMPPlus(embedding_size=192).eval()
    with torch.inference_mode():
        assert torch.equal(a(feats), b(feats))


def test_statistics_pooling_masked_and_single_frame():
    x = torch.tensor([[[1.0, 2.0, 3.0, 50.0]], [[4.0, -7.0, 0.0, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]])
    stats = statistics_pooling(x, mask)
    assert torch.allclose(stats[0], torch.tensor([2.0, 1.0]))
    assert torch.equal(stats[1], torch.tensor([4.0, 0.0]))
