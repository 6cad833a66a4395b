"""What a chat request may ask beyond its conversation, and what /v1 does with each option.

Clients send more than ``model`` and ``messages``. Found in their source:

- Open WebUI sends the model's parameters (``temperature``, ``top_p``, ``max_tokens``,
  ``frequency_penalty``, ``seed``, ``stop``, ``logit_bias``, ``reasoning_effort``),
  ``stream_options: {"include_usage": true}`` when streaming to a model given the "usage"
  capability, ``user`` as an object (to pipelines), text parts marked ``cache_control:
  {"type": "ephemeral"}``, and ``tools`` when a chat has tools in native function-calling
  mode; it keeps its ``metadata`` to itself, and asks its "task" prompts (titles, tags,
  follow-ups) as ordinary non-streamed requests.
- LibreChat (a custom endpoint, through LangChain's ``ChatOpenAI``) sends ``user`` (the user's
  id), ``stream_options: {"include_usage": true}``, the sampling parameters set on the endpoint,
  ``tools`` for an agent with tools, and whatever ``addParams`` adds.

Honoured: ``stream``, ``stream_options.include_usage`` (a last chunk with ``usage`` and
``choices: []``), ``k``. Accepted and left to the answerer's own settings: every sampling option,
``user``, ``metadata``, ``store``, ``seed``, ``reasoning_effort`` and any other field; ``tools``
(and the legacy ``functions``) with ``tool_choice`` ``"auto"`` or ``"none"``: the reply calls
no tool, which "auto" allows. Refused with a 400 naming the option (``code:
"unsupported_value"``), because no reply could be what it asks: a tool call forced
(``tool_choice: "required"`` or a named function, ``function_call`` naming one), a
``response_format`` other than text (JSON), ``logprobs: true``, audio output (``modalities``).
``n`` > 1 is refused where the request's types are checked (``schema.ChatRequest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool | None = None


@dataclass(frozen=True)
class Unsupported:
    param: str
    message: str


def unsupported(body: dict[str, Any]) -> Unsupported | None:
    """The first option of ``body`` (a chat request) that this server cannot honour."""
    for check in (_forced_tool, _forced_function, _structured_output, _logprobs, _audio):
        refusal = check(body)
        if refusal is not None:
            return refusal
    return None


def _forced_tool(body: dict[str, Any]) -> Unsupported | None:
    choice = body.get("tool_choice")
    forced = choice == "required" or (
        isinstance(choice, dict)
        and (choice.get("type") != "allowed_tools" or _mode(choice) == "required")
    )
    if not forced:
        return None
    return Unsupported(
        "tool_choice",
        "this server answers from the lectures and calls no tools: send tool_choice "
        '"auto" or "none", or no tools',
    )


def _mode(choice: dict[str, Any]) -> Any:
    allowed = choice.get("allowed_tools")
    return allowed.get("mode") if isinstance(allowed, dict) else None


def _forced_function(body: dict[str, Any]) -> Unsupported | None:
    if not isinstance(body.get("function_call"), dict):
        return None
    return Unsupported(
        "function_call",
        'this server answers from the lectures and calls no functions: send function_call "auto" '
        'or "none", or no functions',
    )


def _structured_output(body: dict[str, Any]) -> Unsupported | None:
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    return Unsupported(
        "response_format",
        f"response_format {kind or response_format!r} is not supported: answers are text "
        'quoted from the lectures; send {"type": "text"} or leave it out',
    )


def _logprobs(body: dict[str, Any]) -> Unsupported | None:
    if body.get("logprobs") is not True:
        return None
    return Unsupported(
        "logprobs", "logprobs are not available from this server: send logprobs false"
    )


def _audio(body: dict[str, Any]) -> Unsupported | None:
    modalities = body.get("modalities")
    if not isinstance(modalities, list) or "audio" not in modalities:
        return None
    return Unsupported("modalities", 'only text answers are available: send modalities ["text"]')
