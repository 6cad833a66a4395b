"""The question bank: its quotes are the lectures' words at their places, and a sentence reads
the bank only where it holds a quote's words."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.paths import CORPUS
from test_ranking import LECTURE, candidates

from karpathy_gpt import bank, ranking
from karpathy_gpt.bank import RANK_CAP, Bank, Entry


def test_every_bank_quote_is_its_lecture_at_its_place():
    """A quote that moved or was misquoted would never match a sentence, silently."""
    if not (CORPUS / "videos.json").is_file():
        pytest.skip("the shared corpus is not beside the repository")
    videos = json.loads((CORPUS / "videos.json").read_text(encoding="utf-8"))
    texts = {v["id"]: (CORPUS / v["transcript"]).read_text(encoding="utf-8") for v in videos}
    found = bank.entries()
    assert len(found) > 1000
    for e in found:
        assert texts[e.lecture][e.start : e.start + len(e.quote)] == e.quote, e.question
    assert len({e.question.lower() for e in found}) == len(found), "a question twice"


def sentences():
    return ranking.gather(candidates())


def unit(i: int) -> np.ndarray:
    return np.eye(8)[i]


def test_a_sentence_reads_the_best_bank_question_whose_quote_it_holds():
    tanh = LECTURE.index("Sentence number 7")
    other = LECTURE.index("Sentence number 9")
    held = Bank(
        (
            Entry("what is tanh?", "01", tanh, LECTURE[tanh : tanh + 40]),
            Entry("about tanh again", "01", tanh + 5, LECTURE[tanh + 5 : tanh + 30]),
            Entry("something else", "01", other, LECTURE[other : other + 30]),
            Entry("another lecture", "02", tanh, LECTURE[tanh : tanh + 40]),
        ),
        np.vstack(
            [
                unit(0),
                0.6 * unit(0) + 0.8 * unit(1),
                0.5 * unit(0) + 0.5**0.5 * unit(2) + 0.5 * unit(3),
                unit(0),
            ]
        ),
    )
    found = sentences()
    rows = held.features(unit(0), found)
    at = {s.start: n for n, s in enumerate(found)}
    # The tanh sentence holds two quotes and reads the nearer question's (cosine 1, first of
    # four: lecture 02's ties it and comes later); sentence 9's question is the farthest.
    assert rows[at[tanh]].tolist() == pytest.approx([1.0, np.log(RANK_CAP)])
    assert rows[at[other]].tolist() == pytest.approx([0.5, 0.5 * np.log(RANK_CAP / 4)])
    untouched = [n for s, n in at.items() if s not in (tanh, other)]
    assert (rows[untouched] == 0).all()


def test_a_quote_whose_words_are_not_the_sentence_is_not_read():
    """Another corpus's lecture "01" at the same place is not the bank's lecture."""
    tanh = LECTURE.index("Sentence number 7")
    elsewhere = Bank((Entry("q", "01", tanh, "words no lecture here says at all"),), unit(0)[None])
    rows = elsewhere.features(unit(0), sentences())
    assert (rows[:, 0] == 0).all()


def test_no_bank_leaves_the_features_constant_and_the_ranker_without_them():
    found = sentences()
    assert (bank.EMPTY.features(unit(0), found) == 0).all()
    plain = ranking.ranker(True, bank=False)
    assert plain.weights[-2:] == (0.0, 0.0)
    assert ranking.ranker(True).weights[-2:] != (0.0, 0.0)


def test_the_stored_vectors_are_read_only_for_their_model():
    class Model:
        name = "some-model"
        adapted = False

        def embed(self, texts):
            return np.ones((len(texts), 3)) / np.sqrt(3)

    few = bank.entries()
    stored = Bank(few, np.zeros((len(few), 3), dtype=np.float32)).as_json("some-model")
    assert (bank.read(stored, Model()).vectors == 0).all()
    other = {**stored, "model": "another"}
    assert np.allclose(bank.read(other, Model()).vectors, 1 / np.sqrt(3))
