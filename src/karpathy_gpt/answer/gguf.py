"""A GGUF model run in-process by llama-cpp-python (``KGPT_GGUF=/path/model.gguf``).

llama.cpp is not safe to use from two threads at once and a CPU has room for one generation,
so the model lives on one worker thread: every generation (answers and rewrites) is a job on
that thread, and jobs run one after another. Requests wait for the model through
``admission``: one answer is written at a time, ``queue`` more may wait, and any further one
gets AnswerBusy (a 503 with Retry-After) before its response starts.

Tokens cross from the worker thread to the event loop through an asyncio queue, so the loop is
never blocked. When the consumer stops (the client disconnected, a timeout), the job's cancel
flag is set: the token loop checks it after every token, and llama.cpp's abort callback checks
it during prompt evaluation (a long prompt on a CPU takes seconds), so the model is free for
the next request within a token's time.

Usage: llama.cpp's streamed chunks carry no token counts, so the model's ``generate`` is
counted as it runs (``_counting_llama``): the prompt tokens it is given and the tokens it
samples, the end-of-generation token excluded, which is how llama-cpp-python counts a
non-streamed completion's ``usage``.

Threads: ``n_threads=1`` for generation and ``n_threads_batch=2`` for prompt evaluation stay
fast while anything else uses a core: two generation threads wait on each other when one of
them is descheduled, every token.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..config import Settings
from ..retrieval import Retrieval
from .admission import Admission, Ticket
from .base import Answerer, AnswerError, Message
from .prompt import REWRITE_MAX_TOKENS, chat_messages, rewrite_with
from .usage import Usage

log = logging.getLogger(__name__)

_END = object()


class GGUFAnswerer(Answerer):
    def __init__(
        self,
        model_path: Path | str,
        chat_format: str | None = None,
        context: int = 4096,
        threads: int = 1,
        batch_threads: int = 2,
        max_tokens: int = 512,
        queue: int = 4,
        rewrite_timeout: float = 10.0,
    ):
        llama_cpp = check_settings(model_path, chat_format)
        path = Path(model_path).expanduser()
        try:
            self.llm = _counting_llama(llama_cpp)(
                model_path=str(path),
                n_ctx=context,
                n_threads=threads,
                n_threads_batch=batch_threads,
                chat_format=chat_format,
                verbose=False,
            )
        except ValueError as exc:
            raise ValueError(f"KGPT_GGUF={path}: llama.cpp cannot load it ({exc})") from exc
        if not chat_format and "tokenizer.chat_template" not in self.llm.metadata:
            self.llm.close()
            raise ValueError(
                f"{path.name} has no chat template: set KGPT_CHAT_FORMAT to the model's format "
                "(chatml, gemma, llama-3, mistral-instruct, ...)"
            )
        self.name = path.name.removesuffix(".gguf")
        self.max_tokens = max_tokens
        self.rewrite_timeout = rewrite_timeout
        self.admission = Admission(
            slots=1, queue=queue, what=self.name, setting=f"KGPT_GGUF_QUEUE={queue}", writes=True
        )
        self._engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gguf")
        self._last_job: Future | None = None  # jobs run in order: done when all are done
        self._cancel: threading.Event | None = None  # the running job's flag

        def abort(_data: ctypes.c_void_p) -> bool:
            cancel = self._cancel
            return cancel is not None and cancel.is_set()

        # Kept on self: llama.cpp holds only the raw pointer. Without the context handle (a
        # future llama-cpp-python), generation still stops at the next token.
        self._abort = llama_cpp.ggml_abort_callback(abort)
        self._no_abort = ctypes.cast(None, llama_cpp.ggml_abort_callback)
        self._context_handle = getattr(getattr(self.llm, "_ctx", None), "ctx", None)
        self._set_abort = llama_cpp.llama_set_abort_callback
        self._abort_on = False
        log.info("loaded %s (%s, context %d)", path, self.llm.chat_format, context)

    @classmethod
    def from_settings(cls, settings: Settings) -> GGUFAnswerer:
        return cls(
            settings.gguf,
            chat_format=settings.chat_format,
            context=settings.gguf_context,
            threads=settings.gguf_threads,
            batch_threads=settings.gguf_batch_threads,
            max_tokens=settings.llm_max_tokens,
            queue=settings.gguf_queue,
            rewrite_timeout=settings.rewrite_timeout,
        )

    @property
    def generating(self) -> bool:
        """Whether the model thread has a job (running or queued behind the running one)."""
        return self._last_job is not None and not self._last_job.done()

    def admit(self) -> Ticket:
        return self.admission.admit()

    def stream(
        self, retrieval: Retrieval, history: Sequence[Message] = (), usage: Usage | None = None
    ) -> AsyncIterator[str]:
        return self._generate(chat_messages(retrieval, history), self.max_tokens, usage)

    async def rewrite(self, question: str, history: Sequence[Message]) -> str | None:
        """The follow-up made standalone, or None if the model is busy past the time allowed.

        Rewrites run on the same model thread as answers: called while holding an admitted
        ticket, one starts at once; otherwise it waits behind the answer being written.
        """
        return await rewrite_with(self._complete, question, history, self.rewrite_timeout)

    async def _complete(self, messages: list[dict[str, str]]) -> str:
        async with aclosing(self._generate(messages, REWRITE_MAX_TOKENS)) as tokens:
            return "".join([token async for token in tokens])

    async def _generate(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage | None = None
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def put(item: object) -> None:
            _call_soon(loop, tokens.put_nowait, item)

        self._last_job = self._engine.submit(self._run, messages, max_tokens, cancel, put, usage)
        try:
            while True:
                item = await tokens.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise self._error(item) from item
                yield item
        finally:
            cancel.set()  # no await here: a cancelled task must not wait for the thread

    def _run(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        cancel: threading.Event,
        put: Callable[[object], None],
        usage: Usage | None = None,
    ) -> None:
        """On the model thread: generate, handing each token to ``put`` until told to stop;
        the counts go to ``usage`` once the answer is complete."""
        if cancel.is_set():
            return put(_END)
        self._cancel = cancel
        self._abort_checks(True)
        self.llm.tally = tally = _Tally()
        try:
            chunks = self.llm.create_chat_completion(
                messages=messages, stream=True, temperature=0, max_tokens=max_tokens
            )
            try:
                for chunk in chunks:
                    self._abort_checks(False)  # the prompt is evaluated: the loop checks now
                    if cancel.is_set():
                        break
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        put(text)
            finally:
                chunks.close()
            if usage is not None and tally.prompt_tokens and not cancel.is_set():
                usage.report(tally.prompt_tokens, tally.completion_tokens)
            put(_END)
        except Exception as exc:
            # An abort during prompt evaluation surfaces as "llama_decode returned 2".
            put(_END if cancel.is_set() else exc)
        finally:
            self._abort_checks(False)
            self._cancel = None
            self.llm.tally = None

    def _abort_checks(self, on: bool) -> None:
        """llama.cpp's abort callback, on only while the prompt is evaluated.

        The callback runs dozens of times per token and takes the GIL each time; during
        generation the event loop thread wants the GIL to send tokens, and the per-token check
        in the loop is enough there.
        """
        if self._context_handle is not None and self._abort_on != on:
            self._set_abort(self._context_handle, self._abort if on else self._no_abort, None)
            self._abort_on = on

    def _error(self, exc: BaseException) -> AnswerError:
        text = str(exc)
        if "exceed context window" in text:
            return AnswerError(
                f"{text[0].lower()}{text[1:]}: ask for fewer passages (k), or raise "
                "KGPT_GGUF_CONTEXT if the model allows a longer context"
            )
        return AnswerError(f"the model {self.name} failed: {text or type(exc).__name__}")

    async def aclose(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        self._engine.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._engine.shutdown, wait=True)
        self.llm.close()


@dataclass
class _Tally:
    """One generation's token counts, as llama-cpp-python counts a completion's usage."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def count(
        self, prompt: Sequence[int], tokens: Generator[int, object, None], is_end: Callable
    ) -> Iterator[int]:
        """``tokens`` (llama's ``generate``) passed through, counted."""
        self.prompt_tokens, self.completion_tokens = len(prompt), 0
        sent = None
        try:
            while True:
                token = tokens.send(sent)
                if not is_end(token):
                    self.completion_tokens += 1
                sent = yield token
        except StopIteration:
            return
        finally:
            tokens.close()


