"""The VITS generator bricks (Kim et al. 2021), one concept per module.

- :mod:`~semtts.lobes.vits.masks`: padding masks from absolute lengths;
- :mod:`~semtts.lobes.vits.attention`: relative-position self-attention,
  conv feed-forward, channel layer norm;
- :mod:`~semtts.lobes.vits.text_encoder`: tokens to the prior ``m_p, logs_p``;
- :mod:`~semtts.lobes.vits.wavenet`: the non-causal gated WaveNet stack;
- :mod:`~semtts.lobes.vits.posterior_encoder`: spectrogram to ``z``;
- :mod:`~semtts.lobes.vits.flow`: the residual coupling flow ``z <-> z_p``;
- :mod:`~semtts.lobes.vits.spline`, :mod:`~semtts.lobes.vits.duration_flows`,
  :mod:`~semtts.lobes.vits.duration`: the duration predictors;
- :mod:`~semtts.lobes.vits.hifigan`: the HiFi-GAN decoder;
- :mod:`~semtts.lobes.vits.alignment`, :mod:`~semtts.lobes.vits.segments`,
  :mod:`~semtts.lobes.vits.speaker`, :mod:`~semtts.lobes.vits.weight_norm`:
  alignment, window slicing, speaker conditioning, weight-norm removal;
- :mod:`~semtts.lobes.vits.synthesizer`: :class:`VITSSynthesizer`, all of it.

Example
-------
>>> from semtts.lobes.vits import VITSSynthesizer
>>> VITSSynthesizer.__name__
'VITSSynthesizer'
"""

from semtts.lobes.vits.synthesizer import VITSInference, VITSOutput, VITSSynthesizer

__all__ = ["VITSSynthesizer", "VITSOutput", "VITSInference"]
