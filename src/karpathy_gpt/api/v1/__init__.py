"""The OpenAI-compatible API: /v1/models and /v1/chat/completions over the same retrieval and
answerer as /karpathy-stream, so any OpenAI client (the ``openai`` SDKs, Open WebUI, LibreChat,
curl) can ask the lectures.

Responses are OpenAI's own types (from the ``openai`` package). The passages an answer cites go
along as ``sources`` on the choice, as PrivateGPT sends them: in ``choices[0].sources`` of a
``chat.completion``, and in the first ``chat.completion.chunk`` of a stream, before any text.
A stream is ``data: {json}`` events framed by a blank line and ends with ``data: [DONE]``; an
answer provider that fails mid-stream sends ``data: {"error": {...}}`` and then ``[DONE]``.
Every refusal is OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``
(api/errors.py). A ``chat.completion`` carries ``usage``, and so does a stream's last chunk
when asked with ``stream_options.include_usage`` (answer/usage.py).

- ``schema``: the request models, reading and checking a request, its OpenAPI description
- ``options``: what is done with each option clients send beyond the conversation
- ``responses``: the completion, its stream of chunks with usage, the cited sources
- ``routes``: /v1/models and /v1/chat/completions
"""

from .routes import router

__all__ = ["router"]
