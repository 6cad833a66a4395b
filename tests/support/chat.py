"""Asking /v1/chat/completions over plain HTTP, as the client and usage tests do: the server's
own reply (what a client must show), a stream's chunks as a line parser reads them, and usage
counted here the way the server documents its own count."""

from __future__ import annotations

import json

import httpx

MODEL = "karpathy-gpt"
CHAT_PATH = "/v1/chat/completions"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def post_chat(url: str, body: dict) -> httpx.Response:
    return httpx.post(url + CHAT_PATH, json=body, timeout=120)


def reply_to(url: str, *messages: dict, **options) -> dict:
    """The server's own non-streamed reply: the text and usage every client must show."""
    reply = post_chat(url, {"model": MODEL, "messages": list(messages), **options})
    assert reply.status_code == 200, reply.text
    return reply.json()


def chunks(url: str, body: dict) -> list[dict]:
    """The chunks of ``body`` streamed, parsed block by block; ``[DONE]`` must end them."""
    with httpx.stream("POST", url + CHAT_PATH, json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200, r.read()
        blocks = [b for b in r.read().decode().split("\n\n") if b.startswith("data: ")]
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(block[len("data: ") :]) for block in blocks[:-1]]


def text_of(reply: dict) -> str:
    return reply["choices"][0]["message"]["content"]


def streamed_text(parts: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in parts if c["choices"])


def word_pieces(*texts: str) -> int:
    """MiniLM word pieces in ``texts``, counted here with the tokenizers library on the
    packaged model's tokenizer.json (the rule documented for usage the server counts itself)."""
    from tokenizers import Tokenizer

    from karpathy_gpt.minilm import model_dir

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return sum(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts if t)
