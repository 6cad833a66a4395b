"""Small timed lecture folders written by the tests: YouTube-style rolling WebVTT, SubRip with a
repeated cue, YouTube json3, plain text, and a malformed WebVTT."""

from __future__ import annotations

import json
from pathlib import Path

VTT_ID = "Vtt_Lecture"  # 11 characters, like a YouTube video id
SRT_ID = "Srt-Lecture"
JSON3_ID = "Json3Lectur"

# Automatic captions: lower case, no punctuation, one caption line every STEP seconds.
VTT_LINES = [
    "backpropagation computes the gradient of the loss",
    "with respect to every weight in the network",
    "by applying the chain rule backwards through the graph",
    "each node multiplies the gradient flowing in from above",
    "by its own local derivative and passes it down",
    "so the gradient tells us how to nudge every parameter",
    "if we want the loss to go down we step against it",
    "the learning rate sets how far each of those steps goes",
    "and we have to zero the gradients before every backward pass",
    "because backward adds into the grad instead of overwriting it",
    "otherwise the gradients accumulate from one step to the next",
    "and the update would be completely wrong",
]
STEP = 3.0

SRT_CUES = [
    "A bigram model predicts the next character",
    "from the previous character only.",
    "We count how often each pair of characters appears,",
    "and normalise the counts into probabilities.",
    "The negative log likelihood of the data",
    "is the loss we minimise.",
    "It is the same thing as the cross entropy",
    "between the model and the data.",
    "A bigram model has a context window of one character,",
    "so it cannot look any further back than that.",
]

JSON3_WORDS = (
    "self attention lets every token look at the tokens before it "
    "each token emits a query and a key and the dot product of a query with the keys "
    "says how much attention it pays to each of them "
    "the values are what the tokens communicate once they are found interesting"
).split()

PLAIN_TEXT = (
    "Batch normalization keeps the activations of every layer roughly unit Gaussian. "
    "It centres and scales each neuron over the batch. "
    "That makes deep networks much easier to optimise. "
    "Residual connections help too, as a gradient superhighway."
)


def ts(seconds: float, comma: bool = False) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{ms:03d}"


def youtube_vtt(lines: list[str], step: float = STEP) -> str:
    """What YouTube's automatic captions look like: every line shown twice, plus 10 ms cues."""
    out = ["WEBVTT", "Kind: captions", "Language: en", ""]
    for i, line in enumerate(lines):
        start, end = i * step, (i + 1) * step - 0.01
        first, *rest = line.split()
        tagged = first + "".join(
            f"<{ts(start + 0.2 * (j + 1))}><c> {w}</c>" for j, w in enumerate(rest)
        )
        out += [
            f"{ts(start)} --> {ts(end)} align:start position:0%",
            lines[i - 1] if i else " ",
            tagged,
            "",
            f"{ts(end)} --> {ts(end + 0.01)} align:start position:0%",
            line,
            " ",
            "",
        ]
    return "\n".join(out)


def srt(cues: list[str], step: float = 2.5) -> str:
    """SubRip with one cue repeated verbatim, as exports of automatic captions do."""
    blocks = []
    n = 0
    for i, text in enumerate(cues):
        repeats = 2 if i == 3 else 1
        for _ in range(repeats):
            n += 1
            blocks.append(f"{n}\n{ts(i * step, True)} --> {ts((i + 1) * step, True)}\n{text}\n")
    return "\n".join(blocks)


def json3(words: list[str], per_event: int = 6, step_ms: int = 2000) -> str:
    events = [{"tStartMs": 0, "dDurationMs": 60000, "id": 1, "wWinId": 1}]  # a window, no text
    for e, start in enumerate(range(0, len(words), per_event)):
        group = words[start : start + per_event]
        segs = [{"utf8": group[0], "acAsrConf": 0}] + [
            {"utf8": f" {w}", "tOffsetMs": 300 * (j + 1), "acAsrConf": 0}
            for j, w in enumerate(group[1:])
        ]
        events.append({"tStartMs": e * step_ms, "dDurationMs": step_ms, "wWinId": 1, "segs": segs})
        events.append(
            {"tStartMs": e * step_ms + step_ms - 1, "aAppend": 1, "segs": [{"utf8": "\n"}]}
        )
    return json.dumps({"wireMagic": "pb3", "pens": [{}], "events": events}, indent=1)


BROKEN_VTT = "\n".join(
    [
        "WEBVTT",
        "",
        "00:00:00.000 --> 00:00:02.000",
        "this file is fine at first",
        "",
        "00:00:02.000 --> 00:00:04.000",
        "and then",
        "",
        "00:00:04,000 --> 00:00:06.000",  # line 9: a comma, SubRip style
        "it breaks",
    ]
)
BROKEN_LINE = 9


def write_timed_corpus(folder: Path, manifest: bool = True, broken: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "01-backprop.vtt": youtube_vtt(VTT_LINES),
        "02-bigram.srt": srt(SRT_CUES),
        "03-attention.json3": json3(JSON3_WORDS),
        "04-batchnorm.txt": PLAIN_TEXT,
    }
    if broken:
        files["05-broken.vtt"] = BROKEN_VTT
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    if manifest:
        entries = [
            ("01", "Backprop", "01-backprop.vtt", VTT_ID),
            ("02", "Bigrams", "02-bigram.srt", SRT_ID),
            ("03", "Attention", "03-attention.json3", JSON3_ID),
            ("04", "Batchnorm", "04-batchnorm.txt", "Plain_Video"),
        ]
        if broken:
            entries.append(("05", "Broken", "05-broken.vtt", "BrokenVideo"))
        (folder / "videos.json").write_text(
            json.dumps(
                [
                    {"id": i, "title": t, "transcript": f, "link": f"https://youtu.be/{v}"}
                    for i, t, f, v in entries
                ]
            )
        )
    return folder
