"""Answer providers behind one interface, and the choice among them from the settings."""

from __future__ import annotations

from ..config import Settings
from .base import Answerer, AnswerError, Message

__all__ = ["Answerer", "AnswerError", "Message", "make_answerer"]


def make_answerer(settings: Settings) -> Answerer:
    """``KGPT_ANSWERER`` if set, else OpenAI when ``OPENAI_API_KEY`` is set, else extractive."""
    choice = (settings.answerer or ("openai" if settings.openai_api_key else "extractive")).lower()
    if choice == "extractive":
        from .extractive import ExtractiveAnswerer

        return ExtractiveAnswerer()
    if choice == "openai":
        from .openai import OpenAIAnswerer

        return OpenAIAnswerer(
            model=settings.llm_model,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout,
            max_tokens=settings.llm_max_tokens,
        )
    raise ValueError(f"KGPT_ANSWERER={settings.answerer!r}: choose extractive or openai")
