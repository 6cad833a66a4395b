"""YouTube's ``json3`` caption format (``fmt=json3``; yt-dlp's ``--sub-format json3``).

``{"events": [{"tStartMs": 0, "dDurationMs": 2000, "segs": [{"utf8": "hello"},
{"utf8": " world", "tOffsetMs": 400}]}, ...]}``. Events without ``segs`` only place windows on
screen and are skipped; an event's segments (words, for automatic captions) are joined into
one cue lasting from ``tStartMs`` for ``dDurationMs``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import Cue, TranscriptError, caption_text, read_text


def parse_json3(path: Path) -> list[Cue]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise TranscriptError(path, exc.lineno, f"not valid JSON: {exc.msg}") from exc
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise TranscriptError(path, 1, 'expected an object with an "events" list (YouTube json3)')
    cues: list[Cue] = []
    for n, event in enumerate(events):
        if not isinstance(event, dict) or not event.get("segs"):
            continue
        try:
            start = float(event["tStartMs"]) / 1000
            end = start + float(event.get("dDurationMs", 0)) / 1000
            text = caption_text("".join(str(seg["utf8"]) for seg in event["segs"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TranscriptError(
                path,
                None,
                f"event {n}: needs a numeric tStartMs and segs like [{{'utf8': 'text'}}]"
                f" ({type(exc).__name__}: {exc})",
            ) from exc
        if text:
            cues.append(Cue(text=text, start=start, end=end))
    if not cues:
        raise TranscriptError(path, None, "no captions found (no event has text segments)")
    return cues
