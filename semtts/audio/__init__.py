"""Audio in semtts: files, resampling and spectral features, each in one place.

- :mod:`semtts.audio.io`: reading and writing audio files (soundfile) and
  resampling; the only code that touches audio files.
- :mod:`semtts.audio.features`: the VITS linear and mel spectrograms, used by
  data loading, the losses, synthesis and evaluation; the only STFT code of
  the VITS side.
- :mod:`semtts.audio.kaldi_fbank`: the Kaldi log-mel filterbank that CAM++
  (the speaker encoder) was trained on, for a batch on its device.

The public names of ``io`` and ``features`` are available here too
(``from semtts.audio import load_audio, SpectrogramConfig``).

Example
-------
>>> import torch
>>> cfg = SpectrogramConfig(sample_rate=22050, n_mels=80)
>>> cfg.mel_spectrogram(torch.zeros(1, 22050)).shape
torch.Size([1, 80, 86])
"""

from semtts.audio.features import (SpectrogramConfig, dynamic_range_compression, hann_window, linear_spectrogram,
                                   mel_filterbank, mel_spectrogram, spec_to_mel)
from semtts.audio.io import (audio_info, cut_off, declared_frames, load_audio, read_checked_audio, resample, resampler,
                             save_audio)

__all__ = ["SpectrogramConfig", "audio_info", "cut_off", "declared_frames", "dynamic_range_compression", "hann_window",
           "linear_spectrogram",
           "load_audio", "mel_filterbank", "mel_spectrogram", "read_checked_audio", "resample", "resampler",
           "save_audio", "spec_to_mel"]
