"""What every transcript parser returns (timed cues) and the error they raise on bad input."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import KgptError


class TranscriptError(KgptError):
    """A transcript file that cannot be read; says which file, which line, and what to fix."""

    def __init__(self, path: Path, line: int | None, problem: str):
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Cue:
    """One caption: its text and when it is on screen, in seconds (None for plain text)."""

    text: str
    start: float | None = None
    end: float | None = None


_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def caption_text(raw: str) -> str:
    """A caption's words: markup (<c>, <i>, word-timing tags) dropped, entities decoded."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", raw))).strip()


def read_text(path: Path) -> str:
    """The file as UTF-8 (a BOM dropped); a bad byte is reported with its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TranscriptError(
            path, line, f"not UTF-8 (byte 0x{data[exc.start]:02x}); re-save the file as UTF-8"
        ) from exc


def cue_times(
    timing: re.Pattern[str],
    seconds: Callable[..., float],
    path: Path,
    lines: list[str],
    at: int,
    expected: str,
) -> tuple[float, float]:
    """Start and end of the cue whose timing line is ``lines[at]``, or TranscriptError naming
    its line, what was found and ``expected``."""
    found = timing.match(lines[at])
    if not found:
        raise TranscriptError(
            path, at + 1, f"bad cue timing {lines[at].strip()[:60]!r}; expected {expected}"
        )
    start, end = seconds(*found.groups()[:4]), seconds(*found.groups()[4:])
    if end < start:
        raise TranscriptError(path, at + 1, "the cue ends before it starts")
    return start, end


def next_filled(lines: list[str], n: int) -> int:
    """The first line from ``n`` on that is not blank (``len(lines)`` if none)."""
    while n < len(lines) and not lines[n].strip():
        n += 1
    return n


def add_cue(cues: list[Cue], payload: list[str], start: float, end: float) -> None:
    """The payload lines as one cue, unless they hold no words."""
    text = caption_text(" ".join(payload))
    if text:
        cues.append(Cue(text=text, start=start, end=end))


def captions(cues: list[Cue], path: Path) -> list[Cue]:
    """``cues``, or TranscriptError if the file held none."""
    if not cues:
        raise TranscriptError(path, None, "no captions found")
    return cues
