"""Transcript files -> prose text (+ a timeline for timed formats), one parser per format.

``.txt`` (plain text, no times), ``.vtt`` (WebVTT), ``.srt`` (SubRip) and ``.json3`` (YouTube's
caption JSON). Every parser returns cues; :func:`read_transcript` joins them into prose with
rolling captions de-duplicated. A malformed file raises :class:`TranscriptError` naming the file
and, where there is one, the line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Cue, TranscriptError
from .json3 import parse_json3
from .plain import parse_plain
from .srt import parse_srt
from .timeline import Timeline, join_cues
from .webvtt import parse_webvtt

# In order of preference when one lecture has files in several formats: the finest times first.
PARSERS: dict[str, Callable[[Path], list[Cue]]] = {
    ".json3": parse_json3,
    ".vtt": parse_webvtt,
    ".srt": parse_srt,
    ".txt": parse_plain,
}
SUFFIXES = tuple(PARSERS)


def read_transcript(path: Path) -> tuple[str, Timeline | None]:
    """The transcript's prose and, for timed formats, its timeline."""
    parser = PARSERS.get(path.suffix.lower())
    if parser is None:
        raise TranscriptError(
            path, None, f"unknown transcript format; use one of {', '.join(SUFFIXES)}"
        )
    try:
        cues = parser(path)
    except OSError as exc:
        raise TranscriptError(path, None, f"cannot read the file ({exc.strerror or exc})") from exc
    return join_cues(cues)


__all__ = ["Cue", "SUFFIXES", "Timeline", "TranscriptError", "read_transcript"]
