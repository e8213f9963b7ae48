"""CAM++: the speaker-verification network whose embeddings condition semtts.

CAM++ (Wang et al., "CAM++: A Fast and Efficient Network for Speaker
Verification Using Context-Aware Masking", Interspeech 2023) reads 80-bin
Kaldi fbank frames and returns one speaker vector per utterance:

- an FCM head: a 2-D convolution and two stages of residual blocks that
  halve the frequency axis (32 channels), so 80 bins become 10 x 32 = 320
  channels per frame;
- a D-TDNN trunk: a TDNN layer (kernel 5, time stride 2), three densely
  connected blocks of CAM layers (12 / 24 / 16 layers, growth 32, bottleneck
  128, kernel 3, dilations 1 / 2 / 2), each followed by a transit layer that
  halves the channels; every CAM layer gates its local convolution with a
  sigmoid mask computed from the utterance mean plus the mean of its
  100-frame segment (context-aware masking);
- BN-ReLU, statistics pooling (mean and standard deviation over time) and a
  dense layer to ``embedding_size`` with an affine-free BatchNorm.

Module and parameter names follow 3D-Speaker's ``speakerlab`` implementation
(``head.layer1.0.conv1.weight``, ``xvector.block1.tdnnd1.cam_layer.linear_local.weight``,
``xvector.dense.linear.weight``, ...), so its published state dicts
(``campplus_cn_common.bin``, 192-d; ``campplus_voxceleb.bin``, 512-d) load with
``strict=True``.

Padding: with ``lengths``, every time convolution sees zeros beyond each
item's end, and the CAM context and the statistics pooling average over valid
frames only, so in eval mode a padded item gets the embedding it gets alone.
(In training mode BatchNorm uses batch statistics, padding included, as in
3D-Speaker.)

Example
-------
>>> model = CAMPPlus(feat_dim=80, embedding_size=192).eval()
>>> feats = torch.randn(2, 150, 80)  # [B, T, n_mels]
>>> model(feats, lengths=torch.tensor([1.0, 0.6])).shape  # [B, embedding_size]
torch.Size([2, 192])
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from semtts.errors import ConfigError
from semtts.lobes.vits.masks import apply_mask, lengths_to_mask

__all__ = [
    "CAMPPlus",
    "FCM",
    "BasicResBlock",
    "CAMLayer",
    "CAMDenseTDNNLayer",
    "CAMDenseTDNNBlock",
    "DTDNN",
    "masked_mean",
    "statistics_pooling",
    "relative_to_absolute",
]


def relative_to_absolute(lengths: torch.Tensor | None, max_len: int, batch: int) -> torch.Tensor:
    """Turn SpeechBrain relative lengths (fractions of ``max_len``) into
    absolute frame counts.

    Arguments
    ---------
    lengths : torch.Tensor or None
        ``[B]`` relative lengths in (0, 1]; ``None`` means all full.
    max_len : int
        The padded length ``T``.
    batch : int
        ``B``, used when ``lengths`` is None.

    Returns
    -------
    torch.Tensor
        ``[B]`` integer lengths in ``[1, T]``.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5]), 10, 2)
    tensor([10,  5])
    """
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.long)
    return torch.round(lengths.float() * max_len).long().clamp(1, max_len)


def _bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm then ReLU, named as 3D-Speaker's ``batchnorm-relu`` config."""
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU())]))


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last axis, over valid frames only.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, C, T]``.
    mask : torch.Tensor or None
        ``[B, 1, T]`` float mask (1 on valid frames); None means all valid.

    Returns
    -------
    torch.Tensor
        ``[B, C, 1]``.

    Example
    -------
    >>> masked_mean(torch.tensor([[[1.0, 3.0, 100.0]]]), torch.tensor([[[1.0, 1.0, 0.0]]]))
    tensor([[[2.]]])
    """
    if mask is None:
        return x.mean(dim=-1, keepdim=True)
    return (x * mask).sum(dim=-1, keepdim=True) / mask.sum(dim=-1, keepdim=True).clamp(min=1.0)


def statistics_pooling(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Concatenated mean and (unbiased) standard deviation over time.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, C, T]``.
    mask : torch.Tensor or None
        ``[B, 1, T]`` float mask; None means all frames are valid.

    Returns
    -------
    torch.Tensor
        ``[B, 2 C]``; an item of a single frame gets a standard deviation of 0
        (instead of NaN).

    Example
    -------
    >>> statistics_pooling(torch.randn(2, 8, 30)).shape
    torch.Size([2, 16])
    """
    if mask is None:
        mask = x.new_ones(x.shape[0], 1, x.shape[-1])
    count = mask.sum(dim=-1)
    mean = masked_mean(x, mask)
    var = (((x - mean) * mask) ** 2).sum(dim=-1) / (count - 1.0).clamp(min=1.0)
    return torch.cat([mean.squeeze(-1), var.sqrt()], dim=-1)


