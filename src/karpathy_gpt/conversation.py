"""A conversation's follow-up turned into something retrieval can search, with the history bounded.

A follow-up such as "and in which lecture is that explained?" names nothing to search for; the
conversation does. An answerer with a language model rewrites it into a standalone question
(``Answerer.rewrite``); without one (the extractive default), the retrieval query is the recent
user turns joined, the follow-up last. Either way the query stays within the question limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .answer import Answerer, AnswerError, Message

log = logging.getLogger(__name__)

#: Earlier user turns joined to a follow-up when no model rewrites it.
EARLIER_USER_TURNS = 2
#: Longest earlier message kept for the answerer; longer ones keep their end.
HISTORY_MESSAGE_CHARS = 4000


def bound_history(
    history: Sequence[Message], max_messages: int, max_chars: int = HISTORY_MESSAGE_CHARS
) -> list[Message]:
    """The last ``max_messages`` messages, each cut to its last ``max_chars`` characters."""
    kept = list(history)[-max_messages:] if max_messages > 0 else []
    return [
        Message(role=m["role"], content=m["content"][-max_chars:])
        for m in kept
        if m["content"].strip()
    ]


def combined_query(question: str, history: Sequence[Message], max_chars: int) -> str:
    """The follow-up after the recent user turns, dropping the oldest words past ``max_chars``."""
    earlier = [m["content"].strip() for m in history if m["role"] == "user"]
    query = " ".join([*earlier[-EARLIER_USER_TURNS:], question])
    if len(query) <= max_chars:
        return query
    return query[-max_chars:].split(" ", 1)[-1] if len(question) < max_chars else question


async def retrieval_query(
    answerer: Answerer, question: str, history: Sequence[Message], max_chars: int
) -> str:
    """What to search for to answer ``question`` in this conversation."""
    if not history:
        return question
    try:
        standalone = await answerer.rewrite(question, history)
    except AnswerError as exc:
        # The answer itself will meet the same failure and report it; retrieval still works.
        log.warning("rewriting the follow-up failed, searching the conversation: %s", exc)
        standalone = None
    if standalone and standalone.strip():
        return standalone.strip()[:max_chars]
    return combined_query(question, history, max_chars)
