"""Evaluation of synthesized speech (stage 9, :mod:`semtts.stages.evaluate`):

- :mod:`~semtts.evaluation.mcd`: mel-cepstral distortion;
- :mod:`~semtts.evaluation.f0`: an F0 tracker and the log-F0 RMSE;
- :mod:`~semtts.evaluation.dtw`: the DTW alignment both use;
- :mod:`~semtts.evaluation.speaker_similarity`: CAM++ cosine similarity;
- :mod:`~semtts.evaluation.wer`: WER and CER of a Whisper ASR, text normalisation, edit distance;
- :mod:`~semtts.evaluation.report`: ``eval/metrics.json``, the A / B / C table ``eval/results.md``, bar charts;
- :mod:`~semtts.evaluation.scoring`: one synthesized split scored against its references (all of the above);
- :mod:`~semtts.evaluation.plots`: alignment, mel-comparison and duration-histogram PNGs;
- :mod:`~semtts.evaluation.packed_eval`: ``semtts eval``, a packed model scored on a test manifest.

The submodules are imported on demand (the ASR pulls in openai-whisper).

Example
-------
>>> from semtts.evaluation.wer import edit_distance
>>> edit_distance("the cat sat".split(), "the cat sat down".split())["insertions"]
1
"""
