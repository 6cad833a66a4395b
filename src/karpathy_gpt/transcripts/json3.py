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
    raw = read_text(path)
    try:
        data = json.loads(raw)
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
                _event_line(raw, n),
                f"event {n}: needs a numeric tStartMs and segs like [{{'utf8': 'text'}}]"
                f" ({type(exc).__name__}: {exc})",
            ) from exc
        if text:
            cues.append(Cue(text=text, start=start, end=end))
    if not cues:
        raise TranscriptError(path, None, "no captions found (no event has text segments)")
    return cues


def _event_line(raw: str, index: int) -> int | None:
    """The line on which event ``index`` of the ``events`` list starts (for error messages)."""
    decoder = json.JSONDecoder()
    key = raw.find('"events"')
    position = raw.find("[", key) + 1 if key >= 0 else 0
    if position <= 0:
        return None
    for _ in range(index):
        try:
            _, position = decoder.raw_decode(raw, _skip(raw, position))
        except json.JSONDecodeError:
            return None
        position = _skip(raw, position)
        if raw.startswith(",", position):
            position += 1
    return raw.count("\n", 0, _skip(raw, position)) + 1


def _skip(raw: str, position: int) -> int:
    while position < len(raw) and raw[position] in " \t\r\n":
        position += 1
    return position
