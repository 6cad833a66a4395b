"""Answer providers behind one interface, and the choice among them from the settings."""

from __future__ import annotations

from ..config import Settings
from .admission import Admission, JointTicket, Place, Ticket, admit_all
from .base import AnswerBusy, Answerer, AnswerError, Message
from .usage import Usage

__all__ = [
    "Admission",
    "Answerer",
    "AnswerBusy",
    "AnswerError",
    "JointTicket",
    "Message",
    "Place",
    "Ticket",
    "Usage",
    "admit_all",
    "check_answerer",
    "choose_answerer",
    "make_answerer",
]

CHOICES = ("extractive", "openai", "gguf")


def choose_answerer(settings: Settings) -> str:
    """``KGPT_ANSWERER`` if set, else openai when ``OPENAI_API_KEY`` is set, else gguf when
    ``KGPT_GGUF`` is set, else extractive."""
    if settings.answerer:
        choice = settings.answerer.strip().lower()
        if choice not in CHOICES:
            raise ValueError(
                f"KGPT_ANSWERER={settings.answerer!r}: choose one of {', '.join(CHOICES)}"
            )
        return choice
    if settings.openai_api_key:
        return "openai"
    if settings.gguf:
        return "gguf"
    return "extractive"


def check_answerer(settings: Settings) -> str:
    """The answerer's name, once what can be checked before starting it is (ValueError saying
    what to set): the choice, and for gguf the file and chat format, not yet the model."""
    choice = choose_answerer(settings)
    if choice == "gguf":
        if not settings.gguf:
            raise ValueError("KGPT_ANSWERER=gguf needs KGPT_GGUF=/path/to/model.gguf")
        from .gguf import check_settings

        check_settings(settings.gguf, settings.chat_format)
    return choice


def make_answerer(settings: Settings) -> Answerer:
    choice = check_answerer(settings)
    if choice == "openai":
        from .openai import OpenAIAnswerer

        return OpenAIAnswerer(
            model=settings.llm_model,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout,
            max_tokens=settings.llm_max_tokens,
            connect_timeout=settings.llm_connect_timeout,
            retries=settings.llm_retries,
            rewrite_timeout=settings.rewrite_timeout,
        )
    if choice == "gguf":
        from .gguf import GGUFAnswerer

        return GGUFAnswerer(
            settings.gguf,
            chat_format=settings.chat_format,
            context=settings.gguf_context,
            threads=settings.gguf_threads,
            batch_threads=settings.gguf_batch_threads,
            max_tokens=settings.llm_max_tokens,
            queue=settings.gguf_queue,
            rewrite_timeout=settings.rewrite_timeout,
        )
    from .extractive import ExtractiveAnswerer

    return ExtractiveAnswerer()
