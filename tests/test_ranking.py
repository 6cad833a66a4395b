"""The passage ranker's windows, on chunks laid out as the index lays them out."""

from __future__ import annotations

import numpy as np
import pytest

from karpathy_gpt import ranking
from karpathy_gpt.chunking import Chunk
from karpathy_gpt.ranking import BEFORE, FEATURES, WINDOW, Linear
from karpathy_gpt.store.base import Candidate, Candidates
from karpathy_gpt.text import sentence_spans

LECTURE = " ".join(
    f"Sentence number {n} talks about {'the tanh nonlinearity' if n == 7 else 'other things'}"
    f"{' at some length' * (n % 3)}."
    for n in range(40)
)


def chunk(start: int, end: int, n: int, timed: bool = False) -> Chunk:
    text = LECTURE[start:end]
    meta = {
        "id": "01",
        "title": "micrograd",
        "link": "https://youtu.be/x",
        "chunk": n,
        "start_char": start,
        "end_char": end,
    }
    if timed:
        meta["sentence_times"] = [
            [float(start + a), float(start + b)] for a, b in sentence_spans(text)
        ]
    return Chunk(text, meta)


def layout(timed: bool = False) -> list[Chunk]:
    """Two chunks that overlap by one sentence, as chunking.chunk_spans cuts them."""
    spans = sentence_spans(LECTURE)
    first = (spans[0][0], spans[11][1])
    second = (spans[11][0], spans[-1][1])
    return [chunk(*first, 0, timed), chunk(*second, 1, timed)]


def vectors(text: str, hot: int | None = None) -> np.ndarray:
    """A unit vector per sentence; the sentence holding the word 'tanh' points along axis 0."""
    rows = []
    for a, b in sentence_spans(text):
        v = np.zeros(8)
        v[1 + (a % 7)] = 1.0
        if "tanh" in text[a:b]:
            v = np.eye(8)[0]
        rows.append(v)
    return np.array(rows)


def candidates(timed: bool = False) -> Candidates:
    first, second = layout(timed)
    return Candidates(
        [Candidate(first, 0.5, 1.0, 1, 1, vectors(first.text), second, vectors(second.text))],
        documents=2,
        document_frequency={"tanh": 1, "nonlinear": 1, "sentenc": 2, "number": 2, "what": 2},
    )


def cosine_first(rows: np.ndarray) -> np.ndarray:
    return rows[:, FEATURES.index("sentence")]


def test_a_passage_opens_near_the_best_sentence_and_runs_into_the_next_chunk():
    ranked = ranking.rank("what is tanh?", np.eye(8)[0], candidates(), k=3, score=cosine_first)
    first = ranked.passages[0]
    assert "tanh" in first.best.text
    assert first.sentences[0] in (first.best, first.best.before)
    assert first.best.start - first.sentences[0].start <= BEFORE
    assert first.sentences[-1].end - first.sentences[0].start <= WINDOW
    # The window runs on past the first chunk's end, into the chunk that follows it.
    assert first.sentences[-1].end > layout()[0].metadata["end_char"]
    # Windows never share a sentence, and no more than k come back.
    seen = [id(s) for p in ranked.passages for s in p.sentences]
    assert len(seen) == len(set(seen)) and len(ranked.passages) <= 3


def test_a_sentence_next_to_a_taken_window_still_comes_back_cut_short():
    """Sentence 10 scores best, 8 next: 10's window takes 9 before it, so 8's own window would
    share 9. It comes back as a passage that stops where the taken one begins, rather than not
    at all (a sentence scored near the top is never lost to a neighbour's window)."""
    order = {10: 3.0, 8: 2.0}

    def scores(rows: np.ndarray) -> np.ndarray:
        return np.array([order.get(n, 0.0) for n in range(len(rows))])

    ranked = ranking.rank("what is tanh?", np.eye(8)[0], candidates(), k=3, score=scores)
    first, second = ranked.passages[:2]
    assert first.best.text.startswith("Sentence number 10 ")
    assert first.sentences[0].text.startswith("Sentence number 9 ")
    assert second.best.text.startswith("Sentence number 8 ")
    assert second.sentences[-1] is second.best  # cut short where the first passage begins
    seen = [id(s) for p in ranked.passages for s in p.sentences]
    assert len(seen) == len(set(seen))


