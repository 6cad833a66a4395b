"""Timed transcripts: parsing each format, rolling-caption de-duplication, chunk times and deep
links, inferred manifests, and a malformed file reported by file and line while the rest loads."""

from __future__ import annotations

import json

import pytest
from support.timed_corpus import (
    BROKEN_LINE,
    JSON3_ID,
    JSON3_WORDS,
    PLAIN_TEXT,
    SRT_CUES,
    SRT_ID,
    STEP,
    VTT_ID,
    VTT_LINES,
    write_timed_corpus,
)

from karpathy_gpt.chunking import chunk_lecture
from karpathy_gpt.corpus import CorpusError, read_corpus
from karpathy_gpt.transcripts import TranscriptError, read_transcript


@pytest.fixture
def corpus(tmp_path):
    return read_corpus(write_timed_corpus(tmp_path / "lectures"))


def lecture(corpus, lecture_id):
    return next(lec for lec in corpus.lectures if lec.id == lecture_id)


def test_rolling_captions_read_as_prose(corpus):
    text = lecture(corpus, "01").text
    assert text == " ".join(VTT_LINES)  # each caption line once, word tags gone
    assert "<c>" not in text and "00:00" not in text


def test_a_repeated_subrip_cue_is_kept_once(corpus):
    text = lecture(corpus, "02").text
    assert text == " ".join(SRT_CUES)
    assert text.count(SRT_CUES[3]) == 1


def test_json3_events_join_into_words(corpus):
    assert lecture(corpus, "03").text == " ".join(JSON3_WORDS)


def test_plain_text_is_kept_verbatim_without_times(corpus):
    plain = lecture(corpus, "04")
    assert plain.text == PLAIN_TEXT and plain.timeline is None
    for chunk in chunk_lecture(plain, 100, 20):
        assert "start" not in chunk.metadata and "end" not in chunk.metadata
        assert chunk.metadata["link"] == "https://youtu.be/Plain_Video"


def _line_starts(lines: list[str]) -> list[int]:
    starts, position = [], 0
    for line in lines:
        starts.append(position)
        position += len(line) + 1
    return starts


@pytest.mark.parametrize(
    ("lecture_id", "video_id", "lines", "step"),
    [("01", VTT_ID, VTT_LINES, STEP), ("02", SRT_ID, SRT_CUES, 2.5)],
)
def test_chunks_carry_the_time_they_are_said_and_link_to_it(
    corpus, lecture_id, video_id, lines, step
):
    starts = _line_starts(lines)
    chunks = chunk_lecture(lecture(corpus, lecture_id), 120, 30)
    assert len(chunks) >= 3
    for chunk in chunks:
        meta = chunk.metadata
        first = max(i for i, s in enumerate(starts) if s <= meta["start_char"])
        last = max(i for i, s in enumerate(starts) if s < meta["end_char"])
        assert meta["start"] == pytest.approx(first * step)
        # The last caption's end: the 10 ms repeat cues never move it past the next line.
        assert (last + 1) * step - 0.011 <= meta["end"] <= (last + 1) * step
        assert meta["link"] == f"https://youtu.be/{video_id}?t={int(first * step)}"
    assert chunks[-1].metadata["start"] > 0


