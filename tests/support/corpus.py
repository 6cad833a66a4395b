"""Small lecture folders written by the tests: plain-text lectures from a few sentences each, so
that an index builds in seconds (the timed formats are in ``timed_corpus``)."""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "Backpropagation computes the gradient of the loss with respect to every weight.",
    "The learning rate sets how far each step of gradient descent moves the parameters.",
    "A bigram model predicts the next character from the previous character only.",
    "Self-attention lets every token look at the tokens that came before it.",
    "Layer normalization keeps the activations of each example well scaled.",
]
MORE = [
    "The tokenizer turns text into integers with byte pair encoding merges.",
    "Dropout randomly zeroes activations during training to regularize the network.",
    "The residual stream carries information past every block of the transformer.",
    "Weight decay pulls every parameter a little toward zero at each step.",
    "Cross entropy compares the predicted distribution with the true next character.",
]


def write_corpus(folder: Path, lectures: dict[str, str]) -> Path:
    """``folder`` with one ``<name>.txt`` per lecture and a ``videos.json`` naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for n, (name, text) in enumerate(lectures.items(), start=1):
        (folder / f"{name}.txt").write_text(text)
        manifest.append(
            {
                "id": f"{n:02d}",
                "title": name,
                "link": f"https://youtu.be/v{n}",
                "transcript": f"{name}.txt",
            }
        )
    (folder / "videos.json").write_text(json.dumps(manifest))
    return folder


def small_corpus(folder: Path, sentences: list[str], title: str = "lecture") -> Path:
    """Two lectures that share a sentence: the first three sentences and the rest."""
    return write_corpus(
        folder,
        {
            f"{title}-a": " ".join(sentences[:3] * 4),
            f"{title}-b": " ".join(sentences[2:] * 4),
        },
    )
