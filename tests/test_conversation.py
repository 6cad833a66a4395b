"""The follow-up's retrieval query and the history bound; and which clients get the web page."""

from __future__ import annotations

import asyncio

import pytest

from karpathy_gpt.answer import Answerer, AnswerError
from karpathy_gpt.answer.extractive import ExtractiveAnswerer
from karpathy_gpt.api.page import prefers_html
from karpathy_gpt.conversation import bound_history, combined_query, retrieval_query


def turns(*texts: str) -> list[dict]:
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": text} for i, text in enumerate(texts)]


def test_history_keeps_the_last_messages_each_cut_to_its_end():
    history = turns("q1", "a1", "q2", "x" * 50, "q3", "   ")
    bounded = bound_history(history, max_messages=4, max_chars=10)
    assert bounded == [
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "x" * 10},
        {"role": "user", "content": "q3"},
    ]  # the blank message is dropped
    assert bound_history(history, max_messages=0) == []


def test_combined_query_is_the_recent_user_turns_then_the_follow_up():
    history = turns("What is tanh?", "a", "What is a bigram?", "b", "And a trigram?", "c")
    query = combined_query("Where is that explained?", history, max_chars=2000)
    assert query == "What is a bigram? And a trigram? Where is that explained?"


def test_combined_query_keeps_the_follow_up_whole_within_the_limit():
    history = turns("word " * 100, "a")
    query = combined_query("and why?", history, max_chars=40)
    assert len(query) <= 40 and query.endswith("and why?")
    assert not query.startswith(" ") and query.split()[0] == "word"
    assert combined_query("q" * 40, history, max_chars=40) == "q" * 40


class ThirdPartyRewriter(ExtractiveAnswerer):
    """A provider of someone else's making whose rewrite replies blank or raises: the contract
    retrieval_query keeps. (Our model answerers' rewrites are tested against a real model
    server in test_llm_server.py.)"""

    def __init__(self, result):
        super().__init__()
        self.result = result

    async def rewrite(self, question, history):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def query(answerer: Answerer, question: str, history) -> str:
    return asyncio.run(retrieval_query(answerer, question, history, max_chars=60))


def test_without_a_model_the_conversation_is_searched():
    history = turns("What is a bigram?", "A pair model [1]")
    expected = "What is a bigram? Which lecture?"
    assert query(ExtractiveAnswerer(), "Which lecture?", history) == expected
    for result in ("", AnswerError("model down")):
        assert query(ThirdPartyRewriter(result), "Which lecture?", history) == expected


def test_a_first_question_is_searched_as_asked():
    """No rewrite is asked for: a provider's reply would show in the query."""
    assert query(ThirdPartyRewriter("never used"), "What is a bigram?", []) == "What is a bigram?"


@pytest.mark.parametrize(
    "accept, html",
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # Chromium
        ("text/html", True),
        ("*/*", False),  # curl, httpx
        ("", False),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0", False),
        ("text/html;q=oops", False),
    ],
)
def test_who_gets_the_page(accept, html):
    assert prefers_html(accept) is html