def _segment_mean(x: torch.Tensor, mask: torch.Tensor | None, seg_len: int) -> torch.Tensor:
    """Mean of every ``seg_len``-frame segment (valid frames only), spread
    back over the frames of the segment: ``[B, C, T]`` -> ``[B, C, T]``."""
    if mask is None:
        seg = F.avg_pool1d(x, kernel_size=seg_len, stride=seg_len, ceil_mode=True)
    else:
        n_seg = -(-x.shape[-1] // seg_len)
        pad = n_seg * seg_len - x.shape[-1]
        sums = F.pad(x * mask, (0, pad)).unflatten(-1, (n_seg, seg_len)).sum(dim=-1)
        counts = F.pad(mask, (0, pad)).unflatten(-1, (n_seg, seg_len)).sum(dim=-1)
        seg = sums / counts.clamp(min=1.0)
    return seg.repeat_interleave(seg_len, dim=-1)[..., : x.shape[-1]]


class BasicResBlock(nn.Module):
    """Residual block of two 3x3 convolutions; ``stride`` applies to the
    frequency axis only.

    Arguments
    ---------
    in_planes : int
        Input channels.
    planes : int
        Output channels.
    stride : int
        Frequency stride of the first convolution (and of the shortcut).

    Example
    -------
    >>> BasicResBlock(32, 32, stride=2)(torch.randn(1, 32, 40, 7)).shape  # [B, C, F, T]
    torch.Size([1, 32, 20, 7])
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
            )
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, F, T]`` (zero on padded frames) -> ``[B, planes, F / stride, T]``;
        ``mask`` is ``[B, 1, 1, T]`` or None."""
        out = apply_mask(F.relu(self.bn1(self.conv1(x))), mask)
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return apply_mask(F.relu(out), mask)


class FCM(nn.Module):
    """The 2-D convolutional front (FCM) of CAM++: ``[B, F, T]`` fbank to
    ``[B, m_channels * F / 8, T]`` frame features.

    Arguments
    ---------
    feat_dim : int
        Fbank bins ``F``.
    m_channels : int
        Channels of the 2-D convolutions.
    num_blocks : tuple of int
        Residual blocks in each of the two stages.

    Example
    -------
    >>> head = FCM(feat_dim=80)
    >>> head.out_channels, head(torch.randn(2, 80, 50)).shape
    (320, torch.Size([2, 320, 50]))
    """

    def __init__(self, feat_dim: int = 80, m_channels: int = 32, num_blocks: tuple[int, int] = (2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(
            *[BasicResBlock(m_channels, m_channels, 2 if i == 0 else 1) for i in range(num_blocks[0])]
        )
        self.layer2 = nn.Sequential(
            *[BasicResBlock(m_channels, m_channels, 2 if i == 0 else 1) for i in range(num_blocks[1])]
        )
        self.conv2 = nn.Conv2d(m_channels, m_channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        freq = feat_dim
        for _ in range(3):  # three frequency strides of 2 (kernel 3, padding 1)
            freq = (freq - 1) // 2 + 1
        self.out_channels = m_channels * freq

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, F, T]`` -> ``[B, out_channels, T]``; ``mask`` is ``[B, 1, T]`` or None."""
        mask2d = None if mask is None else mask.unsqueeze(1)
        out = apply_mask(x.unsqueeze(1), mask2d)
        out = apply_mask(F.relu(self.bn1(self.conv1(out))), mask2d)
        for block in (*self.layer1, *self.layer2):
            out = block(out, mask2d)
        out = apply_mask(F.relu(self.bn2(self.conv2(out))), mask2d)
        return out.flatten(1, 2)


class TDNNLayer(nn.Module):
    """Conv1d (no bias) then BN-ReLU, with "same" padding.

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    kernel_size : int
        Odd kernel size.
    stride : int
        Time stride.
    dilation : int
        Time dilation.

    Example
    -------
    >>> TDNNLayer(320, 128, 5, stride=2)(torch.randn(1, 320, 11)).shape
    torch.Size([1, 128, 6])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ConfigError(f"CAM++ TDNN layer: kernel_size must be odd, got {kernel_size}")
        padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                dilation=dilation, bias=False)
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T]`` (zero on padded frames) -> ``[B, C_out, ceil(T / stride)]``."""
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """Context-aware masking: a local dilated convolution gated by a sigmoid
    of the utterance mean plus the 100-frame segment mean.

    Arguments
    ---------
    bn_channels : int
        Input (bottleneck) channels.
    out_channels : int
        Output channels (the growth rate).
    kernel_size : int
        Kernel of the local convolution.
    dilation : int
        Its dilation.
    reduction : int
        Channel reduction of the context path.
    seg_len : int
        Segment length of the segment pooling, in frames.

    Example
    -------
    >>> CAMLayer(128, 32, 3, dilation=2)(torch.randn(2, 128, 230)).shape
    torch.Size([2, 32, 230])
    """

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 reduction: int = 2, seg_len: int = 100):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size, padding=padding,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.seg_len = seg_len

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, T]`` -> ``[B, out_channels, T]``; ``mask`` is ``[B, 1, T]`` or None."""
        x = apply_mask(x, mask)
        local = self.linear_local(x)
        context = masked_mean(x, mask) + _segment_mean(x, mask, self.seg_len)
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return local * gate


class CAMDenseTDNNLayer(nn.Module):
    """One densely connected layer: BN-ReLU, 1x1 bottleneck, BN-ReLU, CAM layer.

    Arguments
    ---------
    in_channels : int
        Input channels (grow along the block).
    out_channels : int
        New channels this layer adds (growth rate).
    bn_channels : int
        Bottleneck channels.
    kernel_size : int
        Kernel of the CAM local convolution.
    dilation : int
        Its dilation.
    seg_len : int
        CAM segment length.

    Example
    -------
    >>> CAMDenseTDNNLayer(128, 32, 128, 3)(torch.randn(1, 128, 20)).shape
    torch.Size([1, 32, 20])
    """

    def __init__(self, in_channels: int, out_channels: int, bn_channels: int, kernel_size: int,
                 dilation: int = 1, seg_len: int = 100):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ConfigError(f"CAM++ dense layer: kernel_size must be odd, got {kernel_size}")
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation, seg_len=seg_len)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, in_channels, T]`` -> ``[B, out_channels, T]``."""
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))), mask)


class CAMDenseTDNNBlock(nn.Module):
    """A dense block: every layer's output is concatenated to its input
    (submodules ``tdnnd1``, ``tdnnd2``, ...).

    Arguments
    ---------
    num_layers : int
        Layers in the block.
    in_channels : int
        Input channels.
    out_channels : int
        Growth rate (channels each layer adds).
    bn_channels : int
        Bottleneck channels.
    kernel_size : int
        CAM kernel size.
    dilation : int
        CAM dilation.
    seg_len : int
        CAM segment length.

    Example
    -------
    >>> CAMDenseTDNNBlock(2, 16, 8, 32, 3)(torch.randn(1, 16, 9)).shape  # 16 + 2 * 8 channels
    torch.Size([1, 32, 9])
    """

    def __init__(self, num_layers: int, in_channels: int, out_channels: int, bn_channels: int,
                 kernel_size: int, dilation: int = 1, seg_len: int = 100):
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            layer = CAMDenseTDNNLayer(in_channels + i * out_channels, out_channels, bn_channels,
                                      kernel_size, dilation, seg_len)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, T]`` -> ``[B, C + num_layers * out_channels, T]``."""
        for layer in self.children():
            x = torch.cat([x, layer(x, mask)], dim=1)
        return x


