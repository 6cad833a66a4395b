"""Plain ``.txt`` transcripts: the whole file is the text, with no times."""

from __future__ import annotations

from pathlib import Path

from .base import Cue, TranscriptError, read_text


def parse_plain(path: Path) -> list[Cue]:
    text = read_text(path)
    if not text.strip():
        raise TranscriptError(path, None, "the transcript is empty")
    return [Cue(text=text)]
