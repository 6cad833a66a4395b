"""Text helpers shared by indexing, retrieval and answering: sentences and the Whisper glossary."""

from __future__ import annotations

import re

# Whisper's spellings of the lectures' vocabulary, mapped to the words people type. Applied to the
# searchable view of every passage and to every query, never to the text shown to users.
GLOSSARY: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE), r)
    for p, r in [
        (r"\b10h\b", "tanh"),
        (r"\bten h\b", "tanh"),
        (r"\bbenji\b", "bengio"),
        (r"\bmicro grad\b", "micrograd"),
        (r"\bmake more\b", "makemore"),
        (r"\bnano gpt\b", "nanogpt"),
        (r"\bback[ -]prop(agation)?\b", r"backprop\1"),
        (r"\bbatch[ -]?norm(alization)?s?\b", "batchnorm"),
        (r"\blayer[ -]?norm(alization)?s?\b", "layernorm"),
        (r"\bcross[ -]?entropy\b", "crossentropy"),
        (r"\bself attention\b", "self-attention"),
    ]
]
GLOSSARY_VERSION = "1"
SPLITTER_VERSION = "1"  # bump when sentence or chunk boundaries change


def normalise(text: str) -> str:
    """The searchable form of ``text``: Whisper's misspellings replaced by the usual terms."""
    for pattern, replacement in GLOSSARY:
        text = pattern.sub(replacement, text)
    return text


# A sentence ends at . ! or ? followed by whitespace; decimals like 0.01 and "e.g." stay whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


# Some transcript stretches have no punctuation, only caption lines that each start with a
# capital ("bug And it's a very common bug And I can't"). Long runs are cut there instead.
_CAPTION_START = re.compile(r"\s+(?=[A-Z][a-z'])")
MAX_SENTENCE = 300


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace between them excluded)."""
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        if text[start:end].strip():
            spans.extend(_split_unpunctuated(text, start, end))
        start = match.end()
    if text[start:].strip():
        spans.extend(_split_unpunctuated(text, start, len(text.rstrip())))
    return spans


def _split_unpunctuated(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Pack caption lines of an over-long span into pieces of at most MAX_SENTENCE characters."""
    if end - start <= MAX_SENTENCE:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    piece_start = start
    last_cut = None
    for match in _CAPTION_START.finditer(text, start, end):
        if match.start() - piece_start > MAX_SENTENCE and last_cut is not None:
            pieces.append((piece_start, last_cut[0]))
            piece_start = last_cut[1]
        last_cut = (match.start(), match.end())
    if end - piece_start > MAX_SENTENCE and last_cut is not None and last_cut[1] > piece_start:
        pieces.append((piece_start, last_cut[0]))
        piece_start = last_cut[1]
    pieces.append((piece_start, end))
    return [cut for piece in pieces for cut in _split_at_spaces(text, *piece)]


def _split_at_spaces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The last resort for a run with neither punctuation nor capitals: cut between words."""
    pieces = []
    while end - start > MAX_SENTENCE:
        cut = text.rfind(" ", start, start + MAX_SENTENCE)
        if cut <= start:
            cut = start + MAX_SENTENCE
        pieces.append((start, cut))
        start = cut + 1 if text[cut] == " " else cut
    pieces.append((start, end))
    return pieces


# Names a question may use: words with a capital or a digit ("BERT", "Bengio", "fp16", "GPT-3").
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]*[A-Za-z0-9]")


def cased_words(text: str) -> set[str]:
    """The words of ``text`` that hold a capital or a digit, as written: what a corpus can be
    asked about by name."""
    return {w for w in _WORD.findall(text) if not w.islower() or any(c.isdigit() for c in w)}


def names_in(question: str) -> list[str]:
    """The words of a question that read as names: two capitals ("CLIP", "PyTorch"), a capital
    after the first word ("Bengio"), or a digit ("fp16"). A name the lectures never write
    (nor its plural) is a sign they do not cover the question."""
    out = []
    for n, word in enumerate(_WORD.findall(question)):
        capitals = sum(c.isupper() for c in word)
        if capitals >= 2 or (capitals and n > 0) or any(c.isdigit() for c in word):
            out.append(word)
    return out