class TransitLayer(nn.Module):
    """BN-ReLU then a 1x1 convolution (no bias) between dense blocks.

    Example
    -------
    >>> TransitLayer(512, 256)(torch.randn(1, 512, 4)).shape
    torch.Size([1, 256, 4])
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T]`` -> ``[B, C_out, T]``."""
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    """The embedding layer: 1x1 convolution (no bias) then an affine-free BatchNorm.

    Example
    -------
    >>> DenseLayer(1024, 192).eval()(torch.randn(3, 1024)).shape
    torch.Size([3, 192])
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(out_channels, affine=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in]`` -> ``[B, C_out]``."""
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class DTDNN(nn.Module):
    """The CAM++ trunk (3D-Speaker's ``xvector``): TDNN, dense blocks with
    transit layers, BN-ReLU, statistics pooling and the embedding layer.

    Arguments
    ---------
    in_channels : int
        Channels from the FCM head.
    embedding_size : int
        Output dimension.
    growth_rate : int
        Channels each CAM layer adds.
    bn_size : int
        Bottleneck width as a multiple of ``growth_rate``.
    init_channels : int
        Channels of the first TDNN layer.
    block_layers : tuple of int
        Layers per dense block.
    block_dilations : tuple of int
        CAM dilation per dense block.
    kernel_size : int
        CAM kernel size.
    seg_len : int
        CAM segment length, in (half-rate) frames.

    Example
    -------
    >>> trunk = DTDNN(320, 16, block_layers=(1, 1, 1)).eval()
    >>> trunk(torch.randn(2, 320, 40), torch.tensor([40, 25])).shape
    torch.Size([2, 16])
    """

    def __init__(self, in_channels: int, embedding_size: int = 192, growth_rate: int = 32, bn_size: int = 4,
                 init_channels: int = 128, block_layers: tuple[int, ...] = (12, 24, 16),
                 block_dilations: tuple[int, ...] = (1, 2, 2), kernel_size: int = 3, seg_len: int = 100):
        super().__init__()
        if len(block_layers) != len(block_dilations):
            raise ConfigError(f"CAM++: block_layers {block_layers} and block_dilations {block_dilations} "
                              "must have the same length")
        self.tdnn = TDNNLayer(in_channels, init_channels, 5, stride=2)
        self.n_blocks = len(block_layers)
        channels = init_channels
        for i, (layers, dilation) in enumerate(zip(block_layers, block_dilations), start=1):
            block = CAMDenseTDNNBlock(layers, channels, growth_rate, bn_size * growth_rate, kernel_size,
                                      dilation, seg_len)
            self.add_module(f"block{i}", block)
            channels += layers * growth_rate
            self.add_module(f"transit{i}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.out_nonlinear = _bn_relu(channels)
        self.dense = DenseLayer(channels * 2, embedding_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, T]`` (zero on padded frames) and absolute ``[B]`` lengths
        (or None) -> ``[B, embedding_size]``."""
        x = self.tdnn(x)
        mask = None
        if lengths is not None:
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1  # the stride-2 TDNN
            mask = lengths_to_mask(lengths.to(x.device), x.shape[-1], dtype=x.dtype)
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"block{i}")(x, mask)
            x = getattr(self, f"transit{i}")(x)
        x = self.out_nonlinear(x)
        return self.dense(statistics_pooling(x, mask))


class CAMPPlus(nn.Module):
    """The CAM++ speaker embedding network (3D-Speaker layout and names).

    Arguments
    ---------
    feat_dim : int
        Fbank bins of the input.
    embedding_size : int
        Embedding dimension (192 for ``campplus_cn_common.bin``, 512 for
        ``campplus_voxceleb.bin``).
    growth_rate : int
        Channels each CAM layer adds.
    bn_size : int
        Bottleneck width as a multiple of ``growth_rate``.
    init_channels : int
        Channels of the first TDNN layer.
    head_channels : int
        Channels of the FCM head.
    block_layers : tuple of int
        Layers per dense block (the published models: 12, 24, 16).
    block_dilations : tuple of int
        CAM dilations per block (1, 2, 2).
    kernel_size : int
        CAM kernel size.
    seg_len : int
        CAM segment length in frames after the stride-2 TDNN.

    Example
    -------
    >>> model = CAMPPlus(embedding_size=512).eval()
    >>> sum(p.numel() for p in model.parameters()) / 1e6  # 7.18 M in the paper
    7.176224
    >>> model(torch.randn(1, 120, 80)).shape
    torch.Size([1, 512])
    """

    def __init__(self, feat_dim: int = 80, embedding_size: int = 192, growth_rate: int = 32, bn_size: int = 4,
                 init_channels: int = 128, head_channels: int = 32,
                 block_layers: tuple[int, ...] = (12, 24, 16), block_dilations: tuple[int, ...] = (1, 2, 2),
                 kernel_size: int = 3, seg_len: int = 100):
        super().__init__()
        self.feat_dim = feat_dim
        self.embedding_size = embedding_size
        self.head = FCM(feat_dim, head_channels)
        self.xvector = DTDNN(self.head.out_channels, embedding_size, growth_rate, bn_size, init_channels,
                             tuple(block_layers), tuple(block_dilations), kernel_size, seg_len)
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embed a batch of fbank sequences.

        Arguments
        ---------
        feats : torch.Tensor
            ``[B, T, feat_dim]`` fbank frames (mean-normalised per utterance).
        lengths : torch.Tensor, optional
            ``[B]`` relative lengths (SpeechBrain style, fraction of ``T``);
            padded frames do not change the result (in eval mode).

        Returns
        -------
        torch.Tensor
            ``[B, embedding_size]``.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.feat_dim:
            raise ConfigError(f"CAM++ expects [B, T, {self.feat_dim}] features, got {tuple(feats.shape)}")
        x = feats.transpose(1, 2)
        absolute = None
        mask = None
        if lengths is not None:
            absolute = relative_to_absolute(lengths, x.shape[-1], x.shape[0]).to(x.device)
            mask = lengths_to_mask(absolute, x.shape[-1], dtype=x.dtype)
        return self.xvector(self.head(x, mask), absolute)
