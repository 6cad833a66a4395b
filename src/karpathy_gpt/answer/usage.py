"""Token usage of one answer, as OpenAI's ``usage`` reports it.

A provider whose model counts its tokens fills the record it is handed (``Answerer.stream(...,
usage=)``) once the answer is complete: the openai provider with the upstream server's own
``usage`` (asked for with ``stream_options.include_usage``), the gguf provider with llama.cpp's
count of the prompt it evaluated and the tokens it generated. Where no model counts (the
extractive answerer, or an upstream server that reports no usage in a stream), ``settle``
counts word pieces of the MiniLM tokenizer (all-MiniLM-L6-v2's ``tokenizer.json``, BERT's
uncased WordPiece vocabulary, the one that embeds the passages): prompt tokens are those of
the question and the retrieved passages the answer was drawn from, completion tokens those of
the answer; special tokens ([CLS], [SEP]) are not counted and nothing is truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from ..retrieval import Retrieval

#: What counts tokens when no model does, as named in the documentation.
TOKENIZER = "all-MiniLM-L6-v2 WordPiece"


@dataclass
class Usage:
    """The counts of one answer; ``None`` until a provider reports them or ``settle`` counts."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def report(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The model's own counts."""
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens

    @property
    def known(self) -> bool:
        return self.prompt_tokens is not None and self.completion_tokens is not None

    def settle(self, retrieval: Retrieval, answer: str) -> dict[str, int]:
        """OpenAI's ``usage`` object: the reported counts, or word pieces counted here."""
        if not self.known:
            texts = [retrieval.question, *(hit.chunk.text for hit in retrieval.hits)]
            self.report(word_pieces(*texts), word_pieces(answer))
        prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


def word_pieces(*texts: str) -> int:
    """How many MiniLM word pieces ``texts`` hold together (each counted on its own)."""
    texts = tuple(text for text in texts if text)
    if not texts:
        return 0
    encodings = _tokenizer().encode_batch(list(texts), add_special_tokens=False)
    return sum(len(encoding.ids) for encoding in encodings)


@cache
def _tokenizer() -> Tokenizer:
    """The packaged model's tokenizer, without the 128-piece truncation and padding its file
    sets for embedding (a count must see the whole text)."""
    from tokenizers import Tokenizer

    from ..minilm import model_dir

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
