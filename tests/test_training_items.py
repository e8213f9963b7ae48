"""Items training cannot use are skipped by the loader, and padded frames are silent."""

import logging

import pytest
import torch

from semtts.audio import SpectrogramConfig, linear_spectrogram, save_audio
from semtts.data.dataset import collate_readable, dataio_prepare
from semtts.data.manifest import write_manifest

CFG = SpectrogramConfig(sample_rate=16000, n_fft=512, hop_length=128, win_length=512, n_mels=40)


def test_frames_past_each_items_end_are_zero():
    wav = torch.randn(3, 4096)
    lengths = torch.tensor([4096, 3000, 1000])
    spec = linear_spectrogram(wav, 512, 128, 512, lengths)
    for item, length in enumerate(lengths.tolist()):
        frames = length // 128
        assert spec[item, :, frames:].abs().sum() == 0  # (none past the first item's end)
        assert spec[item, :, :frames].min() > 0  # sqrt(|X|^2 + 1e-6) inside
    # the padded frames give the mel floor, as a zero-padded batch of spectrograms does (original VITS)
    mel = CFG.spec_to_mel(spec)
    assert torch.allclose(mel[2, :, 1000 // 128:], torch.tensor(1e-5).log())


def test_min_samples_covers_the_reflect_padding_and_one_frame():
    assert CFG.min_samples == max((512 - 128) // 2 + 1, 128) == 193
    assert SpectrogramConfig(n_fft=1024, hop_length=256, win_length=1024).min_samples == 385
    assert SpectrogramConfig(n_fft=256, hop_length=256, win_length=256).min_samples == 256


@pytest.fixture
def manifest(tmp_path):
    items = {}
    for utt, samples, n_tokens in (("fine", 4000, 10), ("too_short", 150, 1), ("misaligned", 2000, 9)):
        path = tmp_path / f"{utt}.wav"
        save_audio(path, 0.1 * torch.randn(samples), 16000)
        items[utt] = {"wav": str(path), "text": "a", "spk": "s", "duration": samples / 16000, "sr": 16000,
                      "tokens": list(range(3, 3 + n_tokens))}
    write_manifest(tmp_path / "train.json", items)
    return tmp_path / "train.json"


def test_loader_skips_items_too_short_or_with_more_tokens_than_frames(manifest, caplog):
    # misaligned: 2000 // 128 = 15 frames for 2 * 9 + 1 = 19 tokens with blanks
    data = dataio_prepare({"train": manifest}, "", "", 16000, True, spectrogram=CFG)["train"]
    data.set_output_keys(["id", "sig", "token_ids"])
    with caplog.at_level(logging.WARNING):
        items = [data[i] for i in range(len(data))]
        batch = collate_readable(items)
    assert batch.id == ["fine"]
    text = caplog.text
    assert "too_short.wav: 150 samples, fewer than the spectrogram needs (193); the item is skipped" in text
    assert "misaligned.wav: 15 frames for 19 tokens" in text
    # without blanks, 9 tokens fit in 15 frames; without the settings (synthesis), nothing is checked
    data = dataio_prepare({"train": manifest}, "", "", 16000, False, spectrogram=CFG)["train"]
    data.set_output_keys(["id", "sig"])
    assert collate_readable([data[i] for i in range(len(data))]).id == ["fine", "misaligned"]
    data = dataio_prepare({"train": manifest}, "", "", 16000, True)["train"]
    data.set_output_keys(["id", "sig"])
    assert len(collate_readable([data[i] for i in range(len(data))]).id) == 3
