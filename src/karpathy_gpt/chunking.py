"""Lecture text -> chunks sized for the embedding model, split at sentence boundaries.

all-MiniLM-L6-v2 reads at most 256 word pieces (~1,000 characters of transcript), so chunks are
~800 characters with ~100 characters of whole-sentence overlap: nothing past the model's window
is silently dropped, and a sentence cut by one boundary is whole in the neighbouring chunk.

Chunks of timed transcripts also carry ``start`` and ``end`` (seconds) and a ``link`` that opens
the video where the chunk begins; plain-text chunks link to the whole video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .corpus import Lecture
from .text import sentence_spans


@dataclass
class Chunk:
    text: str
    metadata: dict = field(default_factory=dict)


def chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of chunks: whole sentences up to ``size``, the last ``overlap`` repeated."""
    sentences = sentence_spans(text)
    chunks: list[tuple[int, int]] = []
    i = 0
    while i < len(sentences):
        j = i
        while j + 1 < len(sentences) and sentences[j + 1][1] - sentences[i][0] <= size:
            j += 1
        chunks.append((sentences[i][0], sentences[j][1]))
        if j + 1 >= len(sentences):
            break
        # Repeat trailing sentences until at least ``overlap`` characters are shared (at most
        # half the chunk), so a thought cut at the boundary is whole in the next chunk.
        nxt = j + 1
        while (
            nxt - 1 > i
            and sentences[j][1] - sentences[nxt][0] < overlap
            and sentences[j][1] - sentences[nxt - 1][0] <= size // 2
        ):
            nxt -= 1
        i = nxt
    return chunks


def chunk_lecture(lecture: Lecture, size: int, overlap: int) -> list[Chunk]:
    chunks = []
    for n, (start, end) in enumerate(chunk_spans(lecture.text, size, overlap)):
        metadata = {
            "id": lecture.id,
            "link": lecture.link,
            "title": lecture.title,
            "source": lecture.source,
            "chunk": n,
            "start_char": start,
            "end_char": end,
        }
        times = lecture.timeline.times(start, end) if lecture.timeline else None
        if times is not None:
            metadata["start"] = round(times[0], 3)
            metadata["end"] = round(times[1], 3)
            metadata["link"] = lecture.link_at(times[0])
            # When each sentence was said, so a passage cut around one links to its second.
            metadata["sentence_times"] = [
                _rounded(lecture.timeline.times(start + a, start + b) or times)
                for a, b in sentence_spans(lecture.text[start:end])
            ]
        chunks.append(Chunk(text=lecture.text[start:end], metadata=metadata))
    return chunks


def _rounded(times: tuple[float, float]) -> list[float]:
    return [round(times[0], 3), round(times[1], 3)]


def chunk_lectures(lectures: list[Lecture], size: int, overlap: int) -> list[Chunk]:
    """Every lecture's chunks, lecture after lecture: the index's rows, in order."""
    return [c for lecture in lectures for c in chunk_lecture(lecture, size, overlap)]
