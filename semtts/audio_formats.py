"""File suffixes of audio formats, in a module that imports nothing heavy (the CLI reads it at start).

Example
-------
>>> ".flac" in AUDIO_SUFFIXES, ".txt" in AUDIO_SUFFIXES
(True, False)
"""

__all__ = ["AUDIO_SUFFIXES"]

AUDIO_SUFFIXES = frozenset({
    ".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff", ".aifc", ".au",
    ".caf", ".w64", ".rf64", ".wv", ".ape", ".alac", ".amr", ".webm", ".mka", ".spx", ".raw", ".pcm", ".sph",
})
"""Suffixes of audio files: an output path with one is a file (``semtts`` CLI), and corpus files of one stem
with two of them would share a cached name (:mod:`semtts.data.validate`)."""
