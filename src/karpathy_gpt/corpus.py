"""A lecture series on disk: a ``videos.json`` manifest (or one inferred from file names) and the
transcripts it names, in any format :mod:`.transcripts` reads.

A transcript that cannot be read is reported (file, line, what to fix) and left out; the rest of
the series is still loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from .errors import KgptError
from .transcripts import SUFFIXES, Timeline, TranscriptError, read_transcript

log = logging.getLogger(__name__)

MANIFEST = "videos.json"


class CorpusError(KgptError):
    """The corpus folder cannot be read; the message says which file and what to do."""


@dataclass(frozen=True)
class Lecture:
    id: str
    title: str
    link: str
    text: str
    path: Path
    timeline: Timeline | None = None  # None for plain text: no times
    video_id: str | None = None

    @property
    def source(self) -> str:
        # The original karpathy-gpt-api built its "source" metadata exactly like this.
        return f"{self.title} {self.id}"

    def link_at(self, seconds: float) -> str:
        """A link that starts the video at ``seconds`` (whole seconds, rounded down)."""
        t = int(seconds)
        if self.video_id:
            return f"https://youtu.be/{self.video_id}?t={t}"
        if not self.link:
            return self.link
        parts = urlsplit(self.link)
        query = {k: v for k, v in parse_qs(parts.query).items() if k != "t"}
        query["t"] = [str(t)]
        return urlunsplit(parts._replace(query=urlencode(query, doseq=True)))


@dataclass
class Corpus:
    lectures: list[Lecture]
    problems: list[TranscriptError] = field(default_factory=list)  # files left out, and why
    inferred: bool = False  # no videos.json: the manifest came from the file names


_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


def youtube_id(link: str) -> str | None:
    """The video id of a youtu.be or youtube.com link, if it is one."""
    parts = urlsplit(link)
    host = parts.netloc.lower().removeprefix("www.").removeprefix("m.")
    candidate = None
    if host == "youtu.be":
        candidate = parts.path.strip("/").split("/")[0]
    elif host.endswith("youtube.com"):
        if parts.path == "/watch":
            candidate = (parse_qs(parts.query).get("v") or [""])[0]
        elif parts.path.startswith(("/embed/", "/live/", "/shorts/")):
            candidate = parts.path.split("/")[2]
    return candidate if candidate and _YOUTUBE_ID.match(candidate) else None


def read_corpus(corpus_dir: Path) -> Corpus:
    """Every readable lecture of ``corpus_dir``, and the problems of the ones left out."""
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"{corpus_dir} is not a folder: point KGPT_CORPUS_DIR (or `ingest DIR`) at a folder "
            f"of transcripts ({', '.join(SUFFIXES)}), with or without a {MANIFEST}"
        )
    manifest_path = corpus_dir / MANIFEST
    inferred = not manifest_path.is_file()
    entries = _infer_manifest(corpus_dir) if inferred else _read_manifest(manifest_path)
    corpus = Corpus(lectures=[], inferred=inferred)
    for entry in entries:
        path = corpus_dir / entry["transcript"]
        try:
            text, timeline = read_transcript(path)
        except TranscriptError as exc:
            corpus.problems.append(exc)
            continue
        corpus.lectures.append(
            Lecture(
                id=entry["id"],
                title=entry["title"],
                link=entry["link"],
                text=text,
                path=path,
                timeline=timeline,
                video_id=entry["video_id"],
            )
        )
    if not corpus.lectures:
        detail = "; ".join(str(p) for p in corpus.problems) or "no lectures listed"
        raise CorpusError(f"no lecture in {corpus_dir} could be read: {detail}")
    return corpus


def load_corpus(corpus_dir: Path) -> list[Lecture]:
    """Every readable lecture of ``corpus_dir`` (problems are logged)."""
    corpus = read_corpus(corpus_dir)
    for problem in corpus.problems:
        log.warning("left out of the index: %s", problem)
    return corpus.lectures


def _read_manifest(manifest_path: Path) -> list[dict]:
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = f", line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise CorpusError(f"{manifest_path}{line}: not valid JSON ({exc})") from exc
    if not isinstance(raw, list):
        raise CorpusError(f"{manifest_path}: expected a list of lectures")
    entries = []
    for n, entry in enumerate(raw):
        try:
            link = str(entry.get("link") or f"https://youtu.be/{entry['video_id']}")
            entries.append(
                {
                    "id": str(entry["id"]),
                    "title": str(entry["title"]),
                    "transcript": str(entry["transcript"]),
                    "link": link,
                    "video_id": str(entry.get("video_id") or "") or youtube_id(link),
                }
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise CorpusError(
                f"{manifest_path}: entry {n} needs id, title, transcript and link or video_id"
            ) from exc
    if not entries:
        raise CorpusError(f"{manifest_path}: lists no lectures")
    return entries


# yt-dlp names files "<title> [<video id>].<lang>.<ext>"; series often start names with a number.
_BRACKETED_ID = re.compile(r"\s*\[([A-Za-z0-9_-]{11})\]\s*")
_LANGUAGE = re.compile(r"\.[a-z]{2,3}(?:[-_][A-Za-z0-9]+)?$")
_NUMBER = re.compile(r"^(\d+)[\s._-]*")


def _infer_manifest(corpus_dir: Path) -> list[dict]:
    """One lecture per transcript name; of several formats of one lecture, the best timed one."""
    chosen: dict[str, Path] = {}
    for path in sorted(corpus_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() not in SUFFIXES:
            continue
        stem = _LANGUAGE.sub("", path.stem)
        best = chosen.get(stem)
        if best is None or SUFFIXES.index(path.suffix.lower()) < SUFFIXES.index(best.suffix):
            chosen[stem] = path
    if not chosen:
        raise CorpusError(
            f"no {MANIFEST} and no transcripts ({', '.join(SUFFIXES)}) in {corpus_dir}: add "
            f"transcript files, or a {MANIFEST} listing id, title, link and transcript of each"
        )
    entries = []
    for stem, path in sorted(chosen.items()):
        video_id = None
        match = _BRACKETED_ID.search(stem)
        if match:
            video_id = match.group(1)
            stem = _BRACKETED_ID.sub(" ", stem).strip()
        number = _NUMBER.match(stem)
        title_part = stem[number.end() :] if number else stem
        title = re.sub(r"[_-]+", " ", title_part).strip() or stem
        entries.append(
            {
                "id": number.group(1) if number else stem,
                "title": title,
                "transcript": path.name,
                "link": f"https://youtu.be/{video_id}" if video_id else "",
                "video_id": video_id,
            }
        )
    ids = [e["id"] for e in entries]
    if len(set(ids)) != len(ids):  # two files share a number: fall back to the whole names
        for entry in entries:
            entry["id"] = _LANGUAGE.sub("", Path(entry["transcript"]).stem)
    return entries


def corpus_fingerprint(lectures: list[Lecture]) -> str:
    """A hash of everything about the lectures that ends up in the index."""
    digest = hashlib.sha256()
    for lecture in lectures:
        for part in (lecture.id, lecture.title, lecture.link, lecture.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
        if lecture.timeline is not None:  # plain-text lectures hash as they always have
            digest.update(lecture.timeline.fingerprint().encode())
            digest.update((lecture.video_id or "").encode())
            digest.update(b"\0")
    return digest.hexdigest()
