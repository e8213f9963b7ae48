"""semtts: multi-speaker VITS with CAM++ speaker embeddings and Whisper
semantic distillation, built on SpeechBrain.

The package is a set of bricks, one concept per module:

- :mod:`semtts.audio`: the only audio I/O, resampling and spectrogram code;
- :mod:`semtts.text`: cleaners, phonemizers and tokenizers;
- :mod:`semtts.data`: manifests, validation and one parser per corpus;
- :mod:`semtts.align`: monotonic alignment search (CPU and Triton backends);
- :mod:`semtts.stages`: one entry point per ``run.sh`` stage.
"""

__version__ = "0.1.0"
