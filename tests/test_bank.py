"""The question bank: its quotes are the lectures' words at their places, and a sentence reads
the bank only where it holds a quote's words."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from support.paths import CORPUS, REPO, SHARED
from test_ranking import LECTURE, candidates

from karpathy_gpt import bank, coverage, ranking
from karpathy_gpt.bank import RANK_CAP, Bank, Entry
from karpathy_gpt.corpus import read_corpus


def lectures():
    if not (CORPUS / "videos.json").is_file():
        pytest.skip("the shared corpus is not beside the repository")
    return read_corpus(CORPUS).lectures


class Stored:
    """An embedder named as the one weights.json's adapted bank vectors were made with."""

    adapted = True

    def __init__(self, name: str):
        self.name = name

    def embed(self, texts):
        raise AssertionError("the stored vectors were not read")


def test_the_bank_is_read_on_the_corpus_it_was_written_for_and_nowhere_else():
    """Every quote is its lecture's words at its place, as the index reads the corpus; a
    lecture that moved by one character turns the whole bank off."""
    found = lectures()
    stored = ranking.fitted(True)["bank"]
    held = bank.for_corpus(found, Stored(stored["model"]), stored)
    assert len(held) == len(bank.entries()) > 1000
    moved = [dataclasses.replace(x, text=" " + x.text) for x in found]
    assert bank.for_corpus(moved, Stored(stored["model"]), stored) is bank.EMPTY


def test_the_served_weights_keep_vectors_of_this_bank_for_both_models():
    for kind in (True, False):
        fit = ranking.fitted(kind)
        assert fit["bank"]["digest"] == bank.digest(bank.entries(), bank.unanswered())
        assert fit["bank"]["model"] == fit["model"]


def test_a_server_reads_the_bank_only_where_its_weights_were_fitted_with_it():
    fit = ranking.fitted(True)
    model = Stored(fit["model"])
    documents = fit["coverage"]["asked"]["documents"]
    assert len(bank.of(model, documents, fit)) == len(bank.entries())
    assert bank.of(model, documents + 1, fit) is bank.EMPTY  # another corpus
    without = {k: v for k, v in fit.items() if k != "bank"}
    assert bank.of(model, documents, without) is bank.EMPTY  # fitted without it


def test_no_bank_question_answered_or_not_shares_a_phrase_of_an_evaluation_question():
    """A bank question worded like an evaluation question would hand it its own answer, and
    the cross-validated figures would say more than held-out questions get. Checked here: no
    five-word phrase the transcripts never say is shared (nearness by cosine was checked when
    the bank was cut, with the model)."""
    texts = " " + " ".join(" ".join(words(x.text)) for x in lectures()) + " "
    files = [SHARED / "eval" / n for n in ("questions.jsonl", "dev.jsonl", "offtopic-dev.jsonl")]
    files += sorted((REPO / "benchmarks" / "data").glob("*.jsonl"))
    asked = [json.loads(line)["question"] for f in files for line in f.read_text().splitlines()]
    phrases = {g for q in asked for g in grams(q)}
    rare = {g for g in phrases if f" {g} " not in texts}
    for question in [e.question for e in bank.entries()] + list(bank.unanswered()):
        shared = grams(question) & rare
        assert not shared or _common(shared, asked), (question, shared)


def _common(shared: set[str], asked: list[str]) -> bool:
    """Phrases any question may use ("how does he make a"): in three evaluation questions or
    three bank questions."""
    banked = [e.question for e in bank.entries()] + list(bank.unanswered())
    return all(
        sum(g in grams(q) for q in asked) >= 3 or sum(g in grams(q) for q in banked) >= 3
        for g in shared
    )


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_']+", text.lower())


def grams(text: str, n: int = 5) -> set[str]:
    w = words(text)
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


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

    few, off = bank.entries(), bank.unanswered()
    zeros = np.zeros((len(few) + len(off), 3), dtype=np.float32)
    stored = Bank(few, zeros[: len(few)], off, zeros[len(few) :]).as_json("some-model")
    read = bank.read(stored, Model())
    assert (read.vectors == 0).all() and (read.off == 0).all() and len(read.off) == len(off)
    other = {**stored, "model": "another"}
    assert np.allclose(bank.read(other, Model()).vectors, 1 / np.sqrt(3))
    assert np.allclose(bank.read(other, Model()).off, 1 / np.sqrt(3))


def test_the_refusal_reads_the_unanswered_questions_as_off_topic():
    """A question nearest an unanswered bank question leans off-topic; without the bank's
    unanswered rows it would lean on-topic."""
    fitted = coverage.Asked(unit(0)[None], unit(2)[None])
    held = Bank(
        (Entry("what is tanh?", "01", 0, "tanh"),),
        unit(3)[None],
        ("how does beam search work?",),
        unit(4)[None],
    )
    asked = fitted.with_bank(held)
    assert len(asked.on) == 2 and len(asked.off) == 2
    near = 0.8 * unit(4) + 0.6 * unit(0)
    assert asked.gap(near) > 0 > fitted.gap(near)
    assert fitted.with_bank(bank.EMPTY) is fitted


def test_the_adaptation_pairs_each_question_with_the_passage_holding_its_quote():
    from karpathy_gpt.chunking import chunk_lectures
    from karpathy_gpt.text import normalise

    found = lectures()
    chunks = chunk_lectures(found, 800, 100)
    pairs = bank.training_pairs(found, chunks)
    assert len(pairs) == len(bank.entries())
    for (question, passage), e in zip(pairs, bank.entries(), strict=True):
        assert question == e.question and normalise(e.quote)[:30] in passage
    moved = [dataclasses.replace(x, text=" " + x.text) for x in found]
    assert bank.training_pairs(moved, chunk_lectures(moved, 800, 100)) == []