def test_a_passage_is_the_lecture_text_with_its_place_and_time():
    ranked = ranking.rank("what is tanh?", np.eye(8)[0], candidates(True), k=1, score=cosine_first)
    passage = ranked.passages[0]
    made = ranking.passage_chunk(passage)
    start, end = made.metadata["start_char"], made.metadata["end_char"]
    assert made.text == LECTURE[start:end]  # the lecture's own text, separators included
    assert made.metadata["id"] == "01" and made.metadata["title"] == "micrograd"
    assert made.metadata["start"] == float(start)  # the first sentence's time (here: offsets)
    assert made.metadata["link"] == f"https://youtu.be/x?t={start}"
    assert "sentence_times" not in made.metadata


def test_features_weigh_the_question_words_a_sentence_holds():
    cands = candidates()
    sentences = ranking.gather(cands)
    rows, terms = ranking.features("what is the tanh nonlinearity?", np.eye(8)[0], cands, sentences)
    assert rows.shape == (len(sentences), len(FEATURES)) and np.isfinite(rows).all()
    assert terms == {"what", "tanh", "nonlinear"}
    overlap = rows[:, FEATURES.index("overlap")]
    best = max(range(len(sentences)), key=lambda i: overlap[i])
    assert "tanh" in sentences[best].text and 0.5 < overlap[best] < 1  # "what" it lacks


def test_the_served_weights_rank_with_every_feature():
    for adapted in (True, False):
        model = ranking.ranker(adapted)
        assert isinstance(model, Linear) and len(model.weights) == len(FEATURES)


def test_coverage_counts_the_words_a_lecture_would_say_not_pronouns_or_identifiers():
    from karpathy_gpt import coverage
    from karpathy_gpt.lexical import identifier_words

    assert identifier_words("why counts_sum_inv and FlattenConsecutive?") == (
        "why counts sum inv and Flatten Consecutive?"
    )
    known = {
        "count": 3,
        "sum": 2,
        "inv": 1,
        "flatten": 1,
        "consecut": 1,
        "valu": 2,
        "class": 2,
        "work": 4,
    }
    cands = Candidates([], documents=10, document_frequency=known)

    def unknown(question: str) -> float:
        ranked = ranking.Ranked([], [], np.zeros(0), np.zeros((0, len(FEATURES))), question)
        nowhere = coverage.Asked(np.zeros((0, 2)), np.zeros((0, 2)))
        row = coverage.signals(ranked, cands, np.zeros(2), nowhere)
        return row[coverage.SIGNALS.index("unknown_words")]

    # "his" is never said in a lecture given in the first person; counts_sum_inv is said as words
    assert unknown("What does counts_sum_inv do in his Value class?") == 0
    assert unknown("How does FlattenConsecutive work for himself?") == 0
    assert unknown("How does beam search decoding work?") == 3  # beam, search, decod


def test_coverage_reads_whether_a_question_is_nearer_off_topic_ones_than_on_topic_ones():
    from karpathy_gpt import coverage

    on = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    off = np.array([[0.0, 0.0, 1.0]])
    asked = coverage.Asked(on, off)
    assert asked.gap(np.array([0.0, 0.6, 0.8])) == pytest.approx(0.8 - 0.6)
    assert asked.gap(np.array([1.0, 0.0, 0.0])) == pytest.approx(-1.0)
    assert coverage.Asked(on, np.zeros((0, 3))).gap(np.array([1.0, 0.0, 0.0])) == 0.0
    # Kept in weights.json as float16 with the texts; read back for the same model.
    kept = asked.as_json(["a", "b"], ["c"], "the-model", 1220)
    assert kept["on"] == ["a", "b"] and kept["model"] == "the-model"


def test_without_the_fitted_questions_the_refusal_weighs_the_other_signals_alone():
    from karpathy_gpt import coverage

    for adapted in (True, False):
        every, _, _ = coverage._model(adapted, True)
        alone, _, _ = coverage._model(adapted, False)
        assert len(every) == len(coverage.SIGNALS) and len(alone) == len(coverage.SIGNALS) - 1
    row = np.zeros(len(coverage.SIGNALS))
    row[-1] = 50.0  # a gap this large would refuse anything, were it read
    assert coverage.decide(row, True, asked=False) == coverage.decide(row[:-1], True, False)


def test_a_question_fitted_on_is_not_its_own_nearest():
    from karpathy_gpt.evaluation import fit

    def prepared(vector):
        return fit.Prepared("q", np.array(vector), None, [], np.zeros((0, len(FEATURES))))

    on = [prepared([1.0, 0.0]), prepared([0.0, 1.0])]
    off = [prepared([0.6, 0.8])]
    assert len(fit.bank(on, off, on[0]).on) == 1
    assert fit.bank(on, off, off[0]).gap(off[0].vector) == 0.0  # no off-topic one is left
