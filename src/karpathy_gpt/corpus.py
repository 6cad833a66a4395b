"""A lecture series on disk: the ``videos.json`` manifest and the transcripts it names."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


class CorpusError(Exception):
    """The corpus folder cannot be read; the message says which file and what to do."""


@dataclass(frozen=True)
class Lecture:
    id: str
    title: str
    link: str
    text: str
    path: Path

    @property
    def source(self) -> str:
        # The original karpathy-gpt-api built its "source" metadata exactly like this.
        return f"{self.title} {self.id}"


def load_corpus(corpus_dir: Path) -> list[Lecture]:
    """Read every lecture listed in ``corpus_dir/videos.json``."""
    manifest_path = corpus_dir / "videos.json"
    if not manifest_path.is_file():
        raise CorpusError(
            f"no videos.json in {corpus_dir}: point KGPT_CORPUS_DIR at a folder holding "
            "videos.json and the transcripts it lists"
        )
    try:
        entries = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(entries, list):
        raise CorpusError(f"{manifest_path}: expected a list of lectures")

    lectures = []
    for n, entry in enumerate(entries):
        try:
            transcript = corpus_dir / entry["transcript"]
            lecture_id = str(entry["id"])
            title = str(entry["title"])
            link = str(entry.get("link") or f"https://youtu.be/{entry['video_id']}")
        except (KeyError, TypeError) as exc:
            raise CorpusError(
                f"{manifest_path}: entry {n} needs id, title, transcript and link or video_id"
            ) from exc
        try:
            text = transcript.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{transcript}: cannot read transcript ({exc})") from exc
        lectures.append(Lecture(id=lecture_id, title=title, link=link, text=text, path=transcript))
    if not lectures:
        raise CorpusError(f"{manifest_path}: lists no lectures")
    return lectures


def corpus_fingerprint(lectures: list[Lecture]) -> str:
    """A hash of everything about the lectures that ends up in the index."""
    digest = hashlib.sha256()
    for lecture in lectures:
        for part in (lecture.id, lecture.title, lecture.link, lecture.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()
