"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp's server, LM Studio).

The official async client streams the chat completion. What can go wrong is bounded and said
plainly: the first token, and each one after it, must come within ``timeout`` seconds (a busy
or stuck server otherwise holds a request open forever: SSE pings keep a socket alive without
a token); a refused or dropped connection is retried a few times before the first token, never
after; a connection that breaks mid-answer, a refused key, an unknown model and any other
status each end in an AnswerError whose message says what to change. The model name is checked
once against the server's ``/v1/models``, since some servers (llama.cpp's) silently answer
with whatever they have loaded. The API key is passed to the client and never logged or shown.

When the consumer stops early (the client went away), closing the generator closes the HTTP
response, so the model server sees the disconnect and stops generating.

The stream is asked with ``stream_options: {"include_usage": true}``, so the server's own token
counts come in a last chunk and are reported into the ``usage`` record; a server that sends
none leaves the record to be counted (see ``usage``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Sequence

import openai

from ..config import Settings
from ..retrieval import Retrieval
from .base import Answerer, AnswerError, Message
from .prompt import REWRITE_MAX_TOKENS, chat_messages, rewrite_with
from .usage import Usage

log = logging.getLogger(__name__)


class OpenAIAnswerer(Answerer):
    def __init__(
        self,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 512,
        connect_timeout: float = 5.0,
        retries: int = 2,
        rewrite_timeout: float = 10.0,
    ):
        self.name = model
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retries = retries
        self.rewrite_timeout = rewrite_timeout
        self.base_url = (base_url or "https://api.openai.com/v1").rstrip("/")
        self._model_checked = False
        self._models_missing = False  # the server answered /models with 404
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=self.base_url,
            # The SDK's own Timeout type: its HTTP library is its own business (httpx2 since 3.x).
            timeout=openai.Timeout(timeout, connect=min(connect_timeout, timeout)),
            max_retries=0,  # retried here, only where a retry cannot double an answer
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIAnswerer:
        return cls(
            model=settings.llm_model,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout,
            max_tokens=settings.llm_max_tokens,
            connect_timeout=settings.llm_connect_timeout,
            retries=settings.llm_retries,
            rewrite_timeout=settings.rewrite_timeout,
        )

    async def stream(
        self, retrieval: Retrieval, history: Sequence[Message] = (), usage: Usage | None = None
    ) -> AsyncIterator[str]:
        response = None
        try:
            response = await self._open(chat_messages(retrieval, history))
            async with response:
                chunks = aiter(response)
                while True:
                    try:
                        async with asyncio.timeout(self.timeout):
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    if chunk.usage is not None and usage is not None:  # the last chunk
                        usage.report(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except (TimeoutError, openai.APITimeoutError) as exc:
            raise AnswerError(
                f"{self.base_url} sent no token for {self.timeout:g} s: the model server is "
                "overloaded or stuck; try again, or raise KGPT_LLM_TIMEOUT"
            ) from exc
        except openai.APIConnectionError as exc:
            if response is None:
                raise self._error(exc) from exc
            raise AnswerError(
                f"the connection to {self.base_url} broke mid-answer ({_describe(exc)}); "
                "check that the model server is still running"
            ) from exc
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc

    async def _open(self, messages: list[dict[str, str]]):
        """The streaming response, connecting again after a refused or dropped connection."""
        for attempt in range(self.retries + 1):
            try:
                async with asyncio.timeout(self.timeout):
                    await self._check_model()
                    return await self.client.chat.completions.create(
                        model=self.name,
                        messages=messages,
                        temperature=0,
                        max_tokens=self.max_tokens,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
            except openai.APITimeoutError:
                raise
            except openai.APIConnectionError:
                if attempt == self.retries:
                    raise
                await asyncio.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    async def _check_model(self) -> None:
        """Fail with the served names if the server lists models and ours is not among them."""
        if self._model_checked:
            return
        try:
            page = await self.client.models.list()
        except (openai.APIConnectionError, openai.AuthenticationError):
            raise
        except openai.OpenAIError as exc:
            log.info("%s lists no models (%s); not checking %r", self.base_url, exc, self.name)
            self._models_missing = isinstance(exc, openai.NotFoundError)
            self._model_checked = True
            return
        served = [m.id for m in page.data]
        if served and self.name not in served and f"{self.name}:latest" not in served:
            shown = ", ".join(served[:8]) + (", ..." if len(served) > 8 else "")
            raise AnswerError(
                f"{self.base_url} has no model {self.name!r}; it serves {shown}: "
                "set KGPT_LLM_MODEL to one of them"
            )
        self._model_checked = True

    def _error(self, exc: openai.OpenAIError) -> AnswerError:
        if isinstance(exc, openai.APITimeoutError):
            return AnswerError(
                f"{self.base_url} did not answer in {self.timeout:g} s: the model server is "
                "overloaded or stuck; try again, or raise KGPT_LLM_TIMEOUT"
            )
        if isinstance(exc, openai.APIConnectionError):
            return AnswerError(
                f"cannot reach {self.base_url}: {_describe(exc)}; start the model server, "
                "set OPENAI_BASE_URL to one that is up, or answer offline with "
                "KGPT_ANSWERER=extractive"
            )
        if isinstance(exc, openai.AuthenticationError):
            return AnswerError(f"{self.base_url} refused the API key (401); check OPENAI_API_KEY")
        if isinstance(exc, openai.NotFoundError) and self._models_missing:
            return AnswerError(  # neither /models nor /chat/completions: the path is wrong
                f"{self.base_url} has no /models or /chat/completions (404): OPENAI_BASE_URL "
                "should end where those begin, usually in /v1 (http://localhost:8080/v1)"
            )
        if isinstance(exc, openai.NotFoundError):
            return AnswerError(
                f"{self.base_url} has no model {self.name!r} (404); set KGPT_LLM_MODEL"
            )
        if isinstance(exc, openai.APIStatusError):
            return AnswerError(
                f"{self.base_url} answered {exc.status_code}: {_status_message(exc)}"
            )
        return AnswerError(f"the model at {self.base_url} failed: {_describe(exc)}")

    async def rewrite(self, question: str, history: Sequence[Message]) -> str | None:
        return await rewrite_with(self._complete, question, history, self.rewrite_timeout)

    async def _complete(self, messages: list[dict[str, str]]) -> str:
        """One reply, not streamed (a rewrite is a short question)."""
        try:
            await self._check_model()
            reply = await self.client.chat.completions.create(
                model=self.name,
                messages=messages,
                temperature=0,
                max_tokens=REWRITE_MAX_TOKENS,
            )
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        return (reply.choices[0].message.content or "") if reply.choices else ""

    async def aclose(self) -> None:
        await self.client.close()


def _describe(exc: BaseException) -> str:
    """The innermost cause, in words: "connection refused", "timed out"."""
    chain = [exc]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) and len(chain) < 10:
        chain.append(cause)
    for cause in reversed(chain):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(cause, (TimeoutError, openai.APITimeoutError)):
            return "timed out"
    text = str(chain[-1]) or type(chain[-1]).__name__
    return text[:300]


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:300]
    return exc.message[:300]