def test_json3_times_come_from_the_events(corpus):
    chunks = chunk_lecture(lecture(corpus, "03"), 100, 20)
    later = chunks[-1].metadata
    word = len(lecture(corpus, "03").text[: later["start_char"]].split())  # index of first word
    assert later["start"] == pytest.approx((word // 6) * 2.0)
    assert later["link"] == f"https://youtu.be/{JSON3_ID}?t={int(later['start'])}"


def test_a_malformed_file_is_named_with_its_line_and_the_rest_still_loads(corpus):
    assert [lec.id for lec in corpus.lectures] == ["01", "02", "03", "04"]
    [problem] = corpus.problems
    assert problem.path.name == "05-broken.vtt" and problem.line == BROKEN_LINE
    assert f"05-broken.vtt, line {BROKEN_LINE}" in str(problem)
    assert "00:00:04,000" in str(problem)


@pytest.mark.parametrize(
    ("name", "content", "line", "words"),
    [
        ("a.vtt", "00:00:00.000 --> 00:00:01.000\nhello\n", 1, "WEBVTT"),
        ("b.vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhi\n\nstray text\nmore\n", 6, "timing"),
        ("c.srt", "1\n00:00:00,000 --> 00:00:01,000\nhi\n\n2\nno timing here\n", 6, "timing"),
        ("d.srt", "1\n00:00:03,000 --> 00:00:01,000\nbackwards\n", 2, "ends before"),
        ("e.srt", "one\n00:00:00,000 --> 00:00:01,000\nhi\n", 1, "cue number"),
        ("f.json3", '{"events": [\n  {"tStartMs": 0,\n   "segs": [}\n]}', 3, "JSON"),
        ("g.txt", b"fine\nstill fine\n\xff\xfe broken\n", 3, "UTF-8"),
        (
            "h.json3",
            '{"events": [\n {"tStartMs": 0, "segs": [{"utf8": "ok"}]},\n'
            ' {"tStartMs": "soon", "segs": [{"utf8": "bad"}]}\n]}',
            3,
            "event 1",
        ),
    ],
)
def test_each_format_reports_where_it_is_broken(tmp_path, name, content, line, words):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(TranscriptError) as caught:
        read_transcript(path)
    assert caught.value.line == line
    assert f"{name}, line {line}:" in str(caught.value) and words in str(caught.value)


def test_webvtt_without_a_blank_line_after_the_header_still_parses(tmp_path):
    path = tmp_path / "tight.vtt"
    path.write_text("WEBVTT\n00:00:01.000 --> 00:00:02.000\n<i>hello</i> &amp; welcome\n")
    text, timeline = read_transcript(path)
    assert text == "hello & welcome" and timeline.times(0, len(text)) == (1.0, 2.0)


def test_a_manifest_is_inferred_from_file_names(tmp_path):
    folder = write_timed_corpus(tmp_path / "series", manifest=False, broken=False)
    (folder / "06-extra [AbCdEfGhIjK].en.vtt").write_text(
        "WEBVTT\n\n00:01:05.500 --> 00:01:08.000\nan extra lecture named the yt-dlp way\n"
    )
    # The same lecture as plain text too: the timed file wins.
    (folder / "06-extra [AbCdEfGhIjK].en.txt").write_text("an extra lecture, untimed")
    corpus = read_corpus(folder)
    assert corpus.inferred and not corpus.problems
    by_id = {lec.id: lec for lec in corpus.lectures}
    assert sorted(by_id) == ["01", "02", "03", "04", "06"]
    assert by_id["01"].title == "backprop"
    extra = by_id["06"]
    assert extra.title == "extra" and extra.path.suffix == ".vtt"
    assert extra.link == "https://youtu.be/AbCdEfGhIjK"
    [chunk] = chunk_lecture(extra, 800, 100)
    assert chunk.metadata["start"] == 65.5
    assert chunk.metadata["link"] == "https://youtu.be/AbCdEfGhIjK?t=65"
    # No video id in a name: no link to make up.
    assert by_id["02"].link == "" and "start" in chunk_lecture(by_id["02"], 800, 100)[0].metadata


def test_a_folder_without_transcripts_says_what_to_add(tmp_path):
    (tmp_path / "notes.md").write_text("not a transcript")
    with pytest.raises(CorpusError, match="videos.json"):
        read_corpus(tmp_path)


def test_a_manifest_link_that_is_not_youtube_gets_a_time_parameter(tmp_path):
    folder = write_timed_corpus(tmp_path / "lectures", broken=False)
    entries = json.loads((folder / "videos.json").read_text())
    entries[0]["link"] = "https://example.org/watch?v=1&t=5"
    (folder / "videos.json").write_text(json.dumps(entries))
    backprop = read_corpus(folder).lectures[0]
    later = chunk_lecture(backprop, 120, 30)[-1].metadata
    assert later["link"] == f"https://example.org/watch?v=1&t={int(later['start'])}"


def test_ordinary_captions_lose_no_words(tmp_path):
    """Only repeats of two words or more (or of a whole cue) are rolling captions."""
    path = tmp_path / "plain.srt"
    cues = ["so we want to go to", "to the next step and", "and the next step and the loss"]
    path.write_text(
        "\n".join(
            f"{n}\n00:00:0{n},000 --> 00:00:0{n + 1},000\n{text}\n"
            for n, text in enumerate(cues, start=1)
        )
    )
    text, _ = read_transcript(path)
    assert text == " ".join(cues)
