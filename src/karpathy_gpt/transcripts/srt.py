"""SubRip ``.srt``: numbered blocks of ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` and caption lines.

Parsed by hand (a few lines) so that every error can name the line it is on.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Cue, TranscriptError, add_cue, captions, cue_times, next_filled, read_text

_TIMING = re.compile(
    r"^\s*(\d+):([0-5]?\d):([0-5]?\d)[,.](\d{1,3})\s*-->\s*(\d+):([0-5]?\d):([0-5]?\d)[,.](\d{1,3})"
)


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def parse_srt(path: Path) -> list[Cue]:
    lines = read_text(path).splitlines()

    def block_starts(k: int) -> bool:
        return lines[k].strip().isdigit() and k + 1 < len(lines) and "-->" in lines[k + 1]

    cues: list[Cue] = []
    n = 0
    while n < len(lines):
        if not lines[n].strip():
            n += 1
            continue
        # A block: its number, its timing, then caption lines up to the next block.
        if not lines[n].strip().isdigit():
            raise TranscriptError(
                path, n + 1, f"expected a cue number, got {lines[n].strip()[:60]!r}"
            )
        if n + 1 >= len(lines) or "-->" not in lines[n + 1]:
            got = lines[n + 1].strip()[:60] if n + 1 < len(lines) else "the end of the file"
            raise TranscriptError(
                path,
                n + 2,
                f"expected a timing line like '00:00:01,000 --> 00:00:04,000', got {got!r}",
            )
        start, end = cue_times(
            _TIMING, _seconds, path, lines, n + 1, "'00:00:01,000 --> 00:00:04,000'"
        )
        n += 2
        payload = []
        while n < len(lines) and not block_starts(n):
            if "-->" in lines[n]:
                raise TranscriptError(
                    path, n + 1, "a timing line without its cue number on the line before"
                )
            if lines[n].strip():
                payload.append(lines[n])
            else:
                k = next_filled(lines, n + 1)
                # After a blank line, a lone number starts the next block (checked above).
                if k >= len(lines) or lines[k].strip().isdigit():
                    n = k
                    break
            n += 1
        add_cue(cues, payload, start, end)
    return captions(cues, path)
