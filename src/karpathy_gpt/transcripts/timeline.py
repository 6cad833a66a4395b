"""Cues -> one prose text, with rolling captions de-duplicated and each word's time kept.

Automatic captions "roll": each cue repeats the line before it and adds a few words
(``hello my name`` / ``hello my name is andrej``), and YouTube adds 10 ms cues that repeat the
text once more. Joining cues as they are would say everything two or three times. So each cue
contributes only the words that do not overlap the end of the text so far: the longest run of
words ending the text that also starts the cue is dropped (two words at least, or the whole cue,
so that an ordinary cue starting with the word the last one ended on keeps it).

The text keeps a map from character positions to the times of the cues that contributed them,
so a chunk (a span of characters) can be traced back to the moment it was said.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .base import Cue

OVERLAP_WINDOW = 60  # words of the text so far that a cue may repeat
_WORD = re.compile(r"\S+")
_PUNCT = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class Timeline:
    """Character spans of a text and the times they were said: ``(start_char, start_s, end_s)``."""

    starts: tuple[int, ...]  # first character of each timed span, ascending
    ends: tuple[int, ...]  # one past its last character
    start_times: tuple[float, ...]
    end_times: tuple[float, ...]

    def times(self, start_char: int, end_char: int) -> tuple[float, float] | None:
        """When the characters ``[start_char, end_char)`` were said: first start, last end."""
        first = bisect.bisect_right(self.ends, start_char)
        last = bisect.bisect_left(self.starts, end_char) - 1
        if first >= len(self.starts) or last < first:
            return None
        return self.start_times[first], max(self.end_times[first : last + 1])

    def fingerprint(self) -> str:
        return ";".join(
            f"{s},{e},{a:.3f},{b:.3f}"
            for s, e, a, b in zip(
                self.starts, self.ends, self.start_times, self.end_times, strict=True
            )
        )


def _key(word: str) -> str:
    return _PUNCT.sub("", word.lower())


def _overlap(previous: list[str], cue: list[str]) -> int:
    """How many words at the start of ``cue`` repeat the end of ``previous``."""
    longest = min(len(previous), len(cue), OVERLAP_WINDOW)
    for size in range(longest, 0, -1):
        if previous[-size:] == cue[:size] and (size >= 2 or size == len(cue)):
            return size
    return 0


def join_cues(cues: list[Cue]) -> tuple[str, Timeline | None]:
    """The prose of ``cues`` and, when they are timed, where in it each cue's words are."""
    if all(c.start is None for c in cues):
        return "\n".join(c.text for c in cues), None
    parts: list[str] = []
    length = 0
    recent: list[str] = []  # normalised last words of the text, for the overlap test
    starts, ends, start_times, end_times = [], [], [], []
    for cue in cues:
        words = _WORD.findall(cue.text)
        keys = [_key(w) for w in words]
        new = words[_overlap(recent, keys) :]
        if not new:
            continue
        piece = " ".join(new)
        if parts:
            length += 1  # the joining space
        starts.append(length)
        ends.append(length + len(piece))
        start_times.append(cue.start or 0.0)
        end_times.append(cue.end if cue.end is not None else cue.start or 0.0)
        parts.append(piece)
        length += len(piece)
        recent = (recent + keys[len(words) - len(new) :])[-OVERLAP_WINDOW:]
    return " ".join(parts), Timeline(
        tuple(starts), tuple(ends), tuple(start_times), tuple(end_times)
    )
