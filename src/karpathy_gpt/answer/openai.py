"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp's server, LM Studio)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import openai

from ..retrieval import Retrieval
from .base import Answerer, AnswerError, Message
from .prompt import chat_messages


class OpenAIAnswerer(Answerer):
    def __init__(
        self,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 512,
        max_retries: int = 2,
    ):
        self.name = model
        self.max_tokens = max_tokens
        self.base_url = base_url or "https://api.openai.com/v1"
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def stream(
        self, retrieval: Retrieval, history: Sequence[Message] = ()
    ) -> AsyncIterator[str]:
        try:
            response = await self.client.chat.completions.create(
                model=self.name,
                messages=chat_messages(retrieval, history),
                temperature=0,
                max_tokens=self.max_tokens,
                stream=True,
            )
            async with response:
                async for chunk in response:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except openai.APIConnectionError as exc:
            raise AnswerError(
                f"cannot reach {self.base_url}: {_cause(exc)}; "
                "set OPENAI_BASE_URL or unset OPENAI_API_KEY"
            ) from exc
        except openai.AuthenticationError as exc:
            raise AnswerError(
                f"{self.base_url} refused the API key (401); check OPENAI_API_KEY"
            ) from exc
        except openai.NotFoundError as exc:
            raise AnswerError(
                f"{self.base_url} has no model {self.name!r} (404); set KGPT_LLM_MODEL"
            ) from exc
        except openai.APIStatusError as exc:
            raise AnswerError(
                f"{self.base_url} answered {exc.status_code}: {_status_message(exc)}"
            ) from exc
        except openai.OpenAIError as exc:
            raise AnswerError(f"the model at {self.base_url} failed: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self.client.close()


def _cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    return "timed out" if isinstance(exc, openai.APITimeoutError) else text


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:300]
    return exc.message[:300]
