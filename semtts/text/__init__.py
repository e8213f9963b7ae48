"""The text frontend: cleaners, phonemizers, token lists and BPE.

- :mod:`semtts.text.cleaners`: text normalisation (``english``, ``mandarin``, ``basic``);
- :mod:`semtts.text.numbers`: numbers in English words (phone numbers, fractions, degrees too);
- :mod:`semtts.text.numbers_cmn`: numbers in hanzi numerals (percents, vulgar fractions, signs too);
- :mod:`semtts.text.dates`: English dates (month names, ISO and slash dates) read with ordinal days;
- :mod:`semtts.text.pinyin`: pinyin syllables, and toned pinyin in raw text;
- :mod:`semtts.text.phonemize`: espeak-ng IPA and pinyin initials / finals;
- :mod:`semtts.text.tokenizer`: ``tokens.txt``, sentencepiece, blank interspersal;
- :mod:`semtts.text.frontend`: :class:`Frontend`, all of the above in one call.

Example
-------
>>> frontend = Frontend("char", "en-us", "english")
>>> tokens = frontend.build_token_list(["Hello there."])
>>> ids, unknown = frontend.encode(["Hello!"])
>>> tokens.decode(ids[0]), dict(unknown)
(['h', 'e', 'l', 'l', 'o', '<unk>'], {'!': 1})
>>> intersperse(ids[0][:2], BLANK_ID)
[1, 6, 1, 5, 1]
"""

from semtts.text.cleaners import CLEANERS, clean_text, clean_with_removed
from semtts.text.frontend import TOKEN_TYPES, Frontend
from semtts.text.phonemize import EspeakPhonemizer, MandarinPhonemizer, is_mandarin
from semtts.text.tokenizer import (
    BLANK_ID,
    PAD_ID,
    UNK_ID,
    SentencePieceTokenizer,
    TokenList,
    intersperse,
    train_bpe,
)

__all__ = [
    "CLEANERS",
    "clean_text",
    "clean_with_removed",
    "TOKEN_TYPES",
    "Frontend",
    "EspeakPhonemizer",
    "MandarinPhonemizer",
    "is_mandarin",
    "PAD_ID",
    "BLANK_ID",
    "UNK_ID",
    "TokenList",
    "SentencePieceTokenizer",
    "intersperse",
    "train_bpe",
]
