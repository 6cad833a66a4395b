"""The extractive answerer's choice of sentences, on passages embedded by the real model."""

from __future__ import annotations

import asyncio
import re

import numpy as np

from karpathy_gpt.answer import NOT_COVERED, REFUSAL, answering
from karpathy_gpt.answer.extractive import ExtractiveAnswerer
from karpathy_gpt.chunking import Chunk
from karpathy_gpt.embedding import Embedder
from karpathy_gpt.retrieval import Retrieval
from karpathy_gpt.store import Hit
from karpathy_gpt.text import normalise, sentence_spans

QUESTION = "What is makemore?"
# Two lectures open with nearly the same line; the passage that says what makemore is comes
# last in the ranking, as in the real corpus.
PASSAGES = [
    "Today we are continuing our implementation of makemore. We will add batch normalization.",
    "Today we are once again continuing our implementation of makemore. We look at backprop.",
    "Under the hood, makemore is a character-level language model. It treats every line of "
    "the dataset as a sequence of individual characters.",
]


def retrieval(embedder: Embedder) -> Retrieval:
    hits = []
    for n, text in enumerate(PASSAGES):
        sentences = [normalise(text[s:e]) for s, e in sentence_spans(text)]
        vector = embedder.embed_one(normalise(text))
        hits.append(
            Hit(
                chunk=Chunk(text, {"id": f"0{n}", "title": f"lecture {n}"}),
                score=1 / (60 + n),
                similarity=float(vector @ embedder.embed_one(normalise(QUESTION))),
                sentence_vectors=embedder.embed(sentences),
            )
        )
    return Retrieval(QUESTION, embedder.embed_one(normalise(QUESTION)), hits)


def ranked(embedder: Embedder, scores: list[list[float]], covered: bool = True) -> Retrieval:
    found = retrieval(embedder)
    for hit, row in zip(found.hits, scores, strict=True):
        hit.sentence_scores = np.array(row)
    found.covered = covered
    return found


def test_the_answer_opens_with_the_best_sentence_and_goes_on_from_it(embedder):
    found = ranked(embedder, [[0.1, 0.0], [0.2, 0.1], [0.9, 0.3]])
    answer = ExtractiveAnswerer().compose(found)
    assert answer.startswith("Under the hood, makemore is a character-level language model. It ")
    assert "[3]" in answer and len(answer) <= 700 + len(" [1] [2] [3]")
    # Only deletions: every word is the lectures' own, in their order within a piece.
    lectures = " ".join(PASSAGES).lower()
    for piece in re.split(r" \[\d\] ?", answer):
        for sentence in filter(None, re.split(r"(?<=\.) ", piece)):
            assert sentence.lower().rstrip(".") in lectures, sentence


def test_an_answer_too_short_for_its_passage_goes_on_with_the_next_best(embedder):
    found = ranked(embedder, [[0.5, 0.1], [0.2, 0.1], [0.9, 0.3]])
    answer = ExtractiveAnswerer().compose(found)
    assert answer.index("[3]") < answer.index("[1]")  # best first, then the next best


def test_a_question_the_lectures_do_not_cover_is_refused_plainly(embedder):
    found = ranked(embedder, [[0.1, 0.0], [0.2, 0.1], [0.9, 0.3]], covered=False)
    extractive = ExtractiveAnswerer()
    assert answering(extractive, found, refuse=True) is REFUSAL

    async def said():
        return "".join([token async for token in REFUSAL.stream(found)])

    assert asyncio.run(said()).strip() == NOT_COVERED
    # Refusing off (KGPT_REFUSE_OFFTOPIC=false): the lectures' nearest words, as asked.
    assert answering(extractive, found, refuse=False) is extractive
    assert "makemore" in extractive.compose(found)


def test_a_chosen_piece_of_an_unpunctuated_caption_run_keeps_the_words_cut_off_after_it(embedder):
    """Auto-captions have no punctuation: a run is cut every ~300 characters and can leave a
    word alone after the cut, which is never chosen by itself."""
    words = (
        "we call zero grad before every backward pass because backward adds into the grad "
        "of every parameter so the gradients from the previous step would accumulate and "
    )
    ending = " and the loss will not go down properly during"
    text = (words * 3)[: 299 - len(ending)] + ending + " training"  # the cut falls at 299
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans][-1] == "training"  # the cut this is about
    question = "Why do we zero the gradients before the backward pass?"
    vector = embedder.embed_one(normalise(question))
    hit = Hit(
        chunk=Chunk(text, {"id": "01", "title": "micrograd"}),
        score=1 / 61,
        similarity=float(embedder.embed_one(normalise(text)) @ vector),
        sentence_vectors=embedder.embed([normalise(text[s:e]) for s, e in spans]),
    )
    answer = ExtractiveAnswerer().compose(Retrieval(question, vector, [hit]))
    assert answer.endswith("properly during training [1]"), answer
