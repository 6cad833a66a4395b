"""WebVTT ``.vtt`` (YouTube's and yt-dlp's caption files among them).

The file starts with ``WEBVTT``; blocks are separated by blank lines; a cue block is an optional
identifier, a timing line ``[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm [settings]`` and its text. NOTE,
STYLE and REGION blocks are skipped. Inline word-timing tags (``<00:00:01.520><c> word</c>``)
are dropped. Parsed by hand so that every error names its line.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Cue, TranscriptError, add_cue, captions, cue_times, next_filled, read_text

_TIME = r"(?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s+-->\s+{_TIME}(?:\s|$)")
_SKIPPED_BLOCKS = ("NOTE", "STYLE", "REGION")


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_webvtt(path: Path) -> list[Cue]:
    lines = read_text(path).splitlines()
    if not lines or not (lines[0] == "WEBVTT" or lines[0].startswith(("WEBVTT ", "WEBVTT\t"))):
        raise TranscriptError(path, 1, "a WebVTT file must start with the line 'WEBVTT'")

    def block_starts(k: int) -> bool:
        return (
            "-->" in lines[k]
            or (k + 1 < len(lines) and "-->" in lines[k + 1])
            or lines[k].split(maxsplit=1)[0] in _SKIPPED_BLOCKS
        )

    cues: list[Cue] = []
    n = 1
    while n < len(lines) and lines[n].strip() and "-->" not in lines[n]:  # Kind:, Language:
        n += 1
    while n < len(lines):
        if not lines[n].strip():
            n += 1
            continue
        if lines[n].split(maxsplit=1)[0] in _SKIPPED_BLOCKS:
            while n < len(lines) and lines[n].strip():
                n += 1
            continue
        timing_at = n if "-->" in lines[n] else n + 1
        if timing_at >= len(lines) or "-->" not in lines[timing_at]:
            raise TranscriptError(
                path,
                n + 1,
                f"expected a cue timing line like '00:00:01.000 --> 00:00:04.000', "
                f"got {lines[n].strip()[:60]!r}",
            )
        start, end = cue_times(
            _TIMING,
            _seconds,
            path,
            lines,
            timing_at,
            "'00:00:01.000 --> 00:00:04.000' (a dot before the milliseconds)",
        )
        # The cue's text runs to a blank line. YouTube also puts lines holding one space inside
        # cues: such a line ends the cue only when a new block (or the end) follows it.
        n = timing_at + 1
        payload = []
        while n < len(lines):
            if lines[n].strip():
                payload.append(lines[n])
            else:
                k = next_filled(lines, n + 1)
                if lines[n] == "" or k >= len(lines) or block_starts(k):
                    break
            n += 1
        add_cue(cues, payload, start, end)
    return captions(cues, path)
