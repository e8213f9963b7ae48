"""Items training cannot use are skipped by the loader, padded frames are silent, and training
batches hold utterances of similar lengths."""

import logging

import pytest
import torch

from semtts.audio import SpectrogramConfig, linear_spectrogram, save_audio
from semtts.data.dataset import collate_readable, dataio_prepare, length_buckets, make_train_sampler
from semtts.data.manifest import write_manifest
from semtts.errors import ConfigError

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


def test_training_batches_hold_similar_lengths_within_both_limits():
    from speechbrain.dataio.dataset import DynamicItemDataset

    gen = torch.Generator().manual_seed(0)
    durations = (1.0 + 9.0 * torch.rand(2000, generator=gen)).tolist()  # LJSpeech-like 1-10 s
    data = DynamicItemDataset({f"u{i}": {"duration": d} for i, d in enumerate(durations)})
    batches = list(make_train_sampler(data, max_batch_seconds=160.0, num_buckets=20, seed=1, max_batch_size=16))
    assert sorted(i for batch in batches for i in batch) == list(range(2000))  # every utterance, once
    spans = []
    for batch in batches:
        lengths = [durations[i] for i in batch]
        assert len(batch) <= 16 and len(batch) * max(lengths) <= 160.0
        spans.append(max(lengths) - min(lengths))
    # one bucket per batch: about 9 s / 20 wide (SpeechBrain's own num_buckets mixed every length under 5.7 s)
    assert max(spans) < 0.7 and len(batches) <= 2000 / 16 + 20 + 5


def test_length_buckets_cover_the_longest_utterance_and_refuse_nothing_to_bucket():
    assert length_buckets([0.4, 9.0, 2.5, 7.5], num_buckets=2) == [2.5, 9.0]
    assert length_buckets([5.0], num_buckets=20) == [5.0]
    # utterances listed as 0 s long (min_duration 0): a positive first bound, so that SpeechBrain's
    # batch size per bucket (max_batch_seconds / bound) is defined; the loader then skips them
    from speechbrain.dataio.dataset import DynamicItemDataset

    data = DynamicItemDataset({f"u{i}": {"duration": float(i > 2)} for i in range(6)})
    batches = list(make_train_sampler(data, max_batch_seconds=4.0, num_buckets=2, seed=0, max_batch_size=3))
    assert sorted(len(b) for b in batches) == [3, 3]
    with pytest.raises(ConfigError, match="0 durations and num_buckets 20"):
        length_buckets([], num_buckets=20)
    with pytest.raises(ConfigError, match="num_buckets 0"):
        length_buckets([1.0], num_buckets=0)