@cache
def _counting_llama(llama_cpp):
    """``llama_cpp.Llama`` whose ``generate`` (the loop under every completion) is counted
    into ``tally`` while one is set: streamed chunks carry no usage."""

    class CountingLlama(llama_cpp.Llama):
        tally: _Tally | None = None

        def generate(self, tokens, *args, **kwargs):
            generated = super().generate(tokens, *args, **kwargs)
            if self.tally is None:
                return generated
            vocab = llama_cpp.llama_model_get_vocab(self.model)
            return self.tally.count(
                tokens, generated, lambda token: llama_cpp.llama_vocab_is_eog(vocab, token)
            )

    return CountingLlama


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable, *args: object) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop has closed (shutdown): nobody is listening any more
        pass


def check_settings(model_path: str | Path, chat_format: str | None):
    """What can be checked without loading the model (ValueError saying what to set):
    llama-cpp-python installed, the file there, the chat format one llama.cpp knows. Returns
    the llama_cpp module."""
    llama_cpp = _import_llama_cpp()
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ValueError(f"KGPT_GGUF={path}: no such file; point it at a .gguf model file")
    if chat_format:
        _check_chat_format(chat_format)
    return llama_cpp


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise ValueError(
            "KGPT_GGUF needs llama-cpp-python: pip install -e '.[gguf]' "
            "(it compiles llama.cpp, ~9 minutes on 2 cores)"
        ) from exc
    return llama_cpp


def _check_chat_format(name: str) -> None:
    from llama_cpp import llama_chat_format

    registry = llama_chat_format.LlamaChatCompletionHandlerRegistry()
    try:
        registry.get_chat_completion_handler_by_name(name)
    except Exception as exc:  # LlamaChatCompletionHandlerNotFoundException
        known = ", ".join(sorted(registry._chat_handlers))
        raise ValueError(
            f"KGPT_CHAT_FORMAT={name!r} is not a llama-cpp-python chat format; known: {known}"
        ) from exc
