"""The answer providers: each declares its name, when it is picked, what it checks in the
settings before anything starts, and how it is built. The choices come from here alone.

Providers are imported only when built (the ``openai`` package alone takes half a second), so
declaring them here costs a server nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import Settings
from .base import Answerer


@dataclass(frozen=True)
class Provider:
    name: str
    summary: str  # what answers, for messages and docs/answerers.md
    build: Callable[[Settings], Answerer]
    # Picked when KGPT_ANSWERER is unset and this holds (in the order below); None: the default.
    picked_when: Callable[[Settings], bool] | None = None
    # Raises ValueError naming the setting to change; must not load a model.
    check: Callable[[Settings], None] = lambda settings: None
    # Refuses off-topic questions when KGPT_REFUSE_OFFTOPIC is unset (a model is instead told
    # to answer only from the passages).
    refuses: bool = False


def _extractive(settings: Settings) -> Answerer:
    from .extractive import ExtractiveAnswerer

    return ExtractiveAnswerer()


def _openai(settings: Settings) -> Answerer:
    from .openai import OpenAIAnswerer

    return OpenAIAnswerer.from_settings(settings)


def _check_gguf(settings: Settings) -> None:
    if not settings.gguf:
        raise ValueError("KGPT_ANSWERER=gguf needs KGPT_GGUF=/path/to/model.gguf")
    from .gguf import check_settings

    check_settings(settings.gguf, settings.chat_format)


def _gguf(settings: Settings) -> Answerer:
    from .gguf import GGUFAnswerer

    return GGUFAnswerer.from_settings(settings)


PROVIDERS = {
    provider.name: provider
    for provider in (
        Provider(
            "extractive",
            "the passages' own sentences, cleaned and cited",
            _extractive,
            refuses=True,
        ),
        Provider(
            "openai",
            "OpenAI or any OpenAI-compatible chat server",
            _openai,
            picked_when=lambda settings: bool(settings.openai_api_key),
        ),
        Provider(
            "gguf",
            "a GGUF model in this process (llama-cpp-python)",
            _gguf,
            picked_when=lambda settings: bool(settings.gguf),
            check=_check_gguf,
        ),
    )
}
CHOICES = tuple(PROVIDERS)
DEFAULT = "extractive"


def choose_answerer(settings: Settings) -> str:
    """``KGPT_ANSWERER`` if set, else the first provider whose ``picked_when`` holds (openai
    when ``OPENAI_API_KEY`` is set, gguf when ``KGPT_GGUF`` is), else extractive."""
    if settings.answerer:
        choice = settings.answerer.strip().lower()
        if choice not in PROVIDERS:
            raise ValueError(
                f"KGPT_ANSWERER={settings.answerer!r}: choose one of {', '.join(CHOICES)}"
            )
        return choice
    picked = (p.name for p in PROVIDERS.values() if p.picked_when and p.picked_when(settings))
    return next(picked, DEFAULT)


def check_answerer(settings: Settings) -> str:
    """The answerer's name, once what can be checked before starting it is (ValueError saying
    what to set): the choice, and the provider's own settings, not yet the model."""
    choice = choose_answerer(settings)
    PROVIDERS[choice].check(settings)
    return choice


def make_answerer(settings: Settings) -> Answerer:
    return PROVIDERS[check_answerer(settings)].build(settings)


def refuses_offtopic(settings: Settings) -> bool:
    """Whether a question the retrieval judges off-topic is refused (``answer.refusal``):
    KGPT_REFUSE_OFFTOPIC, or when it is unset, the chosen provider's default."""
    if settings.refuse_offtopic is not None:
        return settings.refuse_offtopic
    return PROVIDERS[choose_answerer(settings)].refuses
